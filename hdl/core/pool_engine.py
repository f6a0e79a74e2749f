"""Runs a POOL descriptor over a stored map, one input byte a cycle: MAX or AVERAGE pooling
with any filter, stride and padding, and LOOKUP layers as 1x1 MAX windows whose result
the drain's table then maps.

Only the valid (unpadded) taps of a window are read, so the Pool unit's element count is
TFLite's filter_count.  Input pointers are tracked by adding only, as in the feeder; the
window of output element (oy, ox, c) is rows max(iy0, 0) .. min(iy0 + kh, h) - 1 and the
same for columns.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import Out

from ..units.pool import Pool, PoolMode
from .layer_desc import coord_shape, ptr_shape, write_layout
from .ports import engine_members


def result_layout(config):
    """A finished element for the drain's table and writer."""
    return data.StructLayout({"value": signed(8), **write_layout(config).members})


class PoolEngine(wiring.Component):
    """Runs one POOL or LOOKUP descriptor after ``start``, windows of up to ``max_window``
    elements (the program's largest: the divider's widths grow with it); ``done`` once every
    result has left on ``o``."""

    def __init__(self, config, max_window=16):
        self.config = config
        self.max_window = max_window
        super().__init__({
            **engine_members(config),
            "o": Out(stream.Signature(result_layout(config))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, d = self.config, self.desc
        count, coord, ptr = cfg.dim_bits, coord_shape(cfg), ptr_shape(cfg)
        write = write_layout(cfg)
        m.submodules.pool = pool = Pool(lanes=1, max_window=self.max_window)
        # Room for every address in flight when each window is one byte (LOOKUP): the Pool
        # unit's latency plus the read and issue stages, so the engine never waits on it.
        m.submodules.addrs = addrs = SyncFIFOBuffered(width=write.size, depth=pool.latency + 4)
        m.d.comb += [pool.mode.eq(Mux(d.pool_avg, PoolMode.AVERAGE, PoolMode.MAX)),
                     pool.act_min.eq(d.act_min), pool.act_max.eq(d.act_max)]

        running = Signal()
        oy, ox, c = Signal(count), Signal(count), Signal(count)
        iy0, ix0 = Signal(coord), Signal(coord)          # window origin, may be negative (padding)
        rp0, cp0 = Signal(ptr), Signal(ptr)              # (iy0 >> 1) * row_stride, (ix0 >> 1) * c
        iy, ix = Signal(coord), Signal(coord)
        rp, cp = Signal(ptr), Signal(ptr)
        ypart, xpart = Signal(ptr), Signal(ptr)          # output pointer parts

        y_start = Mux(iy0 < 0, 0, iy0)
        x_start = Mux(ix0 < 0, 0, ix0)
        cp_start = Mux(ix0 < 0, 0, cp0)
        y_end = Mux(iy0 + d.kh > d.h, d.h, iy0 + d.kh)
        x_end = Mux(ix0 + d.kw > d.w, d.w, ix0 + d.kw)

        s_valid, s_first, s_last, s_bank = Signal(), Signal(), Signal(), Signal(range(cfg.banks))
        advance = (~s_valid | pool.i.ready) & ~self.stall
        issue = running & advance & addrs.w_rdy
        first = (iy == y_start) & (ix == x_start)
        last = (iy == y_end - 1) & (ix == x_end - 1)
        bank = Signal(range(cfg.banks))
        addr = Signal(cfg.bank_addr_bits + 1)
        m.d.comb += [
            bank.eq((iy[0] << 1) | ix[0]),
            addr.eq(d.in_base + rp + cp + c),
            self.done.eq(~running & ~s_valid & ~addrs.r_rdy & ~pool.o.valid),
        ]
        for port in self.banks:
            m.d.comb += [port.addr.eq(addr), port.en.eq(advance)]
        with m.If(advance):
            m.d.sync += [s_valid.eq(issue), s_first.eq(first), s_last.eq(last), s_bank.eq(bank)]
        m.d.comb += [
            pool.i.valid.eq(s_valid & ~self.stall),
            pool.i.p.first.eq(s_first),
            pool.i.p.last.eq(s_last),
            pool.i.p.data[0].eq(Cat(port.data for port in self.banks).word_select(s_bank, 8).as_signed()),
        ]

        out_write, queued = Signal(write), write(addrs.r_data)
        m.d.comb += [
            out_write.bank.eq(Cat(ox[0], oy[0])),
            out_write.addr.eq(d.out_base + ypart + xpart + c),
            addrs.w_data.eq(out_write),
            addrs.w_en.eq(issue & last),
            self.o.valid.eq(pool.o.valid & addrs.r_rdy),
            self.o.p.value.eq(pool.o.p[0]),
            self.o.p.bank.eq(queued.bank),
            self.o.p.addr.eq(queued.addr),
            pool.o.ready.eq(self.o.ready & addrs.r_rdy),
            addrs.r_en.eq(self.o.ready & pool.o.valid),
        ]

        def start_window(new_rp0, new_cp0, new_iy0, new_ix0):
            m.d.sync += [
                iy.eq(Mux(new_iy0 < 0, 0, new_iy0)), rp.eq(Mux(new_iy0 < 0, 0, new_rp0)),
                ix.eq(Mux(new_ix0 < 0, 0, new_ix0)), cp.eq(Mux(new_ix0 < 0, 0, new_cp0)),
            ]

        with m.If(self.start):
            m.d.sync += [running.eq(1), oy.eq(0), ox.eq(0), c.eq(0), ypart.eq(0), xpart.eq(0),
                         iy0.eq(d.iy0[0]), ix0.eq(d.ix0[0]), rp0.eq(d.rowptr0[0]), cp0.eq(d.colptr0[0])]
            start_window(d.rowptr0[0], d.colptr0[0], d.iy0[0], d.ix0[0])
        with m.Elif(issue):
            with m.If(ix != x_end - 1):
                m.d.sync += ix.eq(ix + 1)
                with m.If(ix[0]):
                    m.d.sync += cp.eq(cp + d.c)
            with m.Elif(iy != y_end - 1):
                m.d.sync += [iy.eq(iy + 1), ix.eq(x_start), cp.eq(cp_start)]
                with m.If(iy[0]):
                    m.d.sync += rp.eq(rp + d.row_stride)
            with m.Elif(c != d.c - 1):
                m.d.sync += c.eq(c + 1)
                start_window(rp0, cp0, iy0, ix0)
            with m.Elif(ox != d.nbx - 1):
                nix0, ncp0 = ix0 + d.xstep, cp0 + d.xstep_ptr[ix0[0]]
                m.d.sync += [c.eq(0), ox.eq(ox + 1), ix0.eq(nix0), cp0.eq(ncp0)]
                with m.If(ox[0]):
                    m.d.sync += xpart.eq(xpart + d.out_stride)
                start_window(rp0, ncp0, iy0, nix0)
            with m.Elif(oy != d.nby - 1):
                niy0, nrp0 = iy0 + d.ystep, rp0 + d.ystep_ptr[iy0[0]]
                m.d.sync += [c.eq(0), ox.eq(0), oy.eq(oy + 1), ix0.eq(d.ix0[0]), cp0.eq(d.colptr0[0]),
                             iy0.eq(niy0), rp0.eq(nrp0), xpart.eq(0)]
                with m.If(oy[0]):
                    m.d.sync += ypart.eq(ypart + d.out_row_stride)
                start_window(nrp0, d.colptr0[0], niy0, d.ix0[0])
            with m.Else():
                m.d.sync += running.eq(0)
        return m
