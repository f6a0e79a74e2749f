"""Feeds the MAC array from the banked activation memory and the weight memory (im2col on
the fly): one kernel tap of four output pixels and ``cols`` output channels per cycle.

Loop nest, outermost first: channel group, block row, block column, then the reduction
(ky, kx, ci).  Input coordinates and bank pointers are tracked by adding only: two row
trackers (the block's two pixel rows) and two column trackers, each with a copy of its
value at the start of the pass, all advanced by the strides the descriptor precomputes.
At stride 1 the four pixels of a 2x2 block read four different parity banks; in
one-pixel mode (``block1``) all four rows read the same address, so there is never a
bank conflict.  Taps outside the input map are fed as the input zero point.
"""

from types import SimpleNamespace

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .layer_desc import ADDR, COORD, COUNT, PTR, engine_members
from .mac_array import term_layout


class Feeder(wiring.Component):
    """Generates every term of one CONV descriptor after ``start``; ``done`` when all issued.

    Both memories answer one cycle after their address (``mem_latency``) and hold their data
    while ``mem_en`` is low, which is how array back-pressure stalls the read stage.
    """

    mem_latency = 1

    def __init__(self, config):
        self.config = config
        super().__init__({
            **engine_members(config),
            "weight_addr": Out(16),
            "weight_data": In(data.ArrayLayout(signed(8), config.cols)),
            "o": Out(stream.Signature(term_layout(config))),
        })

    def elaborate(self, platform):
        m = Module()
        d = self.desc
        t = SimpleNamespace(
            running=Signal(), ci=Signal(COUNT), kx=Signal(COUNT), ky=Signal(COUNT),
            bx=Signal(COUNT), by=Signal(COUNT), g=Signal(COUNT), wptr=Signal(16), gbase=Signal(16),
            **{f"{name}{sfx}": [Signal(shape, name=f"{name}{sfx}{k}") for k in (0, 1)]
               for name, shape in (("iy", COORD), ("ix", COORD), ("rp", PTR), ("cp", PTR)) for sfx in ("", "_s")})
        running, ci, kx, ky, wptr = t.running, t.ci, t.kx, t.ky, t.wptr
        iy, ix, rp, cp = t.iy, t.ix, t.rp, t.cp

        # Read stage: what the memories' outputs mean when they arrive next cycle.
        s_valid, s_first, s_last = Signal(), Signal(), Signal()
        s_bank = [Signal(2, name=f"s_bank{r}") for r in range(4)]
        s_inside = [Signal(name=f"s_inside{r}") for r in range(4)]

        advance = Signal()
        m.d.comb += [
            advance.eq(~s_valid | self.o.ready),
            self.mem_en.eq(advance),
            self.done.eq(~running & ~s_valid),
            self.weight_addr.eq(wptr),
        ]

        first = (ky == 0) & (kx == 0) & (ci == 0)
        last_ci, last_kx, last_ky = ci == d.c - 1, kx == d.kw - 1, ky == d.kh - 1
        for r in reversed(range(4)):      # row 0 wins a bank (the only row in one-pixel mode)
            dy, dx = r >> 1, r & 1
            addr = Signal(ADDR + 1, name=f"addr{r}")
            bank = Signal(2, name=f"bank{r}")
            m.d.comb += [
                addr.eq(d.in_base + rp[dy] + cp[dx] + ci),
                bank.eq((iy[dy][0] << 1) | ix[dx][0]),
            ]
            for b in range(4):
                with m.If(bank == b):
                    m.d.comb += self.bank_addr[b].eq(addr)
            with m.If(advance):
                m.d.sync += [
                    s_bank[r].eq(bank),
                    s_inside[r].eq((iy[dy] >= 0) & (iy[dy] < d.h) & (ix[dx] >= 0) & (ix[dx] < d.w)),
                ]
        with m.If(advance):
            m.d.sync += [s_valid.eq(running), s_first.eq(first), s_last.eq(last_ci & last_kx & last_ky)]

        m.d.comb += [
            self.o.valid.eq(s_valid),
            self.o.p.first.eq(s_first),
            self.o.p.last.eq(s_last),
            self.o.p.weight.eq(self.weight_data),
        ]
        for r in range(4):
            m.d.comb += self.o.p.act[r].eq(
                (self.bank_data.as_value().word_select(s_bank[r], 8)).as_signed())
            with m.If(~s_inside[r]):
                m.d.comb += self.o.p.act[r].eq(d.pad_value)

        with m.If(self.start):
            m.d.sync += [running.eq(1), ci.eq(0), kx.eq(0), ky.eq(0), t.bx.eq(0), t.by.eq(0), t.g.eq(0),
                         wptr.eq(d.weight_base), t.gbase.eq(d.weight_base)]
            for k in (0, 1):
                for cur, start, init in ((iy, t.iy_s, d.iy0), (rp, t.rp_s, d.rowptr0),
                                         (ix, t.ix_s, d.ix0), (cp, t.cp_s, d.colptr0)):
                    m.d.sync += [cur[k].eq(init[k]), start[k].eq(init[k])]
        with m.Elif(running & advance):
            m.d.sync += wptr.eq(wptr + 1)
            with m.If(~last_ci):
                m.d.sync += ci.eq(ci + 1)
            with m.Else():
                m.d.sync += ci.eq(0)
                with m.If(~last_kx):
                    m.d.sync += kx.eq(kx + 1)
                    for k in (0, 1):
                        m.d.sync += ix[k].eq(ix[k] + 1)
                        with m.If(ix[k][0]):
                            m.d.sync += cp[k].eq(cp[k] + d.c)
                with m.Else():
                    m.d.sync += kx.eq(0)
                    for k in (0, 1):
                        m.d.sync += [ix[k].eq(t.ix_s[k]), cp[k].eq(t.cp_s[k])]
                    with m.If(~last_ky):
                        m.d.sync += ky.eq(ky + 1)
                        for k in (0, 1):
                            m.d.sync += iy[k].eq(iy[k] + 1)
                            with m.If(iy[k][0]):
                                m.d.sync += rp[k].eq(rp[k] + d.row_stride)
                    with m.Else():
                        self._next_pass(m, d, t)
        return m

    @staticmethod
    def _next_pass(m, d, t):
        """End of a pass: move the pass-start trackers to the next block, group or the end."""
        ky, bx, by, g, wptr, gbase, running = t.ky, t.bx, t.by, t.g, t.wptr, t.gbase, t.running
        iy, iy_s, ix, ix_s, rp, rp_s, cp, cp_s = t.iy, t.iy_s, t.ix, t.ix_s, t.rp, t.rp_s, t.cp, t.cp_s
        m.d.sync += [ky.eq(0), wptr.eq(gbase)]
        with m.If(bx != d.nbx - 1):
            m.d.sync += bx.eq(bx + 1)
            for k in (0, 1):
                nix = ix_s[k] + d.xstep
                ncp = cp_s[k] + d.xstep_ptr[ix_s[k][0]]
                m.d.sync += [ix_s[k].eq(nix), cp_s[k].eq(ncp), ix[k].eq(nix), cp[k].eq(ncp),
                             iy[k].eq(iy_s[k]), rp[k].eq(rp_s[k])]
        with m.Else():
            m.d.sync += bx.eq(0)
            for k in (0, 1):
                m.d.sync += [ix_s[k].eq(d.ix0[k]), cp_s[k].eq(d.colptr0[k]),
                             ix[k].eq(d.ix0[k]), cp[k].eq(d.colptr0[k])]
            with m.If(by != d.nby - 1):
                m.d.sync += by.eq(by + 1)
                for k in (0, 1):
                    niy = iy_s[k] + d.ystep
                    nrp = rp_s[k] + d.ystep_ptr[iy_s[k][0]]
                    m.d.sync += [iy_s[k].eq(niy), rp_s[k].eq(nrp), iy[k].eq(niy), rp[k].eq(nrp)]
            with m.Else():
                m.d.sync += by.eq(0)
                for k in (0, 1):
                    m.d.sync += [iy_s[k].eq(d.iy0[k]), rp_s[k].eq(d.rowptr0[k]),
                                 iy[k].eq(d.iy0[k]), rp[k].eq(d.rowptr0[k])]
                with m.If(g != d.groups - 1):
                    m.d.sync += [g.eq(g + 1), gbase.eq(gbase + d.taps), wptr.eq(gbase + d.taps)]
                with m.Else():
                    m.d.sync += running.eq(0)
