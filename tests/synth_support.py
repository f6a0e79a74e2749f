"""Synthesis of one unit for the opt-in tests, through bench/synth.py's harness."""

import sys
from pathlib import Path


def synthesise(unit, workdir):
    """``unit`` through bench/synth.py's yosys + nextpnr run, inputs from an LFSR and outputs
    folded into one pin; its figures (``lc_unit``, ``fmax_mhz``, ...)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from synth import BenchTop, lfsr68, measure
    workdir.mkdir(parents=True, exist_ok=True)
    return measure(BenchTop("unit", unit, lfsr68), workdir, 1, "unit")
