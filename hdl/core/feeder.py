"""Feeds the MAC array from the banked activation memory and the weight memory (im2col on
the fly): one kernel tap of four output pixels and ``cols`` output channels per cycle.

Loop nest, outermost first: channel group, block row, block column, then the reduction
(ky, kx, ci).  Every loop is counted down with a registered ``last`` flag
(:class:`~hdl.core.layer_desc.Loop`), and input positions are tracked by adding only.  The
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
``stall`` (a write has the SPRAMs) holds the read and result stages like array
back-pressure.  With maps in SPRAM the weights come from the cache: each channel group whose
words are not there waits, with the pipeline empty, for ``fill``.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import Out

from ..units.mac_array import term_layout
from .layer_desc import Loop, coord_shape, ptr_shape
from .ports import engine_members, weight_fill_signature, weight_read_signature


class PairTracker:
    """One axis of the taps: a pair of consecutive input rows (or columns) as coordinates
    (for the bounds test) and as bank pointers by parity (for the addresses), each also as
    at the start of the pass, which the kernel loop rewinds to and the block loops move.
    The methods emit adders and copies into the module the tracker was made for; a later
    call's statements override an earlier one's, so an outer loop's end takes precedence."""

    def __init__(self, m, config, coord_name, ptr_name):
        self._m = m

        def pair(name, shape):
            return [Signal(shape, name=f"{name}{k}") for k in (0, 1)]

        coord, ptr = coord_shape(config), ptr_shape(config)
        self.pos, self.pos_s = pair(coord_name, coord), pair(f"{coord_name}_s", coord)
        self.ptr, self.ptr_s = pair(ptr_name, ptr), pair(f"{ptr_name}_s", ptr)

    def load(self, pos, ptr):
        """Both the current pair and the pass start from descriptor pairs (the map's first)."""
        for k in (0, 1):
            self._m.d.sync += [self.pos[k].eq(pos[k]), self.pos_s[k].eq(pos[k]),
                               self.ptr[k].eq(ptr[k]), self.ptr_s[k].eq(ptr[k])]

    def step(self, ptr_step):
        """The next kernel row (column): only the pointer of the member that leaves moves."""
        m = self._m
        m.d.sync += [self.pos[k].eq(self.pos[k] + 1) for k in (0, 1)]
        with m.If(self.pos[0][0]):
            m.d.sync += self.ptr[1].eq(self.ptr[1] + ptr_step)
        with m.Else():
            m.d.sync += self.ptr[0].eq(self.ptr[0] + ptr_step)

    def rewind(self):
        """Back to the pass start (the kernel loop restarts)."""
        self._m.d.sync += [*(self.pos[k].eq(self.pos_s[k]) for k in (0, 1)),
                           *(self.ptr[q].eq(self.ptr_s[q]) for q in (0, 1))]

    def next_start(self, step, step_ptr):
        """Pass start and current pair move ``step`` on (the next block).  An odd step swaps
        the parities of the pair: the new even member comes from the old odd one."""
        moved = [self.ptr_s[q] + step_ptr[q] for q in (0, 1)]
        for k in (0, 1):
            new_pos, new_ptr = self.pos_s[k] + step, Mux(step[0], moved[1 - k], moved[k])
            self._m.d.sync += [self.pos_s[k].eq(new_pos), self.pos[k].eq(new_pos),
                               self.ptr_s[k].eq(new_ptr), self.ptr[k].eq(new_ptr)]


class Feeder(wiring.Component):
    """Generates every term of one CONV descriptor after ``start``; ``done`` when all issued.

    Both memories answer one cycle after their address and hold their data while ``en`` is
    low, which is how array back-pressure stalls the read stage.
    """

    def __init__(self, config):
        self.config = config
        members = {
            **engine_members(config),
            "weights": Out(weight_read_signature(config)),
            "o": Out(stream.Signature(term_layout(config))),
        }
        if config.in_spram:
            members["fill"] = Out(weight_fill_signature(config))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cfg, d = self.config, self.desc

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
        ys, xs = PairTracker(m, cfg, "iy", "rp"), PairTracker(m, cfg, "ix", "cp")
        iy, ix, rp, cp = ys.pos, xs.pos, ys.ptr, xs.ptr

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
        # Maps in SPRAM: a group whose weights are not in the cache waits for them (``hold``, a
        # register from the group's end to the cache's ``done``, since it gates every tracker).
        # The request, a one-cycle pulse, waits until no tap is in flight, so that no read of
        # the activations or of the cache meets the fill.
        hold = Signal()
        # A weight word's taps, and with streamed weights its channels' parameters after them.
        unit = d.unit_words if cfg.streams else d.taps
        if cfg.in_spram:
            need_fill = Signal()
            m.d.comb += [self.fill.base.eq(gbase), self.fill.count.eq(unit)]
            m.d.sync += self.fill.start.eq(running & need_fill & ~a.valid & ~skid.valid & ~s_valid & ~r_valid
                                           & ~self.fill.start)
            with m.If(self.fill.start):
                m.d.sync += need_fill.eq(0)
            with m.If(self.fill.done):
                m.d.sync += hold.eq(0)
        m.d.comb += [t.valid.eq(running & ~hold), t.first.eq(first), t.last.eq(end_pass), t.weight_addr.eq(wptr)]
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
            advance.eq((~r_valid | self.o.ready) & ~self.stall),
            self.done.eq(~running & ~skid.valid & ~a.valid & ~s_valid & ~r_valid),
            self.weights.addr.eq(s_weight_addr),
            self.weights.en.eq(advance),
        ]
        for b, port in enumerate(self.banks):
            m.d.comb += [port.addr.eq(a.bank_addr[b]), port.en.eq(advance)]
        bank_data = Cat(port.data for port in self.banks)
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
                    Mux(s_inside[r], bank_data.word_select(s_bank[r], 8).as_signed(), d.pad_value))

        m.d.comb += [
            self.o.valid.eq(r_valid & ~self.stall),
            self.o.p.first.eq(r_first),
            self.o.p.last.eq(r_last),
            self.o.p.weight.eq(self.weights.data),
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
                wptr.eq(d.weight_base), gbase.eq(d.weight_base), gstep.eq(Mux(d.word_groups == 1, unit, 0)),
            ]
            m.d.sync += [end_kx.eq((d.red_c == 1) & (d.kw == 1)),
                         end_pass.eq((d.red_c == 1) & (d.kw == 1) & (d.kh == 1)), chan.eq(0)]
            ys.load(d.iy0, d.rowptr0)
            xs.load(d.ix0, d.colptr0)
            if cfg.in_spram:
                m.d.sync += [need_fill.eq(1), hold.eq(1)]
        with m.Elif(~skid.valid & ~hold):
            next_kx = ci_loop.next_last(1) & kx.next_last(ci_loop.last)
            m.d.sync += [wptr.eq(wptr + 1), first.eq(end_pass), end_kx.eq(next_kx),
                         end_pass.eq(next_kx & ky.next_last(end_kx))]
            with m.If(~ci_loop.last):
                m.d.sync += [*ci_loop.advance(), ci.eq(ci + 1)]
            with m.Else():
                m.d.sync += [*ci_loop.restart(d.red_c), ci.eq(chan)]
                with m.If(~kx.last):
                    m.d.sync += kx.advance()
                    xs.step(d.c)
                with m.Else():
                    m.d.sync += kx.restart(d.kw)
                    xs.rewind()
            with m.If(end_kx):
                with m.If(~ky.last):
                    m.d.sync += ky.advance()
                    ys.step(d.row_stride)
                with m.Else():
                    m.d.sync += ky.restart(d.kh)

            # The pass's end moves the pass start to the next block, block row, channel
            # group or the end; a later loop's statements override an earlier one's.
            end_row = end_pass & bx.last
            end_group = end_row & by.last
            with m.If(end_pass):
                m.d.sync += [wptr.eq(gbase), *bx.advance()]
                xs.next_start(d.xstep, d.xstep_ptr)
                ys.rewind()
            with m.If(end_row):
                m.d.sync += [*bx.restart(d.nbx), *by.advance()]
                xs.load(d.ix0, d.colptr0)
                ys.next_start(d.ystep, d.ystep_ptr)
            with m.If(end_group):
                m.d.sync += [*by.restart(d.nby), *g.advance(), gbase.eq(gbase + gstep), wptr.eq(gbase + gstep)]
                ys.load(d.iy0, d.rowptr0)
                with m.If(d.depthwise):
                    m.d.sync += [chan.eq(chan + 1), ci.eq(chan + 1)]
                with m.If(share.last):
                    m.d.sync += share.restart(d.word_groups)
                with m.Else():
                    m.d.sync += share.advance()
                m.d.sync += gstep.eq(Mux(share.next_last(1), unit, 0))
                if cfg.in_spram:
                    m.d.sync += [need_fill.eq(gstep != 0), hold.eq(gstep != 0)]
            with m.If(end_group & g.last):
                m.d.sync += running.eq(0)
        return m
