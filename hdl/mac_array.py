"""Output-stationary systolic int8 MAC array with double-buffered, deskewed results.

Activations enter on the left and move right, weights enter on the top and move down, one
PE per cycle, so PE (r, c) sees term t at step t + r + c: the input skew and the systolic
hops are the same register chains, and no operand wire fans out across the array.  The
first/last/valid flags of term t travel along one diagonal chain that every PE taps at
its own depth r + c.

Each PE accumulates in logic (the SB_MAC16 accumulators are only 16 bits wide) and, one
step after its ``last`` term, copies the finished sum into its result register while the
accumulator already takes the next reduction's first term: reductions run back to back.
The result registers are the deskew: PE (0, 0) finishes first and its result waits until
PE (rows-1, cols-1) has finished too, then all rows*cols results leave as one transfer.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .dsp import DualMul8

_FLAGS = data.StructLayout({"valid": 1, "first": 1, "last": 1})


def term_layout(config):
    """One reduction step: ``rows`` activations, ``cols`` weights and the reduction bounds
    (``first`` starts a new sum, ``last`` ends it; a 1-term reduction sets both)."""
    operand = signed(config.operand_width)
    return data.StructLayout({
        "act": data.ArrayLayout(operand, config.rows),
        "weight": data.ArrayLayout(operand, config.cols),
        "first": 1,
        "last": 1,
    })


def result_layout(config):
    """All rows*cols dot products of one reduction; lane r*cols + c is act[r] . weight[c]."""
    return data.ArrayLayout(signed(config.acc_width), config.lanes)


class MacArray(wiring.Component):
    """``o.payload[r*cols + c]`` = sum over a reduction of ``act[r] * weight[c]``.

    The accumulators never wrap because they are never asked to: the compiler splits or
    rejects any reduction whose sum could exceed ``config.acc_limit`` in magnitude.

    Flow control: the array stalls as a whole (one enable, also the DSPs' CE) only when a
    finished reduction would overwrite results the consumer has not yet taken.  ``i.ready``
    also drops for a ``last`` term that follows the previous ``last`` by fewer than
    ``rows + cols - 1`` accepted terms, since PE (0, 0) would otherwise overwrite its
    result before the far corner has finished the previous reduction; reductions at
    least that long never wait.
    """

    def __init__(self, config):
        self.config = config
        # Two PEs per DSP; an odd lane count (generic target only) leaves one half idle.
        self._dsps = [DualMul8(config.target) for _ in range((config.lanes + 1) // 2)]
        super().__init__({
            "i": In(stream.Signature(term_layout(config))),
            "o": Out(stream.Signature(result_layout(config))),
        })

    @property
    def latency(self):
        """Cycles from the input transfer carrying ``last`` to ``o.valid``, without stalls:
        the skew to the far corner, the DSP pipeline, the accumulate and the result copy."""
        return self.config.rows + self.config.cols - 2 + self._dsps[0].latency + 2

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        rows, cols = cfg.rows, cfg.cols
        skew = rows + cols - 2          # depth of the far corner PE
        dsp_latency = self._dsps[0].latency

        enable = Signal()
        take = self.i.valid & self.i.ready

        def chain(name, head, length, shape, reset_less):
            """``head`` followed by ``length - 1`` registers, each one step later."""
            taps = [head] + [Signal(shape, name=f"{name}_{k}", reset_less=reset_less)
                             for k in range(1, length)]
            with m.If(enable):
                m.d.sync += [later.eq(earlier) for earlier, later in zip(taps, taps[1:])]
            return taps

        # flags[j] holds the flags of the term accepted j + 1 steps ago; a bubble has
        # valid = last = 0 (first only matters together with valid).
        flags_in = Signal(_FLAGS)
        m.d.comb += [
            flags_in.valid.eq(take),
            flags_in.first.eq(self.i.p.first),
            flags_in.last.eq(take & self.i.p.last),
        ]
        flags = chain("flags", flags_in, skew + dsp_latency + 2, _FLAGS, reset_less=False)[1:]

        operand = signed(cfg.operand_width)
        acts = [chain(f"act{r}", self.i.p.act[r], r + cols, operand, reset_less=True)
                for r in range(rows)]
        weights = [chain(f"weight{c}", self.i.p.weight[c], c + rows, operand, reset_less=True)
                   for c in range(cols)]

        for k, dsp in enumerate(self._dsps):
            m.submodules[f"dsp{k}"] = dsp
            m.d.comb += dsp.ce.eq(enable)

        for r in range(rows):
            for c in range(cols):
                lane = r * cols + c
                dsp, half = self._dsps[lane // 2], lane % 2
                depth = r + c
                m.d.comb += [
                    dsp.a[half].eq(acts[r][depth]),
                    dsp.b[half].eq(weights[c][depth]),
                ]
                product = dsp.p[half]
                step = flags[depth + dsp_latency - 1]      # aligned with the product
                done = flags[depth + dsp_latency]          # one step later: sum complete

                acc = Signal(signed(cfg.acc_width), name=f"acc{lane}", reset_less=True)
                result = Signal(signed(cfg.acc_width), name=f"result{lane}", reset_less=True)
                # Mux after the adder (not a masked accumulator before it), so the first-term
                # select folds into each iCE40 adder LUT: one logic cell per accumulator bit.
                with m.If(enable & step.valid):
                    m.d.sync += acc.eq(Mux(step.first, product, acc + product))
                with m.If(enable & done.last):
                    m.d.sync += result.eq(acc)
                m.d.comb += self.o.p[lane].eq(result)

        # Results are pending from the far corner's copy until the consumer takes them.
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(enable & flags[skew + dsp_latency].last):
            m.d.sync += self.o.valid.eq(1)

        copying = Cat(flags[depth + dsp_latency].last for depth in range(skew + 1)).any()
        m.d.comb += enable.eq(~(self.o.valid & ~self.o.ready & copying))

        recent_last = Cat(flags[j].last for j in range(skew)).any()
        m.d.comb += self.i.ready.eq(enable & ~(self.i.p.last & recent_last))
        return m
