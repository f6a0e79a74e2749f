"""Runs an ADD descriptor: two stored maps of one shape, element by element, into the
drain's requantiser.

TFLite's ADD rescales each int8 input (``((x - zp) << 20) * multiplier >> shift``) before
adding; that rescale depends on the byte alone, so the compiler stores it as two 256-entry
tables in the parameter memory (the bias fields of entries ``param_base + 128 + a`` and
``param_base + 384 + b``).  The engine looks up the first input's entry and hands the drain
that value as the accumulator with the second input's entry as the element's parameters: the
drain adds the two (accumulator plus bias), requantises with the output's multiplier and
writes the byte.

Both inputs and the output share one banked layout, so the engine walks byte offsets, not
coordinates: offset ``o`` of all four banks holds four elements (or unused padding bytes of
the layout, whose results land in the output's own padding).  Per offset it reads the four
bytes of each input, then issues four elements.  A second input that broadcasts (one value,
or one per channel, for every pixel: ``add_bcast``) is stored as one pixel in bank 0; since
a bank holds its pixels' channels contiguously, offset ``o`` is channel ``o mod c``, so a
channel counter wrapping at ``other_c`` addresses it and its byte serves all four banks.  It reads the parameter memory only while
the drain's X and P stages are empty (``param_free``), so the two never share a cycle.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .layer_desc import write_layout
from .ports import engine_members, param_read_signature


def add_element_layout(config):
    """An element for the drain: the first input's table value as the accumulator, the
    parameter entry of the second input's value, and where the result goes."""
    return data.StructLayout({"acc": signed(32), "param": config.param_addr_bits, **write_layout(config).members})


class AddEngine(wiring.Component):
    """Runs one ADD descriptor after ``start``; ``done`` once every element has left on ``o``."""

    def __init__(self, config):
        self.config = config
        super().__init__({
            **engine_members(config),
            "param": Out(param_read_signature(config)),
            "param_free": In(1),
            "o": Out(stream.Signature(add_element_layout(config))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, d = self.config, self.desc
        banks = cfg.banks
        offset = Signal(cfg.bank_addr_bits + 1)
        a = Signal(data.ArrayLayout(8, banks))      # the bytes as stored (two's complement)
        b = Signal(data.ArrayLayout(8, banks))
        k = Signal(range(banks))
        ch = Signal(cfg.dim_bits)                   # offset mod c: the broadcast input's byte
        # The looked-up entry, kept after its first cycle: while an element waits on ``o`` the
        # drain may read the shared parameter memory, which changes its output.
        acc, held = Signal(signed(32)), Signal()

        def entry(table, value):
            """Entry of ``value`` (int8 bits) in table ``table`` (0: first input, 1: second)."""
            return d.param_base + (table << 8) + 128 + value.as_signed()

        bank_data = Cat(port.data for port in self.banks)
        m.d.comb += self.o.p.bank.eq(k)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.done.eq(1)
                with m.If(self.start):
                    m.d.sync += [offset.eq(0), ch.eq(0)]
                    m.next = "READ_A"
            with m.State("READ_A"):
                m.d.comb += [*(port.en.eq(~self.stall) for port in self.banks),
                             *(port.addr.eq(d.in_base + offset) for port in self.banks)]
                with m.If(~self.stall):
                    m.next = "READ_B"
            with m.State("READ_B"):
                m.d.comb += [*(port.en.eq(~self.stall) for port in self.banks),
                             *(port.addr.eq(d.other_base + Mux(d.add_bcast, ch, offset)) for port in self.banks)]
                m.d.sync += a.eq(bank_data)
                with m.If(~self.stall):
                    m.next = "LATCH_B"
            with m.State("LATCH_B"):
                m.d.sync += [b.eq(Mux(d.add_bcast, Cat([self.banks[0].data] * banks), bank_data)), k.eq(0)]
                m.next = "LOOK"
            with m.State("LOOK"):
                with m.If(self.param_free):
                    m.d.comb += [self.param.en.eq(1), self.param.addr.eq(entry(0, a[k]))]
                    m.d.sync += held.eq(0)
                    m.next = "ISSUE"
            with m.State("ISSUE"):
                looked_up = Mux(held, acc, self.param.data.bias)
                m.d.sync += [acc.eq(looked_up), held.eq(1)]
                m.d.comb += [
                    self.o.valid.eq(1),
                    self.o.p.acc.eq(looked_up),
                    self.o.p.param.eq(entry(1, b[k])),
                    self.o.p.addr.eq(d.out_base + offset),
                ]
                with m.If(self.o.ready):
                    m.d.sync += k.eq(k + 1)
                    m.next = "LOOK"
                    with m.If(k == banks - 1):
                        m.d.sync += [offset.eq(offset + 1), ch.eq(Mux(ch == d.other_c - 1, 0, ch + 1))]
                        m.next = "READ_A"
                        with m.If(offset == d.add_len - 1):
                            m.next = "IDLE"
        return m
