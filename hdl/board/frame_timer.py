"""The frame timeout of docs/protocol.md: how long the line has been quiet."""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["FrameTimer"]


class FrameTimer(wiring.Component):
    """``expired`` rises once ``timeout_cycles`` have passed without ``activity`` (a received
    byte, a framing error, the line held low) and stays up until the next activity.  Counts
    up from a clear and saturates: a down-counter loaded with a constant gets set/reset
    flip-flops that split its carry chain on the iCE40.  It stops when it expires."""

    def __init__(self, timeout_cycles):
        if not isinstance(timeout_cycles, int) or timeout_cycles < 1:
            raise ValueError(f"FrameTimer: timeout_cycles must be an int >= 1, got {timeout_cycles!r}")
        self.timeout_cycles = timeout_cycles
        super().__init__({"activity": In(1), "expired": Out(1)})

    def elaborate(self, platform):
        m = Module()
        quiet = Signal(range(self.timeout_cycles))
        with m.If(self.activity):
            m.d.sync += [quiet.eq(0), self.expired.eq(0)]
        with m.Elif(~self.expired):
            m.d.sync += [quiet.eq(quiet + 1), self.expired.eq(quiet == self.timeout_cycles - 1)]
        return m
