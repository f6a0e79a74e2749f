"""Clock generation from a board oscillator: the PLL settings for a requested frequency and
the primitive that makes it, with a reset held until the PLL has locked.

The settings search follows the devices' documented limits (iCE40 sysCLOCK PLL guide
FPGA-TN-02052; ECP5 sysCLOCK guide FPGA-TN-02200) and only ever picks a frequency at or
below the request, so a design timed for the request also meets the achieved clock.
"""

import math
from dataclasses import dataclass

from amaranth.hdl import ClockDomain, Instance, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out


class PllError(ValueError):
    pass


@dataclass(frozen=True)
class PllSettings:
    family: str
    f_in_hz: int
    f_out_hz: float
    params: dict

    @property
    def f_out_mhz(self):
        return self.f_out_hz / 1e6


def ice40_pll(f_in_hz, f_req_hz):
    """SB_PLL40 settings in SIMPLE feedback: f_out = f_in * (DIVF + 1) / ((DIVR + 1) * 2**DIVQ),
    with the phase detector at 10-133 MHz and the VCO at 533-1066 MHz."""
    best = None
    for divr in range(16):
        f_pfd = f_in_hz / (divr + 1)
        if not 10e6 <= f_pfd <= 133e6:
            continue
        for divf in range(128):
            f_vco = f_pfd * (divf + 1)
            if not 533e6 <= f_vco <= 1066e6:
                continue
            for divq in range(1, 7):
                f_out = f_vco / (1 << divq)
                if 16e6 <= f_out <= f_req_hz and (best is None or f_out > best[0]):
                    best = (f_out, divr, divf, divq, f_pfd)
    if best is None:
        raise PllError(f"iCE40 PLL: no setting from {f_in_hz / 1e6:g} MHz at or below {f_req_hz / 1e6:g} MHz "
                       "(range 16-275 MHz)")
    f_out, divr, divf, divq, f_pfd = best
    # The loop filter range follows the phase detector frequency (the icepll table).
    filter_range = next(k for k, limit in enumerate((17e6, 26e6, 44e6, 66e6, 101e6), 1) if f_pfd < limit) \
        if f_pfd < 101e6 else 6
    return PllSettings("ice40", f_in_hz, f_out, {"DIVR": divr, "DIVF": divf, "DIVQ": divq,
                                                 "FILTER_RANGE": filter_range})


def ecp5_pll(f_in_hz, f_req_hz):
    """EHXPLLL settings: f_out = f_in * CLKFB_DIV / CLKI_DIV, the VCO (f_out * CLKOP_DIV) at
    400-800 MHz and the phase detector at 3.125-400 MHz."""
    best = None
    for clki in range(1, 129):
        f_pfd = f_in_hz / clki
        if not 3.125e6 <= f_pfd <= 400e6:
            continue
        for clkfb in range(1, 81):
            f_out = f_pfd * clkfb
            if not 3.125e6 <= f_out <= f_req_hz:
                continue
            # The output divider that puts the VCO nearest the middle of its range.
            fits = [k for k in range(1, 129) if 400e6 <= f_out * k <= 800e6]
            if fits and (best is None or f_out > best[0]):
                best = (f_out, clki, clkfb, min(fits, key=lambda k: abs(f_out * k - 600e6)))
    if best is None:
        raise PllError(f"ECP5 PLL: no setting from {f_in_hz / 1e6:g} MHz at or below {f_req_hz / 1e6:g} MHz")
    f_out, clki, clkfb, clkop = best
    return PllSettings("ecp5", f_in_hz, f_out, {"CLKI_DIV": clki, "CLKFB_DIV": clkfb, "CLKOP_DIV": clkop,
                                                "CLKOP_CPHASE": clkop - 1})


#: The highest output each family's PLL is specified for (iCE40 SB_PLL40: 275 MHz; ECP5
#: EHXPLLL CLKOP: 400 MHz).
F_OUT_MAX_HZ = {"ice40": 275e6, "ecp5": 400e6}


def pll_settings(family, f_in_hz, f_req_hz):
    """The setting closest to ``f_req_hz`` from below; PllError for a request that is not a
    positive finite frequency or is above what the PLL can output."""
    if not math.isfinite(f_req_hz) or f_req_hz <= 0:
        raise PllError(f"the clock must be a positive number of MHz, got {f_req_hz / 1e6:g}")
    if f_req_hz > F_OUT_MAX_HZ[family]:
        raise PllError(f"{f_req_hz / 1e6:g} MHz is above the {family} PLL's {F_OUT_MAX_HZ[family] / 1e6:g} MHz limit")
    return {"ice40": ice40_pll, "ecp5": ecp5_pll}[family](f_in_hz, f_req_hz)


class Pll(wiring.Component):
    """Drives clock domain ``domain`` (created by the caller) from the PLL and holds it in
    reset until the PLL locks and then for ``hold_cycles`` more (iCE40 block RAMs read as
    zero for ~3 us after configuration)."""

    def __init__(self, settings, pin, domain, hold_cycles=256):
        self.settings, self.pin, self.domain, self.hold_cycles = settings, pin, domain, hold_cycles
        super().__init__({"locked": Out(1)})

    def elaborate(self, platform):
        m = Module()
        s, cd_sync = self.settings, self.domain
        m.domains.por = cd_por = ClockDomain("por", reset_less=True, local=True)
        locked = Signal()
        if s.family == "ice40":
            m.submodules.pll = Instance(
                "SB_PLL40_PAD", p_FEEDBACK_PATH="SIMPLE",
                **{f"p_{k}": v for k, v in s.params.items()},
                i_PACKAGEPIN=self.pin, i_RESETB=1, i_BYPASS=0,
                o_PLLOUTGLOBAL=cd_sync.clk, o_LOCK=locked)
        else:
            p = s.params
            m.submodules.pll = Instance(
                "EHXPLLL", p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_CLKOP_ENABLE="ENABLED",
                p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
                **{f"p_{k}": v for k, v in p.items()},
                i_CLKI=self.pin, i_CLKFB=cd_sync.clk, i_RST=0, i_STDBY=0, i_PHASESEL0=0,
                i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0,
                i_ENCLKOP=0, o_CLKOP=cd_sync.clk, o_LOCK=locked)
        timer = Signal(range(self.hold_cycles + 1))
        # The reset comes straight from a flip-flop: it reaches every register of the design.
        rst = Signal(init=1)
        m.d.por += rst.eq(timer != self.hold_cycles)
        m.d.comb += [cd_por.clk.eq(cd_sync.clk), self.locked.eq(locked), cd_sync.rst.eq(rst)]
        with m.If(~locked):
            m.d.por += timer.eq(0)
        with m.Elif(timer != self.hold_cycles):
            m.d.por += timer.eq(timer + 1)
        return m
