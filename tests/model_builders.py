"""Small hand-made models several test modules run."""

import numpy as np

from golden.model import Model, QParams
from golden.ops import Add, Concatenation, Conv2D, DepthwiseConv2D, FullyConnected, Mean, Pad, Pool2D, Reshape


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


def residual_model(h=6, w=5, c=3, oc=4, seed=2):
    """A residual block: conv A, conv B on A, ADD(A, B) with different input scales, then a
    Flatten and a dense layer: the shape of ResNet-8's blocks, small."""
    rng = np.random.default_rng(seed)
    q = QParams(0.04, -5)

    def conv(name, shape, k, src, in_q, out_q, activation="RELU"):
        return Conv2D(name=name, input_shape=shape, inputs=(src,), padding="SAME",
                      weights=rng.integers(-128, 128, (oc, k, k, shape[2])).astype(np.int8),
                      bias=rng.integers(-2000, 2000, oc).astype(np.int32),
                      weight_scales=rng.uniform(0.002, 0.01, oc).astype(np.float32), input_q=in_q,
                      output_q=out_q, activation=activation)

    a = conv("a", (h, w, c), 3, "input", q, QParams(0.05, -128))
    b = conv("b", (h, w, oc), 1, "a", a.output_q, QParams(0.08, 3), activation="NONE")
    add = Add(name="add", input_shape=(h, w, oc), inputs=("a", "b"), other_shape=(h, w, oc), input_q=a.output_q,
              other_q=b.output_q, output_q=QParams(0.1, -7), activation="RELU")
    flat = Reshape(name="flat", input_shape=(h, w, oc), new_shape=(h * w * oc,), q=add.output_q)
    fc = FullyConnected(name="fc", input_shape=(h * w * oc,),
                        weights=rng.integers(-128, 128, (5, h * w * oc)).astype(np.int8), bias=rng.integers(-500, 500, 5).astype(np.int32), weight_scales=np.array([0.003], np.float32),
                        input_q=add.output_q, output_q=QParams(0.3, 2))
    return Model(name="residual", input_shape=(h, w, c), input_q=q, layers=(a, b, add, flat, fc))


def pad_mean_model(value=None, pad_channels=False, keep_dims=True, seed=3):
    """PAD (or PADV2 of ``value``) -> depthwise 3x3 VALID -> PAD -> 3x3 conv SAME -> spatial
    MEAN (rescaled): the pads fold into the convolutions' padding, the MEAN becomes a
    depthwise convolution of ones."""
    rng = np.random.default_rng(seed)
    q = QParams(0.05, -3)
    cpad = (0, 1) if pad_channels else (0, 0)
    p1 = Pad(name="pad1", input_shape=(7, 6, 3), paddings=((2, 1), (0, 3), cpad), value=value, q=q)
    c = p1.output_shape[2]
    dw = DepthwiseConv2D(name="dw", input_shape=p1.output_shape,
                         weights=rng.integers(-128, 128, (1, 3, 3, c)).astype(np.int8),
                         bias=rng.integers(-3000, 3000, c).astype(np.int32),
                         weight_scales=rng.uniform(0.005, 0.02, c).astype(np.float32), input_q=q,
                         output_q=QParams(0.3, -20), padding="VALID", activation="RELU")
    p2 = Pad(name="pad2", input_shape=dw.output_shape, paddings=((1, 0), (1, 2), (0, 0)), q=dw.output_q)
    conv = Conv2D(name="conv", input_shape=p2.output_shape, padding="SAME",
                  weights=rng.integers(-128, 128, (5, 3, 3, c)).astype(np.int8),
                  bias=rng.integers(-2000, 2000, 5).astype(np.int32),
                  weight_scales=rng.uniform(0.002, 0.01, 5).astype(np.float32), input_q=dw.output_q,
                  output_q=QParams(0.2, 6), activation="NONE")
    mean = Mean(name="mean", input_shape=conv.output_shape, axes=(0, 1), keep_dims=keep_dims,
                input_q=conv.output_q, output_q=QParams(0.07, -4))
    return Model(name="pad_mean", input_shape=(7, 6, 3), input_q=q, layers=(p1, dw, p2, conv, mean))


def concat_model(h=6, w=7, seed=4, pooled=True):
    """An inception-like block: a 3x3 conv (3 channels; with ``pooled`` a fused 2x2 max pool)
    and a 3x3 average pool of a 1x1 conv's 5 channels, concatenated along channels and read
    by a 3x3 conv: the two producing steps write their slices of the concatenation in place."""
    rng = np.random.default_rng(seed)
    q, mid = QParams(0.04, -5), QParams(0.06, 2)

    def conv(name, shape, oc, k, src, in_q, out_q):
        return Conv2D(name=name, input_shape=shape, inputs=(src,), padding="SAME",
                      weights=rng.integers(-128, 128, (oc, k, k, shape[2])).astype(np.int8),
                      bias=rng.integers(-2000, 2000, oc).astype(np.int32),
                      weight_scales=rng.uniform(0.002, 0.01, oc).astype(np.float32), input_q=in_q,
                      output_q=out_q, activation="RELU")

    layers = []
    for name, oc, k in (("a", 5, 1), ("b", 3, 3)):
        layers.append(conv(name, (h, w, 2), oc, k, "input", q, mid))
        if pooled:
            layers.append(Pool2D(name=f"{name}_pool", input_shape=layers[-1].output_shape, inputs=(name,),
                                 kind="MAX", filter=(2, 2), stride=(2, 2), padding="VALID", q=mid))
    a, b = layers[len(layers) // 2 - 1], layers[-1]
    c = Pool2D(name="c", input_shape=a.output_shape, inputs=(a.name,), kind="AVERAGE", filter=(3, 3),
               stride=(1, 1), padding="SAME", q=mid)
    cat = Concatenation(name="cat", input_shape=b.output_shape, inputs=(b.name, c.name),
                        others=(c.output_shape,), axis=-1, q=mid)
    d = conv("d", cat.output_shape, 4, 3, "cat", mid, QParams(0.1, -3))
    return Model(name="concat", input_shape=(h, w, 2), input_q=q, layers=(*layers, c, cat, d))


def broadcast_add_model(small_first=False, scalar=False, seed=5):
    """ADD of a 5x6x4 conv output and a per-channel vector (its spatial MEAN, (1, 1, 4)) or one
    value (a 1-channel MEAN of a 1x1 conv), either order: the add engine repeats the small
    input's bytes over the map's pixels."""
    rng = np.random.default_rng(seed)
    q, mid = QParams(0.04, -5), QParams(0.06, 2)

    def conv(name, shape, oc, src, in_q, out_q):
        return Conv2D(name=name, input_shape=shape, inputs=(src,), padding="SAME",
                      weights=rng.integers(-128, 128, (oc, 3, 3, shape[2])).astype(np.int8),
                      bias=rng.integers(-2000, 2000, oc).astype(np.int32),
                      weight_scales=rng.uniform(0.002, 0.01, oc).astype(np.float32), input_q=in_q,
                      output_q=out_q, activation="RELU")

    a = conv("a", (5, 6, 3), 4, "input", q, mid)
    layers = [a]
    src = "a"
    if scalar:
        layers.append(conv("one", (5, 6, 4), 1, "a", mid, QParams(0.05, -1)))
        src = "one"
    mean = Mean(name="mean", input_shape=layers[-1].output_shape, inputs=(src,), axes=(0, 1), keep_dims=True,
                input_q=layers[-1].output_q, output_q=QParams(0.03, 7))
    ins = ("mean", "a") if small_first else ("a", "mean")
    shapes = (mean.output_shape, a.output_shape) if small_first else (a.output_shape, mean.output_shape)
    qs = (mean.output_q, a.output_q) if small_first else (a.output_q, mean.output_q)
    add = Add(name="add", input_shape=shapes[0], inputs=ins, other_shape=shapes[1], input_q=qs[0], other_q=qs[1],
              output_q=QParams(0.09, -4), activation="RELU")
    after = conv("after", add.output_shape, 2, "add", add.output_q, QParams(0.2, 1))
    return Model(name="bcast", input_shape=(5, 6, 3), input_q=q, layers=(*layers, mean, add, after))


def strided_conv(name, shape, k, padding, seed, src="input"):
    """A stride-2 convolution of five channels (RELU), kernel ``k``."""
    rng = np.random.default_rng(seed)
    return Conv2D(name=name, input_shape=shape, inputs=(src,),
                  weights=rng.integers(-128, 128, (5, *k, shape[2])).astype(np.int8),
                  bias=rng.integers(-3000, 3000, 5).astype(np.int32),
                  weight_scales=rng.uniform(0.004, 0.02, 5).astype(np.float32), input_q=QParams(0.05, -3),
                  output_q=QParams(0.3, 4), stride=(2, 2), padding=padding, activation="RELU")
