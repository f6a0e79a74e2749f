"""LOGISTIC and TANH: 256-entry tables (:mod:`golden.nonlinear`); TFLite fixes the int8 output
quantisation."""

from dataclasses import dataclass

import numpy as np

from ..model import Layer, QParams, check, is_int8, shape_of
from ..nonlinear import LOOKUP_OUTPUT, lookup_table


@dataclass(frozen=True, eq=False)
class Lookup(Layer):
    kind: str = "LOGISTIC"
    input_q: QParams = None
    output_q: QParams = None

    TFLITE = {"LOGISTIC": (None, (), 2, (1, 1)), "TANH": (None, (), 2, (1, 1))}

    def __post_init__(self):
        object.__setattr__(self, "input_shape", shape_of(self.input_shape, self.name))
        check(self.kind in LOOKUP_OUTPUT, f"{self.name}: unknown table op {self.kind}")
        check(is_int8(self.input_q), f"{self.name}: {self.kind} needs int8 quantisation parameters")
        want = QParams(*LOOKUP_OUTPUT[self.kind])
        if self.output_q is None:
            object.__setattr__(self, "output_q", want)
        check(self.output_q == want,
              f"{self.name}: int8 {self.kind} output must have scale {want.scale} and zero point "
              f"{want.zero_point}, got {self.output_q.scale} and {self.output_q.zero_point}")

    @property
    def op(self):
        return self.kind

    @property
    def table(self):
        return lookup_table(self.kind, self.input_q)

    def run(self, x):
        return self.table[x.astype(np.int16) + 128]

    @classmethod
    def from_tflite(cls, r):
        x = r.data(0)
        return cls(r.name, x.shape, inputs=(x.name,), kind=r.op, input_q=x.q, output_q=r.output.q)

    def to_tflite(self, w, ins, out):
        w.op(self.kind, [ins[0]], [out])

    @classmethod
    def random(cls, rng, g):
        t = g.pick()
        if t is None:
            return None
        return cls(name=g.name("lut"), input_shape=t.shape, inputs=(t.name,),
                   kind=str(rng.choice(list(LOOKUP_OUTPUT))), input_q=t.q)
