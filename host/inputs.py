"""Model inputs for the board: an image file, or an image of the official MNIST test set.

Both end in ``golden.mnist.quantize_images``, so an image file is quantised exactly as the
MNIST test set is when the golden model is scored (pixels / 255 in float32, then TFLite's
QUANTIZE).

MNIST digits are white on black, roughly centred, the digit filling about 20 of the 28
pixels.  A photo or drawing of a digit must look the same: white digit on a black
background (give ``invert=True``, ``--invert`` on the command line, for a dark digit on a
light background), cropped around the digit with some margin.  The image is resized to the
model's input size, converted to grayscale (or RGB for a three-channel model); a
transparent background counts as black, or as white with ``invert``.
"""

from pathlib import Path

import numpy as np

from golden.files import one_line
from golden.mnist import DEFAULT_DIR, load_test_set, quantize_images


#: The largest image accepted (pixels): any photo, far below what a crafted header can
#: announce to make the decoder allocate gigabytes.
MAX_PIXELS = 50_000_000


class InputError(Exception):
    """An input that cannot be read or does not fit the model; the message is one line."""


def _image_shape(input_shape):
    shape = tuple(int(v) for v in input_shape)
    if len(shape) == 2:
        shape += (1,)
    if len(shape) != 3 or shape[2] not in (1, 3):
        raise InputError(f"model input shape {shape} is not an image (H, W, 1) or (H, W, 3)")
    return shape


def image_pixels(path, input_shape, invert=False):
    """Read an image file -> uint8 pixels (H, W) for one channel or (H, W, 3) for three."""
    h, w, c = _image_shape(input_shape)
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise InputError("reading image files needs Pillow: pip install pillow") from None
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: image file not found")
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_PIXELS:
                raise InputError(f"{path}: {img.width}x{img.height} pixels, more than the {MAX_PIXELS:,} "
                                 "accepted (a decompression bomb?)")
            img.load()
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255) if invert else (0, 0, 0, 255))
                img = Image.alpha_composite(background, rgba)
            img = img.convert("L" if c == 1 else "RGB")
            if img.size != (w, h):
                img = img.resize((w, h), Image.Resampling.LANCZOS)
            px = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as e:
        raise InputError(f"{path}: cannot read the image ({one_line(e)})") from None
    if invert:
        px = 255 - px
    return px


def load_image(path, input_shape, qparams, invert=False):
    """An image file -> the model's int8 input of shape ``input_shape`` (see the module doc)."""
    px = image_pixels(path, input_shape, invert)
    return quantize_images(px[None], qparams).reshape(tuple(int(v) for v in input_shape))


def mnist_input(index, directory=DEFAULT_DIR, *, qparams):
    """Image ``index`` of the official 10k test set -> (int8 input (28, 28, 1), label)."""
    try:
        images, labels = load_test_set(directory)
    except (FileNotFoundError, ValueError, OSError, EOFError) as e:
        raise InputError(one_line(e)) from None
    if not 0 <= index < len(images):
        raise InputError(f"MNIST index {index} out of range: the test set has {len(images)} images (0..{len(images) - 1})")
    return quantize_images(images[index:index + 1], qparams)[0], int(labels[index])
