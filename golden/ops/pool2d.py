"""MAX_POOL_2D and AVERAGE_POOL_2D over any window; TFLite requires one quantisation in and out."""

from dataclasses import dataclass

import numpy as np

from ..model import PADDINGS, Layer, QParams, check, conv_output_size, conv_padding, is_int8, pair, shape_of
from ..quant import activation_range
from .common import (ACTIVATION_CODES, PADDING_CODES, KeepsQuantisation, activation_name, check_activation,
                     padding_name, rand_activation, same_q, windows)

_FIELDS = ("Padding", "StrideW", "StrideH", "FilterWidth", "FilterHeight", "FusedActivationFunction")


@dataclass(frozen=True, eq=False)
class Pool2D(KeepsQuantisation, Layer):
    kind: str = "MAX"
    filter: tuple = (2, 2)
    stride: tuple = (2, 2)
    padding: str = "VALID"
    activation: str = "NONE"
    q: QParams = None

    TFLITE = {"MAX_POOL_2D": ("Pool2DOptions", _FIELDS, 2, (1, 1)),
              "AVERAGE_POOL_2D": ("Pool2DOptions", _FIELDS, 2, (1, 1))}

    def __post_init__(self):
        object.__setattr__(self, "input_shape", shape_of(self.input_shape, self.name))
        check(self.kind in ("MAX", "AVERAGE"), f"{self.name}: unknown pooling {self.kind}")
        object.__setattr__(self, "filter", pair(self.filter, "filter", self.name))
        object.__setattr__(self, "stride", pair(self.stride, "stride", self.name))
        check(self.padding in PADDINGS, f"{self.name}: unsupported padding {self.padding}")
        check_activation(self)
        check(is_int8(self.q), f"{self.name}: needs int8 quantisation parameters")
        check(len(self.input_shape) == 3, f"{self.name}: pooling input must be HWC, got {self.input_shape}")
        h, w = self.output_shape[:2]
        check(h >= 1 and w >= 1, f"{self.name}: filter larger than the {self.input_shape} input")

    @property
    def op(self):
        return f"{self.kind}_POOL_2D"

    @property
    def output_shape(self):
        (h, w, c), (fh, fw), (sh, sw) = self.input_shape, self.filter, self.stride
        return (conv_output_size(h, fh, sh, self.padding), conv_output_size(w, fw, sw, self.padding), c)

    @property
    def pads(self):
        (h, w, _), (fh, fw), (sh, sw) = self.input_shape, self.filter, self.stride
        return conv_padding(h, fh, sh, self.padding), conv_padding(w, fw, sw, self.padding)

    @property
    def act_range(self):
        return activation_range(self.activation, self.q.scale, self.q.zero_point)

    def run(self, x):
        """Over the valid part of each window (padding is never counted)."""
        oh, ow, _ = self.output_shape
        lo, hi = self.act_range
        sentinel = np.iinfo(np.int16).min
        win = windows(x.astype(np.int16), self.filter, self.stride, self.pads, (oh, ow), sentinel)
        valid = win != sentinel
        if self.kind == "MAX":
            y = win.max(axis=(3, 4))
        else:
            total = np.where(valid, win, 0).sum(axis=(3, 4), dtype=np.int64)
            count = valid.sum(axis=(3, 4), dtype=np.int64)
            # TFLite: (acc +- count/2) / count with C's truncating division.
            num = np.where(total > 0, total + count // 2, total - count // 2)
            y = np.sign(num) * (np.abs(num) // count)
        return np.clip(y, lo, hi).astype(np.int8)

    def features(self):
        return {self.op, ("Pool2D", self.padding),
                ("Pool2D", "strided" if max(self.stride) > 1 else "unit stride"),
                ("Pool2D", "global" if self.filter == tuple(self.input_shape[:2]) else "window")}

    @classmethod
    def from_tflite(cls, r):
        o, x = r.options(), r.data(0)
        same_q(x.q, r.output.q, r.op)
        return cls(r.name, x.shape, inputs=(x.name,), kind=r.op.split("_")[0],
                   filter=(o["FilterHeight"], o["FilterWidth"]), stride=(o["StrideH"], o["StrideW"]),
                   padding=padding_name(o["Padding"]), activation=activation_name(o["FusedActivationFunction"]),
                   q=x.q)

    def to_tflite(self, w, ins, out):
        w.op(self.op, [ins[0]], [out], ("Pool2DOptions", dict(
            Padding=PADDING_CODES[self.padding], StrideW=self.stride[1], StrideH=self.stride[0],
            FilterWidth=self.filter[1], FilterHeight=self.filter[0],
            FusedActivationFunction=ACTIVATION_CODES[self.activation])))

    @classmethod
    def random(cls, rng, g):
        t = g.pick(rank=3)
        if t is None:
            return None
        h, w, _ = t.shape
        if rng.random() < 0.2:
            f, s, pad = (h, w), (1, 1), "VALID"          # a global pool, as classifier heads use
        else:
            f = (int(rng.integers(1, min(h, 3) + 1)), int(rng.integers(1, min(w, 3) + 1)))
            s, pad = (int(rng.integers(1, 4)), int(rng.integers(1, 4))), str(rng.choice(PADDINGS))
        return cls(name=g.name("pool"), input_shape=t.shape, inputs=(t.name,),
                   kind=str(rng.choice(["MAX", "AVERAGE"])), filter=f, stride=s, padding=pad,
                   activation="NONE" if rng.random() < 0.6 else rand_activation(rng), q=t.q)
