"""PAD and PADV2 on int8 tensors: PAD fills with the zero point (a real 0), PADV2 with its
constant operand (an int8 of the same quantisation).  The batch axis is never padded."""

from dataclasses import dataclass

import numpy as np

from ..model import Layer, ModelError, QParams, check, is_int8, shape_of
from .common import KeepsQuantisation, same_q


@dataclass(frozen=True, eq=False)
class Pad(KeepsQuantisation, Layer):
    paddings: tuple = ()      #: ((before, after), ...) per axis, batch excluded
    value: int = None         #: PADV2's constant; None for PAD (the zero point)
    q: QParams = None

    TFLITE = {"PAD": (None, (), 2, (2, 2)), "PADV2": (None, (), 2, (2, 3))}

    def __post_init__(self):
        object.__setattr__(self, "input_shape", shape_of(self.input_shape, self.name))
        check(is_int8(self.q), f"{self.name}: PAD needs int8 quantisation parameters")
        pads = tuple((int(a), int(b)) for a, b in self.paddings)
        object.__setattr__(self, "paddings", pads)
        check(len(pads) == len(self.input_shape),
              f"{self.name}: {len(pads)} padding pairs for a rank-{len(self.input_shape)} input")
        check(all(a >= 0 and b >= 0 for a, b in pads), f"{self.name}: negative padding {pads}")
        check(self.value is None or -128 <= self.value <= 127, f"{self.name}: PADV2 constant {self.value} is not int8")

    @property
    def op(self):
        return "PAD" if self.value is None else "PADV2"

    @property
    def fill(self):
        return self.q.zero_point if self.value is None else self.value

    @property
    def output_shape(self):
        return tuple(d + a + b for d, (a, b) in zip(self.input_shape, self.paddings))

    def run(self, x):
        return np.pad(x, ((0, 0),) + self.paddings, constant_values=np.int8(self.fill))

    def features(self):
        return {self.op, ("PAD", "fill = zero point" if self.fill == self.q.zero_point else "other fill")}

    @classmethod
    def from_tflite(cls, r):
        x = r.data(0)
        same_q(x.q, r.output.q, r.op)
        pads = r.const(1, ("int32", "int64"))
        if pads.shape != (len(x.shape) + 1, 2):
            raise ModelError(f"paddings tensor has shape {list(pads.shape)}, expected [{len(x.shape) + 1}, 2]")
        if pads[0].any():
            raise ModelError("padding the batch dimension is unsupported")
        value = None
        if r.op == "PADV2" and r.n_inputs > 2 and r.has_input(2):
            c = r.const(2, ("int8",))
            if r.const_q(2) != x.q:
                raise ModelError("PADV2 constant is not quantised like the input (TFLite requires it)")
            if c.size != 1:
                raise ModelError("PADV2 constant must be a single value")
            value = int(c.reshape(-1)[0])
        return cls(r.name, x.shape, inputs=(x.name,), paddings=tuple(map(tuple, pads[1:])), value=value, q=x.q)

    def to_tflite(self, w, ins, out):
        pads = w.const(f"{self.name}/paddings", np.array(((0, 0),) + self.paddings, np.int32), "int32")
        if self.value is None:
            w.op("PAD", [ins[0], pads], [out])
        else:
            value = w.const(f"{self.name}/constant", np.array([self.value], np.int8), "int8",
                            scales=[self.q.scale], zero_points=[self.q.zero_point])
            w.op("PADV2", [ins[0], pads, value], [out])

    @classmethod
    def random(cls, rng, g):
        t = g.pick(max_rank=3)
        if t is None:
            return None
        pads = tuple((int(rng.integers(0, 3)), int(rng.integers(0, 3))) for _ in t.shape)
        if len(t.shape) == 3 and rng.random() < 0.5:
            pads = pads[:2] + ((0, 0),)                   # spatial only, as before a VALID conv
        value = None if rng.random() < 0.5 else (t.q.zero_point if rng.random() < 0.5 else int(rng.integers(-128, 128)))
        return cls(name=g.name("pad"), input_shape=t.shape, inputs=(t.name,), paddings=pads, value=value, q=t.q)
