"""The accelerator core: runs a compiled Program layer by layer.

Memories: four activation banks in block RAM (the input map, then every layer's output,
placed by the compiler's planner), the weight memory (SPRAM on iCE40, block RAM elsewhere,
filled through the load port), per-channel parameters and the layer descriptors in block
RAM initialised from the program.  Where memories are block RAM the generator sizes them
from the program (on iCE40 the banks keep the configuration's size, whose split the timing
was closed with), so a device spends only what its model needs.  With ``act_memory``
"spram" the four banks are the SPRAMs instead, beside the weights (:mod:`.shared_spram`),
and the feeder reads its weights from a block-RAM cache (:mod:`.weight_cache`); there
byte writes reach the SPRAMs gathered into words (:mod:`.write_combiner`), a host write
within four cycles, and a cycle in which they land blocks the reads (the host's too), so
the host leaves four cycles between its last byte write and a read of it or a weight
load.  The host reaches the activation banks and the weight load port only while the core
is idle.  A program whose weights partly stream (``weight_stream="on"``) reads them from
the SPI flash through the ``flash`` pins (:mod:`.weight_stream`), from ``flash_base`` on.
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from compiler.program import ADD, LOOKUP, POOL

from ..units.mac_array import MacArray
from .add_engine import AddEngine
from .drain import Drain
from .feeder import Feeder
from .layer_desc import desc_layout, encode
from .pool_engine import PoolEngine
from .ports import (
    bank_read_signature,
    bank_write_signature,
    host_signature,
    param_layout,
    weight_load_signature,
)
from .shared_spram import SharedSprams
from .param_store import ParamStore
from .spram import WeightMemory
from .weight_cache import WeightCache
from .weight_stream import WeightStream, flash_pins_signature
from .write_combiner import WriteCombiner


class ActivationBank(wiring.Component):
    """One activation bank of ``config.act_bank_bytes`` bytes, one read and one write port;
    the read data arrives the cycle after the address and holds while ``read.en`` is low.

    It is built from memories whose depths are powers of two (2560 = 2048 + 512): yosys
    maps a 2048-byte memory to four 2048 x 2 block RAMs side by side, where a 2560-byte one
    would become five 512 x 8 ones behind a five-way read multiplexer.
    """

    def __init__(self, config, depth=None):
        self.depth = config.act_bank_bytes if depth is None else depth
        super().__init__({"read": In(bank_read_signature(config)), "write": In(bank_write_signature(config))})

    def elaborate(self, platform):
        m = Module()
        parts, base = [], 0
        for bit in reversed(range(self.depth.bit_length())):
            if self.depth >> bit & 1:
                parts.append((base, bit))
                base += 1 << bit
        part = Signal(range(len(parts)))            # the part the data comes from
        with m.If(self.read.en):
            m.d.sync += part.eq(sum(self.read.addr >= base for base, _ in parts[1:]))
        for k, (base, bits) in enumerate(parts):
            m.submodules[f"part{k}"] = mem = Memory(shape=8, depth=1 << bits, init=[])
            rd, wr = mem.read_port(), mem.write_port()
            m.d.comb += [
                rd.addr.eq(self.read.addr), rd.en.eq(self.read.en),
                wr.addr.eq(self.write.addr), wr.data.eq(self.write.data),
                wr.en.eq(self.write.en & (self.write.addr[bits:] == base >> bits)),
            ]
            with m.If(part == k):
                m.d.comb += self.read.data.eq(rd.data)
        return m


def host_address(config, bank, offset):
    """Host port address of byte ``offset`` of activation bank ``bank``."""
    return (int(bank) << config.bank_addr_bits) | int(offset)


class Accelerator(wiring.Component):
    """``start`` runs the whole program (or one layer when ``step`` is high at ``start``;
    the next ``start`` continues); ``done`` pulses at the end, ``cycles`` counts the run.
    When weights stream, ``flash_ok`` says, from ``done`` on, that the streamed bytes passed
    their CRC-32, and with ``count_waits`` ``flash_wait`` counts the cycles of the run spent
    waiting for the flash (a measurement for the simulators; the board leaves it out)."""

    def __init__(self, program, flash_base=0, count_waits=True):
        self.program, self.flash_base, self.count_waits = program, flash_base, count_waits
        cfg = self.config = program.config
        self.descs = [encode(d, cfg, i == len(program.layers) - 1) for i, d in enumerate(program.layers)]
        members = {
            "start": In(1), "step": In(1),
            "busy": Out(1), "done": Out(1), "last": Out(1), "layer": Out(cfg.desc_index_bits), "cycles": Out(32),
            "host": In(host_signature(cfg)), "wload": In(weight_load_signature(cfg)),
        }
        if cfg.streams:
            members.update({"flash": Out(flash_pins_signature()), "flash_ok": Out(1)})
            if count_waits:
                members["flash_wait"] = Out(32)
        super().__init__(members)

    @property
    def bank_depth(self):
        """Bytes per activation bank the program uses, rounded up to 512 (a block RAM's worth)."""
        need = self.program.memory_map["activation_bank"]["bytes"]
        return min(self.config.act_bank_bytes, -(-need // 512) * 512)

    def elaborate(self, platform):
        m = Module()
        cfg, prog = self.config, self.program
        feeder = Feeder(cfg)
        m.submodules.array = array = MacArray(cfg)
        needs_pool = any(d.kind in (POOL, LOOKUP) for d in prog.layers)
        needs_add = any(d.kind == ADD for d in prog.layers)
        needs_table = len(prog.tables) > 0
        m.submodules.drain = drain = Drain(cfg, tables=needs_table, aux=needs_pool, adds=needs_add)
        generic = cfg.target != "ice40"
        engine = PoolEngine(cfg, max_window=prog.pool_window) if needs_pool else None
        adder = AddEngine(cfg) if needs_add else None
        # The readers of the banks, the stream each feeds and the drain's end of it.
        readers = [(name, unit, port, sink) for name, unit, port, sink in
                   (("feeder", feeder, feeder.o, array.i),
                    ("pool_engine", engine, engine and engine.o, drain.aux),
                    ("add_engine", adder, adder and adder.o, drain.add)) if unit is not None]
        if cfg.in_spram:
            plan = prog.memory_map["spram"]
            m.submodules.memory = memory = SharedSprams(cfg, plan["weight_base"])
            m.submodules.cache = cache = WeightCache(cfg, plan["cache_words"], plan["weight_base"])
            wiring.connect(m, feeder.weights, cache.read)
            wiring.connect(m, feeder.fill, cache.fill)
            if not cfg.streams:
                wiring.connect(m, cache.fetch, memory.fetch)
            weight_load = memory.load
            # Writes (the drain's, or the host's while idle) reach the SPRAMs gathered into
            # words, from registers (the SPRAMs sit at the die's corners).  A cycle in which
            # they land is one in which the readers read nothing (``stall``).
            m.submodules.combiner = combiner = WriteCombiner(cfg)
            for port, write in zip(combiner.o, memory.write):
                wiring.connect(m, port, write)
            m.d.comb += [unit.stall.eq(combiner.stall) for _, unit, _, _ in readers]
        else:
            m.submodules.weights = weights = WeightMemory(cfg, depth=max(1, len(prog.weights)) if generic else None)
            wiring.connect(m, feeder.weights, weights.read)
            weight_load = weights.load
        for name, unit, port, sink in readers:
            m.submodules[name] = unit
            wiring.connect(m, port, sink)
        wiring.connect(m, array.o, drain.i)
        m.d.comb += array.flush.eq(drain.flush)

        layout = desc_layout(cfg)
        m.submodules.descs = descs = Memory(shape=layout, depth=len(self.descs), init=self.descs)
        desc_rd = descs.read_port()
        desc = Signal(layout)
        m.d.comb += [feeder.desc.eq(desc), drain.desc.eq(desc)]
        if cfg.streams:
            m.submodules.stream = stream = WeightStream(cfg, prog.stream_image, self.flash_base)
            wiring.connect(m, stream.flash, wiring.flipped(self.flash))
            # A streamed step's groups come from the prefetch buffer, the others' from SPRAM.
            source = stream.fetch
            m.d.comb += [memory.fetch.addr.eq(cache.fetch.addr), memory.fetch.word.eq(cache.fetch.word)]
            with m.If(desc.streamed):
                m.d.comb += [source.en.eq(cache.fetch.en), cache.fetch.ok.eq(source.ok)]
            with m.Else():
                m.d.comb += [memory.fetch.en.eq(cache.fetch.en), cache.fetch.ok.eq(memory.fetch.ok)]
            # A word arrives from the source asked the cycle before (a step's fill is all from one).
            m.d.comb += [cache.fetch.valid.eq(source.valid | memory.fetch.valid),
                         cache.fetch.data.eq(Mux(source.valid, source.data, memory.fetch.data))]
        if engine is not None:
            m.d.comb += engine.desc.eq(desc)
        if adder is not None:
            m.d.comb += adder.desc.eq(desc)

        if cfg.streams:
            # The parameters travel with the weights (:mod:`.param_store`).
            m.submodules.params = store = ParamStore(cfg)
            wiring.connect(m, drain.param, store.read)
            m.d.comb += [store.fill.eq(feeder.fill.start), store.taps.eq(desc.taps),
                         store.valid.eq(cache.fetch.valid), store.data.eq(cache.fetch.data)]
        else:
            p = prog.params
            params = [{"bias": int(b), "multiplier": int(mu), "shift": int(s)}
                      for b, mu, s in zip(p.bias, p.multiplier, p.shift)]
            m.submodules.params = pmem = Memory(shape=param_layout(), depth=max(1, len(params)), init=params)
            prd = pmem.read_port()
            m.d.comb += [prd.addr.eq(drain.param.addr), prd.en.eq(drain.param.en), drain.param.data.eq(prd.data)]
        if adder is not None:
            # The add engine reads only while the drain's stages that read are empty.
            m.d.comb += [adder.param_free.eq(drain.param_free), adder.param.data.eq(prd.data)]
            with m.If(adder.param.en):
                m.d.comb += [prd.addr.eq(adder.param.addr), prd.en.eq(1)]

        busy = Signal()
        host_bank = self.host.addr[cfg.bank_addr_bits:]
        host_offset = self.host.addr[:cfg.bank_addr_bits]
        rd_bank = Signal(range(cfg.banks))
        m.d.sync += rd_bank.eq(host_bank)
        # Each bank is read by the unit running the layer (or the host while idle) and
        # written by the drain (or the host); every reader sees every bank's data.
        units = [unit for _, unit, _, _ in readers]
        if cfg.in_spram:
            # The words wait for the drain's last element, or for the host to pause.
            writer = combiner.i
            m.d.comb += combiner.flush.eq(~busy | drain.done)
            with m.If(busy):
                m.d.comb += [writer.addr.eq(drain.write.addr), writer.data.eq(drain.write.data),
                             writer.bank.eq(drain.write.bank), writer.en.eq(drain.write.en)]
            with m.Else():
                m.d.comb += [writer.addr.eq(host_offset), writer.data.eq(self.host.wdata),
                             writer.bank.eq(host_bank), writer.en.eq(self.host.we)]
        for b in range(cfg.banks):
            if cfg.in_spram:
                rd = memory.read[b]
            else:
                m.submodules[f"bank{b}"] = bank = ActivationBank(cfg, depth=self.bank_depth if generic else None)
                rd, wr = bank.read, bank.write
                with m.If(busy):
                    m.d.comb += [wr.addr.eq(drain.write.addr), wr.data.eq(drain.write.data),
                                 wr.en.eq(drain.write.en & (drain.write.bank == b))]
                with m.Else():
                    m.d.comb += [wr.addr.eq(host_offset), wr.data.eq(self.host.wdata),
                                 wr.en.eq(self.host.we & (host_bank == b))]
            with m.If(busy):
                m.d.comb += [rd.addr.eq(feeder.banks[b].addr), rd.en.eq(feeder.banks[b].en)]
                if engine is not None:
                    with m.If(desc.pool):
                        m.d.comb += [rd.addr.eq(engine.banks[b].addr), rd.en.eq(engine.banks[b].en)]
                if adder is not None:
                    with m.If(desc.add):
                        m.d.comb += [rd.addr.eq(adder.banks[b].addr), rd.en.eq(adder.banks[b].en)]
            with m.Else():
                m.d.comb += [rd.addr.eq(host_offset), rd.en.eq(1)]
            m.d.comb += [unit.banks[b].data.eq(rd.data) for unit in units]
            with m.If(rd_bank == b):
                m.d.comb += self.host.rdata.eq(rd.data)

        # The host's load port reaches the weights only while the core is idle.
        m.d.comb += [
            weight_load.addr.eq(self.wload.addr), weight_load.data.eq(self.wload.data),
            weight_load.we.eq(self.wload.we & ~busy),
        ]

        # Activation tables: all of the program's in a ROM, copied into the drain's table
        # (256 cycles) before a layer that needs one that is not loaded.
        loaded = Signal(range(cfg.table_slots + 1), init=cfg.table_slots)   # none loaded yet
        tindex = Signal(9)
        if needs_table:
            tables = [int(v) for t in prog.tables for v in t]
            m.submodules.tables = trom = Memory(shape=signed(8), depth=len(tables), init=tables)
            trd = trom.read_port()
            m.d.comb += [
                trd.addr.eq((desc.table_slot << 8) | tindex[:8]),
                drain.table_write.addr.eq(tindex - 1),
                drain.table_write.data.eq(trd.data),
            ]

        layer = Signal(cfg.desc_index_bits)
        stepping = Signal()
        # The units' start pulses are registers (high in the KICK state), as is the units'
        # combined ``done``: both fan out or come from far across the chip.
        start_conv, start_pool, start_add = Signal(), Signal(), Signal()
        m.d.sync += [start_conv.eq(0), start_pool.eq(0), start_add.eq(0)]
        m.d.comb += [feeder.start.eq(start_conv), drain.start.eq(start_conv)]
        if cfg.streams:
            m.d.comb += store.layer.eq(start_conv)
        if engine is not None:
            m.d.comb += engine.start.eq(start_pool)
        if adder is not None:
            m.d.comb += adder.start.eq(start_add)

        def kick():
            m.d.sync += [start_conv.eq(~desc.pool & ~desc.add), start_pool.eq(desc.pool), start_add.eq(desc.add)]
            m.next = "KICK"

        finished = Signal()                 # low while a unit starts
        m.d.sync += finished.eq(feeder.done & drain.done & (combiner.empty if cfg.in_spram else 1)
                                & (engine.done if engine is not None else 1) & (adder.done if adder is not None else 1)
                                & ~start_conv & ~start_pool & ~start_add)

        m.d.comb += [self.busy.eq(busy), self.layer.eq(layer), desc_rd.addr.eq(layer)]
        with m.If(busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        if cfg.streams:
            # The prefetch restarts with a new inference, from a register: it fans out far.
            stream_start = Signal()
            m.d.sync += stream_start.eq(0)
            m.d.comb += [stream.start.eq(stream_start), self.flash_ok.eq(stream.intact)]
            if self.count_waits:
                with m.If(stream.waiting):
                    m.d.sync += self.flash_wait.eq(self.flash_wait + 1)
        m.d.sync += self.done.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [busy.eq(1), stepping.eq(self.step)]
                    with m.If(self.last | ~stepping):
                        m.d.sync += [layer.eq(0), self.cycles.eq(0), self.last.eq(0)]
                        if cfg.streams:
                            m.d.sync += stream_start.eq(1)
                            if self.count_waits:
                                m.d.sync += self.flash_wait.eq(0)
                    with m.Else():
                        m.d.sync += layer.eq(layer + 1)
                    m.next = "LOAD"
            with m.State("LOAD"):          # the descriptor ROM answers next cycle
                m.next = "LATCH"
            with m.State("LATCH"):
                m.d.sync += [desc.eq(desc_rd.data), tindex.eq(0)]
                m.next = "TABLE?"
            with m.State("TABLE?"):        # (the host's last bytes have landed)
                with m.If(desc.table & (loaded != desc.table_slot)):
                    m.next = "TABLE"
                with m.Elif(combiner.empty if cfg.in_spram else 1):
                    kick()
            with m.State("TABLE"):
                m.d.sync += tindex.eq(tindex + 1)
                m.d.comb += drain.table_write.en.eq(tindex != 0)
                with m.If(tindex == 256):
                    m.d.sync += loaded.eq(desc.table_slot)
                    kick()
            with m.State("KICK"):
                m.next = "RUN"
            with m.State("RUN"):
                with m.If(finished):
                    with m.If(desc.last | stepping):
                        m.d.sync += [busy.eq(0), self.done.eq(1), self.last.eq(desc.last)]
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += layer.eq(layer + 1)
                        m.next = "LOAD"
        return m
