"""Accuracy of a model on the official 10k MNIST test set under the golden model and under
LiteRT's BUILTIN_REF kernels, and whether every output byte agrees.

    python bench/mnist_accuracy.py [--model models/mnist_cnn_int8.tflite] [--count 10000]
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from golden.litert import run_litert  # noqa: E402
from golden.mnist import load_test_set, quantize_images  # noqa: E402
from golden.ops import run_model  # noqa: E402
from golden.run import DEFAULT_MODEL  # noqa: E402
from golden.tflite_io import load_tflite  # noqa: E402


def measure(model_path=DEFAULT_MODEL, count=10000):
    model = load_tflite(model_path)
    images, labels = load_test_set()
    images, labels = images[:count], labels[:count]
    x = quantize_images(images, model.input_q)
    golden = run_model(model, x)
    ref = run_litert(Path(model_path).read_bytes(), x)
    acc = lambda y: float((y.reshape(len(y), -1).argmax(1) == labels).mean())  # noqa: E731
    return {"model": str(model_path), "images": int(len(x)), "golden_accuracy": acc(golden),
            "litert_accuracy": acc(ref), "identical_outputs": bool(np.array_equal(golden, ref)),
            "differing_bytes": int((golden != ref).sum())}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    p.add_argument("--count", type=int, default=10000)
    a = p.parse_args()
    print(json.dumps(measure(a.model, a.count)))
