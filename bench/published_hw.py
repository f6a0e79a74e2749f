"""The published int8 models of ../shared/models through the generated hardware (Verilator).

    python bench/published_hw.py [--dir ../shared/models] [--count 8] [--json]

For each model and each configuration below: whether it compiles (else the compiler's one
line), cycles per inference, cycles per layer kind, MAC utilisation of the array, and
whether every output equals golden on ``count`` seeded random inputs.  Configurations:
each board's (what `hdl.build --board NAME` generates; on the iCEBreaker maps that outgrow
block RAM go to SPRAM), then the same array with larger block-RAM banks and parameter memory
for models the board cannot take (ResNet-8 on the UP5K, simulated only).
Prints a Markdown table (the README's).
"""

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from boards import ICEBREAKER, get_board  # noqa: E402
from compiler.program import CompileError, compile_model  # noqa: E402
from golden.generate import random_inputs  # noqa: E402
from golden.tflite_io import load_tflite  # noqa: E402
from sim.run import sim_config, simulate  # noqa: E402

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "models"
MODELS = ("hello_world_int8.tflite", "micro_speech_quantized.tflite", "kws_ref_model.tflite",
          "pretrainedResnet_quant.tflite", "vww_96_int8.tflite", "ad01_int8.tflite")
ULX3S = get_board("ulx3s-85f").config
#: Per board: its configuration (on the iCEBreaker maps go to SPRAM when block RAM is too
#: small), then larger block-RAM banks and parameter memory on the same array; a model's row
#: is the first that takes it.
CONFIGS = {
    "iCEBreaker": {
        "iCEBreaker": ICEBREAKER,
        "iCEBreaker array, 16 KiB banks": ICEBREAKER.with_(act_bank_bytes=16384, param_depth=2048),
    },
    "ULX3S-85F": {"ULX3S-85F": ULX3S},
}


def measure(path, count, configs):
    model = load_tflite(path)
    rows = []
    for label, config in configs.items():
        try:
            program = compile_model(model, sim_config(config))
        except CompileError as e:
            rows.append({"model": path.name, "config": label, "compiles": False, "reason": str(e)})
            continue
        x = random_inputs(np.random.default_rng(9), model, count)
        _, r = simulate(model, x, check=True, config=config, log=lambda *a, **k: None)
        kinds = Counter()
        for d, cycles in zip(program.layers, r["cycles_per_layer"].values()):
            kinds["DEPTHWISE" if d.depthwise else d.kind] += cycles
        rows.append({"model": path.name, "config": label, "compiles": True, "engine": r["engine"],
                     "lanes": config.lanes,
                     "cycles": r["cycles_per_inference"], "utilisation": r["utilisation"],
                     "cycles_by_kind": dict(kinds), "checked": r["checked"], "inputs": count,
                     "activation_bank_bytes": program.memory_map["activation_bank"]["bytes"],
                     **({"flash": r["flash"]} if "flash" in r else {})})
        break                               # the first configuration that takes the model
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--board", choices=sorted(CONFIGS), action="append",
                    help="boards to measure (default: all)")
    args = ap.parse_args(argv)
    rows = []
    for board in args.board or CONFIGS:
        rows += measure_board(args, CONFIGS[board])
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return
    print("| model | configuration | cycles / inference | MAC utilisation | cycles by step kind | bit-exact |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if not r["compiles"]:
            # Without the long layer names (a refusal with streaming names two reasons).
            reason = "; with weights streamed from flash: ".join(
                part.split(": ", 1)[-1].split(" (output")[0]
                for part in r["reason"].split("; with weights streamed from flash: "))
            print(f"| `{r['model']}` | {r['config']} | refused: {reason} | | | |")
            continue
        kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(r["cycles_by_kind"].items(), key=lambda kv: -kv[1]))
        if "flash" in r:
            f = r["flash"]
            kinds += (f"; {f['cycles_waiting']:,} of all cycles waiting for {f['streamed_bytes']:,} B streamed from "
                      f"flash ({f['flash_lines']} lines, SCK = {f['sck']})")
        exact = f"yes, {r['inputs']} inputs ({r['engine']})" if r["checked"] == "all outputs equal golden" else "NO"
        print(f"| `{r['model']}` | {r['config']} | {r['cycles']:,} | {r['utilisation']:.1%} of {r['lanes']} lanes | "
              f"{kinds} | {exact} |")


def measure_board(args, configs):
    rows = []
    for name in MODELS:
        path = args.dir / name
        if not path.exists():
            print(f"skip {name}: absent from {args.dir}", file=sys.stderr)
            continue
        print(f"{name} ...", file=sys.stderr, flush=True)
        rows += measure(path, args.count, configs)
    return rows


if __name__ == "__main__":
    main()
