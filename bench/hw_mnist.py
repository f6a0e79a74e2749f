"""All (or the first N) MNIST test images through the cycle-accurate hardware simulation:
accuracy measured on the hardware, bit-exactness against golden, simulated inferences/s.

    python bench/hw_mnist.py [--count 10000] [--jobs 2] [--out build/hw_mnist.json]
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from golden.mnist import load_test_set, quantize_images  # noqa: E402
from golden.run import DEFAULT_MODEL  # noqa: E402
from golden.tflite_io import load_tflite  # noqa: E402
from sim.run import simulate  # noqa: E402


def measure(count=10000, jobs=2, model_path=DEFAULT_MODEL):
    model = load_tflite(model_path)
    images, labels = load_test_set()
    images, labels = images[:count], labels[:count]
    x = quantize_images(images, model.input_q)
    y, report = simulate(model, x, jobs=jobs, check=True,
                         log=lambda *a, **k: print(*a, **{**k, "file": sys.stderr}))
    report["accuracy"] = float((y.reshape(len(y), -1).argmax(1) == labels).mean())
    return report


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", default="build/hw_mnist.json")
    a = p.parse_args()
    r = measure(a.count, a.jobs)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(r, indent=2) + "\n")
    print(json.dumps(r))
