"""RESHAPE, EXPAND_DIMS and SQUEEZE: views that relabel an NHWC buffer; no byte moves.

All three become one :class:`Reshape` whose ``op`` remembers which the file used; the new
shape is the output tensor's, so TF's SHAPE -> STRIDED_SLICE -> PACK chain feeding a
Flatten's shape input needs no evaluating.
"""

from dataclasses import dataclass

import numpy as np

from ..model import Layer, QParams, check, shape_of
from .common import KeepsQuantisation, same_q

VIEW_OPS = ("RESHAPE", "EXPAND_DIMS", "SQUEEZE")


def _expand_axis(before, after):
    """Axis of (1, *before) at which EXPAND_DIMS gives (1, *after), or None."""
    for axis in range(1, len(before) + 1):
        if before[:axis] + (1,) + before[axis:] == after:
            return axis
    return None


def _squeeze_dims(before, after):
    """Axes of (1, *before) SQUEEZE drops to leave (1, *after), or None."""
    dims, j = [], 0
    for i, d in enumerate(before):
        if j < len(after) and after[j] == d:
            j += 1
        elif d == 1:
            dims.append(i)
        else:
            return None
    return dims if dims and j == len(after) else None


@dataclass(frozen=True, eq=False)
class Reshape(KeepsQuantisation, Layer):
    new_shape: tuple = ()
    q: QParams = None
    op: str = "RESHAPE"

    TFLITE = {"RESHAPE": ("ReshapeOptions", (), 1, (1, 2)), "EXPAND_DIMS": (None, (), 1, (2, 2)),
              "SQUEEZE": ("SqueezeOptions", (), 1, (1, 1))}

    def __post_init__(self):
        object.__setattr__(self, "input_shape", shape_of(self.input_shape, self.name))
        object.__setattr__(self, "new_shape", shape_of(self.new_shape, self.name))
        check(self.op in VIEW_OPS, f"{self.name}: {self.op} is not a view op")
        check(int(np.prod(self.new_shape)) == int(np.prod(self.input_shape)),
              f"{self.name}: cannot reshape {self.input_shape} to {self.new_shape}")
        full = (1, *self.input_shape), (1, *self.new_shape)
        check(self.op != "EXPAND_DIMS" or _expand_axis(*full) is not None,
              f"{self.name}: EXPAND_DIMS cannot turn {self.input_shape} into {self.new_shape}")
        check(self.op != "SQUEEZE" or _squeeze_dims(*full) is not None,
              f"{self.name}: SQUEEZE cannot turn {self.input_shape} into {self.new_shape}")

    @property
    def output_shape(self):
        return self.new_shape

    @property
    def is_flatten(self):
        return len(self.new_shape) == 1

    def run(self, x):
        return x.reshape((x.shape[0],) + tuple(self.new_shape))

    def features(self):
        return {self.op, ("Reshape", "flatten" if self.is_flatten else f"rank {len(self.new_shape)}")}

    @classmethod
    def from_tflite(cls, r):
        x = r.data(0)
        same_q(x.q, r.output.q, r.op)
        return cls(r.name, x.shape, inputs=(x.name,), new_shape=r.output.shape, q=x.q, op=r.op)

    def to_tflite(self, w, ins, out):
        full_in, full_out = (1, *self.input_shape), (1, *self.new_shape)
        if self.op == "EXPAND_DIMS":
            w.op(self.op, [ins[0], w.const(f"{self.name}/axis", np.int32(_expand_axis(full_in, full_out)), "int32")],
                 [out])
        elif self.op == "SQUEEZE":
            w.op(self.op, [ins[0]], [out], ("SqueezeOptions", dict(SqueezeDims=_squeeze_dims(full_in, full_out))))
        elif not w.flatten_chain:
            w.op(self.op, [ins[0], w.const(f"{self.name}/shape", full_out, "int32")], [out])
        else:
            # What TF emits for reshape(x, [shape(x)[0], ...]): the batch size is read back at run time.
            shape = w.tensor(f"{self.name}/Shape", "int32", (1 + len(self.input_shape),))
            w.op("SHAPE", [ins[0]], [shape], ("ShapeOptions", dict(OutType=2)))
            batch = w.tensor(f"{self.name}/strided_slice", "int32", ())
            w.op("STRIDED_SLICE", [shape, w.const(f"{self.name}/strided_slice/begin", [0], "int32"),
                                   w.const(f"{self.name}/strided_slice/end", [1], "int32"),
                                   w.const(f"{self.name}/strided_slice/strides", [1], "int32")],
                 [batch], ("StridedSliceOptions", dict(ShrinkAxisMask=1)))
            rest = [w.const(f"{self.name}/Reshape/shape/{i}", np.int32(d), "int32")
                    for i, d in enumerate(full_out[1:], 1)]
            packed = w.tensor(f"{self.name}/Reshape/shape", "int32", (len(full_out),))
            w.op("PACK", [batch, *rest], [packed], ("PackOptions", dict(ValuesCount=len(full_out), Axis=0)))
            w.op(self.op, [ins[0], packed], [out])

    @classmethod
    def random(cls, rng, g):
        op = str(rng.choice(VIEW_OPS))
        t = g.pick(min_rank=2, where=lambda t: 1 in t.shape) if op == "SQUEEZE" else None
        t = t or g.pick(max_rank=3)
        if t is None:
            return None
        shape = t.shape
        if op == "EXPAND_DIMS" and len(shape) < 3:
            axis = int(rng.integers(0, len(shape) + 1))
            new = shape[:axis] + (1,) + shape[axis:]
        elif op == "SQUEEZE" and 1 in shape and len(shape) > 1:
            ones = [i for i, d in enumerate(shape) if d == 1]
            drop = int(rng.choice(ones))
            new = shape[:drop] + shape[drop + 1:]
        else:
            op, size = "RESHAPE", int(np.prod(shape))
            divisors = [d for d in range(1, size + 1) if size % d == 0]
            rank = int(rng.integers(1, 4))
            new = (size,)
            if rank >= 2:
                a = int(rng.choice(divisors))
                new = (a, size // a)
                if rank == 3:
                    b = int(rng.choice([d for d in divisors if (size // a) % d == 0]))
                    new = (a, b, size // a // b)
        return cls(name=g.name(op.lower()), input_shape=shape, inputs=(t.name,), new_shape=new, q=t.q, op=op)
