"""Feeds the MAC array from the banked activation memory and the weight memory (im2col on
the fly): one kernel tap of four output pixels and ``cols`` output channels per cycle.

Loop nest, outermost first: channel group, block row, block column, then the reduction
(ky, kx, ci).  Every loop is counted down with a registered ``last`` flag
(:class:`~hdl.layer_desc.Loop`), and input positions are tracked by adding only.  The
trackers follow a pair of input rows and a pair of input columns (those of the block's two
pixel rows and columns; in one-pixel mode, ``block1``, the second of each pair is only
carried along).  Their coordinates serve the bounds test, their bank pointers are kept by
parity, because the row (column) pair always holds one even and one odd row (column):
parity bank ``b`` then reads ``rowptr[b >> 1] + colptr[b & 1] + ci``, one adder with no
multiplexer, and a step by one moves only the pointer of the row (column) that leaves.

At stride 1 the four pixels of a 2x2 block read four different parity banks; in one-pixel
mode all four rows read the same address, so there is never a bank conflict.  Taps outside
the input map are fed as the input zero point.

Pipeline: the trackers; the address stage (bank addresses, weight address and the tap's
flags, registered) with a skid register beside it; the read stage (the banks' answer, the
weight address); the result stage (the tap's activations registered, the weights' answer).
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .layer_desc import Loop, coord_shape, engine_members, ptr_shape
from .mac_array import term_layout


class Feeder(wiring.Component):
    """Generates every term of one CONV descriptor after ``start``; ``done`` when all issued.

    Both memories answer one cycle after their address and hold their data while ``mem_en``
    is low, which is how array back-pressure stalls the read stage.
    """

    def __init__(self, config):
        self.config = config
        super().__init__({
            **engine_members(config),
            "weight_addr": Out(config.weight_addr_bits),
            "weight_data": In(data.ArrayLayout(signed(8), config.cols)),
            "o": Out(stream.Signature(term_layout(config))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, d = self.config, self.desc
        coord, ptr = coord_shape(cfg), ptr_shape(cfg)

        def pair(name, shape):
            return [Signal(shape, name=f"{name}{k}") for k in (0, 1)]

        running, block1, first = Signal(), Signal(), Signal()
        # Whether the current tap ends the kx loop / the pass, kept a step ahead (the outer
        # loops' ends add only their own ``last`` flags).
        end_kx, end_pass = Signal(), Signal()
        ci = Signal(cfg.dim_bits)
        chan = Signal(cfg.dim_bits)         # the channel a depthwise group reads (0 otherwise)
        ci_loop, kx, ky, bx, by, g = (Loop(name, cfg.dim_bits) for name in ("ci", "kx", "ky", "bx", "by", "g"))
        share = Loop("share", cfg.dim_bits)   # the group's lanes in a weight word shared by word_groups groups
        # What the group's end adds to gbase: taps after a word's last group, else 0 (the
        # next group reads the same words), kept a group ahead so gbase's enable stays as is.
        gstep = Signal(cfg.taps_bits)
        wptr, gbase = Signal(cfg.weight_addr_bits), Signal(cfg.weight_addr_bits)
        iy, ix, iy_s, ix_s = pair("iy", coord), pair("ix", coord), pair("iy_s", coord), pair("ix_s", coord)
        rp, cp, rp_s, cp_s = pair("rp", ptr), pair("cp", ptr), pair("rp_s", ptr), pair("cp_s", ptr)

        # The tap the trackers describe, the address stage (whose addresses the memories
        # read), a skid register beside it, and the read stage.  The skid lets the trackers
        # step on registers alone (``~skid.valid``) instead of on the array's ``ready``.
        banks = cfg.banks
        tap = data.StructLayout({
            "valid": 1, "first": 1, "last": 1, "weight_addr": cfg.weight_addr_bits,
            "bank_addr": data.ArrayLayout(cfg.bank_addr_bits, banks),
            "bank": data.ArrayLayout(range(banks), cfg.rows), "inside": cfg.rows,
        })
        t, a, skid = Signal(tap), Signal(tap), Signal(tap)
        s_valid, s_first, s_last = Signal(), Signal(), Signal()
        s_bank = [Signal(range(banks), name=f"s_bank{r}") for r in range(cfg.rows)]
        s_inside = Signal(cfg.rows)
        s_weight_addr = Signal(cfg.weight_addr_bits)
        r_valid, r_first, r_last = Signal(), Signal(), Signal()

        y_in = [(iy[k] >= 0) & (iy[k] < d.h) for k in (0, 1)]
        x_in = [(ix[k] >= 0) & (ix[k] < d.w) for k in (0, 1)]
        m.d.comb += [t.valid.eq(running), t.first.eq(first), t.last.eq(end_pass), t.weight_addr.eq(wptr)]
        for b in range(banks):
            m.d.comb += t.bank_addr[b].eq(rp[b >> 1] + cp[b & 1] + ci)
        for r in range(cfg.rows):
            dy, dx = r >> 1, r & 1
            m.d.comb += [
                t.bank[r].eq(Mux(block1, Cat(ix[0][0], iy[0][0]), Cat(ix[dx][0], iy[dy][0]))),
                t.inside[r].eq(Mux(block1, y_in[0] & x_in[0], y_in[dy] & x_in[dx])),
            ]

        # The stages after the address stage move together: the bank memories answer in
        # the read stage, whose bank select and padding fill the result stage's activation
        # registers (the array broadcasts them), while the weight memory, addressed a stage
        # later, answers in the result stage.
        advance = Signal()
        m.d.comb += [
            advance.eq(~r_valid | self.o.ready),
            self.mem_en.eq(advance),
            self.done.eq(~running & ~skid.valid & ~a.valid & ~s_valid & ~r_valid),
            self.bank_addr.eq(a.bank_addr),
            self.weight_addr.eq(s_weight_addr),
        ]
        with m.If(~a.valid | advance):
            m.d.sync += [a.eq(Mux(skid.valid, skid, t)), skid.valid.eq(0)]
        with m.Elif(running & ~skid.valid):
            m.d.sync += skid.eq(t)
        with m.If(advance):
            m.d.sync += [s_valid.eq(a.valid), s_first.eq(a.first), s_last.eq(a.last), s_inside.eq(a.inside),
                         s_weight_addr.eq(a.weight_addr), *(s_bank[r].eq(a.bank[r]) for r in range(cfg.rows)),
                         r_valid.eq(s_valid), r_first.eq(s_first), r_last.eq(s_last)]
            for r in range(cfg.rows):
                m.d.sync += self.o.p.act[r].eq(
                    Mux(s_inside[r], self.bank_data.as_value().word_select(s_bank[r], 8).as_signed(), d.pad_value))

        m.d.comb += [
            self.o.valid.eq(r_valid),
            self.o.p.first.eq(r_first),
            self.o.p.last.eq(r_last),
            self.o.p.weight.eq(self.weight_data),
        ]

        # While idle the trackers follow the descriptor, so they hold the layer's start
        # values when ``start`` sets ``running``; ``start`` enables nothing else.  While
        # running they step whenever the skid register is free.
        with m.If(self.start):
            m.d.sync += running.eq(1)
        with m.If(~running):
            m.d.sync += [
                block1.eq(d.block1), first.eq(1), ci.eq(0),
                *ci_loop.load(d.red_c), *kx.load(d.kw), *ky.load(d.kh),
                *bx.load(d.nbx), *by.load(d.nby), *g.load(d.groups), *share.load(d.word_groups),
                wptr.eq(d.weight_base), gbase.eq(d.weight_base), gstep.eq(Mux(d.word_groups == 1, d.taps, 0)),
            ]
            m.d.sync += [end_kx.eq((d.red_c == 1) & (d.kw == 1)),
                         end_pass.eq((d.red_c == 1) & (d.kw == 1) & (d.kh == 1)), chan.eq(0)]
            for k in (0, 1):
                for cur, start, init in ((iy, iy_s, d.iy0), (rp, rp_s, d.rowptr0),
                                         (ix, ix_s, d.ix0), (cp, cp_s, d.colptr0)):
                    m.d.sync += [cur[k].eq(init[k]), start[k].eq(init[k])]
        with m.Elif(~skid.valid):
            next_kx = ci_loop.next_last(1) & kx.next_last(ci_loop.last)
            m.d.sync += [wptr.eq(wptr + 1), first.eq(end_pass), end_kx.eq(next_kx),
                         end_pass.eq(next_kx & ky.next_last(end_kx))]
            with m.If(~ci_loop.last):
                m.d.sync += [*ci_loop.advance(), ci.eq(ci + 1)]
            with m.Else():
                m.d.sync += [*ci_loop.restart(d.red_c), ci.eq(chan)]
                with m.If(~kx.last):
                    m.d.sync += [*kx.advance(), *(ix[k].eq(ix[k] + 1) for k in (0, 1))]
                    with m.If(ix[0][0]):
                        m.d.sync += cp[1].eq(cp[1] + d.c)
                    with m.Else():
                        m.d.sync += cp[0].eq(cp[0] + d.c)
                with m.Else():
                    m.d.sync += [*kx.restart(d.kw), *(ix[k].eq(ix_s[k]) for k in (0, 1)),
                                 *(cp[q].eq(cp_s[q]) for q in (0, 1))]
            with m.If(end_kx):
                with m.If(~ky.last):
                    m.d.sync += [*ky.advance(), *(iy[k].eq(iy[k] + 1) for k in (0, 1))]
                    with m.If(iy[0][0]):
                        m.d.sync += rp[1].eq(rp[1] + d.row_stride)
                    with m.Else():
                        m.d.sync += rp[0].eq(rp[0] + d.row_stride)
                with m.Else():
                    m.d.sync += ky.restart(d.kh)
            self._next_pass(m, d, end_pass, running, bx, by, g, wptr, gbase, gstep, iy, iy_s, ix, ix_s,
                            rp, rp_s, cp, cp_s)
            with m.If(end_pass & bx.last & by.last):
                with m.If(d.depthwise):
                    m.d.sync += [chan.eq(chan + 1), ci.eq(chan + 1)]
                with m.If(share.last):
                    m.d.sync += share.restart(d.word_groups)
                with m.Else():
                    m.d.sync += share.advance()
                m.d.sync += gstep.eq(Mux(share.next_last(1), d.taps, 0))
        return m

    @staticmethod
    def _next_pass(m, d, end_pass, running, bx, by, g, wptr, gbase, gstep, iy, iy_s, ix, ix_s, rp, rp_s, cp, cp_s):
        """End of a pass: move the pass-start trackers to the next block, row, group or the
        end; a later loop's assignments override an earlier one's.

        A step by an odd number of rows (columns) swaps the parities of the pair: the new
        even member comes from the old odd one."""
        def stepped(ptr, steps, odd):
            moved = [ptr[q] + steps[q] for q in (0, 1)]
            return [Mux(odd, moved[1 - q], moved[q]) for q in (0, 1)]

        end_row = end_pass & bx.last
        end_group = end_row & by.last
        with m.If(end_pass):
            ncp = stepped(cp_s, d.xstep_ptr, d.xstep[0])
            m.d.sync += [wptr.eq(gbase), *bx.advance()]
            for k in (0, 1):
                nix = ix_s[k] + d.xstep
                m.d.sync += [ix_s[k].eq(nix), ix[k].eq(nix), cp_s[k].eq(ncp[k]), cp[k].eq(ncp[k]),
                             iy[k].eq(iy_s[k]), rp[k].eq(rp_s[k])]
        with m.If(end_row):
            nrp = stepped(rp_s, d.ystep_ptr, d.ystep[0])
            m.d.sync += [*bx.restart(d.nbx), *by.advance()]
            for k in (0, 1):
                niy = iy_s[k] + d.ystep
                m.d.sync += [ix_s[k].eq(d.ix0[k]), cp_s[k].eq(d.colptr0[k]),
                             ix[k].eq(d.ix0[k]), cp[k].eq(d.colptr0[k]),
                             iy_s[k].eq(niy), iy[k].eq(niy), rp_s[k].eq(nrp[k]), rp[k].eq(nrp[k])]
        with m.If(end_group):
            m.d.sync += [*by.restart(d.nby), *g.advance(), gbase.eq(gbase + gstep), wptr.eq(gbase + gstep)]
            for k in (0, 1):
                m.d.sync += [iy_s[k].eq(d.iy0[k]), rp_s[k].eq(d.rowptr0[k]),
                             iy[k].eq(d.iy0[k]), rp[k].eq(d.rowptr0[k])]
        with m.If(end_group & g.last):
            m.d.sync += running.eq(0)
