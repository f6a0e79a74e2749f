"""Gathers the byte writes of the activation banks into the SPRAMs' 16-bit words, so that a
write costs the readers a cycle per few bytes rather than one per byte (``act_memory``
"spram").

An SPRAM has one port, so a cycle in which it writes is a cycle in which the feeder, pool
engine and add engine read nothing (``stall``).  The drain writes a pass's elements channel
by channel across the four banks, at the same address in each (the four pixels of a 2x2
block sit at one offset of their parity banks), and consecutive channels share a word.  So
the banks hold one word address between them and a pending word each, and all four write at
once only when a byte comes for another word, or when asked to (``flush``, when the writer
has gone quiet).  A pass of four channels then writes in two cycles instead of sixteen.

Bytes enter through a register (the host's writes come from far across the chip), and a
byte reaches its SPRAM within three cycles of the last write, or of the write that makes
room for it; ``empty`` says nothing is waiting.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .ports import bank_write_signature, word_write_signature


class WriteCombiner(wiring.Component):
    """``i``: byte writes, one a cycle at most; ``o[b]``: word writes of SPRAM ``b``, in the
    cycles ``stall`` marks, when all four write (those with nothing waiting with an empty
    ``mask``: the enable is one register, the SPRAMs' port selects being timing-critical);
    ``flush``: write out what is waiting once the input is idle."""

    def __init__(self, config):
        self.config = config
        super().__init__({
            "i": In(bank_write_signature(config, banked=True)),
            "flush": In(1),
            "o": Out(word_write_signature(config)).array(config.banks),
            "stall": Out(1),
            "empty": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        word_bits = cfg.bank_addr_bits - 1
        # The byte written last cycle (``arriving``), and the one before.
        byte = data.StructLayout({"en": 1, "bank": range(cfg.banks), "word": word_bits, "high": 1, "data": 8})
        arriving, incoming = Signal(byte), Signal(byte)
        m.d.sync += [arriving.en.eq(self.i.en), arriving.bank.eq(self.i.bank), arriving.word.eq(self.i.addr[1:]),
                     arriving.high.eq(self.i.addr[0]), arriving.data.eq(self.i.data)]
        flushing = Signal()                 # the pending words are written this cycle
        word = Signal(word_bits)            # the pending words' address, in every bank
        pending = Signal(data.ArrayLayout(data.StructLayout({"mask": 2, "data": 16}), cfg.banks))
        waiting = Cat(p.mask for p in pending).any()
        m.d.comb += [self.stall.eq(flushing), self.empty.eq(~arriving.en & ~incoming.en & ~waiting)]

        # After this cycle: flushed (only the incoming byte's bank holds a word), or the
        # incoming byte merged into its bank's word.
        with m.If(incoming.en):
            m.d.sync += word.eq(incoming.word)
        for b, (p, port) in enumerate(zip(pending, self.o)):
            m.d.comb += [port.en.eq(flushing), port.addr.eq(word),
                         port.data.eq(p.data), port.mask.eq(p.mask)]
            with m.If(flushing):
                m.d.sync += p.mask.eq(0)
            with m.If(incoming.en & (incoming.bank == b)):
                m.d.sync += p.mask.eq(Mux(flushing, 0, p.mask) | Mux(incoming.high, 0b10, 0b01))
                with m.If(incoming.high):
                    m.d.sync += p.data[8:].eq(incoming.data)
                with m.Else():
                    m.d.sync += p.data[:8].eq(incoming.data)

        # The arriving byte against the pending address as it will stand next cycle.
        conflict = Mux(incoming.en, incoming.word != arriving.word, ~flushing & waiting & (word != arriving.word))
        m.d.sync += [
            incoming.eq(arriving),
            flushing.eq(Mux(arriving.en, conflict, self.flush & (incoming.en | (~flushing & waiting)))),
        ]
        return m
