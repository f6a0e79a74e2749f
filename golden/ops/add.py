"""ADD of two int8 tensors with TFLite's two-input rescaling (``reference_ops::Add`` for int8).

Prepare (``add.cc``): both inputs are scaled to twice the larger input scale after a left
shift of 20 bits, then the sum to the output scale; each multiplier comes from
``QuantizeMultiplierSmallerThanOneExp`` and is applied with the double-rounding
``MultiplyByQuantizedMultiplier``.  Shapes broadcast like NumPy (right-aligned, size-1 axes).
"""

from dataclasses import dataclass

import numpy as np

from ..model import Layer, ModelError, QParams, check, is_int8, shape_of
from ..quant import activation_range, multiply_by_quantized_multiplier, quantize_multiplier
from .common import ACTIVATION_CODES, activation_name, check_activation, rand_activation, rand_q

LEFT_SHIFT = 20


def add_params(q1, q2, out_q):
    """((m1, s1), (m2, s2), (m_out, s_out)) as TFLite's Prepare derives them; ModelError when
    the output multiplier is not below one (TFLite refuses the model then)."""
    twice_max = float(np.float32(2) * np.float32(max(q1.scale, q2.scale)))
    real = (q1.scale / twice_max, q2.scale / twice_max,
            twice_max / float(np.float32(1 << LEFT_SHIFT) * np.float32(out_q.scale)))
    if not real[2] < 1:
        raise ModelError(f"output scale {out_q.scale:.9g} is too small for the inputs' "
                         f"{max(q1.scale, q2.scale):.9g} (TFLite needs it above 2**-19 of theirs)")
    return tuple(quantize_multiplier(r) for r in real)


def add_int8(x1, x2, q1, q2, out_q, act_min, act_max):
    """The per-element arithmetic: int32 throughout, nothing wraps for int8 operands."""
    (m1, s1), (m2, s2), (mo, so) = add_params(q1, q2, out_q)
    a = (x1.astype(np.int64) - q1.zero_point) << LEFT_SHIFT
    b = (x2.astype(np.int64) - q2.zero_point) << LEFT_SHIFT
    raw = multiply_by_quantized_multiplier(a, m1, s1) + multiply_by_quantized_multiplier(b, m2, s2)
    y = multiply_by_quantized_multiplier(raw, mo, so) + out_q.zero_point
    return np.clip(y, act_min, act_max).astype(np.int8)


@dataclass(frozen=True, eq=False)
class Add(Layer):
    other_shape: tuple = ()
    input_q: QParams = None
    other_q: QParams = None
    output_q: QParams = None
    activation: str = "NONE"

    op = "ADD"
    TFLITE = {"ADD": ("AddOptions", ("FusedActivationFunction",), 1, (2, 2))}

    def __post_init__(self):
        object.__setattr__(self, "input_shape", shape_of(self.input_shape, self.name))
        object.__setattr__(self, "other_shape", shape_of(self.other_shape, self.name))
        check(all(is_int8(q) for q in (self.input_q, self.other_q, self.output_q)),
              f"{self.name}: ADD needs int8 inputs and output")
        check_activation(self)
        try:
            np.broadcast_shapes(self.input_shape, self.other_shape)
        except ValueError:
            raise ModelError(f"{self.name}: cannot broadcast {self.input_shape} with {self.other_shape}") from None
        try:
            add_params(self.input_q, self.other_q, self.output_q)
        except ModelError as e:
            raise ModelError(f"{self.name}: {e}") from None

    @property
    def input_specs(self):
        return ((self.input_shape, self.input_q), (self.other_shape, self.other_q))

    @property
    def output_shape(self):
        return tuple(np.broadcast_shapes(self.input_shape, self.other_shape))

    @property
    def act_range(self):
        return activation_range(self.activation, self.output_q.scale, self.output_q.zero_point)

    def run(self, x1, x2):
        n = x1.shape[0]
        a = x1.reshape((n,) + (1,) * (len(self.output_shape) - len(self.input_shape)) + self.input_shape)
        b = x2.reshape((n,) + (1,) * (len(self.output_shape) - len(self.other_shape)) + self.other_shape)
        return add_int8(a, b, self.input_q, self.other_q, self.output_q, *self.act_range)

    def features(self):
        return {self.op, ("activation", self.activation),
                ("ADD", "same shape" if self.input_shape == self.other_shape else "broadcast"),
                ("ADD", "same scale" if self.input_q.scale == self.other_q.scale else "different scales")}

    @classmethod
    def from_tflite(cls, r):
        o = r.options(required=False)
        a, b = r.data(0), r.data(1)
        return cls(r.name, a.shape, inputs=(a.name, b.name), other_shape=b.shape, input_q=a.q, other_q=b.q,
                   output_q=r.output.q, activation=activation_name(o.get("FusedActivationFunction", 0)))

    def to_tflite(self, w, ins, out):
        w.op(self.op, list(ins), [out], ("AddOptions", dict(
            FusedActivationFunction=ACTIVATION_CODES[self.activation])))

    @classmethod
    def random(cls, rng, g):
        """A residual join of two same-shape tensors, or a broadcast of a (1, .., 1, C) one over a map."""
        def vector(t):
            return len(t.shape) > 1 and all(d == 1 for d in t.shape[:-1])
        b = g.pick(where=vector) if rng.random() < 0.7 else None
        a = g.pick(where=lambda t: len(t.shape) == len(b.shape) and t.shape[-1] == b.shape[-1]
                   and t.name != b.name) if b is not None else None
        if a is None:
            a = g.pick()
            if a is None:
                return None
            same = [t for t in g.tensors if t.name != a.name and t.q is not None and t.shape == a.shape]
            if not same:
                return None
            b = same[int(rng.integers(len(same)))]
        if rng.random() < 0.5:
            a, b = b, a
        big = max(a.q.scale, b.q.scale)
        out_q = rand_q(rng, big * 0.05, big * 4)
        return cls(name=g.name("add"), input_shape=a.shape, inputs=(a.name, b.name), other_shape=b.shape,
                   input_q=a.q, other_q=b.q, output_q=out_q, activation=rand_activation(rng))
