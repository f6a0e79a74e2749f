"""Small hand-made models several test modules run."""

import numpy as np

from golden.model import Model, QParams
from golden.ops import DepthwiseConv2D, Pool2D


def depthwise_model(c=5, mult=2, stride=(1, 1), padding="SAME", pool=False):
    """A 9x7xC depthwise 3x3 convolution (RELU), optionally followed by a 2x2 max pool."""
    rng = np.random.default_rng(1)
    q = QParams(0.05, -3)
    weights = rng.integers(-128, 128, (1, 3, 3, c * mult)).astype(np.int8)
    dw = DepthwiseConv2D(name="dw", input_shape=(9, 7, c), weights=weights,
                         bias=rng.integers(-3000, 3000, c * mult).astype(np.int32),
                         weight_scales=rng.uniform(0.005, 0.02, c * mult).astype(np.float32), input_q=q,
                         output_q=QParams(0.3, 4), stride=stride, padding=padding, activation="RELU")
    layers = [dw]
    if pool:
        layers.append(Pool2D(name="pool", input_shape=dw.output_shape, kind="MAX", filter=(2, 2), stride=(2, 2),
                             padding="VALID", q=dw.output_q))
    return Model(name="dw", input_shape=(9, 7, c), input_q=q, layers=tuple(layers))
