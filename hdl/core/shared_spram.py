"""The four SPRAMs as activation banks and weight store at once (``act_memory="spram"``).

Bank ``b`` is SPRAM ``b``: byte ``a`` of the bank is byte ``a & 1`` of word ``a >> 1``.  The
weights sit above the maps, from word ``weight_base``: weight word ``w`` (``cols`` = 4 bytes)
is word ``weight_base + (w >> 1)`` of SPRAM pair ``w & 1`` (bytes 0-1 in SPRAM ``2 (w & 1)``,
bytes 2-3 in the next), so the maps and weights of a program spread evenly.

Each SPRAM has one port, taken in this order: a word write (from the write combiner, which
gathers the drain's or the host's bytes), a weight load (while idle, a cycle after the load
port's; the host does not write in the cycle after a load), a weight fetch for the cache,
an activation read.  The banks write together, in cycles taken from every reader (the
accelerator holds them then); since the SPRAM's output is undefined after a write, each
bank keeps the last byte it read and answers with it until the next read, which is the
block-RAM banks' contract ("data holds while ``en`` is low") whatever happened in between.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from .ports import bank_read_signature, weight_fetch_signature, weight_load_signature, word_write_signature
from .spram import SPRAM


class SharedSprams(wiring.Component):
    """``weight_base``: the SPRAM word where the weights start (the program's)."""

    def __init__(self, config, weight_base):
        if not config.in_spram:
            raise ValueError("SharedSprams: the configuration keeps its maps in block RAM")
        self.config, self.weight_base = config, weight_base
        super().__init__({
            "read": In(bank_read_signature(config)).array(config.banks),
            "write": In(word_write_signature(config)).array(config.banks),
            "load": In(weight_load_signature(config)),
            "fetch": In(weight_fetch_signature(config)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, base = self.config, self.weight_base
        # Loads (while idle) reach the SPRAMs a cycle late, from registers, and share one
        # weight address with the fetches (whose SPRAM word the cache keeps).
        load = weight_load_signature(cfg).create(path=("load_late",))
        load_word = Signal.like(self.fetch.word)
        m.d.sync += [load.addr.eq(self.load.addr), load.data.eq(self.load.data), load.we.eq(self.load.we),
                     load_word.eq(base + (self.load.addr >> 1))]
        load_pair, fetch_pair = load.addr[0], Signal()
        weight_word = Mux(load.we, load_word, self.fetch.word)
        writing_any = Cat(w.en for w in self.write).any()
        m.d.comb += self.fetch.ok.eq(~writing_any & ~load.we)
        fetching = self.fetch.en & self.fetch.ok
        with m.If(fetching):
            m.d.sync += fetch_pair.eq(self.fetch.addr[0])
        m.d.sync += self.fetch.valid.eq(fetching)
        rdata = []
        for b in range(cfg.banks):
            m.submodules[f"spram{b}"] = spram = SPRAM(cfg.target)
            pair, half = b >> 1, b & 1
            write = self.write[b]
            loading = load.we & (load_pair == pair)
            reading = self.read[b].en & ~writing_any & ~load.we & ~self.fetch.en
            with m.If(write.en):
                m.d.comb += [spram.addr.eq(write.addr), spram.we.eq(1), spram.wdata.eq(write.data),
                             spram.wmask.eq(write.mask)]
            with m.Elif(load.we | self.fetch.en):
                m.d.comb += [spram.addr.eq(weight_word), spram.we.eq(loading), spram.wmask.eq(0b11),
                             spram.wdata.eq(load.data.as_value().word_select(half, 16)),
                             spram.en.eq(fetching & (self.fetch.addr[0] == pair))]
            with m.Else():
                m.d.comb += [spram.addr.eq(self.read[b].addr >> 1), spram.en.eq(reading)]
            # The byte the last activation read asked for, and a copy that outlives the SPRAM's
            # output (a write or a fetch may follow).
            fresh, lane = Signal(name=f"fresh{b}"), Signal(name=f"lane{b}")
            held = Signal(8, name=f"held{b}")
            m.d.sync += fresh.eq(reading)
            with m.If(reading):
                m.d.sync += lane.eq(self.read[b].addr[0])
            byte = spram.rdata.word_select(lane, 8)
            with m.If(fresh):
                m.d.sync += held.eq(byte)
            m.d.comb += self.read[b].data.eq(Mux(fresh, byte, held))
            rdata.append(spram.rdata)
        m.d.comb += self.fetch.data.eq(Mux(fetch_pair, Cat(rdata[2], rdata[3]), Cat(rdata[0], rdata[1])))
        return m
