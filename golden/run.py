"""Command line for the golden model: run a .tflite on inputs of its own type, score it on MNIST,
or dump every intermediate tensor for per-layer comparison with hardware.

Bad input (a model outside the supported set, a missing file, a wrongly shaped or typed
array) ends with one line on stderr and exit status 2.
"""

import sys
import time
from pathlib import Path

import numpy as np

from .files import OneLineParser, OutputError, check_output, save_npy
from .mnist import DEFAULT_DIR, load_test_set, mnist_inputs
from .model import ModelError, dtype_of, type_name
from .ops import run_model
from .tflite_io import load_tflite

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "mnist_cnn_int8.tflite"


class UsageError(Exception):
    pass


def load_input(path, model):
    """An .npy of the model's input type, shape (N, *input_shape) or one input without N."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: input file not found")
    try:
        x = np.load(path, allow_pickle=False)
    except Exception as e:
        raise UsageError(f"{path}: not a .npy array ({' '.join(str(e).split())})") from None
    want, kind = tuple(model.input_shape), type_name(model.input_q)
    if x.dtype != dtype_of(model.input_q):
        raise UsageError(f"{path}: input must be {kind} (the model's input type), got {x.dtype}")
    if x.shape == want:
        x = x[None]
    if x.shape[1:] != want or x.shape[0] == 0:
        raise UsageError(f"{path}: input shape {x.shape}, model takes (N, {', '.join(map(str, want))}) with N >= 1")
    if kind == "float32" and not np.isfinite(x).all():
        raise UsageError(f"{path}: input holds NaN or infinity")
    return x


def mnist_set(model, directory, count=None):
    """(inputs in the model's type and shape, labels) of the t10k set, or a one-line UsageError
    (a bad ``count`` before the files are read)."""
    if count is not None and count < 1:
        raise UsageError(f"--count must be at least 1, got {count}")
    images, labels = load_test_set(directory)
    if count is not None:
        images, labels = images[:count], labels[:count]
    try:
        return mnist_inputs(images, model), labels
    except ValueError as e:
        raise UsageError(f"--mnist: {e}") from None


def evaluate_mnist(model, directory, count=None, log=print):
    """Accuracy of the model on the official test set, and images per second."""
    x, labels = mnist_set(model, directory, count)
    if int(np.prod(model.output_shape)) != 10:
        raise UsageError(f"--mnist scores 10 classes, the model outputs {model.output_shape}")
    t0 = time.perf_counter()
    y = run_model(model, x)
    seconds = time.perf_counter() - t0
    pred = y.reshape(len(y), -1).argmax(axis=1)
    acc = float((pred == labels).mean())
    log(f"{model.name}: golden accuracy {acc * 100:.2f} % on {len(labels)} MNIST test images "
        f"({int((pred == labels).sum())} correct), {len(labels) / seconds:.0f} images/s")
    return acc, pred


def main(argv=None):
    p = OneLineParser(prog="python -m golden.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(DEFAULT_MODEL), help=".tflite (default: the shipped MNIST CNN)")
    p.add_argument("--input", help=".npy of shape (N, *input shape) in the model's input type (int8, uint8 or float32)")
    p.add_argument("--output", help="where to write the output tensor for every row (.npy, the model's output type)")
    p.add_argument("--mnist", metavar="DIR", nargs="?", const=str(DEFAULT_DIR),
                   help="score on the t10k set in DIR (default: ../shared/data/mnist)")
    p.add_argument("--count", type=int, help="with --mnist: only the first N test images")
    p.add_argument("--layers", metavar="DIR", help="write every intermediate tensor to DIR, named by layer")
    args = p.parse_args(argv)
    try:
        if args.mnist is None and args.input is None:
            raise UsageError("nothing to do: give --input X.npy or --mnist DIR")
        if args.output is not None:
            check_output(args.output, "--output")
        model = load_tflite(args.model)
        if args.input is not None:
            x = load_input(args.input, model)
        else:
            x = mnist_set(model, args.mnist, args.count)[0]
        if args.output or args.layers:
            y, inter = run_model(model, x, intermediates=True)
            if args.output:
                save_npy(args.output, y)
                print(f"wrote {args.output}: {y.shape} {y.dtype}")
            if args.layers:
                out = Path(args.layers)
                out.mkdir(parents=True, exist_ok=True)
                for i, layer in enumerate(model.layers):
                    save_npy(out / f"{i:02d}_{layer.name.replace('/', '_')}.npy", inter[layer.name])
                print(f"wrote {len(model.layers)} layer tensors to {out}")
        if args.mnist is not None:
            evaluate_mnist(model, args.mnist, args.count)
    except (ModelError, UsageError, FileNotFoundError, OutputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: cannot write: {e.strerror or e} ({e.filename})", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
