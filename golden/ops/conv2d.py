"""CONV_2D: int8 convolution with per-channel requantisation (``reference_integer_ops::ConvPerChannel``)."""

from dataclasses import dataclass

import numpy as np

from ..model import PADDINGS, check, shape_of
from .common import (ACTIVATION_CODES, PADDING_CODES, Convolution, activation_name, check_no_dilation, padding_name,
                     rand_weighted, rand_weights, windows)

_FIELDS = ("Padding", "StrideW", "StrideH", "FusedActivationFunction", "DilationWFactor", "DilationHFactor")


@dataclass(frozen=True, eq=False)
class Conv2D(Convolution):
    """Weights OHWI."""

    op = "CONV_2D"
    TFLITE = {"CONV_2D": ("Conv2DOptions", _FIELDS, 3, (2, 3))}

    def __post_init__(self):
        object.__setattr__(self, "input_shape", shape_of(self.input_shape, self.name))
        check(np.ndim(self.weights) == 4, f"{self.name}: conv weights must be OHWI, got shape {np.shape(self.weights)}")
        self._validate_weighted(np.shape(self.weights)[0])
        check(len(self.input_shape) == 3, f"{self.name}: conv input must be HWC, got {self.input_shape}")
        check(self.weights.shape[3] == self.input_shape[2],
              f"{self.name}: weights have {self.weights.shape[3]} input channels, input has {self.input_shape[2]}")
        self._validate_spatial()

    @property
    def out_channels(self):
        return self.weights.shape[0]

    @property
    def macs(self):
        oh, ow, oc = self.output_shape
        return oh * ow * oc * int(np.prod(self.weights.shape[1:]))

    def run(self, x):
        """sum (x - zp_in) * w over the window, padding contributing nothing; float64 sums are exact."""
        oh, ow, oc = self.output_shape
        zp = self.input_q.zero_point
        win = windows(x, self.kernel, self.stride, self.pads, (oh, ow), np.int8(zp))
        cols = win.reshape(x.shape[0] * oh * ow, -1).astype(np.float64) - zp
        acc = cols @ self.weights.reshape(oc, -1).T.astype(np.float64)
        return self.requantize(np.rint(acc).astype(np.int64)).reshape(x.shape[0], oh, ow, oc)

    @classmethod
    def from_tflite(cls, r):
        o = r.options()
        check_no_dilation(o)
        weights, scales = r.weights(1, qdim=0)
        return cls(r.name, r.data(0).shape, inputs=(r.data(0).name,), weights=weights, bias=r.bias(2),
                   weight_scales=scales, input_q=r.data(0).q, output_q=r.output.q,
                   activation=activation_name(o["FusedActivationFunction"]), stride=(o["StrideH"], o["StrideW"]),
                   padding=padding_name(o["Padding"]))

    def to_tflite(self, w, ins, out):
        wt, bias = self.export_weights(w, self.weights)
        w.op(self.op, [ins[0], wt, bias], [out], ("Conv2DOptions", dict(
            Padding=PADDING_CODES[self.padding], StrideW=self.stride[1], StrideH=self.stride[0],
            FusedActivationFunction=ACTIVATION_CODES[self.activation])))

    @classmethod
    def random(cls, rng, g):
        t = g.pick(rank=3)
        if t is None:
            return None
        h, w, c = t.shape
        k = (int(rng.integers(1, min(h, 5) + 1)), int(rng.integers(1, min(w, 5) + 1)))
        keep = rng.random() < 0.3           # shape-preserving, as on a residual branch
        oc = c if keep else int(rng.integers(1, 14))
        name = g.name("conv")
        params = rand_weighted(rng, name, rand_weights(rng, (oc, k[0], k[1], c)), oc, k[0] * k[1] * c, t.q,
                               per_channel=rng.random() < 0.7)
        stride = (1, 1) if keep else (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        return cls(input_shape=t.shape, inputs=(t.name,), stride=stride,
                   padding="SAME" if keep else str(rng.choice(PADDINGS)), **params)
