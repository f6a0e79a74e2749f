"""MEAN of int8 over any non-batch axes, keep_dims either way.

LiteRT's reference kernel (``reduce.cc`` -> ``reference_ops::QuantizedMeanOrSum``) takes one
integer path for every int8 case: the raw values summed in int32, the element count N
folded into the multiplier of ``input_scale / output_scale`` (shifted up by
``s = min(floor(log2 N), 32, 31 + shift)`` bits, divided by N truncating), then the
double-rounding ``MultiplyByQuantizedMultiplier`` on ``sum - zp_in * N``.  Older
TensorFlow releases had three different paths; the runtime here no longer does.
"""

from dataclasses import dataclass

import numpy as np

from ..model import Layer, ModelError, QParams, check, is_int8, shape_of
from ..quant import multiply_by_quantized_multiplier, quantize_multiplier
from .common import rand_q


def mean_multiplier(in_q, out_q, count):
    """(multiplier, shift) with 1/count folded in, as QuantizedMeanOrSum derives them."""
    mult, shift = quantize_multiplier(float(in_q.scale) / float(out_q.scale))
    s = min(int(count).bit_length() - 1, 32, 31 + shift)
    return (mult << s) // count, shift - s


def mean_int8(total, count, in_q, out_q):
    """int32 sums of ``count`` raw int8 values -> int8 means."""
    mult, shift = mean_multiplier(in_q, out_q, count)
    y = multiply_by_quantized_multiplier(np.asarray(total, np.int64) - in_q.zero_point * count, mult, shift)
    return np.clip(y + out_q.zero_point, -128, 127).astype(np.int8)


@dataclass(frozen=True, eq=False)
class Mean(Layer):
    axes: tuple = (0, 1)      #: batchless axes reduced
    keep_dims: bool = True
    input_q: QParams = None
    output_q: QParams = None

    op = "MEAN"
    TFLITE = {"MEAN": ("ReducerOptions", ("KeepDims",), 2, (2, 2))}

    def __post_init__(self):
        object.__setattr__(self, "input_shape", shape_of(self.input_shape, self.name))
        rank = len(self.input_shape)
        check(len(self.axes) >= 1 and all(-rank <= a < rank for a in self.axes),
              f"{self.name}: axes {tuple(self.axes)} out of range for a rank-{rank} input")
        object.__setattr__(self, "axes", tuple(sorted({int(a) % rank for a in self.axes})))
        object.__setattr__(self, "keep_dims", bool(self.keep_dims))
        check(is_int8(self.input_q) and is_int8(self.output_q), f"{self.name}: MEAN needs int8 input and output")
        check(self.keep_dims or len(self.axes) < rank, f"{self.name}: MEAN over every axis leaves a scalar; "
                                                       "only batch-1 tensors of rank >= 2 are supported")
        _, shift = quantize_multiplier(float(self.input_q.scale) / float(self.output_q.scale))
        check(shift <= 30, f"{self.name}: input/output scale ratio needs a left shift of {shift} bits")

    @property
    def count(self):
        return int(np.prod([self.input_shape[a] for a in self.axes]))

    @property
    def output_shape(self):
        if self.keep_dims:
            return tuple(1 if i in self.axes else d for i, d in enumerate(self.input_shape))
        return tuple(d for i, d in enumerate(self.input_shape) if i not in self.axes)

    def run(self, x):
        total = x.astype(np.int64).sum(axis=tuple(a + 1 for a in self.axes), keepdims=self.keep_dims)
        return mean_int8(total, self.count, self.input_q, self.output_q)

    def features(self):
        spatial = len(self.input_shape) == 3 and self.axes == (0, 1)
        return {self.op, ("MEAN", "keep_dims" if self.keep_dims else "drop dims"),
                ("MEAN", "spatial" if spatial else "other axes"),
                ("MEAN", "same quantisation" if self.input_q == self.output_q else "rescaled")}

    @classmethod
    def from_tflite(cls, r):
        x = r.data(0)
        axes = r.const(1, ("int32", "int64")).reshape(-1)
        rank = len(x.shape) + 1
        if axes.size == 0:
            raise ModelError("MEAN over no axes is unsupported")
        if any(not -rank <= int(a) < rank or int(a) % rank == 0 for a in axes):
            raise ModelError(f"MEAN over axes {axes.tolist()} is unsupported (batch axis or out of range)")
        return cls(r.name, x.shape, inputs=(x.name,), axes=tuple(int(a) % rank - 1 for a in axes),
                   keep_dims=bool(r.options(required=False).get("KeepDims", False)), input_q=x.q,
                   output_q=r.output.q)

    def to_tflite(self, w, ins, out):
        axes = w.const(f"{self.name}/axes", np.array([a + 1 for a in self.axes], np.int32), "int32")
        w.op(self.op, [ins[0], axes], [out], ("ReducerOptions", dict(KeepDims=self.keep_dims)))

    @classmethod
    def random(cls, rng, g):
        t = g.pick(min_rank=2, max_rank=3)
        if t is None:
            return None
        rank = len(t.shape)
        if rank == 3 and rng.random() < 0.7:
            axes = (0, 1)
        else:
            axes = tuple(sorted(rng.choice(rank, size=int(rng.integers(1, rank)), replace=False).tolist()))
        out_q = t.q if rng.random() < 0.3 else rand_q(rng, t.q.scale * 0.2, t.q.scale * 5)
        return cls(name=g.name("mean"), input_shape=t.shape, inputs=(t.name,), axes=axes,
                   keep_dims=bool(rng.random() < 0.5), input_q=t.q, output_q=out_q)
