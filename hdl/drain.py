"""Takes the MAC array's finished passes apart, one output element a cycle, and writes
them back requantised: the 2x2 max of a fused pool (before requantisation, which is
monotone), per-channel parameters from the parameter memory, the requantiser, the
activation table, and the banked write address of each element.

Element addresses travel beside the requantiser in a FIFO: the requantiser and the table
keep order, so the writer pairs each value with the oldest address.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .act_table import ActivationTable, TableWriteSignature
from .layer_desc import ADDR, COUNT, PTR, desc_layout
from .mac_array import result_layout
from .pool_engine import RESULT
from .requant import Requantizer


def param_layout():
    """One output channel's requantisation parameters (the rest is per layer, in the descriptor)."""
    return data.StructLayout({"bias": signed(32), "multiplier": 31, "shift": signed(6)})


WRITE = data.StructLayout({"bank": 2, "addr": ADDR})


class Drain(wiring.Component):
    """Consumes every pass of one CONV descriptor after ``start``; ``done`` once all its
    elements are written."""

    param_latency = 1
    fifo_depth = 16

    def __init__(self, config, tables=True, aux=True):
        """``tables``/``aux``: whether the program uses activation tables / POOL layers; the
        generator leaves out what a program does not need."""
        self.config = config
        self.tables, self.has_aux = tables, aux
        super().__init__({
            "desc": In(desc_layout(config)),
            "start": In(1),
            "done": Out(1),
            "i": In(stream.Signature(result_layout(config))),
            "aux": In(stream.Signature(RESULT)),
            "table_write": In(TableWriteSignature),
            "param_addr": Out(10),
            "param_en": Out(1),
            "param_data": In(param_layout()),
            "wr_en": Out(1),
            "wr_bank": Out(2),
            "wr_addr": Out(ADDR),
            "wr_data": Out(signed(8)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, d = self.config, self.desc
        cols = cfg.cols
        m.submodules.requant = rq = Requantizer(cfg, digit_bits=4)
        if self.tables:
            m.submodules.table = table = ActivationTable(lanes=1)
            t_in, t_out = table.i, table.o
            m.d.comb += table.bypass.eq(~d.table)
            wiring.connect(m, wiring.flipped(self.table_write), table.write)
        else:
            # A plain register in the table's place keeps the one-cycle step that lets the
            # address FIFO (pushed with the value) be readable when the value arrives.
            vector = stream.Signature(data.ArrayLayout(signed(8), 1))
            t_in, t_out = vector.flip().create(), vector.create()
            m.d.comb += t_in.ready.eq(~t_out.valid | t_out.ready)
            with m.If(t_in.ready):
                m.d.sync += [t_out.valid.eq(t_in.valid), t_out.p.eq(t_in.p)]
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=WRITE.size, depth=self.fifo_depth)

        running = Signal()
        slot = Signal(range(4 * cols))
        bx, by, g = Signal(COUNT), Signal(COUNT), Signal(COUNT)
        ox_s, oy_s = Signal(COUNT + 1), Signal(COUNT + 1)
        xpart, ypart, gch = Signal(PTR), Signal(PTR), Signal(COUNT)
        pending = Signal(range(self.fifo_depth + 8))

        half = d.fused_pool | d.block1              # one output pixel per pass
        n_slots = Mux(half, cols, 4 * cols)
        row = Mux(half, 0, slot // cols)
        col = Mux(half, slot, slot % cols)
        # Payload lane r*cols + c is pixel r of the block, channel c: in four-pixel mode the
        # slot is the lane; a fused pool takes the max of column ``col`` over the four rows.
        col_vals = [self.i.p.as_value().word_select(r * cols + col, cfg.acc_width).as_signed() for r in range(4)]
        # The lane of ``slot`` is column ``col`` of row ``row``: reuse the column pick.  A fused
        # pool's max is split over two register stages (X, then P) to keep the path short.
        lane_val = Signal(signed(cfg.acc_width))
        m.d.comb += lane_val.eq(Cat(*col_vals).word_select(row[:2], cfg.acc_width).as_signed())
        top = Mux(col_vals[0] > col_vals[1], col_vals[0], col_vals[1])
        bottom = Mux(col_vals[2] > col_vals[3], col_vals[2], col_vals[3])

        ch = gch + col
        dy, dx = row[1], row[0]
        pixel_ok = Mux(half, 1, ((oy_s + dy) < d.oh) & ((ox_s + dx) < d.ow))
        element = pixel_ok & (ch < d.out_c)
        bank = Mux(half, (by[0] << 1) | bx[0], row[:2])

        # X stage: the picked value (or the two half maxes) and its channel; then the P stage,
        # where the element waits one cycle for its parameters.
        lanes = cfg.requant_lanes
        gathered = Signal(range(lanes + 1))
        x_valid, p_valid = Signal(), Signal()
        x_a, x_b = Signal(signed(cfg.acc_width)), Signal(signed(cfg.acc_width))
        x_ch = Signal(COUNT)
        p_acc = Signal(signed(cfg.acc_width))
        p_advance = ~p_valid | (gathered != lanes)
        x_advance = ~x_valid | p_advance
        issue = running & self.i.valid & x_advance & fifo.w_rdy
        last_slot = slot == n_slots - 1

        m.d.comb += [
            self.param_addr.eq(d.param_base + x_ch),
            self.param_en.eq(p_advance),
            fifo.w_en.eq(issue & element),
            self.i.ready.eq(issue & last_slot),
        ]
        write = Signal(WRITE)
        m.d.comb += [write.bank.eq(bank), write.addr.eq(d.out_base + ypart + xpart + ch)]
        m.d.comb += fifo.w_data.eq(write)
        with m.If(x_advance):
            m.d.sync += [x_valid.eq(issue & element), x_a.eq(Mux(d.fused_pool, top, lane_val)),
                         x_b.eq(bottom), x_ch.eq(ch)]
        with m.If(p_advance):
            m.d.sync += [p_valid.eq(x_valid), p_acc.eq(Mux(d.fused_pool & (x_b > x_a), x_b, x_a))]

        # Gather stage: ``lanes`` elements make one requantiser transfer; a partial one is
        # flushed when the layer has no more elements to come.  ``counts`` tells the
        # serialiser how many lanes of each transfer are real.
        m.submodules.counts = counts = SyncFIFOBuffered(width=len(gathered), depth=8)
        buf = Signal(rq.i.p.lanes.shape())
        flush = ~running & ~x_valid & ~p_valid & (gathered != 0)
        send = ((gathered == lanes) | flush) & counts.w_rdy
        with m.If(p_valid & p_advance):
            m.d.sync += [buf[gathered].acc.eq(p_acc), buf[gathered].bias.eq(self.param_data.bias),
                         buf[gathered].multiplier.eq(self.param_data.multiplier),
                         buf[gathered].shift.eq(self.param_data.shift), gathered.eq(gathered + 1)]
        m.d.comb += [
            rq.i.valid.eq(send),
            rq.i.p.lanes.eq(buf),
            rq.i.p.zero_point.eq(d.zero_point),
            rq.i.p.act_min.eq(d.act_min),
            rq.i.p.act_max.eq(d.act_max),
            rq.i.p.single_rounding.eq(d.single_rounding),
            counts.w_data.eq(gathered),
            counts.w_en.eq(send & rq.i.ready),
        ]
        with m.If(send & rq.i.ready):
            m.d.sync += gathered.eq(0)

        # Serialiser: one lane of the requantiser's output a cycle into the table.
        lane = Signal(range(max(lanes, 2)))
        serial = stream.Signature(data.ArrayLayout(signed(8), 1)).create()
        lane_last = lane == counts.r_data - 1
        m.d.comb += [
            serial.valid.eq(rq.o.valid & counts.r_rdy),
            serial.p[0].eq(rq.o.p.as_value().word_select(lane, 8).as_signed()),
            rq.o.ready.eq(serial.ready & counts.r_rdy & lane_last),
            counts.r_en.eq(serial.ready & rq.o.valid & lane_last),
        ]
        with m.If(serial.valid & serial.ready):
            m.d.sync += lane.eq(Mux(lane_last, 0, lane + 1))

        # POOL descriptors bring finished values and their addresses on ``aux`` instead.
        if self.has_aux:
            aux_take = self.aux.valid & t_in.ready & fifo.w_rdy
            with m.If(d.pool):
                m.d.comb += [
                    t_in.valid.eq(aux_take), t_in.p[0].eq(self.aux.p.value), self.aux.ready.eq(aux_take),
                    fifo.w_en.eq(aux_take), write.bank.eq(self.aux.p.bank), write.addr.eq(self.aux.p.addr),
                ]
            with m.Else():
                wiring.connect(m, serial, t_in)
        else:
            wiring.connect(m, serial, t_in)

        out = Signal(WRITE)
        m.d.comb += [
            out.eq(fifo.r_data),
            t_out.ready.eq(fifo.r_rdy),
            fifo.r_en.eq(t_out.valid),
            self.wr_en.eq(t_out.valid & fifo.r_rdy),
            self.wr_bank.eq(out.bank),
            self.wr_addr.eq(out.addr),
            self.wr_data.eq(t_out.p[0]),
        ]
        written = self.wr_en
        issued = fifo.w_en
        m.d.sync += pending.eq(pending + issued - written)
        m.d.comb += self.done.eq(~running & (pending == 0))

        with m.If(self.start):
            m.d.sync += [running.eq(1), slot.eq(0), bx.eq(0), by.eq(0), g.eq(0), ox_s.eq(0), oy_s.eq(0),
                         xpart.eq(0), ypart.eq(0), gch.eq(0)]
        with m.Elif(issue):
            m.d.sync += slot.eq(Mux(last_slot, 0, slot + 1))
            with m.If(last_slot):
                self._next_pass(m, d, half, bx, by, g, ox_s, oy_s, xpart, ypart, gch, running, cols)
        return m

    @staticmethod
    def _next_pass(m, d, half, bx, by, g, ox_s, oy_s, xpart, ypart, gch, running, cols):
        with m.If(bx != d.nbx - 1):
            m.d.sync += [bx.eq(bx + 1), ox_s.eq(ox_s + 2)]
            with m.If(~half | bx[0]):
                m.d.sync += xpart.eq(xpart + d.out_c)
        with m.Else():
            m.d.sync += [bx.eq(0), ox_s.eq(0), xpart.eq(0)]
            with m.If(by != d.nby - 1):
                m.d.sync += [by.eq(by + 1), oy_s.eq(oy_s + 2)]
                with m.If(~half | by[0]):
                    m.d.sync += ypart.eq(ypart + d.out_row_stride)
            with m.Else():
                m.d.sync += [by.eq(0), oy_s.eq(0), ypart.eq(0)]
                with m.If(g != d.groups - 1):
                    m.d.sync += [g.eq(g + 1), gch.eq(gch + cols)]
                with m.Else():
                    m.d.sync += running.eq(0)
