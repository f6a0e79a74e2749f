"""Synthesise the activation table and the pool unit alone for the UP5K: LCs, DSPs, BRAMs, Fmax.

Each unit sits between an LFSR whose register bits drive every input port (stream payload,
valid and ready, control and table-write inputs) and a registered XOR tree of every output
bit (one pin), so nothing is optimised away and the pins do not dominate the figures.
Usage: ``python bench/synth_units.py [--seed 1] [--json build/synth_units.json]``.
"""

import argparse
import sys
from pathlib import Path

from boards import ICEBREAKER
from golden.model import QParams
from golden.nonlinear import lookup_table
from hdl.units.act_table import ActivationTable
from hdl.units.pool import Pool
from synth import BenchTop, make_workdir, measure, write_report

#: Fibonacci LFSRs x^n + x^t + 1, both primitive (maximal length): (n, t).
LFSRS = ((41, 38), (151, 148))
#: What is measured: a 2-lane table and a pool as wide as the array.
UNITS = {
    "act_table": lambda: ActivationTable(2, init=lookup_table("TANH", QParams(0.05, 0))),
    "pool": lambda: Pool(ICEBREAKER.lanes),
}


def lfsr(inputs):
    """The shortest of :data:`LFSRS` that covers ``inputs`` bits, as ``(width, taps)``."""
    n, t = next((n, t) for n, t in LFSRS if n >= inputs)
    return n, (n - 1, t - 1)


def synthesise(name, seed=1, workdir=None):
    """Run yosys and nextpnr on one unit of :data:`UNITS` in a :class:`~synth.BenchTop`; the figures."""
    workdir = make_workdir(workdir, f"synth_{name}")
    unit = UNITS[name]()
    figures = measure(BenchTop("unit", unit, lfsr), workdir, seed, "unit")
    return {"unit": name, "lanes": unit.lanes, "latency": unit.latency, **figures}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unit", choices=sorted(UNITS), action="append",
                        help="unit to synthesise (repeatable; default all)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=Path("build/synth_units.json"))
    args = parser.parse_args()
    figures = [synthesise(name, args.seed, args.json.parent / f"synth_{name}")
               for name in args.unit or sorted(UNITS)]
    write_report(args.json, figures)
    for f in figures:
        print(f"{f['unit']} ({f['lanes']} lanes, latency {f['latency']}) on UP5K (seed {f['seed']}): "
              f"{f['lc']} LCs ({f['lc_unit']} unit + {f['lc_wrapper']} LFSR/XOR wrapper), "
              f"{f['dsp']} DSPs, {f['bram']} BRAMs, Fmax {f['fmax_mhz']:.1f} MHz")
    print(f"-> {args.json}")


if __name__ == "__main__":
    sys.exit(main())
