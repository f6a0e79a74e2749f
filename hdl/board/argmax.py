"""The INFER reply's argmax, kept while the output bytes go out."""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Argmax"]


class Argmax(wiring.Component):
    """``clear``, then one int8 ``value`` per ``valid`` with its ``index``: ``best_at`` is the
    first index of the largest value (only a strictly larger value replaces it, as
    ``numpy.argmax``).  The compare is the only logic in front of the registers."""

    def __init__(self):
        super().__init__({"clear": In(1), "valid": In(1), "value": In(8), "index": In(8), "best_at": Out(8)})

    def elaborate(self, platform):
        m = Module()
        best = Signal(8, init=0x80)
        with m.If(self.clear):
            m.d.sync += [best.eq(0x80), self.best_at.eq(0)]
        with m.Elif(self.valid & (self.value.as_signed() > best.as_signed())):
            m.d.sync += [best.eq(self.value), self.best_at.eq(self.index)]
        return m
