"""The weights that stream from the SPI flash (``weight_stream="on"``): one sequential fast
read an inference, from the first streamed word to the last, into a prefetch buffer that
the weight cache fills a streamed group from instead of the SPRAMs.

The compiler lays the streamed words out in the order the cache asks for them, so the
flash never seeks: it runs ahead while the array computes (resident layers included) until
the buffer is full, and a streamed group waits only for what the buffer does not yet hold.

The boot checks the whole flash image, but on one line: a quad read can still deliver
other bytes (a part whose QE did not set reads the pull-ups).  So every inference's
streamed bytes go through a CRC-32 too, two bits a cycle (a byte comes every four cycles
at the most), and ``ok`` says whether they were the compiled ones.
"""

import zlib


from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..board.crc32 import POLY
from ..board.multi_io_flash import MultiIoFlashReader
from .ports import weight_fetch_signature, weight_layout


def flash_pins_signature():
    """The flash's four I/O lines, its clock and its select (active high), as the reader
    drives them."""
    return wiring.Signature({"sck": Out(1), "cs": Out(1), "dq_o": Out(4), "dq_oe": Out(4), "dq_i": In(4)})


class WeightStream(wiring.Component):
    """``start`` (a new inference) ends any read, empties the buffer and reads the words of
    ``image`` (the program's ``stream_image``) from flash byte ``flash_base`` on.  ``fetch``
    answers the weight cache like the SPRAMs (``ok`` while the buffer holds a word, the word
    the cycle after); ``waiting`` is high in a cycle in which the cache wants a word the
    flash has not delivered yet; ``intact`` is high once all of them have come and their
    CRC-32 is the image's (a flip-flop: low until then, and after a wrong byte)."""

    def __init__(self, config, image, flash_base):
        self.config, self.flash_base = config, flash_base
        self.words = len(image) // config.cols
        self.expect = ~zlib.crc32(bytes(image)) & 0xFFFFFFFF
        self.depth = 1 << max(1, (config.stream_buffer_words - 1).bit_length())
        self.reader = MultiIoFlashReader(width=config.flash_lines)
        super().__init__({
            "start": In(1),
            "fetch": In(weight_fetch_signature(config)),
            "flash": Out(flash_pins_signature()),
            "waiting": Out(1), "intact": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, reader = self.config, self.reader
        m.submodules.reader = reader
        m.submodules.buffer = buf = Memory(shape=weight_layout(cfg), depth=self.depth, init=[])
        wr, rd = buf.write_port(), buf.read_port()
        bits = (self.depth - 1).bit_length()
        wptr, rptr = Signal(bits), Signal(bits)
        level = Signal(bits + 1)                                 # words in the buffer
        lane = Signal(range(cfg.cols))
        low = Signal(8 * (cfg.cols - 1))                         # the word's bytes before its last
        nbytes = self.words * cfg.cols
        left = Signal(range(nbytes + 1))                         # bytes still to take from the reader
        restart = Signal()                                       # a read to begin once the reader is idle
        # Flags a cycle ahead, so that the reader's and the cache's handshakes see flip-flops
        # only: the buffer holds a word, it is full, bytes are left, the next byte is the last.
        has_word, full, more, last = Signal(), Signal(), Signal(), Signal()
        taken, push, pop = Signal(), Signal(), Signal()
        # The CRC: a taken byte's bits, LSB first, two a cycle, above a marker bit.
        crc, crc_bits = Signal(32, init=0xFFFFFFFF), Signal(9)

        m.d.comb += [
            self.flash.sck.eq(reader.sck), self.flash.cs.eq(reader.cs),
            self.flash.dq_o.eq(reader.dq_o), self.flash.dq_oe.eq(reader.dq_oe), reader.dq_i.eq(self.flash.dq_i),
            reader.addr.eq(self.flash_base),
            # A byte waits for the buffer's room and for the CRC to be on its previous byte's
            # last two bits (bytes come four cycles apart, closer after the buffer was full).
            reader.o.ready.eq((~full | (lane != cfg.cols - 1)) & (crc_bits[3:] == 0)),
            taken.eq(reader.o.valid & reader.o.ready & more),
            # The last byte wanted ends the read in the cycle it is taken; a new inference
            # ends whatever read is left.
            reader.stop.eq(self.start | (taken & last)),
            reader.start.eq(restart & ~self.start),
            push.eq(taken & (lane == cfg.cols - 1)),
            pop.eq(self.fetch.en & has_word),
            wr.addr.eq(wptr), wr.data.eq(Cat(low, reader.o.payload)), wr.en.eq(push),
            rd.addr.eq(rptr), rd.en.eq(pop), self.fetch.data.eq(rd.data),
            self.fetch.ok.eq(has_word),
            self.waiting.eq(self.fetch.en & ~has_word),
        ]
        after = level + push - pop
        m.d.sync += [level.eq(after), has_word.eq(after != 0), full.eq(after == self.depth),
                     self.fetch.valid.eq(pop)]
        with m.If(reader.start):
            m.d.sync += restart.eq(0)
        with m.If(taken):
            m.d.sync += [left.eq(left - 1), more.eq(~last), last.eq(left == 2),
                         lane.eq(lane + 1), low.eq(Cat(low[8:], reader.o.payload))]
            with m.If(lane == cfg.cols - 1):
                m.d.sync += [lane.eq(0), wptr.eq(wptr + 1)]
        with m.If(pop):
            m.d.sync += rptr.eq(rptr + 1)
        value = crc
        for k in range(2):
            value = (value >> 1) ^ Mux(value[0] ^ crc_bits[k], POLY, 0)
        with m.If(crc_bits[2:] != 0):
            m.d.sync += [crc.eq(value), crc_bits.eq(crc_bits >> 2)]
        with m.If(taken):
            m.d.sync += crc_bits.eq(Cat(reader.o.payload, 1))
        m.d.sync += self.intact.eq(~more & (crc_bits[1:] == 0) & (crc == self.expect))

        with m.If(self.start):
            m.d.sync += [wptr.eq(0), rptr.eq(0), level.eq(0), has_word.eq(0), full.eq(0), lane.eq(0),
                         left.eq(nbytes), more.eq(nbytes != 0), last.eq(nbytes == 1), restart.eq(nbytes != 0),
                         crc.eq(0xFFFFFFFF), crc_bits.eq(0), self.intact.eq(0)]
        return m
