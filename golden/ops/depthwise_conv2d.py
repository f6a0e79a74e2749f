"""DEPTHWISE_CONV_2D: each input channel convolved on its own into ``depth_multiplier`` outputs
(``reference_integer_ops::DepthwiseConvPerChannel``): output channel ``c * M + m`` reads input
channel ``c``; weights (1, KH, KW, C * M) quantised per channel along dimension 3; the
requantisation rounds twice, like CONV_2D."""

from dataclasses import dataclass

import numpy as np

from ..model import PADDINGS, ModelError, check, shape_of
from .common import (ACTIVATION_CODES, PADDING_CODES, Convolution, activation_name, check_no_dilation, padding_name,
                     rand_weighted, rand_weights, windows)

_FIELDS = ("Padding", "StrideW", "StrideH", "DepthMultiplier", "FusedActivationFunction", "DilationWFactor",
           "DilationHFactor")


@dataclass(frozen=True, eq=False)
class DepthwiseConv2D(Convolution):
    """Weights (1, KH, KW, C * depth_multiplier), TFLite's layout."""

    op = "DEPTHWISE_CONV_2D"
    TFLITE = {"DEPTHWISE_CONV_2D": ("DepthwiseConv2DOptions", _FIELDS, 6, (2, 3))}

    def __post_init__(self):
        object.__setattr__(self, "input_shape", shape_of(self.input_shape, self.name))
        check(np.ndim(self.weights) == 4 and np.shape(self.weights)[0] == 1,
              f"{self.name}: depthwise weights must be (1, KH, KW, C), got shape {np.shape(self.weights)}")
        self._validate_weighted(np.shape(self.weights)[3])
        check(len(self.input_shape) == 3, f"{self.name}: depthwise input must be HWC, got {self.input_shape}")
        c = self.input_shape[2]
        check(self.out_channels % c == 0,
              f"{self.name}: {self.out_channels} output channels is not a multiple of the {c} input channels")
        self._validate_spatial()

    @property
    def out_channels(self):
        return self.weights.shape[3]

    @property
    def depth_multiplier(self):
        return self.out_channels // self.input_shape[2]

    @property
    def macs(self):
        oh, ow, oc = self.output_shape
        return oh * ow * oc * int(np.prod(self.kernel))

    def run(self, x):
        oh, ow, oc = self.output_shape
        (kh, kw), c, m = self.kernel, self.input_shape[2], self.depth_multiplier
        zp = self.input_q.zero_point
        win = windows(x, self.kernel, self.stride, self.pads, (oh, ow), np.int8(zp))
        taps = win.reshape(x.shape[0] * oh * ow, kh * kw, c).astype(np.float64) - zp
        wts = self.weights.reshape(kh * kw, c, m).astype(np.float64)
        acc = np.einsum("ptc,tcm->pcm", taps, wts, optimize=True).reshape(x.shape[0], oh, ow, oc)
        return self.requantize(np.rint(acc).astype(np.int64))

    def features(self):
        return super().features() | {(self.op, "multiplier > 1" if self.depth_multiplier > 1 else "multiplier 1")}

    @classmethod
    def from_tflite(cls, r):
        o = r.options()
        check_no_dilation(o)
        weights, scales = r.weights(1, qdim=3)
        x = r.data(0)
        layer = cls(r.name, x.shape, inputs=(x.name,), weights=weights, bias=r.bias(2), weight_scales=scales,
                    input_q=x.q, output_q=r.output.q, activation=activation_name(o["FusedActivationFunction"]),
                    stride=(o["StrideH"], o["StrideW"]), padding=padding_name(o["Padding"]))
        if o["DepthMultiplier"] not in (0, layer.depth_multiplier):
            raise ModelError(f"depth_multiplier {o['DepthMultiplier']} does not match the weights' "
                             f"{layer.out_channels} channels for {x.shape[-1]} inputs")
        return layer

    def to_tflite(self, w, ins, out):
        wt, bias = self.export_weights(w, self.weights, qdim=3)
        w.op(self.op, [ins[0], wt, bias], [out], ("DepthwiseConv2DOptions", dict(
            Padding=PADDING_CODES[self.padding], StrideW=self.stride[1], StrideH=self.stride[0],
            DepthMultiplier=self.depth_multiplier, FusedActivationFunction=ACTIVATION_CODES[self.activation])))

    @classmethod
    def random(cls, rng, g):
        t = g.pick(rank=3)
        if t is None:
            return None
        h, w, c = t.shape
        k = (int(rng.integers(1, min(h, 5) + 1)), int(rng.integers(1, min(w, 5) + 1)))
        keep = rng.random() < 0.3           # shape-preserving, as on a residual branch
        m = 1 if keep else int(rng.choice([1, 1, 2, 3]))
        name = g.name("dwconv")
        params = rand_weighted(rng, name, rand_weights(rng, (1, k[0], k[1], c * m)), c * m, k[0] * k[1], t.q,
                               per_channel=rng.random() < 0.7)
        stride = (1, 1) if keep else (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        return cls(input_shape=t.shape, inputs=(t.name,), stride=stride,
                   padding="SAME" if keep else str(rng.choice(PADDINGS)), **params)
