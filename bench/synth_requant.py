"""Synthesise the requantiser alone for the UP5K and report LCs, DSPs, BRAMs and Fmax.

The unit sits between an LFSR (its payload, valid and ready) and an XOR of every output bit
(one pin), so nothing is optimised away and the pins do not dominate the figures; the
wrapper's own cells are counted apart.  Usage:
``python bench/synth_requant.py [--digit-bits 2 4 8] [--lanes 2] [--requant-bits 32] [--held-tensor] [--seed 1]``
(``--requant-bits 21 --held-tensor``: the unit as the drain builds it for KWS).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from boards import ICEBREAKER  # noqa: E402
from hdl.units.requant import Requantizer  # noqa: E402
from synth import BenchTop, lfsr68, make_workdir, measure, stream_ports, write_report  # noqa: E402


def synthesise(config=ICEBREAKER, digit_bits=4, seed=1, workdir=None, held_tensor=False):
    """Run yosys and nextpnr on the requantiser in a :class:`~synth.BenchTop`; the figures."""
    workdir = make_workdir(workdir, "synth_requant")
    unit = Requantizer(config, digit_bits, held_tensor=held_tensor)
    figures = measure(BenchTop("requant", unit, lfsr68, stream_ports), workdir, seed, "requant")
    return {"digit_bits": digit_bits, "lanes": unit.lanes, "acc_width": config.acc_width,
            "requant_bits": config.requant_bits, "held_tensor": held_tensor,
            "steps": unit.steps, "latency": unit.latency, "outputs_per_cycle": unit.outputs_per_cycle,
            **figures}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digit-bits", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--lanes", type=int, default=ICEBREAKER.requant_lanes)
    parser.add_argument("--requant-bits", type=int, default=32, help="bits of (acc + bias) << left (17 to 32)")
    parser.add_argument("--held-tensor", action="store_true", help="tensor fields held for the layer, as in the drain")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=Path("build/synth_requant.json"))
    args = parser.parse_args()
    config = ICEBREAKER.with_(requant_lanes=args.lanes, requant_bits=args.requant_bits)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    results = []
    for k in args.digit_bits:
        figures = synthesise(config, k, args.seed, args.json.parent / f"synth_requant_k{k}", args.held_tensor)
        results.append(figures)
        print(f"requantiser k={k}, {figures['lanes']} lanes, {args.requant_bits}-bit inputs on UP5K (seed {args.seed}): "
              f"{figures['lc']} LCs ({figures['lc_requant']} unit + {figures['lc_wrapper']} LFSR/XOR wrapper), "
              f"{figures['dsp']} DSPs, {figures['bram']} BRAMs, Fmax {figures['fmax_mhz']:.1f} MHz, "
              f"{figures['outputs_per_cycle']:.3f} outputs/cycle, latency {figures['latency']}")
    write_report(args.json, results)
    print(f"-> {args.json}")


if __name__ == "__main__":
    sys.exit(main())
