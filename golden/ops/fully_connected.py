"""FULLY_CONNECTED: int8 dense layer over the flattened input; LiteRT's int8 kernel rounds the
rescale once (``multiply_by_quantized_multiplier_single``), unlike the convolutions."""

from dataclasses import dataclass

import numpy as np

from ..model import ModelError, check, shape_of
from .common import ACTIVATION_CODES, Weighted, activation_name, rand_weighted, rand_weights

_FIELDS = ("FusedActivationFunction", "WeightsFormat", "KeepNumDims")


@dataclass(frozen=True, eq=False)
class FullyConnected(Weighted):
    """Weights (out, in)."""
    single_rounding = True
    op = "FULLY_CONNECTED"
    TFLITE = {"FULLY_CONNECTED": ("FullyConnectedOptions", _FIELDS, 4, (2, 3))}

    def __post_init__(self):
        object.__setattr__(self, "input_shape", shape_of(self.input_shape, self.name))
        check(np.ndim(self.weights) == 2,
              f"{self.name}: fully connected weights must be (out, in), got {np.shape(self.weights)}")
        self._validate_weighted(np.shape(self.weights)[0])
        check(self.weights.shape[1] == int(np.prod(self.input_shape)),
              f"{self.name}: weights take {self.weights.shape[1]} inputs, input has {int(np.prod(self.input_shape))}")

    @property
    def out_channels(self):
        return self.weights.shape[0]

    @property
    def output_shape(self):
        return (self.out_channels,)

    @property
    def macs(self):
        return int(self.weights.size)

    def run(self, x):
        flat = x.reshape(x.shape[0], -1).astype(np.float64) - self.input_q.zero_point
        acc = flat @ self.weights.T.astype(np.float64)
        return self.requantize(np.rint(acc).astype(np.int64))

    @classmethod
    def from_tflite(cls, r):
        o = r.options()
        if o["KeepNumDims"]:
            raise ModelError("keep_num_dims is unsupported")
        if o["WeightsFormat"] != 0:
            raise ModelError("shuffled weights format is unsupported")
        weights, scales = r.weights(1, qdim=0)
        x = r.data(0)
        return cls(r.name, x.shape, inputs=(x.name,), weights=weights, bias=r.bias(2), weight_scales=scales,
                   input_q=x.q, output_q=r.output.q, activation=activation_name(o["FusedActivationFunction"]))

    def to_tflite(self, w, ins, out):
        wt, bias = self.export_weights(w, self.weights)
        w.op(self.op, [ins[0], wt, bias], [out], ("FullyConnectedOptions", dict(
            FusedActivationFunction=ACTIVATION_CODES[self.activation])))

    @classmethod
    def random(cls, rng, g):
        t = g.pick(max_size=600)
        if t is None:
            return None
        n, depth = int(rng.integers(1, 21)), int(np.prod(t.shape))
        params = rand_weighted(rng, g.name("fc"), rand_weights(rng, (n, depth)), n, depth, t.q,
                               per_channel=rng.random() < 0.3)
        return cls(input_shape=t.shape, inputs=(t.name,), **params)
