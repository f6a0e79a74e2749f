"""Where the iCEBreaker's time goes for the published models whose weights stream from flash
(issue 12), from the compiled programs: what stays in SPRAM and what streams, and three lower
bounds on the cycles, each summed over the steps: the array's (one tap a cycle per pass),
the requantiser's (every output element, ``ceil(requant_bits / digit_bits) / lanes``
cycles each) and the flash's (every streamed word, ``stream_cycles_per_word`` each, at each
bus width).  ``--measure`` adds the cycle-accurate simulation's total and its cycles waiting
for the flash (Verilator, a few seconds a model).

    python bench/flash_budget.py [--models DIR] [--measure] [--out FILE.md]
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from boards import ICEBREAKER  # noqa: E402
from compiler.program import CONV, compile_model  # noqa: E402
from golden.generate import random_inputs  # noqa: E402
from golden.tflite_io import load_tflite  # noqa: E402

MODELS = ["vww_96_int8.tflite", "ad01_int8.tflite", "kws_ref_model.tflite"]
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "models"


def budget(model, config=ICEBREAKER):
    program = compile_model(model, config.with_(target="generic"))
    cfg = program.config
    convs = [d for d in program.layers if d.kind == CONV]
    per_element = -(-cfg.requant_bits // cfg.requant_digit_bits) / cfg.requant_lanes
    return {
        "resident": int(program.weights.size), "streamed": int(program.stream.size),
        "streamed_steps": sum(d.streamed for d in convs), "steps": len(convs),
        "array": sum(d.groups * d.blocks * d.taps for d in convs),
        "requantiser": int(sum(np.prod(d.conv_shape) for d in convs) * per_element),
        "flash": {lines: int(program.stream.size) * (8 // lines) * 2 for lines in (1, 2, 4)},
    }


def measure(model):
    from sim.run import simulate
    x = random_inputs(np.random.default_rng(9), model, 1)
    _, r = simulate(model, x, check=True, log=lambda *a, **k: None)
    return r["cycles_per_inference"], r.get("flash", {}).get("cycles_waiting", 0)


def render(results):
    measured = any("cycles" in r for r in results.values())
    head = ("| model | resident B | streamed B (steps) | array bound | requantiser bound "
            "| flash cycles x1 / x2 / x4 (SCK = clk/2) |" + (" simulated cycles (waiting for flash) |" if measured else ""))
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, r in results.items():
        f = r["flash"]
        row = (f"| {name} | {r['resident']:,} | {r['streamed']:,} ({r['streamed_steps']} of {r['steps']}) "
               f"| {r['array']:,} | {r['requantiser']:,} | {f[1]:,} / {f[2]:,} / {f[4]:,} |")
        if measured:
            row += f" {r['cycles']:,} ({r['waiting']:,}) |"
        lines.append(row)
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=Path, default=DEFAULT_DIR)
    p.add_argument("--measure", action="store_true", help="also simulate one inference of each (Verilator)")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    results = {}
    for name in MODELS:
        path = args.models / name
        if not path.exists():
            print(f"skipping {name}: not in {args.models}", file=sys.stderr)
            continue
        model = load_tflite(str(path))
        results[path.stem] = r = budget(model)
        if args.measure:
            r["cycles"], r["waiting"] = measure(model)
    text = render(results)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
