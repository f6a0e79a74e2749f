"""QUANTIZE and DEQUANTIZE: float32 edges around an int8 body, uint8/int8 conversions at the
model's edges, and int8 -> int8 requantisation inside the graph.

TFLite (``quantize.cc``, ``dequantize.cc``, reference kernels):

* float -> int: ``AffineQuantize``: ``round(value / scale) + zero_point`` with the division in
  float32 and ``round`` half away from zero, clamped to the output type;
* int -> int (int8/uint8 either way): ``Requantize``: the multiplier ``QuantizeMultiplier(
  input_scale / output_scale)`` (in double) applied to ``value - input_zp`` with the
  double-rounding ``MultiplyByQuantizedMultiplier``, plus the output zero point, clamped;
* int -> float: ``Dequantize``: ``float(double(scale) * (value - zero_point))``.
"""

from dataclasses import dataclass

import numpy as np

from ..model import Layer, ModelError, QParams, check, dtype_of, shape_of, type_name
from ..quant import multiply_by_quantized_multiplier, quantize_multiplier, tflite_round
from .common import rand_q


def quantize_float(x, q):
    """AffineQuantize: the quotient rounded in float32, the zero point added and clamped in
    double, so values far outside the range (and infinities) saturate."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        r = tflite_round(np.asarray(x, np.float32) / np.float32(q.scale)).astype(np.float32)
    lo, hi = q.range
    return np.clip(r.astype(np.float64) + q.zero_point, lo, hi).astype(dtype_of(q))


def requantize_int(x, in_q, out_q):
    m, s = quantize_multiplier(float(in_q.scale) / float(out_q.scale))
    y = multiply_by_quantized_multiplier(x.astype(np.int64) - in_q.zero_point, m, s) + out_q.zero_point
    lo, hi = out_q.range
    return np.clip(y, lo, hi).astype(dtype_of(out_q))


def dequantize(x, q):
    return (float(q.scale) * (x.astype(np.float64) - q.zero_point)).astype(np.float32)


@dataclass(frozen=True, eq=False)
class Quantize(Layer):
    input_q: QParams = None       #: None: float32 input
    output_q: QParams = None      #: None: float32 output (DEQUANTIZE)

    TFLITE = {"QUANTIZE": (None, (), 2, (1, 1)), "DEQUANTIZE": (None, (), 2, (1, 1))}

    def __post_init__(self):
        object.__setattr__(self, "input_shape", shape_of(self.input_shape, self.name))
        check(self.input_q is not None or self.output_q is not None, f"{self.name}: float32 to float32 is no QUANTIZE")
        for q in (self.input_q, self.output_q):
            check(q is None or isinstance(q, QParams), f"{self.name}: bad quantisation parameters {q!r}")
        if self.input_q is not None and self.output_q is not None:
            m = float(self.input_q.scale) / float(self.output_q.scale)
            _, shift = quantize_multiplier(m)
            check(shift <= 30, f"{self.name}: requantising by {m:.3g} needs a left shift of {shift} bits, "
                               "beyond TFLite's int32 arithmetic")

    @property
    def op(self):
        return "DEQUANTIZE" if self.output_q is None else "QUANTIZE"

    def run(self, x):
        if self.output_q is None:
            return dequantize(x, self.input_q)
        if self.input_q is None:
            return quantize_float(x, self.output_q)
        return requantize_int(x, self.input_q, self.output_q)

    def features(self):
        return {self.op, (self.op, f"{type_name(self.input_q)} -> {type_name(self.output_q)}")}

    @classmethod
    def from_tflite(cls, r):
        x, y = r.data(0), r.output
        if r.op == "DEQUANTIZE" and (x.q is None or y.q is not None):
            raise ModelError(f"DEQUANTIZE from {type_name(x.q)} to {type_name(y.q)} is unsupported")
        if r.op == "QUANTIZE" and y.q is None:
            raise ModelError("QUANTIZE to float32 is unsupported")
        return cls(r.name, x.shape, inputs=(x.name,), input_q=x.q, output_q=y.q)

    def to_tflite(self, w, ins, out):
        w.op(self.op, [ins[0]], [out])

    @classmethod
    def random(cls, rng, g):
        """An int8 -> int8 requantisation inside the graph (the edges are the generator's)."""
        t = g.pick()
        if t is None:
            return None
        return cls(name=g.name("requant"), input_shape=t.shape, inputs=(t.name,), input_q=t.q,
                   output_q=rand_q(rng, t.q.scale * 0.1, t.q.scale * 10))
