"""Per-channel parameters of a program whose weights stream (``weight_stream="on"``).

Such a model's parameters outgrow the block RAM as its weights outgrow the SPRAMs (VWW has
2,994 channels, 69 bits each), so they travel with the weights: each weight word's taps
are followed by three words per channel of it (bias, multiplier, shift), which the weight
cache takes in its fill like the taps (:func:`compiler.program._with_params`).  This store
watches the fill's words and keeps the parameter words, a channel an entry, numbered from 0
at each layer's start: the drain addresses its channels from ``param_base`` = 0, so it
reads here as from the parameter memory.  Entries are slots modulo 256, far more than the
channels of the few passes the drain can be behind the fill.
"""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In

from .ports import param_read_signature, weight_layout

SLOTS = 256


class ParamStore(wiring.Component):
    """``layer`` (a CONV step starts) restarts the numbering; ``fill`` (a fill of
    ``unit_words`` starts, ``taps`` of them weights) restarts the count of words; ``valid``
    and ``data`` are the fill's words as they land."""

    def __init__(self, config):
        self.config = config
        super().__init__({
            "layer": In(1), "fill": In(1), "taps": In(config.taps_bits),
            "valid": In(1), "data": In(weight_layout(config)),
            "read": In(param_read_signature(config)),
        })

    def elaborate(self, platform):
        m = Module()
        bits = (SLOTS - 1).bit_length()
        fields = {"bias": signed(32), "multiplier": 31, "shift": signed(6)}
        ports = {}
        for name, shape in fields.items():
            m.submodules[name] = mem = Memory(shape=shape, depth=SLOTS, init=[])
            ports[name] = (mem.write_port(), mem.read_port())
        before = Signal(self.config.taps_bits)      # weight words of the fill still to pass
        field = Signal(range(3))                     # which word of a channel's three comes next
        slot = Signal(bits)
        param = self.valid & (before == 0)
        word = self.data.as_value()
        for k, (name, (wr, rd)) in enumerate(ports.items()):
            m.d.comb += [
                wr.addr.eq(slot), wr.data.eq(word[:len(wr.data)]), wr.en.eq(param & (field == k)),
                rd.addr.eq(self.read.addr[:bits]), rd.en.eq(self.read.en),
                getattr(self.read.data, name).eq(rd.data),
            ]
        with m.If(self.valid & (before != 0)):
            m.d.sync += before.eq(before - 1)
        with m.If(param):
            m.d.sync += field.eq(field + 1)
            with m.If(field == 2):
                m.d.sync += [field.eq(0), slot.eq(slot + 1)]
        with m.If(self.fill):
            m.d.sync += [before.eq(self.taps), field.eq(0)]
        with m.If(self.layer):
            m.d.sync += slot.eq(0)
        return m
