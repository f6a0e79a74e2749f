"""Block-RAM copy of one channel group's weights, for maps in SPRAM (``act_memory="spram"``).

The feeder reads the activation SPRAMs every cycle, so it cannot also read the weights
there: before a group's passes it asks for the group's words (``fill``), which come from the
SPRAMs a word a cycle (fewer while the drain writes), and then reads them here.  The read
port takes the weight memory's absolute word addresses, so the feeder's addressing does
not change.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .ports import weight_fetch_signature, weight_fill_signature, weight_layout, weight_read_signature


class WeightCache(wiring.Component):
    """At least ``words`` words (the program's largest group, its ``spram`` plan's
    ``cache_words``), rounded up to a power of two: word ``w`` sits in slot ``w mod depth``,
    which is distinct for the words of a group, so reads need no base subtracted.
    ``weight_base``: the SPRAM word where the weights start (the plan's), for the fetch
    port's ``word``."""

    def __init__(self, config, words, weight_base):
        self.config, self.weight_base = config, weight_base
        self.depth = 1 << max(0, (words - 1).bit_length())
        super().__init__({
            "read": In(weight_read_signature(config)),
            "fill": In(weight_fill_signature(config)),
            "fetch": Out(weight_fetch_signature(config)),
        })

    @property
    def latency(self):
        """A read's word arrives the cycle after its address, as from the weight memory."""
        return 1

    def elaborate(self, platform):
        m = Module()
        cfg, bits = self.config, (self.depth - 1).bit_length()
        m.submodules.mem = mem = Memory(shape=weight_layout(cfg), depth=self.depth, init=[])
        # Transparent, because no read meets the fill's write to its address (the feeder
        # waits for the fill) and yosys builds old-data reads from 40 more flip-flops.
        wr = mem.write_port()
        rd = mem.read_port(transparent_for=(wr,))
        fetch_addr = Signal(cfg.weight_addr_bits)
        fetch_word = Signal.like(self.fetch.word)   # weight_base + fetch_addr >> 1
        to_issue = Signal(cfg.taps_bits)
        landing = Signal(max(1, bits))              # the slot of the word fetched last cycle
        more = Signal()                             # words left to fetch
        # The fetch port's address and enable come straight from registers: they steer the
        # SPRAMs' address multiplexers at the die's corners.  ``done`` is a register too,
        # high the cycle after the last word landed (it lands while no fetch is left).
        m.d.sync += self.fill.done.eq(self.fetch.valid & ~more)
        m.d.comb += [
            rd.addr.eq(self.read.addr[:bits]), rd.en.eq(self.read.en), self.read.data.eq(rd.data),
            self.fetch.addr.eq(fetch_addr), self.fetch.word.eq(fetch_word), self.fetch.en.eq(more),
            wr.addr.eq(landing), wr.data.eq(self.fetch.data), wr.en.eq(self.fetch.valid),
        ]
        with m.If(more & self.fetch.ok):
            m.d.sync += [fetch_addr.eq(fetch_addr + 1), fetch_word.eq(fetch_word + fetch_addr[0]),
                         landing.eq(fetch_addr[:bits]), to_issue.eq(to_issue - 1), more.eq(to_issue != 1)]
        with m.If(self.fill.start):
            m.d.sync += [more.eq(1), fetch_addr.eq(self.fill.base), to_issue.eq(self.fill.count),
                         fetch_word.eq(self.weight_base + (self.fill.base >> 1))]
        return m
