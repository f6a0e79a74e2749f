"""Output-stationary int8 MAC array whose results leave through a shift chain.

Each term's ``rows`` activations and ``cols`` weights are broadcast: act[r] reaches the
``cols`` PEs of row r, weight[c] the ``rows`` PEs of column c, so every PE sees a term at
the same step and finishes a reduction at the same step.  (A systolic array would pass
the operands from PE to PE instead, but its input skew costs a register per operand and
PE hop, about a quarter of the array's logic cells at 4 x 4, and staggers the finishing
times; the fan-out is only ``rows`` or ``cols``.)

Each PE accumulates in logic (the SB_MAC16 accumulators are only 16 bits wide) and, one
step after the ``last`` term, copies the finished sum into its result register while the
accumulator already takes the next reduction's first term: reductions run back to back.

The result registers form one shift chain, read at its head one accumulator a transfer, so
the consumer needs no wide lane multiplexer; the chain runs in column-major lane order
(:func:`chain_order`).
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .dsp import DualMul8

_FLAGS = data.StructLayout({"valid": 1, "first": 1, "last": 1})


def term_layout(config):
    """One reduction step: ``rows`` activations, ``cols`` weights and the reduction bounds
    (``first`` starts a new sum, ``last`` ends it; a 1-term reduction sets both)."""
    return data.StructLayout({
        "act": data.ArrayLayout(signed(8), config.rows),
        "weight": data.ArrayLayout(signed(8), config.cols),
        "first": 1,
        "last": 1,
    })


def result_shape(config):
    """One dot product ``act[r] . weight[c]`` of a finished reduction."""
    return signed(config.acc_width)


def chain_order(config):
    """Lane ``r * cols + c`` of each transfer of a reduction, in order: column 0 rows 0 ..
    rows - 1, then column 1, ... (the rows of a column are one 2x2 pixel block)."""
    rows, cols = config.rows, config.cols
    return [(k % rows) * cols + k // rows for k in range(rows * cols)]


class MacArray(wiring.Component):
    """Every reduction leaves as ``rows * cols`` consecutive transfers of ``o`` (while
    ``o.ready`` is high), in :func:`chain_order`; lane ``r * cols + c`` is the sum over the
    reduction of ``act[r] * weight[c]``.

    The accumulators never wrap because they are never asked to: the compiler rejects any
    layer with an output channel whose sum could exceed ``config.acc_limit`` in magnitude
    (``sum(|w|) * 128``, whatever the activations).

    Flow control: the array stalls as a whole (one enable, also the DSPs' CE, and
    ``i.ready``) only when a finished reduction would be copied into a chain still holding
    results the consumer has not taken.  With a consumer that is always ready, reductions
    of at least :attr:`min_terms` terms never wait.  ``flush`` (a register of the consumer,
    high a cycle in which it takes nothing) drops the rest of the reduction in the chain:
    a consumer that needs only its first columns frees the chain for the next one early.
    """

    def __init__(self, config):
        self.config = config
        # Two PEs per DSP; an odd lane count (generic target only) leaves one half idle.
        self._dsps = [DualMul8(config.target) for _ in range((config.lanes + 1) // 2)]
        super().__init__({
            "i": In(stream.Signature(term_layout(config))),
            "o": Out(stream.Signature(result_shape(config))),
            "flush": In(1),
        })

    @property
    def latency(self):
        """Cycles from the input transfer carrying ``last`` to the first ``o.valid`` of its
        results, without stalls: the DSP pipeline, the accumulate and the result copy."""
        return self._dsps[0].latency + 2

    @property
    def min_terms(self):
        """Shortest reduction that streams back to back with a consumer that takes a result
        every cycle: the chain is free again ``lanes + 1`` cycles after a copy."""
        return self.config.lanes + 1

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        dsp_latency = self._dsps[0].latency

        # The global enable is a register: it is computed a cycle ahead from the next state
        # of the flags and of ``live``, so its fan-out starts at a flip-flop and ``i.ready``
        # is a flip-flop too.
        enable = Signal(init=1)

        # flags[j] holds the flags of the term accepted j + 1 steps ago; a bubble has
        # valid = last = 0 (first only matters together with valid).
        flags = [Signal(_FLAGS, name=f"flags_{j}") for j in range(dsp_latency + 1)]
        take = self.i.valid & self.i.ready
        with m.If(enable):
            m.d.sync += [
                flags[0].valid.eq(take),
                flags[0].first.eq(self.i.p.first),
                flags[0].last.eq(take & self.i.p.last),
                *(later.eq(earlier) for earlier, later in zip(flags, flags[1:])),
            ]
        step = flags[dsp_latency - 1]          # aligned with the products
        done = flags[dsp_latency]              # one step later: the sums are complete

        # live[k]: chain position k still holds a result the consumer has not taken; the
        # head is the last to leave, so ``live[0]`` low means the chain is free.
        live = Signal(cfg.lanes)
        copy = done.last & ~live[0]
        shift = self.o.valid & self.o.ready
        results = []
        for k, lane in enumerate(chain_order(cfg)):
            r, c = divmod(lane, cfg.cols)
            dsp, half = self._dsps[lane // 2], lane % 2
            m.d.comb += [dsp.a[half].eq(self.i.p.act[r]), dsp.b[half].eq(self.i.p.weight[c])]
            product = dsp.p[half]
            acc = Signal(signed(cfg.acc_width), name=f"acc{lane}", reset_less=True)
            # Mux after the adder (not a masked accumulator before it), so the first-term
            # select folds into each iCE40 adder LUT: one logic cell per accumulator bit.
            with m.If(enable & step.valid):
                m.d.sync += acc.eq(Mux(step.first, product, acc + product))
            results.append((acc, Signal(signed(cfg.acc_width), name=f"result{lane}", reset_less=True)))
        for k, (acc, result) in enumerate(results):
            # While the array is stalled the accumulators hold still, so a copy repeats.
            behind = results[k + 1][1] if k + 1 < len(results) else result
            with m.If(copy | shift):
                m.d.sync += result.eq(Mux(copy, acc, behind))

        for k, dsp in enumerate(self._dsps):
            m.submodules[f"dsp{k}"] = dsp
            m.d.comb += dsp.ce.eq(enable)

        next_live = Signal.like(live)
        with m.If(copy):
            m.d.comb += next_live.eq(-1)
        with m.Elif(self.flush):
            m.d.comb += next_live.eq(0)
        with m.Elif(shift):
            m.d.comb += next_live.eq(live >> 1)
        with m.Else():
            m.d.comb += next_live.eq(live)
        next_done = Mux(enable, step.last, done.last)
        m.d.sync += [live.eq(next_live), enable.eq(~(next_done & next_live[0]))]
        m.d.comb += [
            self.o.valid.eq(live[0]),
            self.o.payload.eq(results[0][1]),
            self.i.ready.eq(enable),
        ]
        return m
