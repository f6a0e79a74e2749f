"""The accelerator core: runs a compiled Program layer by layer.

Memories: four activation banks in block RAM (the input map, then every layer's output,
ping-ponging inside each bank), the weight memory (SPRAM on iCE40, filled through the
load port), per-channel parameters and the layer descriptors in block RAM initialised
from the program.  The host reaches the activation banks and the weight load port only
while the core is idle.
"""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from compiler.program import CONV

from .drain import Drain, param_layout
from .feeder import Feeder
from .layer_desc import ADDR, desc_layout, encode
from .mac_array import MacArray
from .pool_engine import PoolEngine
from .spram import WeightMemory

HOST_ADDR_BITS = ADDR + 2


def host_address(bank, offset):
    """Host port address of byte ``offset`` of activation bank ``bank``."""
    return (int(bank) << ADDR) | int(offset)


class Accelerator(wiring.Component):
    """``start`` runs the whole program (or one layer when ``step`` is high at ``start``;
    the next ``start`` continues); ``done`` pulses at the end, ``cycles`` counts the run."""

    def __init__(self, program):
        self.program = program
        cfg = self.config = program.config
        self.descs = [encode(d, cfg, i == len(program.layers) - 1) for i, d in enumerate(program.layers)]
        super().__init__({
            "start": In(1), "step": In(1),
            "busy": Out(1), "done": Out(1), "last": Out(1), "layer": Out(8), "cycles": Out(32),
            "host_addr": In(HOST_ADDR_BITS), "host_wdata": In(8), "host_we": In(1), "host_rdata": Out(8),
            "wload_addr": In(16), "wload_data": In(8 * cfg.cols), "wload_we": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, prog = self.config, self.program
        m.submodules.feeder = feeder = Feeder(cfg)
        m.submodules.array = array = MacArray(cfg)
        needs_pool = any(d.kind != CONV for d in prog.layers)
        needs_table = len(prog.tables) > 0
        m.submodules.drain = drain = Drain(cfg, tables=needs_table, aux=needs_pool)
        m.submodules.weights = weights = WeightMemory(cfg)
        wiring.connect(m, feeder.o, array.i)
        wiring.connect(m, array.o, drain.i)
        if needs_pool:
            m.submodules.pool_engine = engine = PoolEngine(cfg, max_window=cfg.pool_window)
            wiring.connect(m, engine.o, drain.aux)
        else:
            engine = None

        layout = desc_layout(cfg)
        m.submodules.descs = descs = Memory(shape=layout, depth=len(self.descs), init=self.descs)
        desc_rd = descs.read_port()
        desc = Signal(layout)
        m.d.comb += [feeder.desc.eq(desc), drain.desc.eq(desc)]
        if engine is not None:
            m.d.comb += engine.desc.eq(desc)

        p = prog.params
        params = [{"bias": int(b), "multiplier": int(mu), "shift": int(s)}
                  for b, mu, s in zip(p.bias, p.multiplier, p.shift)]
        m.submodules.params = pmem = Memory(shape=param_layout(), depth=cfg.param_depth, init=params)
        prd = pmem.read_port()
        m.d.comb += [prd.addr.eq(drain.param_addr), prd.en.eq(drain.param_en), drain.param_data.eq(prd.data)]

        busy = Signal()
        host_bank = self.host_addr[ADDR:]
        host_offset = self.host_addr[:ADDR]
        rd_bank = Signal(2)
        m.d.sync += rd_bank.eq(host_bank)
        for b in range(4):
            bank = Memory(shape=8, depth=cfg.act_bank_bytes, init=[])
            m.submodules[f"bank{b}"] = bank
            rd, wr = bank.read_port(), bank.write_port()
            with m.If(busy):
                m.d.comb += [rd.addr.eq(feeder.bank_addr[b]), rd.en.eq(feeder.mem_en),
                             wr.addr.eq(drain.wr_addr), wr.data.eq(drain.wr_data),
                             wr.en.eq(drain.wr_en & (drain.wr_bank == b))]
                if engine is not None:
                    with m.If(desc.pool):
                        m.d.comb += [rd.addr.eq(engine.bank_addr[b]), rd.en.eq(engine.mem_en)]
            with m.Else():
                m.d.comb += [rd.addr.eq(host_offset), rd.en.eq(1),
                             wr.addr.eq(host_offset), wr.data.eq(self.host_wdata),
                             wr.en.eq(self.host_we & (host_bank == b))]
            m.d.comb += feeder.bank_data[b].eq(rd.data)
            if engine is not None:
                m.d.comb += engine.bank_data[b].eq(rd.data)
            with m.If(rd_bank == b):
                m.d.comb += self.host_rdata.eq(rd.data)

        m.d.comb += [
            weights.read.addr.eq(feeder.weight_addr), weights.read.en.eq(feeder.mem_en),
            feeder.weight_data.eq(weights.read.data),
            weights.load.addr.eq(self.wload_addr), weights.load.data.eq(self.wload_data),
            weights.load.we.eq(self.wload_we & ~busy),
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

        layer = Signal(8)
        stepping = Signal()
        m.d.comb += [self.busy.eq(busy), self.layer.eq(layer), desc_rd.addr.eq(layer)]
        with m.If(busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        m.d.sync += self.done.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [busy.eq(1), stepping.eq(self.step)]
                    with m.If(self.last | ~stepping):
                        m.d.sync += [layer.eq(0), self.cycles.eq(0), self.last.eq(0)]
                    with m.Else():
                        m.d.sync += layer.eq(layer + 1)
                    m.next = "LOAD"
            with m.State("LOAD"):          # the descriptor ROM answers next cycle
                m.next = "LATCH"
            with m.State("LATCH"):
                m.d.sync += [desc.eq(desc_rd.data), tindex.eq(0)]
                m.next = "TABLE?"
            with m.State("TABLE?"):
                with m.If(desc.table & (loaded != desc.table_slot)):
                    m.next = "TABLE"
                with m.Else():
                    m.next = "KICK"
            with m.State("TABLE"):
                m.d.sync += tindex.eq(tindex + 1)
                m.d.comb += drain.table_write.en.eq(tindex != 0)
                with m.If(tindex == 256):
                    m.d.sync += loaded.eq(desc.table_slot)
                    m.next = "KICK"
            with m.State("KICK"):
                m.d.comb += [feeder.start.eq(~desc.pool), drain.start.eq(~desc.pool)]
                if engine is not None:
                    m.d.comb += engine.start.eq(desc.pool)
                m.next = "RUN"
            with m.State("RUN"):
                with m.If(feeder.done & drain.done & (engine.done if engine is not None else 1)):
                    with m.If(desc.last | stepping):
                        m.d.sync += [busy.eq(0), self.done.eq(1), self.last.eq(desc.last)]
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += layer.eq(layer + 1)
                        m.next = "LOAD"
        return m
