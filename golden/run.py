"""Command line for the golden model: run a .tflite on int8 inputs, score it on MNIST, or dump
every intermediate tensor for per-layer comparison with hardware.

Bad input (a model outside the supported set, a missing file, a wrongly shaped array)
ends with one line on stderr and exit status 2.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .mnist import DEFAULT_DIR, load_test_set, quantize_images
from .model import ModelError
from .ops import run_model
from .tflite_io import load_tflite

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "mnist_cnn_int8.tflite"


class UsageError(Exception):
    pass


def _save_npy(path, array):
    """Write atomically so an interrupted run leaves no half-written file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent or ".", suffix=".npy.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _load_input(path, model):
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: input file not found")
    try:
        x = np.load(path, allow_pickle=False)
    except Exception as e:
        raise UsageError(f"{path}: not a .npy array ({e})") from None
    want = tuple(model.input_shape)
    if x.dtype != np.int8:
        raise UsageError(f"{path}: input must be int8, got {x.dtype}")
    if x.shape == want:
        x = x[None]
    if x.shape[1:] != want:
        raise UsageError(f"{path}: input shape {x.shape}, model takes (N, {', '.join(map(str, want))})")
    return x


def evaluate_mnist(model, directory, count=None, log=print):
    """Accuracy of the model on the official test set, and images per second."""
    images, labels = load_test_set(directory)
    if count is not None:
        images, labels = images[:count], labels[:count]
    if tuple(model.input_shape) != (28, 28, 1):
        raise UsageError(f"--mnist needs a 28x28x1 input, model takes {model.input_shape}")
    x = quantize_images(images, model.input_q)
    t0 = time.perf_counter()
    y = run_model(model, x)
    seconds = time.perf_counter() - t0
    pred = y.reshape(len(y), -1).argmax(axis=1)
    acc = float((pred == labels).mean())
    log(f"{model.name}: int8 golden accuracy {acc * 100:.2f} % on {len(labels)} MNIST test images "
        f"({int((pred == labels).sum())} correct), {len(labels) / seconds:.0f} images/s")
    return acc, pred


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m golden.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="int8 .tflite (default: the shipped MNIST CNN)")
    p.add_argument("--input", help="int8 .npy of shape (N, H, W, C)")
    p.add_argument("--output", help="where to write the int8 output tensor for every row (.npy)")
    p.add_argument("--mnist", metavar="DIR", nargs="?", const=str(DEFAULT_DIR),
                   help="score on the t10k set in DIR (default: ../shared/data/mnist)")
    p.add_argument("--count", type=int, help="with --mnist: only the first N test images")
    p.add_argument("--layers", metavar="DIR", help="write every intermediate int8 tensor to DIR, named by layer")
    args = p.parse_args(argv)
    try:
        model = load_tflite(args.model)
        if args.mnist is None and args.input is None:
            raise UsageError("nothing to do: give --input X.npy or --mnist DIR")
        if args.input is not None:
            x = _load_input(args.input, model)
        else:
            x = quantize_images(load_test_set(args.mnist)[0][:args.count], model.input_q)
        if args.output or args.layers:
            y, inter = run_model(model, x, intermediates=True)
            if args.output:
                _save_npy(args.output, y)
                print(f"wrote {args.output}: {y.shape} int8")
            if args.layers:
                out = Path(args.layers)
                out.mkdir(parents=True, exist_ok=True)
                for i, layer in enumerate(model.layers):
                    _save_npy(out / f"{i:02d}_{layer.name.replace('/', '_')}.npy", inter[layer.name])
                print(f"wrote {len(model.layers)} layer tensors to {out}")
        if args.mnist is not None:
            evaluate_mnist(model, args.mnist, args.count)
    except (ModelError, UsageError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
