"""What streaming weights from the SPI flash must deliver on the iCEBreaker (issue 12), from
the models alone: weights, the SPRAM left for resident weights when the maps need the SPRAMs
too, the bytes that must stream, and the flash time they take at each bus width against
the array's compute bound.

    python bench/flash_budget.py [--models DIR] [--out FILE.md]

Residency is chosen greedily: layers whose weights are reused over the most output pixels
stay in SPRAM, the rest stream once per inference (a layer whose weights are read again
for each group of pixels costs that many times more).  Cycles per streamed byte: 8 SCK
periods per byte on one line, 4 on two, 2 on four; an SCK period is 2 system cycles at
SCK = clock / 2 (the readers today) or 1 at SCK = clock (a DDR clock pin).  The compute
bound is MACs / (rows x cols) of the iCEBreaker's array at full use.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from boards import ICEBREAKER  # noqa: E402
from golden.tflite_io import load_tflite  # noqa: E402

MODELS = ["vww_96_int8.tflite", "ad01_int8.tflite", "pretrainedResnet_quant.tflite", "kws_ref_model.tflite"]
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "models"


def weighted_layers(model):
    """(name, weight bytes, MACs, output pixels) of each layer with weights."""
    rows = []
    for layer in model.layers:
        w = getattr(layer, "weights", None)
        if w is None:
            continue
        shape = layer.output_shape
        pixels = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
        rows.append((layer.name, int(np.asarray(w).size), int(layer.macs), pixels))
    return rows


def largest_maps(model):
    """The largest input plus output bytes of one layer (int8 maps; a chain's working set)."""
    sizes = {model.input_name: int(np.prod(model.input_shape))}
    best = 0
    for layer in model.layers:
        out = int(np.prod(layer.output_shape))
        ins = sum(sizes[name] for name in model.inputs_of(layer))
        sizes[layer.name] = out
        best = max(best, ins + out)
    return best


def budget(model, config=ICEBREAKER):
    layers = weighted_layers(model)
    total = sum(b for _, b, _, _ in layers)
    maps = largest_maps(model)
    maps_in_spram = maps > 2 * config.act_bank_bytes       # two banks read, two written
    room = config.weight_mem_bytes - (maps if maps_in_spram else 0)
    resident, streamed = 0, []
    for name, nbytes, macs, pixels in sorted(layers, key=lambda r: -r[3]):
        if resident + nbytes <= room:
            resident += nbytes
        else:
            streamed.append((name, nbytes, pixels))
    stream_bytes = sum(b for _, b, _ in streamed)
    lanes = config.rows * config.cols
    return {"weights": total, "maps": maps, "maps_in_spram": maps_in_spram, "room": room, "resident": resident,
            "streamed": stream_bytes, "streamed_layers": len(streamed),
            "fewest_pixels": min((p for _, _, p in streamed), default=None),
            "macs": model.macs, "compute_bound": -(-model.macs // lanes),
            "flash": {(width, ratio): stream_bytes * (8 // width) * ratio for width in (1, 2, 4) for ratio in (2, 1)}}


def render(results):
    lines = ["| model | weights B | largest maps B (in SPRAM?) | SPRAM left for weights B | streamed B (layers) "
             "| flash cycles x1 / x2 / x4 at SCK = clk/2 | x4 at SCK = clk | compute bound (cycles) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        f = r["flash"]
        lines.append(f"| {name} | {r['weights']:,} | {r['maps']:,} ({'yes' if r['maps_in_spram'] else 'no'}) "
                     f"| {r['room']:,} | {r['streamed']:,} ({r['streamed_layers']}) "
                     f"| {f[1, 2]:,} / {f[2, 2]:,} / {f[4, 2]:,} | {f[4, 1]:,} | {r['compute_bound']:,} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=Path, default=DEFAULT_DIR)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    results = {}
    for name in MODELS:
        path = args.models / name
        if not path.exists():
            print(f"skipping {name}: not in {args.models}", file=sys.stderr)
            continue
        results[path.stem] = budget(load_tflite(str(path)))
    text = render(results)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
