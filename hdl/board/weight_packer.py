"""Weight bytes (flash boot, WEIGHTS frames) into the core's weight load port."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..core.ports import weight_load_signature

__all__ = ["WeightPacker"]


class WeightPacker(wiring.Component):
    """Gathers ``cols`` bytes, lowest lane first, into a word and writes it at the next word
    address the cycle after its last byte (when ``write`` was high with that byte);
    ``restart`` goes back to word 0, lane 0."""

    def __init__(self, config):
        self.cols = config.cols
        super().__init__({"restart": In(1), "valid": In(1), "data": In(8), "write": In(1),
                          "wload": Out(weight_load_signature(config))})

    def elaborate(self, platform):
        m = Module()
        cols = self.cols
        word = Signal(8 * cols)
        lane = Signal(range(cols))
        addr = Signal.like(self.wload.addr)
        we = Signal()
        m.d.sync += we.eq(0)
        m.d.comb += [self.wload.addr.eq(addr), self.wload.data.eq(word), self.wload.we.eq(we)]
        with m.If(we):
            m.d.sync += addr.eq(addr + 1)
        with m.If(self.restart):
            m.d.sync += [addr.eq(0), lane.eq(0)]
        with m.Elif(self.valid):
            m.d.sync += [lane.eq(Mux(lane == cols - 1, 0, lane + 1)), word.eq(Cat(word[8:], self.data))]
            with m.If(lane == cols - 1):
                m.d.sync += we.eq(self.write)
        return m
