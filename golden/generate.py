"""Seeded random int8 models covering every supported op and option.

Used by the tests (golden vs LiteRT, hardware vs golden) to reach the corners a trained
model never shows: odd channel counts, 3-channel inputs, odd sizes, SAME padding on
awkward strides, extreme zero points, left-shifting multipliers, -128 weights, residual
branches, broadcasts, requantised concatenations, uint8 and float32 edges.

:func:`random_graph` draws ops from every module's ``random`` entry (:mod:`golden.ops`);
:func:`random_model` keeps to the chain of ops the accelerator runs today.
"""

import numpy as np

from .model import Model, ModelError, QParams, Tensor, is_int8
from .ops import OPS, Add, Conv2D, DepthwiseConv2D, FullyConnected, Lookup, Pool2D, Quantize, Reshape, Softmax
from .ops.common import rand_activation, rand_q, rand_scale, rand_weighted, rand_weights, rand_zero_point


class RandomGraph:
    """The tensors a random graph has so far, for the op modules' ``random`` entries to draw on."""

    def __init__(self, rng, input_shape, input_q):
        self.rng = rng
        self.layers = []
        self.tensors = [Tensor("input", input_shape, input_q)]

    def name(self, what):
        return f"t{len(self.layers)}_{what}"

    def pick(self, rank=None, min_rank=1, max_rank=None, max_size=None, max_last=None, where=None):
        """An int8 tensor meeting the limits: usually the newest, else any earlier one."""
        def ok(t):
            return (is_int8(t.q) and (rank is None or len(t.shape) == rank)
                    and (where is None or where(t))
                    and len(t.shape) >= min_rank and (max_rank is None or len(t.shape) <= max_rank)
                    and (max_size is None or int(np.prod(t.shape)) <= max_size)
                    and (max_last is None or t.shape[-1] <= max_last))
        fits = [t for t in self.tensors if ok(t)]
        if not fits:
            return None
        if ok(self.tensors[-1]) and self.rng.random() < 0.6:
            return self.tensors[-1]
        return fits[int(self.rng.integers(len(fits)))]

    def add(self, layer):
        self.layers.append(layer)
        self.tensors.append(Tensor(layer.name, tuple(layer.output_shape), layer.output_q))
        return layer.name

    def requantize(self, t, q):
        """``t``'s name, or that of a QUANTIZE taking it to ``q`` first."""
        if t.q == q:
            return t.name
        return self.add(Quantize(name=self.name("requant"), input_shape=t.shape, inputs=(t.name,), input_q=t.q,
                                 output_q=q))


def _input(rng):
    """Input shape: mostly HWC images, sometimes a 1-D signal (W, C) or a flat vector."""
    r = rng.random()
    if r < 0.75:
        return (int(rng.integers(1, 12)), int(rng.integers(1, 12)), int(rng.choice([1, 2, 3, 5, 8])))
    if r < 0.9:
        return (int(rng.integers(2, 30)), int(rng.choice([1, 3, 4])))
    return (int(rng.integers(1, 60)),)


def random_graph(rng, max_ops=8, io=None):
    """A random valid DAG Model from every op in the registry.

    ``io``: (input type, output type) among "int8", "uint8", "float32"; drawn when None.
    """
    io = io or tuple(str(rng.choice(["int8", "int8", "uint8", "float32"])) for _ in range(2))
    shape, body_q = _input(rng), rand_q(rng)
    if io[0] == "int8":
        g = RandomGraph(rng, shape, body_q)
    else:
        edge_q = None if io[0] == "float32" else QParams(body_q.scale, rand_zero_point(rng, "uint8"), "uint8")
        g = RandomGraph(rng, shape, edge_q)
        g.add(Quantize(name=g.name("quantize"), input_shape=shape, inputs=("input",), input_q=edge_q,
                       output_q=body_q))
    weights = np.array([{Lookup: 0.5, Softmax: 0.5, Add: 3.0}.get(cls, 1.0) for cls in OPS])
    for _ in range(int(rng.integers(1, max_ops + 1))):
        cls = OPS[int(rng.choice(len(OPS), p=weights / weights.sum()))]
        try:
            layer = cls.random(rng, g)
        except ModelError:
            continue                      # a draw TFLite would refuse (too small a scale, ...)
        if layer is not None:
            g.add(layer)
    last = g.tensors[-1]
    if io[1] != "int8" or not g.layers:
        out_q = (None if io[1] == "float32" else rand_q(rng) if io[1] == "int8"
                 else QParams(last.q.scale, rand_zero_point(rng, "uint8"), "uint8"))
        g.add(Quantize(name=g.name("dequantize" if out_q is None else "quantize"), input_shape=last.shape,
                       inputs=(last.name,), input_q=last.q, output_q=out_q))
        last = g.tensors[-1]
    return Model(name="random_graph", input_shape=shape, input_q=g.tensors[0].q, layers=g.layers,
                 output_name=last.name)


def random_model(rng, max_layers=5):
    """A random valid chain of the ops the accelerator runs (CONV_2D, DEPTHWISE_CONV_2D, pools, tables, a Flatten
    into FULLY_CONNECTED, a SOFTMAX tail); ``rng`` is a numpy Generator, so a seed reproduces it."""
    h, w = int(rng.integers(1, 14)), int(rng.integers(1, 14))
    c = int(rng.choice([1, 2, 3, 5, 7, 8]))
    q = QParams(rand_scale(rng, 1e-3, 0.5), rand_zero_point(rng))
    model_q = q
    shape = input_shape = (h, w, c)
    layers = []
    n_spatial = int(rng.integers(0, max_layers))
    for i in range(n_spatial):
        kind = rng.choice(["conv", "conv", "depthwise", "pool", "lookup"])
        h, w, c = shape
        name = f"l{len(layers)}_{kind}"
        if kind == "conv":
            k = (int(rng.integers(1, min(h, 5) + 1)), int(rng.integers(1, min(w, 5) + 1)))
            oc = int(rng.integers(1, 14))
            params = rand_weighted(rng, name, rand_weights(rng, (oc, k[0], k[1], c)), oc, k[0] * k[1] * c, q,
                                   per_channel=rng.random() < 0.7)
            layer = Conv2D(input_shape=shape, stride=(int(rng.integers(1, 4)), int(rng.integers(1, 4))),
                           padding=str(rng.choice(["VALID", "SAME"])), **params)
        elif kind == "depthwise":
            k = (int(rng.integers(1, min(h, 5) + 1)), int(rng.integers(1, min(w, 5) + 1)))
            mult = int(rng.choice([1, 1, 2, 3, 4] if c > 1 else [1, 2, 5, 8]))
            params = rand_weighted(rng, name, rand_weights(rng, (1, k[0], k[1], c * mult)), c * mult, k[0] * k[1],
                                   q, per_channel=rng.random() < 0.7)
            layer = DepthwiseConv2D(input_shape=shape, stride=(int(rng.integers(1, 4)), int(rng.integers(1, 4))),
                                    padding=str(rng.choice(["VALID", "SAME"])), **params)
        elif kind == "pool":
            f = (int(rng.integers(1, min(h, 3) + 1)), int(rng.integers(1, min(w, 3) + 1)))
            layer = Pool2D(name=name, input_shape=shape, kind=str(rng.choice(["MAX", "AVERAGE"])), filter=f,
                           stride=(int(rng.integers(1, 4)), int(rng.integers(1, 4))),
                           padding=str(rng.choice(["VALID", "SAME"])),
                           activation="NONE" if rng.random() < 0.6 else rand_activation(rng), q=q)
        else:
            layer = Lookup(name=name, input_shape=shape, kind=str(rng.choice(["LOGISTIC", "TANH"])), input_q=q)
        layers.append(layer)
        shape, q = layer.output_shape, layer.output_q
    if rng.random() < 0.8 or not layers:
        flat = (int(np.prod(shape)),)
        layers.append(Reshape(name=f"l{len(layers)}_flatten", input_shape=shape, new_shape=flat, q=q))
        shape = flat
        for _ in range(int(rng.integers(1, 3))):
            oc = int(rng.integers(1, 21))
            params = rand_weighted(rng, f"l{len(layers)}_fc", rand_weights(rng, (oc, shape[0])), oc, shape[0], q,
                                   per_channel=rng.random() < 0.3)
            layers.append(FullyConnected(input_shape=shape, **params))
            shape, q = layers[-1].output_shape, layers[-1].output_q
        tail, beta = rng.random(), float(rng.choice([1.0, 0.5, 2.0]))
        if tail < 0.3:
            try:
                layers.append(Softmax(name=f"l{len(layers)}_softmax", input_shape=shape, input_q=q, beta=beta))
            except ModelError:      # an input scale too small for TFLite's softmax: no tail
                pass
        elif tail < 0.45:
            layers.append(Lookup(name=f"l{len(layers)}_lut", input_shape=shape,
                                 kind=str(rng.choice(["LOGISTIC", "TANH"])), input_q=q))
    return Model(name="random", input_shape=input_shape, input_q=model_q, layers=layers)


def random_inputs(rng, model, n):
    """n inputs of the model's type; the first two at the ends of the range (int8/uint8), or
    floats spanning the input quantisation a little beyond its range."""
    q = model.input_q
    if q is None:
        body = next((layer.output_q for layer in model.layers if layer.output_q is not None), None)
        span = 130 * (body.scale if body is not None else 1.0)
        x = rng.uniform(-span, span, size=(n,) + tuple(model.input_shape)).astype(np.float32)
        if n >= 2:
            x[0], x[1] = -2 * span, 2 * span
        return x
    lo, hi = q.range
    x = rng.integers(lo, hi + 1, size=(n,) + tuple(model.input_shape)).astype(q.dtype)
    if n >= 2:
        x[0], x[1] = lo, hi
    return x
