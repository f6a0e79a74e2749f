"""Reading the MNIST files in ../shared/data/mnist (never copied into the repository)."""

import gzip
from pathlib import Path

import numpy as np

from .quant import tflite_round

#: Where the shared data lives relative to the repository root.
DEFAULT_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "mnist"


def _read_idx(path, magic):
    with gzip.open(path, "rb") as f:
        data = f.read()
    if int.from_bytes(data[:4], "big") != magic:
        raise ValueError(f"{path}: not an IDX file of the expected kind")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_test_set(directory=DEFAULT_DIR):
    """The official 10k test set: uint8 images (N, 28, 28) and labels (N,)."""
    directory = Path(directory)
    images = directory / "t10k-images-idx3-ubyte.gz"
    labels = directory / "t10k-labels-idx1-ubyte.gz"
    for p in (images, labels):
        if not p.exists():
            raise FileNotFoundError(f"MNIST file not found: {p}")
    return _read_idx(images, 0x803), _read_idx(labels, 0x801)


def load_train_csv(path=DEFAULT_DIR / "mnist_5k.csv.gz"):
    """The 5k training subset: uint8 images (N, 28, 28) and labels (N,)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"MNIST file not found: {path}")
    rows = np.loadtxt(path, delimiter=",", dtype=np.int64)
    return rows[:, :784].reshape(-1, 28, 28).astype(np.uint8), rows[:, 784].astype(np.int64)


def quantize_images(images, q):
    """Pixels 0..255 -> the model's int8 (or uint8) input, as TFLite's QUANTIZE does (x / 255 in float32)."""
    f = images.astype(np.float32) / np.float32(255.0)
    v = tflite_round(f / np.float32(q.scale)) + q.zero_point
    lo, hi = q.range
    return np.clip(v, lo, hi).astype(q.dtype)[..., None]


def mnist_inputs(images, model):
    """Test images as the model's input: its shape (any holding 784 values) and its type
    (pixels / 255 for a float32 input, quantised for int8 and uint8)."""
    shape = tuple(model.input_shape)
    if int(np.prod(shape)) != 28 * 28:
        raise ValueError(f"MNIST images are 28x28, the model takes {shape}")
    if model.input_q is None:
        x = images.astype(np.float32) / np.float32(255.0)
    else:
        x = quantize_images(images, model.input_q)
    return x.reshape((len(images),) + shape)
