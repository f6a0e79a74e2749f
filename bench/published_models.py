"""The published int8 models of ../shared/models through the importer and the golden model.

    python bench/published_models.py [--dir ../shared/models] [--count 100]

For each file: its ops, constant bytes (int8 weights, int32 biases), MACs per inference,
whether golden equals LiteRT BUILTIN_REF on ``count`` seeded random inputs (final output
and every intermediate tensor), and golden inferences per second on one core
(``golden_speed.py``: 2,000 inputs, best of 3).  Prints a Markdown table (the README's)
and, with --json, one JSON object per model.
"""

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from golden_speed import measure as golden_speed  # noqa: E402

from golden.generate import random_inputs  # noqa: E402
from golden.litert import run_litert  # noqa: E402
from golden.model import ModelError, type_name  # noqa: E402
from golden.ops import Reshape, run_model  # noqa: E402
from golden.tflite_io import load_tflite  # noqa: E402

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "models"


def measure(path, count):
    model = load_tflite(path)
    x = random_inputs(np.random.default_rng(5), model, count)
    want, want_layers = run_litert(path, x, intermediates=True)
    got, got_layers = run_model(model, x, intermediates=True)
    same = np.array_equal(got, want) and all(np.array_equal(got_layers[k], v) for k, v in want_layers.items())
    rate = golden_speed(path)["inferences_per_s"]
    ops = Counter(layer.op for layer in model.layers)
    weights = sum(int(layer.weights.size) for layer in model.layers if hasattr(layer, "weights"))
    return {"model": Path(path).name, "input": f"{type_name(model.input_q)} {model.input_shape}",
            "output": f"{type_name(model.output_q)} {model.output_shape}",
            "ops": dict(sorted(ops.items())), "graph": "chain" if model.is_chain else "branching",
            "views": sum(isinstance(layer, Reshape) for layer in model.layers),
            "weight_bytes": weights, "bias_bytes": model.constant_bytes - weights, "macs": model.macs,
            "inputs_compared": len(x), "golden_equals_litert": bool(same),
            "golden_inferences_per_s": round(rate, 1)}


def table(rows):
    lines = ["| model | ops | weights + biases (B) | MACs | golden == LiteRT | golden inf/s (1 core) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        ops = ", ".join(f"{k} {v}" for k, v in r["ops"].items())
        same = f"yes, {r['inputs_compared']} inputs, every tensor" if r["golden_equals_litert"] else "NO"
        lines.append(f"| `{r['model']}` | {ops} | {r['weight_bytes']:,} + {r['bias_bytes']:,} | {r['macs']:,} | "
                     f"{same} | {r['golden_inferences_per_s']:,} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", default=str(DEFAULT_DIR))
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    files = sorted(Path(a.dir).glob("*.tflite"))
    if not files:
        sys.exit(f"error: no .tflite files in {a.dir}")
    rows = []
    for f in files:
        try:
            rows.append(measure(f, a.count))
        except ModelError as e:
            print(f"{f.name}: refused: {e}", file=sys.stderr)
            continue
        if a.json:
            print(json.dumps(rows[-1]), flush=True)
    print(table(rows))
    return 0 if all(r["golden_equals_litert"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
