"""Golden-model throughput on one core: the shipped MNIST CNN, or any .tflite.

    python bench/golden_speed.py [--count 2000] [--model M.tflite ...]

Pins BLAS to one thread before NumPy loads, runs each model on real MNIST test images
when it takes them (seeded random inputs of its own type otherwise) and prints one JSON
line per model: inferences per second, best of 3.
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

from golden.generate import random_inputs  # noqa: E402
from golden.mnist import load_test_set, mnist_inputs  # noqa: E402
from golden.ops import run_model  # noqa: E402
from golden.run import DEFAULT_MODEL  # noqa: E402
from golden.tflite_io import load_tflite  # noqa: E402


def measure(model_path=DEFAULT_MODEL, count=2000, repeats=3):
    model = load_tflite(model_path)
    try:
        x = mnist_inputs(load_test_set()[0][:count], model)
    except (FileNotFoundError, ValueError):
        x = random_inputs(np.random.default_rng(0), model, count)
    best = min(_timed(model, x) for _ in range(repeats))
    return {"model": Path(model_path).name, "inferences": len(x), "seconds": round(best, 3),
            "inferences_per_s": round(len(x) / best, 1), "threads": 1}


def _timed(model, x):
    t0 = time.perf_counter()
    run_model(model, x)
    return time.perf_counter() - t0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", nargs="+", default=[str(DEFAULT_MODEL)])
    p.add_argument("--count", type=int, default=2000)
    a = p.parse_args()
    for path in a.model:
        print(json.dumps(measure(path, a.count)), flush=True)
