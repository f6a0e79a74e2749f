"""Window reducer for MAX_POOL_2D / AVERAGE_POOL_2D on a stream of int8 channel vectors."""

from amaranth.hdl import C, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out


class PoolMode(enum.Enum, shape=1):
    """The reduction of a pooling layer (TFLite MAX_POOL_2D or AVERAGE_POOL_2D)."""
    MAX = 0
    AVERAGE = 1


def window_layout(lanes):
    """One element of a pooling window: a channel vector and the window's boundary flags."""
    return data.StructLayout({
        "data": data.ArrayLayout(signed(8), lanes),
        "first": 1,
        "last": 1,
    })


def biased_sums_layout(lanes, max_window):
    """A finished window: the element count and, per lane, ``sum(x + 128) + (count - 1) // 2``."""
    return data.StructLayout({
        "sums": data.ArrayLayout(unsigned((256 * max_window - 1).bit_length()), lanes),
        "count": unsigned(max_window.bit_length()),
    })


class RoundingDivider(wiring.Component):
    """Per lane ``clamp(round(sum / count))`` with TFLite's AVERAGE_POOL rounding.

    TFLite computes ``(sum +- count // 2) / count`` with C division (away from zero on
    ties).  Offsetting every element by 128 makes it unsigned: with ``U = sum + 128 count``
    the result plus 128 is ``floor((U + c) / count)``, ``c = count // 2`` when ``sum > 0``
    and ``(count - 1) // 2`` otherwise.  The input already carries ``(count - 1) // 2`` (the
    accumulator adds it for free), a restoring divider resolves the 8 quotient bits, and the
    extra 1 of even counts with ``sum > 0`` is added afterwards: it only matters when the
    remainder is ``count - 1``, where ``sum > 0`` is exactly "quotient >= 128".  Exact for
    every sum a window of ``count <= max_window`` int8 values has; a MAX result passes
    through as a division by 1.  The result is clamped to [``act_min``, ``act_max``], layer
    settings that change only while the unit is empty.

    Pipeline: one register per quotient bit (two restoring steps miss 48 MHz on the UP5K),
    then rounding and clamp, all moving together while the output register is free.
    """

    def __init__(self, lanes, max_window):
        self.lanes = lanes
        self.max_window = max_window
        super().__init__({
            "i": In(stream.Signature(biased_sums_layout(lanes, max_window))),
            "o": Out(stream.Signature(data.ArrayLayout(signed(8), lanes))),
            "act_min": In(signed(8)),
            "act_max": In(signed(8)),
        })

    @property
    def latency(self):
        """Cycles from an accepted input transfer to its result on ``o``."""
        return 8 + 1

    def elaborate(self, platform):
        m = Module()
        lanes, maxw = self.lanes, self.max_window
        count_shape = unsigned(maxw.bit_length())
        high_bits = (2 * maxw - 1).bit_length()     # r >> j < 2n while resolving quotient bit j
        rem_bits = (maxw - 1).bit_length()          # remainder < n

        # The stages move together whenever the output register is free (one enable for all,
        # so o.ready reaches every register through a single gate).
        advance = Signal()
        valid = Signal(self.latency)
        m.d.comb += [
            advance.eq(~self.o.valid | self.o.ready),
            self.i.ready.eq(advance),
            self.o.valid.eq(valid[-1]),
        ]
        with m.If(advance):
            m.d.sync += valid.eq(Cat(self.i.valid, valid[:-1]))

        # Divider stages, one per quotient bit j from 7 down to 0.  The divisor travels with
        # two tie remainders: the final remainder is count - 1 exactly when the last step's
        # partial remainder ``high`` is count - 1 or 2 count - 1, a check that runs beside
        # that step's subtraction.
        divisor_layout = data.StructLayout({"n": count_shape, "n_less": count_shape,
                                            "twice_less": unsigned(high_bits)})
        count = self.i.payload.count
        div = Signal(divisor_layout)
        m.d.comb += [div.n.eq(count), div.n_less.eq(count - 1), div.twice_less.eq((count << 1) - 1)]
        rems = [self.i.payload.sums[lane] for lane in range(lanes)]
        quots = [Cat() for _ in range(lanes)]
        tie_up = [Signal(name=f"tie_up{lane}", reset_less=True) for lane in range(lanes)]
        for j in reversed(range(8)):
            next_rems, next_quots = [], []
            for lane in range(lanes):
                # Named wires keep the simulator's expression trees linear in depth.
                high = Signal(high_bits, name=f"high{j}_{lane}")
                diff = Signal(signed(high_bits + 1), name=f"diff{j}_{lane}")
                m.d.comb += [high.eq(rems[lane][j:]), diff.eq(high - div.n)]
                fits = ~diff[-1]
                quot = Signal(8 - j, name=f"quot{j}_{lane}", reset_less=True)
                next_quots.append(quot)
                with m.If(advance):
                    m.d.sync += quot.eq(Cat(fits, quots[lane]))
                if j:
                    rem = Signal(j + rem_bits, name=f"rem{j}_{lane}", reset_less=True)
                    next_rems.append(rem)
                    kept = Mux(fits, diff[:rem_bits], high[:rem_bits])
                    with m.If(advance):
                        m.d.sync += rem.eq(Cat(rems[lane][:j], kept))
                else:
                    tie = (high == div.n_less) | (high == div.twice_less)
                    with m.If(advance):
                        m.d.sync += tie_up[lane].eq(~div.n[0] & tie & quots[lane][-1])
            if j:
                next_div = Signal(divisor_layout, name=f"divisor{j}", reset_less=True)
                with m.If(advance):
                    m.d.sync += next_div.eq(div)
                div = next_div
            rems, quots = next_rems, next_quots

        # Last stage: round ties up when TFLite does, clamp (still offset by 128), back to
        # int8.  The bound checks take the correction as a carry-in, beside the increment;
        # their addends are registered, since the settings are static while windows flow.
        bounds = Signal(data.StructLayout({"lo": 8, "hi": 8, "minus_lo": 9, "minus_hi": 8}),
                        reset_less=True)
        lo = self.act_min.as_unsigned() ^ 0x80
        hi = self.act_max.as_unsigned() ^ 0x80
        m.d.sync += [bounds.lo.eq(lo), bounds.hi.eq(hi),
                     bounds.minus_lo.eq(0x100 - lo), bounds.minus_hi.eq(0xFF - hi)]
        result = Signal.like(self.o.payload, reset_less=True)
        m.d.comb += self.o.payload.eq(result)
        for lane in range(lanes):
            q, t = quots[lane], tie_up[lane]
            rounded = Signal(8, name=f"rounded{lane}")
            reaches_lo = Signal(9, name=f"reaches_lo{lane}")      # bit 8: q + t >= lo
            passes_hi = Signal(9, name=f"passes_hi{lane}")        # bit 8: q + t > hi
            m.d.comb += [
                rounded.eq(q + t),
                reaches_lo.eq(q + bounds.minus_lo + t),
                passes_hi.eq(q + bounds.minus_hi + t),
            ]
            clamped = Mux(~reaches_lo[8], bounds.lo, Mux(passes_hi[8], bounds.hi, rounded))
            with m.If(advance):
                m.d.sync += result[lane].eq((clamped ^ 0x80).as_signed())
        return m


class Pool(wiring.Component):
    """Reduces each window of ``i`` (``first`` ... ``last``) to one vector on ``o``.

    The sequencer delivers only the valid (unpadded) elements of a window, so their number
    ``n`` is TFLite's ``filter_count``; ``n`` may be 1 ... ``max_window`` (more is
    undefined), a single-element window has ``first`` and ``last`` both set, and a window
    may follow the previous one with no idle cycle.  MAX emits the largest element, AVERAGE
    TFLite's ``(sum +- n/2) / n`` (C division); both are then clamped to
    [``act_min``, ``act_max``].  ``mode``, ``act_min`` and ``act_max`` are layer settings:
    change them only while no window is in the unit.

    The accumulator keeps, per lane, the running max or sum of ``u = x + 128`` (the sign
    bit inverted, so everything is unsigned) and hands each finished window to a
    :class:`RoundingDivider` (as a division by 1 for MAX).  A MAX lane only loads when the
    new element is larger.  The sum is kept doubled with one extra half per element after
    the first, ``2 sum(u) + n - 1``, which leaves exactly the divider's rounding bias
    ``(n - 1) // 2`` in the integer part at no cost.  The accumulator holds a finished
    window until the divider takes it, so back-pressure on ``o`` stops ``i`` only then.
    """

    def __init__(self, lanes, max_window=16):
        if not isinstance(lanes, int) or lanes < 1:
            raise ValueError(f"Pool: lanes must be a positive int, got {lanes!r}")
        if not isinstance(max_window, int) or max_window < 1:
            raise ValueError(f"Pool: max_window must be a positive int, got {max_window!r}")
        self.lanes = lanes
        self.max_window = max_window
        self._divider = RoundingDivider(lanes, max_window)
        super().__init__({
            "i": In(stream.Signature(window_layout(lanes))),
            "o": Out(stream.Signature(data.ArrayLayout(signed(8), lanes))),
            "mode": In(PoolMode),
            "act_min": In(signed(8)),
            "act_max": In(signed(8)),
        })

    @property
    def latency(self):
        """Cycles from accepting a window's ``last`` element to its result on ``o``."""
        return 1 + self._divider.latency

    def elaborate(self, platform):
        m = Module()
        m.submodules.divider = divider = self._divider
        wiring.connect(m, divider.o, wiring.flipped(self.o))
        m.d.comb += [
            divider.act_min.eq(self.act_min),
            divider.act_max.eq(self.act_max),
        ]

        count = Signal.like(divider.i.payload.count)
        m.d.comb += [
            self.i.ready.eq(~divider.i.valid | divider.i.ready),
            divider.i.payload.count.eq(count),
        ]
        accept = self.i.valid & self.i.ready
        averaging = self.mode == PoolMode.AVERAGE
        restart = self.i.payload.first | ~averaging         # MAX loads a larger x afresh
        with m.If(self.i.ready):
            m.d.sync += divider.i.valid.eq(self.i.valid & self.i.payload.last)
        with m.If(accept):
            m.d.sync += count.eq(Mux(restart, 1, count + 1))
        for lane in range(self.lanes):
            twice = Signal(len(divider.i.payload.sums[lane]) + 1, name=f"twice{lane}", reset_less=True)
            m.d.comb += divider.i.payload.sums[lane].eq(twice[1:])
            u = self.i.payload.data[lane].as_unsigned() ^ 0x80
            larger = Signal(signed(9), name=f"larger{lane}")
            m.d.comb += larger.eq(twice[1:9] - u)          # negative when u is the new max
            with m.If(accept & (self.i.payload.first | averaging | larger[-1])):
                m.d.sync += twice.eq(Mux(restart, Cat(C(0, 1), u), twice + Cat(C(1, 1), u)))
        return m
