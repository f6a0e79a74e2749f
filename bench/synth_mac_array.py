"""Synthesise the iCE40 MAC array alone for the UP5K and report LCs, DSPs, BRAMs and Fmax.

The array sits between an LFSR (its inputs, valid and ready) and an XOR of every result
bit (one output pin), so nothing is optimised away and the pins do not dominate the
figures.  Usage: ``python bench/synth_mac_array.py [--rows 4 --cols 4 --seed 1]``.
"""

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from boards import ICEBREAKER  # noqa: E402
from hdl.units.mac_array import MacArray  # noqa: E402
from synth import BenchTop, check_dsp_modes, lfsr68, make_workdir, measure, netlist_cells, stream_ports, write_report  # noqa: E402


def synthesise(config=ICEBREAKER, seed=1, workdir=None):
    """Run yosys and nextpnr on the array in a :class:`~synth.BenchTop`; the figures."""
    workdir = make_workdir(workdir, "synth_mac_array")
    figures = measure(BenchTop("array", MacArray(config), lfsr68, stream_ports), workdir, seed, "array")
    return {"rows": config.rows, "cols": config.cols, "acc_width": config.acc_width, **figures,
            "dsp_mode_8x8": check_dsp_modes(netlist_cells(workdir / "top.json"))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ICEBREAKER.rows)
    parser.add_argument("--cols", type=int, default=ICEBREAKER.cols)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=Path("build/synth_mac_array.json"))
    args = parser.parse_args()
    config = ICEBREAKER.with_(rows=args.rows, cols=args.cols)
    figures = synthesise(config, args.seed, args.json.parent / "synth_mac_array")
    write_report(args.json, figures)
    print(f"{config.rows}x{config.cols} MAC array on UP5K (seed {args.seed}): "
          f"{figures['lc']} LCs ({figures['lc_array']} array + {figures['lc_wrapper']} LFSR/XOR wrapper), "
          f"{figures['dsp']} DSPs{'' if figures['dsp_mode_8x8'] else ' (BROKEN: not in 8x8 mode)'}, "
          f"{figures['bram']} BRAMs, Fmax {figures['fmax_mhz']:.1f} MHz -> {args.json}")


if __name__ == "__main__":
    sys.exit(main())
