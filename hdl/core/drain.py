"""Takes the MAC array's finished passes apart, one accumulator a cycle, and writes them
back requantised: the 2x2 max of a fused pool (before requantisation, which is monotone),
per-channel parameters from the parameter memory, the requantisers, the activation table,
and the banked write address of each element.

The array delivers a pass column by column (:func:`~hdl.units.mac_array.chain_order`): the four
pixels of the 2x2 block for output channel 0, then channel 1, ...  So a fused pool is a
running max over four consecutive values, a one-pixel pass keeps every fourth value, and
the per-element logic reads nothing but a slot counter and registered loop flags.

Element addresses travel beside the requantisers in a FIFO: the requantisers and the table
keep order, so the writer pairs each value with the oldest address.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..units.act_table import ActivationTable, TableWriteSignature
from ..units.mac_array import result_shape
from ..units.requant import Requantizer
from .add_engine import add_element_layout
from .layer_desc import Loop, desc_layout, write_layout
from .pool_engine import result_layout
from .ports import bank_write_signature, param_read_signature


class OutputAddress:
    """Where the drain's elements go: the bank address of the current pass's first element
    (``pass_base``; an element adds its column), of its block row and of its channel group,
    and the group's first parameter entry and channels left.  The bases move by adding
    only; they are those of the word's first group while groups share weight words, and
    ``word_step``, the channels the group's end moves them (0 inside a word), is chosen a
    group ahead.  Statements go into the module it was made for."""

    def __init__(self, m, config, desc):
        self._m, self._d = m, desc
        addr = config.bank_addr_bits
        self.pass_base, self.row_base, self.group_base = Signal(addr), Signal(addr), Signal(addr)
        self.param_group = Signal(config.param_addr_bits)   # param_base + first channel of the group
        self.ch_left = Signal(config.dim_bits)              # out_c - first channel of the group
        self.word_step = Signal(config.dim_bits)

    def load(self):
        """The layer's first pass, from the descriptor."""
        d = self._d
        self._m.d.sync += [
            self.word_step.eq(Mux(d.word_groups == 1, d.word_channels, 0)),
            self.pass_base.eq(d.out_base), self.row_base.eq(d.out_base), self.group_base.eq(d.out_base),
            self.param_group.eq(d.param_base), self.ch_left.eq(d.out_c),
        ]

    def next_block(self, moves):
        """The next block of the row; ``moves``: its pixels are at the next address (a
        one-pixel pass's blocks take turns between the parity banks, so every other one)."""
        with self._m.If(moves):
            self._m.d.sync += self.pass_base.eq(self.pass_base + self._d.out_stride)

    def rewind_row(self):
        """Back to the first block of the row."""
        self._m.d.sync += self.pass_base.eq(self.row_base)

    def next_row(self, moves):
        """The next block row; ``moves`` as for :meth:`next_block`."""
        with self._m.If(moves):
            next_row = self.row_base + self._d.out_row_stride
            self._m.d.sync += [self.row_base.eq(next_row), self.pass_base.eq(next_row)]

    def next_group(self):
        """The next channel group."""
        next_group = self.group_base + self.word_step
        self._m.d.sync += [self.group_base.eq(next_group), self.row_base.eq(next_group),
                           self.pass_base.eq(next_group), self.param_group.eq(self.param_group + self.word_step),
                           self.ch_left.eq(self.ch_left - self.word_step)]

    def choose_step(self, word_ends):
        """``word_step`` for the next group's end: ``word_ends``, that group is its word's last."""
        self._m.d.sync += self.word_step.eq(Mux(word_ends, self._d.word_channels, 0))


class Drain(wiring.Component):
    """Consumes every pass of one CONV descriptor after ``start``; ``done`` once all its
    elements are written."""

    fifo_depth = 16

    def __init__(self, config, tables=True, aux=True, adds=False):
        """``tables``/``aux``/``adds``: whether the program uses activation tables / POOL
        layers / ADD layers; the generator leaves out what a program does not need."""
        self.config = config
        self.tables, self.has_aux, self.adds = tables, aux, adds
        super().__init__({
            "add": In(stream.Signature(add_element_layout(config))),
            "param_free": Out(1),
            "desc": In(desc_layout(config)),
            "start": In(1),
            "done": Out(1),
            "i": In(stream.Signature(result_shape(config))),
            "flush": Out(1),
            "aux": In(stream.Signature(result_layout(config))),
            "table_write": In(TableWriteSignature),
            "param": Out(param_read_signature(config)),
            "write": Out(bank_write_signature(config, banked=True)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, d = self.config, self.desc
        rows, cols = cfg.rows, cfg.cols
        assert rows == cfg.banks, "a pass is one 2x2 pixel block"
        write_shape = write_layout(cfg)

        # Independent one-lane requantisers taken in turn.  Their latency is fixed and the
        # writer below never stalls, so their results leave one at a time, in order, and
        # nothing downstream applies back-pressure: the requantisers' stall logic and the
        # ready path through it vanish.
        # ADD elements bring a 32-bit table value as the accumulator.
        value_width = 32 if self.adds else cfg.acc_width
        single = cfg.with_(requant_lanes=1, acc_width=value_width)
        rqs = [Requantizer(single, digit_bits=cfg.requant_digit_bits, held_tensor=True)
               for _ in range(cfg.requant_lanes)]
        for k, rq in enumerate(rqs):
            m.submodules[f"requant{k}"] = rq
        if self.tables:
            m.submodules.table = table = ActivationTable(lanes=1)
            t_in, t_out = table.i, table.o
            m.d.comb += table.bypass.eq(~d.table)
            wiring.connect(m, wiring.flipped(self.table_write), table.write)
        else:
            vector = stream.Signature(data.ArrayLayout(signed(8), 1))
            t_in, t_out = vector.flip().create(), vector.create()
            m.d.comb += t_in.ready.eq(1)
            m.d.sync += [t_out.valid.eq(t_in.valid), t_out.p.eq(t_in.p)]
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=write_shape.size, depth=self.fifo_depth)

        # ---- the pass nest, as registers: slot of the pass, block column/row, channel group.
        running = Signal()
        fused, half = Signal(), Signal()            # per layer: pooled / one pixel per pass
        ow_odd, oh_odd = Signal(), Signal()         # the last block's second column/row is cut
        slot = Signal(range(rows * cols))
        row, col = slot[:2], slot[2:]
        pass_end = Signal()                         # slot is the pass's last
        needs_x = Signal()                          # slot may hold an element
        bx, by, g, share = (Loop(name, cfg.dim_bits) for name in ("bx", "by", "g", "share"))
        # Groups sharing weight words: the group's columns [lane_lo, lane_hi).  The output
        # addresses are those of the word's first group, so an element adds its column as is.
        lane_lo, lane_hi = Signal(range(cols + 1)), Signal(range(cols + 1))
        out = OutputAddress(m, cfg, d)

        pixel_ok = ~(row[0] & bx.last & ow_odd) & ~(row[1] & by.last & oh_odd)
        element = needs_x & (half | pixel_ok) & (col < out.ch_left) & (col >= lane_lo) & (col < lane_hi)

        # ---- X stage: one element, taken only when empty, so that ``i.ready`` is a function
        # of registers (an element moves on the cycle after it arrives; a fused pool's first
        # three values of a column only update the running max).
        x_valid = Signal()
        x_val = Signal(signed(value_width))
        x_param = Signal(cfg.param_addr_bits)
        x_write = Signal(write_shape)
        run_max = Signal(signed(cfg.acc_width))
        value = self.i.payload
        # The sign of a subtraction one bit wider than the operands: a plain carry chain,
        # where a ``>`` lets yosys spread the comparison over LUT levels.
        below = Signal(signed(cfg.acc_width + 1))
        m.d.comb += below.eq(value - run_max)
        bigger = Mux(below[-1], run_max, value)
        m.d.comb += self.i.ready.eq(running & ~(needs_x & x_valid) & ~self.flush)
        took = self.i.valid & self.i.ready
        with m.If(took):
            m.d.sync += run_max.eq(Mux(row == 0, value, bigger))
            with m.If(needs_x):
                m.d.sync += [
                    x_valid.eq(element),
                    x_val.eq(Mux(fused, bigger, value)),
                    x_param.eq(out.param_group + col),
                    x_write.bank.eq(Mux(half, (by.odd << 1) | bx.odd, row)),
                    x_write.addr.eq(out.pass_base + col),
                ]

        if self.adds:
            # ADD descriptors bring their elements ready-made; the X stage takes one when empty.
            m.d.comb += self.add.ready.eq(d.add & ~x_valid)
            with m.If(self.add.valid & self.add.ready):
                m.d.sync += [x_valid.eq(1), x_val.eq(self.add.p.acc), x_param.eq(self.add.p.param),
                             x_write.bank.eq(self.add.p.bank), x_write.addr.eq(self.add.p.addr)]

        # ---- P stage: the element waits one cycle for its parameters; its address enters
        # the FIFO as it moves here.
        p_valid = Signal()
        p_acc = Signal(signed(value_width))
        p_free = Signal()
        x_move = x_valid & p_free & fifo.w_rdy
        with m.If(x_move):
            m.d.sync += x_valid.eq(0)
        m.d.comb += [
            self.param.addr.eq(x_param),
            self.param.en.eq(p_free),
            fifo.w_en.eq(x_move),
            fifo.w_data.eq(x_write),
        ]
        with m.If(p_free):
            m.d.sync += [p_valid.eq(x_move), p_acc.eq(x_val)]
        m.d.comb += self.param_free.eq(~x_valid & ~p_valid)

        turn = Signal(range(len(rqs)))
        p_taken = []
        for k, rq in enumerate(rqs):
            lane = rq.i.p.lanes[0]
            m.d.comb += [
                rq.i.valid.eq(p_valid & (turn == k)),
                lane.acc.eq(p_acc),
                lane.bias.eq(self.param.data.bias),
                lane.multiplier.eq(self.param.data.multiplier),
                lane.shift.eq(self.param.data.shift),
                rq.i.p.zero_point.eq(d.zero_point),
                rq.i.p.act_min.eq(d.act_min),
                rq.i.p.act_max.eq(d.act_max),
                rq.i.p.single_rounding.eq(d.single_rounding),
                rq.o.ready.eq(1),
            ]
            p_taken.append(rq.i.valid & rq.i.ready)
        p_take = Signal()
        m.d.comb += [p_take.eq(Cat(p_taken).any()), p_free.eq(~p_valid | p_take)]
        with m.If(p_take):
            m.d.sync += turn.eq(Mux(turn == len(rqs) - 1, 0, turn + 1))

        # ---- into the table, then the writer, which takes every value the cycle it comes.
        # A requantised value finds its address readable in the FIFO: it was written as the
        # element entered the P stage, more than the requantiser's latency earlier.
        m.d.comb += t_in.valid.eq(Cat(rq.o.valid for rq in rqs).any())
        for rq in rqs:
            with m.If(rq.o.valid):
                m.d.comb += t_in.p[0].eq(rq.o.p[0])
        write = Signal(write_shape)
        m.d.comb += [
            write.eq(fifo.r_data),
            t_out.ready.eq(1),
            fifo.r_en.eq(t_out.valid),
        ]
        if self.has_aux:
            # POOL descriptors bring finished values and their addresses on ``aux`` instead;
            # the address waits beside the table for its value.
            aux_write = Signal(write_shape)
            with m.If(d.pool):
                m.d.sync += [aux_write.bank.eq(self.aux.p.bank), aux_write.addr.eq(self.aux.p.addr)]
                m.d.comb += [
                    t_in.valid.eq(self.aux.valid), t_in.p[0].eq(self.aux.p.value), self.aux.ready.eq(1),
                    write.eq(aux_write), fifo.r_en.eq(0),
                ]
        m.d.comb += [
            self.write.en.eq(t_out.valid),
            self.write.bank.eq(write.bank),
            self.write.addr.eq(write.addr),
            self.write.data.eq(t_out.p[0]),
        ]
        # Every element in flight is in the X stage or has its address in the FIFO; a
        # POOL value is in flight only in the table.
        m.d.comb += self.done.eq(~running & ~x_valid & (fifo.level == 0) & ~t_out.valid)

        # ---- the nest's registers: while idle they follow the descriptor, so they hold the
        # layer's start values when ``start`` sets ``running``.
        m.d.sync += self.flush.eq(took & pass_end)
        with m.If(self.start):
            m.d.sync += running.eq(1)
        with m.If(~running):
            m.d.sync += [
                slot.eq(0), pass_end.eq(0), fused.eq(d.fused_pool), half.eq(d.fused_pool | d.block1),
                needs_x.eq(~d.fused_pool), ow_odd.eq(d.ow[0]), oh_odd.eq(d.oh[0]),
                *bx.load(d.nbx), *by.load(d.nby), *g.load(d.groups), *share.load(d.word_groups),
                lane_lo.eq(0), lane_hi.eq(d.group_channels),
            ]
            out.load()
        with m.Elif(took):
            # A pass ends with its last column that holds an element: the array drops the
            # columns after it (``flush``), which depthwise groups and a layer's last channel
            # group leave empty.
            kept = Mux(lane_hi < out.ch_left, lane_hi, out.ch_left)
            m.d.sync += [slot.eq(Mux(pass_end, 0, slot + 1)), pass_end.eq(slot == kept * rows - 2),
                         needs_x.eq(Mux(fused, row == rows - 2, ~half | (row == rows - 1)))]
        with m.Elif(self.flush):
            # The cycle after a pass's last element, in which the drain takes nothing, steps
            # the output addresses by a block, a block row or a channel group (a one-pixel
            # pass every other pixel, where the parity banks wrap): from registers, not from
            # the cycle's handshake.
            with m.If(~bx.last):
                m.d.sync += bx.advance()
                out.next_block(~half | bx.odd)
            with m.Else():
                m.d.sync += bx.restart(d.nbx)
                out.rewind_row()
                with m.If(~by.last):
                    m.d.sync += by.advance()
                    out.next_row(~half | by.odd)
                with m.Else():
                    m.d.sync += by.restart(d.nby)
                    with m.If(~g.last):
                        m.d.sync += g.advance()
                        out.next_group()
                    with m.Else():
                        m.d.sync += running.eq(0)
            with m.If(bx.last & by.last):
                out.choose_step(share.next_last(1))
                with m.If(share.last):
                    m.d.sync += [*share.restart(d.word_groups), lane_lo.eq(0), lane_hi.eq(d.group_channels)]
                with m.Else():
                    m.d.sync += [*share.advance(), lane_lo.eq(lane_hi), lane_hi.eq(lane_hi + d.group_channels)]
        return m
