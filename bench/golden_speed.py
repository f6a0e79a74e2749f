"""Golden-model throughput on the shipped MNIST CNN, on one core.

    python bench/golden_speed.py [--count 2000] [--model models/mnist_cnn_int8.tflite]

Pins BLAS to one thread before NumPy loads, runs the model on real test images (random
int8 inputs when the MNIST folder is absent) and prints images per second (best of 3).
"""

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from golden.mnist import load_test_set, quantize_images  # noqa: E402
from golden.ops import run_model  # noqa: E402
from golden.run import DEFAULT_MODEL  # noqa: E402
from golden.tflite_io import load_tflite  # noqa: E402


def measure(model_path=DEFAULT_MODEL, count=2000, repeats=3):
    model = load_tflite(model_path)
    try:
        x = quantize_images(load_test_set()[0][:count], model.input_q)
    except FileNotFoundError:
        x = np.random.default_rng(0).integers(-128, 128, (count,) + model.input_shape).astype(np.int8)
    best = min(_timed(model, x) for _ in range(repeats))
    return {"model": str(model_path), "images": len(x), "seconds": round(best, 3),
            "images_per_s": round(len(x) / best, 1), "threads": 1}


def _timed(model, x):
    t0 = time.perf_counter()
    run_model(model, x)
    return time.perf_counter() - t0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    p.add_argument("--count", type=int, default=2000)
    a = p.parse_args()
    print(json.dumps(measure(a.model, a.count)))
