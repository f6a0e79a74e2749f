"""SOFTMAX over the last axis: the gemmlowp fixed-point reference (:mod:`golden.nonlinear`)."""

from dataclasses import dataclass

from ..model import Layer, ModelError, QParams, check, is_int8, shape_of
from ..nonlinear import softmax, softmax_params
from ..quant import f32


@dataclass(frozen=True, eq=False)
class Softmax(Layer):
    beta: float = 1.0
    input_q: QParams = None
    output_q: QParams = None

    op = "SOFTMAX"
    TFLITE = {"SOFTMAX": ("SoftmaxOptions", ("Beta",), 2, (1, 1))}

    def __post_init__(self):
        object.__setattr__(self, "input_shape", shape_of(self.input_shape, self.name))
        object.__setattr__(self, "beta", f32(self.beta))
        check(is_int8(self.input_q), f"{self.name}: SOFTMAX needs int8 quantisation parameters")
        want = QParams(1 / 256, -128)
        if self.output_q is None:
            object.__setattr__(self, "output_q", want)
        check(self.output_q == want, f"{self.name}: int8 SOFTMAX output must have scale 1/256 and zero point -128")
        try:
            softmax_params(self.input_q.scale, self.beta)
        except ValueError as e:
            raise ModelError(f"{self.name}: {e}") from None
        # TFLite's Q12.19 sum of exponentials overflows once 512 of them reach 1.
        check(self.input_shape[-1] < 512,
              f"{self.name}: SOFTMAX over {self.input_shape[-1]} values; TFLite's int8 kernel supports at most 511")

    def run(self, x):
        return softmax(x, self.input_q, self.beta)

    @classmethod
    def from_tflite(cls, r):
        x = r.data(0)
        return cls(r.name, x.shape, inputs=(x.name,), beta=r.options()["Beta"], input_q=x.q, output_q=r.output.q)

    def to_tflite(self, w, ins, out):
        w.op(self.op, [ins[0]], [out], ("SoftmaxOptions", dict(Beta=self.beta)))

    @classmethod
    def random(cls, rng, g):
        t = g.pick(max_last=40)
        if t is None:
            return None
        return cls(name=g.name("softmax"), input_shape=t.shape, inputs=(t.name,), input_q=t.q,
                   beta=float(rng.choice([1.0, 0.5, 2.0])))
