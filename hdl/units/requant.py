"""Per-channel TFLite requantiser (int32 accumulator -> int8) built without DSPs.

On the UP5K the MAC array owns all eight SB_MAC16, so the 32 x 31-bit multiply of
``MultiplyByQuantizedMultiplier`` is made of logic cells, where a parallel multiplier would
take a large share of the 5,280 LCs.  It is therefore digit-serial: each lane takes the
shifted accumulator ``x' = wrap32(x << left)`` ``digit_bits`` (k) bits per cycle, radix-4
Booth recoded, against the parallel 31-bit multiplier.  Serialising ``x'`` rather than the
multiplier has two payoffs: the left shift becomes a delay of the digit stream (no 32-bit
barrel shifter) and the int32 wrap is free (bits above 31 - left are never fed).  Requant-
isation runs after the 2x2 max pool (it is monotone), so its rate need is modest.

Arithmetic (proved bit-exact against :mod:`golden.quant` by ``tests/test_requant.py``):

* The serial loop computes ``G = floor(x' * m / 2**30)`` exactly, keeping one bit below the
  2**31 rounding point; the bits it shifts out are never needed again.
* gemmlowp's nudge rounds ties towards +inf, so ``high = floor((G + 1) / 2)`` and
  ``-high = floor((~G + 1) / 2)``: with ``s`` the sign of G and ``w = G ^ s`` (bitwise),
  ``|high| = floor((w + 1) / 2)`` and the result's sign is ``s``.
* RoundingDivideByPOT rounds half away from zero, i.e. symmetrically, so it runs on the
  magnitude: with ``t = w >> right``, ``|result| = (t >> 1) + (t[0] | (right > 0 and all
  shifted-out bits of w are ones))``.  Only ``|result| <= 256`` matters after the zero point
  and the int8 clamp, so the right shifter narrows as it goes and ORs the rest into an
  overflow flag.
* The single rounding of FULLY_CONNECTED (``single_rounding``), ``floor((x' * m +
  2**(30+right)) / 2**(31+right))`` when ``x << left`` does not wrap, equals ``floor((G +
  2**right) / 2**(1+right))`` (ties towards +inf; right = 0 for left shifts).
  For G < 0 its negation is ``floor((w + 2**right) / 2**(1+right))`` as well, so on the
  magnitude it is ``|result| = (t >> 1) + t[0]``: the double rounding without its
  all-ones term, and the same whenever right = 0.

* TFLite's activation bounds always contain the zero point (0.0 is representable), so the
  clamp only limits ``|result|`` to the headroom on the result's side of the zero point.

The lanes run in lockstep and share the control, the zero point and the activation bounds
(per-tensor in TFLite) and the rounding mode (per layer); accumulator, bias, multiplier and
shift are per lane (per channel).
"""

from amaranth.hdl import (
    Cat,
    Const,
    EnableInserter,
    Module,
    Mux,
    Signal,
    signed,
    unsigned,
)
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

#: Digit width of the default instance: a transfer every 8 cycles at 32 bits for about 500 LCs a lane
#: (bench/synth_requant.py measures the other widths).
DEFAULT_DIGIT_BITS = 4

#: Bits of the shifted magnitude ``t`` that matter: ``t >= 512`` already saturates int8.
_T_BITS = 9


def channel_layout(config):
    """One output channel's operands: ``acc + bias`` (wrapped to 32 bits) is requantised by
    ``multiplier`` (0 or [2**30, 2**31 - 1] from QuantizeMultiplier; any 31-bit value works)
    and ``shift`` (> 0: left shift before the multiply; domain [-31, 31])."""
    return data.StructLayout({
        "acc": signed(config.acc_width),
        "bias": signed(32),
        "multiplier": unsigned(31),
        "shift": signed(6),
    })


def payload_layout(config):
    """``config.requant_lanes`` channels plus the output tensor's zero point and fused
    activation bounds, shared by all lanes; ``act_min <= zero_point <= act_max``, as
    CalculateActivationRangeQuantized always gives.  ``single_rounding`` (per layer) selects
    FULLY_CONNECTED's single rounding over CONV_2D's double one; it is exact when
    ``wrap32(acc + bias) << left`` does not wrap, which the compiler guarantees."""
    return data.StructLayout({
        "lanes": data.ArrayLayout(channel_layout(config), config.requant_lanes),
        "zero_point": signed(8),
        "act_min": signed(8),
        "act_max": signed(8),
        "single_rounding": unsigned(1),
    })


def output_layout(config):
    """The int8 results, lane for lane."""
    return data.ArrayLayout(signed(8), config.requant_lanes)


class Requantizer(wiring.Component):
    """``o.payload[n] = golden.quant.requantize(wrap32(acc + bias), multiplier, shift,
    zero_point, act_min, act_max, single_rounding)`` of lane ``n``, for every input in the
    stated domains (with single rounding: where the left shift does not wrap).

    ``digit_bits`` (2, 4 or 8) trades logic for speed: a transfer (all lanes) is accepted
    every :attr:`interval` = ceil(requant_bits / digit_bits) cycles.  With
    ``config.requant_bits`` below 32 the results are exact only where x' = wrap32(acc + bias)
    << left fits that many bits, signed.  The whole unit stalls while a result waits on
    ``o.ready``, so ``i.ready`` follows ``o.ready`` combinationally.

    ``held_tensor``: the payload's zero point, bounds and rounding mode are the same for every
    transfer in flight and stay on ``i.payload`` until the last result has left (the drain's
    come from the layer's descriptor), so the unit reads them there and keeps no copies.
    """

    def __init__(self, config, digit_bits=DEFAULT_DIGIT_BITS, held_tensor=False):
        if digit_bits not in (2, 4, 8):
            raise ValueError(f"Requantizer: digit_bits must be 2, 4 or 8, got {digit_bits!r}")
        self.config = config
        self.digit_bits = digit_bits
        self.held_tensor = held_tensor
        # The post-processing reads a transfer's parameters up to 3 cycles after the
        # accumulator's last step, so they must last that long (see hand_over).
        assert self.steps >= 3, "requant_bits >= 17 makes at least 3 digits"
        super().__init__({
            "i": In(stream.Signature(payload_layout(config))),
            "o": Out(stream.Signature(output_layout(config))),
        })

    @property
    def lanes(self):
        return self.config.requant_lanes

    @property
    def steps(self):
        """Digits of x', one per cycle: as many as hold ``config.requant_bits`` (the compiler
        guarantees that x' fits them, sign included, so the top digit carries the sign)."""
        return -(-self.config.requant_bits // self.digit_bits)

    @property
    def interval(self):
        """Cycles between accepted transfers when inputs are waiting: one per digit (the next
        transfer is taken in the last step of the one before)."""
        return self.steps

    @property
    def outputs_per_cycle(self):
        """Sustained int8 results per cycle with a steady input and a ready consumer."""
        return self.lanes / self.interval

    @property
    def _depth(self):
        """Registers from the digit select to the accumulator: the digit, the Booth partial
        products and the adder tree that sums the digit's k/2 of them."""
        return 2 + (self.digit_bits // 2).bit_length() - 1

    @property
    def latency(self):
        """Cycles from an input transfer to ``o.valid``, without stalls: the serial steps,
        the digit, partial-product and adder-tree registers, and four post-processing ones."""
        return self.steps + self._depth + 4

    def elaborate(self, platform):
        m = Module()
        n, depth = self.steps, self._depth

        advance = Signal()                  # the enable of every register below
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)

        # ---- shared control: the serial step counter
        busy = Signal()
        step = Signal(range(n))
        last_step = Signal()
        take = Signal()
        m.d.comb += [
            last_step.eq(busy & (step == n - 1)),
            self.i.ready.eq(advance & (~busy | last_step)),
            take.eq(self.i.valid & self.i.ready),
        ]
        with m.If(busy):
            m.d.sync += step.eq(Mux(last_step, 0, step + 1))
        m.d.sync += busy.eq(take | (busy & ~last_step))

        # Flags of the digits down to the accumulator, then of the finished products.
        flags = data.StructLayout({"valid": 1, "last": 1})
        tags = [Signal(flags, name=f"tag{level}") for level in range(depth)]
        m.d.sync += [tags[0].valid.eq(busy), tags[0].last.eq(last_step)]
        m.d.sync += [later.eq(earlier) for earlier, later in zip(tags, tags[1:])]
        finished = tags[-1].valid & tags[-1].last
        post_valid = [Signal(name=f"post_valid{stage}") for stage in range(3)]
        m.d.sync += [post_valid[0].eq(finished), post_valid[1].eq(post_valid[0]),
                     post_valid[2].eq(post_valid[1]), self.o.valid.eq(post_valid[2])]

        # ---- per-transfer parameters.  They are loaded with the operands, which the next
        # transfer overwrites in this one's last step.  A copy taken at a point of the pipeline
        # lasts `interval` cycles, until the next transfer's copy at the same point, so copies
        # follow the transfer down the pipeline at most `interval` apart until one lasts to
        # the post-processing's last stage (3 cycles after the accumulator's last step).
        # The clamp needs only the headroom between the zero point and each bound.
        tensor = data.StructLayout({"zero_point": signed(8), "above": 8, "below": 8, "single": 1})
        job_tensor = Signal(tensor, reset_less=True)
        updates = [
            job_tensor.zero_point.eq(self.i.p.zero_point),
            job_tensor.above.eq(self.i.p.act_max - self.i.p.zero_point),
            job_tensor.below.eq(self.i.p.zero_point - self.i.p.act_min),
            job_tensor.single.eq(self.i.p.single_rounding),
        ]
        if self.held_tensor:
            m.d.comb += updates
        else:
            with m.If(take):
                m.d.sync += updates
        # Point p of the pipeline is p cycles after the last step: tags[p - 1] then holds it.
        points = [0]
        while points[-1] + n < depth + 3:
            points.append(min(points[-1] + n, depth))
        events = [last_step] + [tag.valid & tag.last for tag in tags]

        def hand_over(value, name):
            """``value`` (loaded on the transfer) as it stands for the post-processing."""
            for point in points:
                copy = Signal.like(value, name=f"{name}_at{point}", reset_less=True)
                with m.If(events[point]):
                    m.d.sync += copy.eq(value)
                value = copy
            return value

        tensor_post = job_tensor if self.held_tensor else hand_over(job_tensor, "tensor")
        for lane in range(self.lanes):
            self._lane(m, lane, step, busy, last_step, take, tags, finished, tensor_post, hand_over)

        return EnableInserter(advance)(m)

    def _lane(self, m, lane, step, busy, last_step, take, tags, finished, tensor, hand_over):
        k, n = self.digit_bits, self.steps
        log2_k = k.bit_length() - 1
        src = self.i.p.lanes[lane]

        def reg(shape, name):
            """A datapath register: only the flags need a reset."""
            return Signal(shape, name=f"l{lane}_{name}", reset_less=True)

        # ---- operands, loaded on the transfer.  x sits above k zero bits so that the digit
        # window at offset k - (left mod k) yields x << (left mod k); the zero digits that
        # precede it (left // k of them) complete x << left.
        left = Mux(src.shift > 0, src.shift[:5], 0)
        x_reg = reg(k * n + k, "x")                 # the digits never reach bits of x above k*n
        delay = reg(range(n), "delay")              # zero digits before x: left // k
        offset = reg(range(1, k + 1), "offset")     # digit window position: k - left % k
        feeding = reg(1, "feeding")                 # this step's digit comes from x
        mult = reg(31, "mult")
        right = reg(5, "right")
        with m.If(busy):
            m.d.sync += feeding.eq(step + 1 >= delay)
        with m.If(busy & feeding):
            m.d.sync += x_reg.eq(x_reg >> k)
        with m.If(take):                            # after the step's updates: it wins
            m.d.sync += [
                x_reg.eq(Cat(Const(0, k), (src.acc + src.bias)[:k * n])),
                delay.eq(left >> log2_k),
                offset.eq(k - left[:log2_k]),
                feeding.eq(left < k),
                mult.eq(src.multiplier),
                right.eq(Mux(src.shift < 0, -src.shift, 0)),
            ]
        right = hand_over(right, f"l{lane}_right")

        # ---- digit of x' (k bits, least significant first, zeros before x), registered with
        # its multiplier (the next transfer's replaces `mult` as the last digit is taken),
        # then radix-4 Booth recoded.
        digit = reg(k, "digit")
        digit_mult = reg(31, "digit_mult")
        m.d.sync += [digit.eq(Mux(feeding, x_reg.bit_select(offset, k), 0)), digit_mult.eq(mult)]
        below = reg(1, "below")                     # the bit under the digit (0 at the start)
        with m.If(tags[0].valid):
            m.d.sync += below.eq(Mux(tags[0].last, 0, digit[-1]))
        bits = Cat(below, digit)

        # Partial product i is digit_i * m * 4**i with digit_i in [-2, 2], stored as
        # pp_i = (|digit_i| * m) ^ neg_i over the full width, so it is one LUT per bit and
        # the + neg_i of the two's complement negation is left pending.  Shifted left by
        # 2i with neg_i filling the low bits, term i plus neg_i is exact.
        terms = []                                  # (value, its shift, pending negations)
        for i in range(k // 2):
            b0, b1, b2 = bits[2 * i], bits[2 * i + 1], bits[2 * i + 2]
            neg = b2 & ~(b1 & b0)
            zero = (b2 == b1) & (b1 == b0)
            double = (b1 == b0) & (b2 != b1)
            pp = reg(signed(33), f"pp{i}")
            neg_reg = reg(1, f"neg{i}")
            magnitude = Mux(double, Cat(Const(0, 1), digit_mult), digit_mult)
            with m.If(zero):
                m.d.sync += pp.eq(0)                # a synchronous reset: no LUT input
            with m.Else():
                m.d.sync += pp.eq(Cat(magnitude ^ neg.replicate(32), neg))
            m.d.sync += neg_reg.eq(neg)
            terms.append((pp, 2 * i, [neg_reg]))

        # ---- adder tree.  Every adder takes the lower term's first pending negation as its
        # carry-in; it then leaves the upper term's fill bits below the lower term's shift,
        # so each sum is kept at the lower shift (no adder bits spent on fill) and stays a
        # filled term.  There are exactly as many adders (tree plus loop) as negations.
        width = 31 + k                              # mod 2**width suffices, see acc
        level = 0
        while len(terms) > 1:
            level += 1
            paired = []
            for (a, shift_a, neg_a), (b, shift_b, neg_b) in zip(terms[::2], terms[1::2]):
                upper = Cat(neg_b[0].replicate(shift_b - shift_a), b).as_signed()
                total = reg(signed(min(max(len(a), len(upper)) + 1, width - shift_a)),
                            f"sum{level}_{len(paired)}")
                m.d.sync += total.eq(a + upper + neg_a[0])
                pending = [reg(1, f"neg{level}_{len(paired)}_{j}")
                           for j in range(len(neg_a) + len(neg_b) - 1)]
                m.d.sync += [p.eq(q) for p, q in zip(pending, neg_b + neg_a[1:])]
                paired.append((total, shift_a, pending))
            terms = paired
        (partial, _, (carry,)), = terms

        # ---- serial accumulation: acc_j = floor(x'_{<j} * m / 2**(k*j)), where x'_{<j} (the
        # low k*j bits of x', signed) * m lies in [-2**(k*j-1) m, 2**(k*j-1) m), so |acc| <= 2**30
        # and sums taken mod 2**(k+31) give it exactly.  The last step's sum goes to the
        # result register instead, and acc is cleared (a synchronous reset, so nothing sits
        # between acc and the adder) for the next transfer's first digit a cycle later.
        # There total = floor(x' * m / 2**(k*n - k)), and x' fits k*n bits, so G = floor(x' * m
        # / 2**30) is total without its low k - 2 + 32 - k*n bits, in k*n + 1 bits.
        loop = tags[-1]
        acc = reg(signed(31), "acc")
        total = Signal(signed(width), name=f"l{lane}_total")
        m.d.comb += total.eq(acc + partial + carry)
        with m.If(loop.valid & ~loop.last):
            m.d.sync += acc.eq(total >> k)
        with m.Else():
            m.d.sync += acc.eq(0)
        g = reg(signed(k * n + 1), "g")             # G
        with m.If(finished):
            m.d.sync += g.eq(total[k - 2 + 32 - k * n:])
        sign = g[-1]
        magnitude_bits = len(g) - 1

        # ---- post 1: sign and magnitude form, right shift by 16 if asked.  The single
        # rounding has no all-ones term, so ``ones`` starts false for it.
        w = g[:magnitude_bits] ^ sign.replicate(magnitude_bits)
        shifted, ovf, ones = self._shift_stage(w, Const(0, 1), ~tensor.single, right[4], 16)
        p1_t, p1_ovf = reg(len(shifted), "p1_t"), reg(1, "p1_ovf")
        p1_ones, p1_sign = reg(1, "p1_ones"), reg(1, "p1_sign")
        m.d.sync += [p1_t.eq(shifted), p1_ovf.eq(ovf), p1_ones.eq(ones), p1_sign.eq(sign)]

        # ---- post 2: the remaining right shifts by 8, 4, 2, 1; the clamp's headroom on the
        # result's side (act_min <= zero_point <= act_max), stored inverted for a compare.
        t, ovf, ones = p1_t, p1_ovf, p1_ones
        for bit in (3, 2, 1, 0):
            t, ovf, ones = self._shift_stage(t, ovf, ones, right[bit], 1 << bit)
        p2_t, p2_ovf, p2_inc, p2_sign = reg(_T_BITS, "p2_t"), reg(1, "p2_ovf"), reg(1, "p2_inc"), reg(1, "p2_sign")
        p2_room = reg(8, "p2_room")
        m.d.sync += [
            p2_t.eq(t), p2_ovf.eq(ovf), p2_sign.eq(p1_sign),
            p2_inc.eq(t[0] | (ones & (right != 0))),
            p2_room.eq(~Mux(p1_sign, tensor.below, tensor.above)),
        ]

        # ---- post 3: |result| = (t >> 1) + inc, clipped to the headroom; then
        # zp - |result| = zp + ~|result| + 1 lets one adder serve both signs.
        over = Signal(9, name=f"l{lane}_over")
        m.d.comb += over.eq(p2_t[1:] + p2_room + p2_inc)     # bit 8: |result| > headroom
        clip = p2_ovf | over[8]
        operand = Mux(clip, ~p2_room, p2_t[1:]) ^ p2_sign.replicate(8)
        m.d.sync += self.o.p[lane].eq(tensor.zero_point + operand + (Mux(clip, 0, p2_inc) ^ p2_sign))

    @staticmethod
    def _shift_stage(value, ovf, ones, enable, amount):
        """``value >> amount`` if ``enable``, cut to the bits that can still land inside
        ``_T_BITS`` (the rest set ``ovf`` when non-zero); ``ones`` stays true while every
        bit shifted out is a one."""
        keep = _T_BITS + amount - 1
        out = Mux(enable, value >> amount, value)
        return (out[:keep],
                ovf | out[keep:].any(),
                ones & (~enable | value[:amount].all()))
