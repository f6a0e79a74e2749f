"""CONCATENATION of int8 tensors along one axis.  TFLite's int8 kernel does not rescale: it
requires every input quantised like the output, so converters put a QUANTIZE before each
input of another scale (the generator does the same)."""

from dataclasses import dataclass

import numpy as np

from ..model import Layer, ModelError, QParams, check, is_int8, shape_of
from .common import KeepsQuantisation, activation_name


@dataclass(frozen=True, eq=False)
class Concatenation(KeepsQuantisation, Layer):
    others: tuple = ()        #: shapes of the inputs after the first
    axis: int = -1            #: batchless axis (negative counts from the end)
    q: QParams = None

    op = "CONCATENATION"
    TFLITE = {"CONCATENATION": ("ConcatenationOptions", ("Axis", "FusedActivationFunction"), 3, (1, None))}

    def __post_init__(self):
        object.__setattr__(self, "input_shape", shape_of(self.input_shape, self.name))
        object.__setattr__(self, "others", tuple(shape_of(s, self.name) for s in self.others))
        check(is_int8(self.q), f"{self.name}: CONCATENATION needs int8 quantisation parameters")
        rank = len(self.input_shape)
        check(-rank <= self.axis < rank, f"{self.name}: axis {self.axis} out of range for rank {rank}")
        object.__setattr__(self, "axis", self.axis % rank)
        for s in self.others:
            check(len(s) == rank and all(a == b for i, (a, b) in enumerate(zip(s, self.input_shape)) if i != self.axis),
                  f"{self.name}: cannot concatenate {self.input_shape} and {s} along axis {self.axis}")

    @property
    def input_specs(self):
        return tuple((s, self.q) for s in (self.input_shape,) + self.others)

    @property
    def output_shape(self):
        s = list(self.input_shape)
        s[self.axis] += sum(o[self.axis] for o in self.others)
        return tuple(s)

    def run(self, *xs):
        return np.concatenate(xs, axis=self.axis + 1)

    def features(self):
        return {self.op, ("CONCATENATION", "channels" if self.axis == len(self.input_shape) - 1 else "other axis"),
                ("CONCATENATION", f"{1 + len(self.others)} inputs" if len(self.others) < 3 else "many inputs")}

    @classmethod
    def from_tflite(cls, r):
        o = r.options()
        if activation_name(o["FusedActivationFunction"]) != "NONE":
            raise ModelError("a fused activation on int8 CONCATENATION is unsupported")
        xs = [r.data(k) for k in range(r.n_inputs)]
        for x in xs:
            if x.q != r.output.q:
                raise ModelError(f"input '{x.name}' is quantised unlike the output; TFLite's int8 kernel requires "
                                 "every input to match (requantise with QUANTIZE first)")
        axis = o["Axis"]
        rank = len(xs[0].shape) + 1
        if not -rank <= axis < rank or axis % rank == 0:
            raise ModelError(f"concatenation along axis {axis} is unsupported (batch or out of range)")
        return cls(r.name, xs[0].shape, inputs=tuple(x.name for x in xs), others=tuple(x.shape for x in xs[1:]),
                   axis=axis % rank - 1, q=r.output.q)

    def to_tflite(self, w, ins, out):
        w.op(self.op, list(ins), [out], ("ConcatenationOptions", dict(Axis=self.axis + 1, FusedActivationFunction=0)))

    @classmethod
    def random(cls, rng, g):
        """Joins tensors that agree but on the axis; those quantised unlike the first are
        requantised by a QUANTIZE the generator inserts (``g.requantize``)."""
        a = g.pick(max_rank=3)
        if a is None:
            return None
        axis = len(a.shape) - 1 if rng.random() < 0.75 else int(rng.integers(0, len(a.shape)))
        fits = [t for t in g.tensors if t.q is not None and len(t.shape) == len(a.shape) and
                all(x == y for i, (x, y) in enumerate(zip(t.shape, a.shape)) if i != axis)]
        parts = [a] + [fits[int(i)] for i in rng.integers(0, len(fits), size=int(rng.integers(1, 4)))]
        names = [g.requantize(t, a.q) for t in parts]
        return cls(name=g.name("concat"), input_shape=a.shape, inputs=tuple(names),
                   others=tuple(t.shape for t in parts[1:]), axis=axis, q=a.q)
