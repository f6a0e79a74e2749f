"""What the iCE40 UP5K synthesis benches share: the test top that keeps a unit whole without
pinning it out, the yosys and nextpnr runs on the iCEBreaker's device, and the figures read
back from them.

The runs go through :mod:`hdl.toolchain`, the driver the main build uses: YoWASP's tools
(or the ones the ``YOSYS`` and ``NEXTPNR_ICE40`` environment variables name), which see
only their working directory, so every file of a run lives in one ``workdir``; nextpnr's
device flags come from the board profile.
"""

import functools
import json
import re
import tempfile
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import Cat, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import Flow, In, Out

from boards import ICEBREAKER_BOARD
from hdl import toolchain

#: The board whose device every bench targets.
BOARD = ICEBREAKER_BOARD
DEVICE = BOARD.device
#: iCE40 UP5K resources, as nextpnr names their BELs.
UP5K = BOARD.resources
#: The figures' names for those BELs.
BELS = {"lc": "ICESTORM_LC", "dsp": "ICESTORM_DSP", "bram": "ICESTORM_RAM", "spram": "ICESTORM_SPRAM"}
#: The clock every unit alone must reach (MHz).
UNIT_MHZ = 48


def all_ports(unit):
    """Every input and every output bit of ``unit``, in signature order."""
    ports = list(unit.signature.flatten(unit))
    return tuple(Cat(*(value for _, member, value in ports if member.flow == flow))
                 for flow in (Flow.In, Flow.Out))


def stream_ports(unit):
    """The input and output bits of a unit between two streams ``i`` and ``o``; valid and ready
    first, so they take the LFSR's first bits."""
    return (Cat(unit.i.valid, unit.o.ready, Value.cast(unit.i.payload)),
            Cat(Value.cast(unit.o.payload), unit.o.valid, unit.i.ready))


def lfsr68(n):
    """Fibonacci LFSR x^68 + x^59 + 1 (maximal length) as ``(width, taps)``; stretched to feed
    ``n`` > 68 inputs, the register only adds delayed copies."""
    return max(68, n), (67, 58)


def xor_fold(m, bits):
    """One bit that depends on every bit of ``bits``: a 4-ary XOR tree with a register after
    every LUT level (they pack for free), so the observer is never the critical path."""
    level = list(Value.cast(bits))
    while len(level) > 1:
        groups = [Cat(level[k:k + 4]) for k in range(0, len(level), 4)]
        level = [Signal(name=f"xor{len(groups)}_{k}") for k in range(len(groups))]
        m.d.sync += [bit.eq(group.xor()) for bit, group in zip(level, groups)]
    return level[0]


class BenchTop(wiring.Component):
    """``unit`` (submodule ``name``) with every input bit driven from a register stage of its
    own and every output bit folded into one pin, so yosys can remove nothing and the pins
    do not dominate the figures.

    The register is an LFSR, ``lfsr(n) -> (width, taps)`` for ``n`` input bits, folded into
    ``out``; or without one a shift register clocked in from ``sin``, folded into ``sout``
    (nextpnr places by name, so the pins keep the names the published figures were placed
    with).  ``ports(unit)`` gives the input and output bits.  All the wrapper's logic comes
    from this file: see :func:`is_wrapper`.
    """

    def __init__(self, name, unit, lfsr=None, ports=all_ports):
        self.name, self.unit, self.lfsr, self.ports = name, unit, lfsr, ports
        super().__init__({"out": Out(1)} if lfsr else {"sin": In(1), "sout": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules[self.name] = self.unit
        inputs, outputs = self.ports(self.unit)
        if self.lfsr:
            width, (a, b) = self.lfsr(len(inputs))
            source = Signal(width, name="lfsr", init=1)
            m.d.sync += source.eq(Cat(source[a] ^ source[b], source[:-1]))
            out = self.out
        else:
            source = Signal(len(inputs), name="chain")
            m.d.sync += source.eq(Cat(self.sin, source[:-1]))
            out = self.sout
        m.d.comb += [inputs.eq(source), out.eq(xor_fold(m, outputs))]
        return m


def is_wrapper(cell):
    """Whether a yosys or nextpnr cell comes from :class:`BenchTop`, by the source locations
    yosys attaches to every cell."""
    return re.search(rf"(^|[/|]){re.escape(Path(__file__).name)}:", cell["attributes"].get("src", "")) is not None


def make_workdir(workdir, name):
    """``workdir`` (created), or a fresh temporary directory named after ``name``."""
    workdir = Path(workdir or tempfile.mkdtemp(prefix=f"{name}_"))
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir


@functools.cache
def tools():
    """The toolchain's commands for :data:`BOARD`'s family (YoWASP's, unless overridden)."""
    return toolchain.find_tools(BOARD.family)


def netlist_cells(path):
    """The cells of a flat yosys or nextpnr JSON netlist, by name."""
    return json.loads(path.read_text())["modules"]["top"]["cells"]


def run_yosys(il_text, workdir):
    """Map the RTLIL module ``top`` with ``synth_ice40 -abc9`` into ``workdir/top.json``; its cells.

    Never ``-dsp``: its ice40_dsp pass also matches hand-instantiated SB_MAC16s and rewrites
    them into unregistered 16x16 multipliers with CLK and CE tied low, and nextpnr then
    reports plausible figures for a broken circuit (:func:`check_dsp_modes`).  yosys writes
    its own log (``-l``): YoWASP's stdout stops when ABC starts.
    """
    (workdir / "top.il").write_text(il_text)
    toolchain.yosys(tools(), workdir, ["-p", "read_rtlil top.il; synth_ice40 -abc9 -top top -json top.json; stat"],
          logname="yosys.out", listing="yosys.log")
    return netlist_cells(workdir / "top.json")


def nextpnr(workdir, log, *options, check=True):
    """Run nextpnr-ice40 for :data:`BOARD`'s device on ``workdir/top.json``; its return code."""
    rc, _ = toolchain.nextpnr(tools(), BOARD, workdir, ["--json", "top.json", "--pcf-allow-unconstrained", *options],
                              log)
    if rc and check:
        raise toolchain.ToolError(f"nextpnr failed ({rc}); see {workdir / log}")
    return rc


def run_nextpnr(workdir, seed, freq, *options, suffix="", check=True):
    """Place and route with ``seed``, timing the clock at ``freq`` MHz: whether it routed,
    nextpnr's last error, Fmax (if routed) and the resources used (:data:`BELS`), from
    nextpnr's report ``pnr_report<suffix>.json``.

    ``check=False`` reports a failed run too: a design that does not fit makes nextpnr fail
    after it has printed the utilisation, which is exactly what is worth reporting then.
    """
    log = f"nextpnr{suffix}.log"
    report = toolchain.place_and_route(tools(), BOARD, workdir, seed, freq,
                                       options=["--pcf-allow-unconstrained", *options],
                                       outputs=["--write", f"routed{suffix}.json"], logname=log,
                                       report=f"pnr_report{suffix}.json")
    routed = "error" not in report
    if not routed and check:
        raise toolchain.ToolError(f"nextpnr failed: {report['error']}; see {workdir / log}")
    used = {key: report["utilization"].get(bel, {}).get("used") for key, bel in BELS.items()}
    if None in used.values():
        raise toolchain.ToolError(f"nextpnr failed before reporting utilisation; see {workdir / log}")
    return {"routed": routed, "error": report.get("error"),
            "fmax_mhz": toolchain.fmax_mhz(report) if routed else None, **used}


def check_dsp_modes(cells):
    """Whether the netlist has SB_MAC16s and every one is still clocked and in dual 8x8 mode
    (see :func:`run_yosys`)."""
    macs = [cell for cell in cells.values() if cell["type"] == "SB_MAC16"]
    return bool(macs) and all(int(cell["parameters"]["MODE_8x8"], 2) == 1
                              and cell["connections"]["CLK"] != ["0"] for cell in macs)


def measure(top, workdir, seed, part):
    """yosys and nextpnr on a :class:`BenchTop` at :data:`UNIT_MHZ`: the usual figures, its
    logic cells split into the wrapper's and the unit's (``lc_<part>``)."""
    run_yosys(rtlil.convert(top, name="top"), workdir)
    pnr = run_nextpnr(workdir, seed, UNIT_MHZ)
    wrapper = sum(cell["type"] == "ICESTORM_LC" and is_wrapper(cell)
                  for cell in netlist_cells(workdir / "routed.json").values())
    return {"device": DEVICE, "seed": seed, "target_mhz": UNIT_MHZ,
            "lc": pnr["lc"], "lc_wrapper": wrapper, f"lc_{part}": pnr["lc"] - wrapper,
            "dsp": pnr["dsp"], "bram": pnr["bram"], "fmax_mhz": pnr["fmax_mhz"],
            "workdir": str(workdir)}


def write_report(path, figures):
    path.write_text(json.dumps(figures, indent=2) + "\n")
