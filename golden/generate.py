"""Seeded random int8 models covering every supported op and option.

Used by the tests (golden vs LiteRT, hardware vs golden) to reach the corners a trained
model never shows: odd channel counts, 3-channel inputs, odd sizes, SAME padding on
awkward strides, extreme zero points, left-shifting multipliers, -128 weights.
"""

import numpy as np

from .model import Conv2D, FullyConnected, Lookup, Model, Pool2D, QParams, Reshape, Softmax

ACTS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")


def _scale(rng, lo=1e-3, hi=1.0):
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _zero_point(rng):
    r = rng.random()
    if r < 0.15:
        return -128
    if r < 0.25:
        return 127
    return int(rng.integers(-128, 128))


def _weights(rng, shape):
    w = rng.integers(-127, 128, size=shape, dtype=np.int64)
    if rng.random() < 0.3:
        w.flat[rng.integers(0, w.size, size=max(1, w.size // 10))] = -128
    return w.astype(np.int8)


def _weighted_params(rng, name, weights, depth, in_q, per_channel):
    """Weight scales, output qparams and bias giving outputs that span the int8 range."""
    n = weights.shape[0]
    wscales = np.array([_scale(rng, 1e-4, 1e-1) for _ in range(n if per_channel else 1)], np.float32)
    spread = in_q.scale * float(np.max(wscales)) * 128 * np.sqrt(depth) * 40
    # Mostly shrinking multipliers; now and then one above 1 (a left shift in TFLite).
    out_scale = spread * (_scale(rng, 1e-3, 1.0) if rng.random() < 0.85 else _scale(rng, 1e-6, 1e-4))
    out_q = QParams(out_scale, _zero_point(rng))
    bias_span = int(min(2 ** 20, 128 * 128 * depth))
    bias = rng.integers(-bias_span, bias_span + 1, size=n).astype(np.int32)
    return dict(name=name, weights=weights, bias=bias, weight_scales=wscales, input_q=in_q,
                output_q=out_q, activation=str(rng.choice(ACTS)))


def random_model(rng, max_layers=5):
    """A random valid Model; ``rng`` is a numpy Generator, so a seed reproduces it."""
    h, w = int(rng.integers(1, 14)), int(rng.integers(1, 14))
    c = int(rng.choice([1, 2, 3, 5, 7, 8]))
    q = QParams(_scale(rng, 1e-3, 0.5), _zero_point(rng))
    model_q = q
    shape = input_shape = (h, w, c)
    layers = []
    n_spatial = int(rng.integers(0, max_layers))
    for i in range(n_spatial):
        kind = rng.choice(["conv", "conv", "pool", "lookup"])
        h, w, c = shape
        name = f"l{len(layers)}_{kind}"
        if kind == "conv":
            k = (int(rng.integers(1, min(h, 5) + 1)), int(rng.integers(1, min(w, 5) + 1)))
            oc = int(rng.integers(1, 14))
            params = _weighted_params(rng, name, _weights(rng, (oc, k[0], k[1], c)), k[0] * k[1] * c, q,
                                      per_channel=rng.random() < 0.7)
            layer = Conv2D(input_shape=shape, stride=(int(rng.integers(1, 4)), int(rng.integers(1, 4))),
                           padding=str(rng.choice(["VALID", "SAME"])), **params)
        elif kind == "pool":
            f = (int(rng.integers(1, min(h, 3) + 1)), int(rng.integers(1, min(w, 3) + 1)))
            layer = Pool2D(name=name, input_shape=shape, kind=str(rng.choice(["MAX", "AVERAGE"])), filter=f,
                           stride=(int(rng.integers(1, 4)), int(rng.integers(1, 4))),
                           padding=str(rng.choice(["VALID", "SAME"])),
                           activation="NONE" if rng.random() < 0.6 else str(rng.choice(ACTS)), q=q)
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
            params = _weighted_params(rng, f"l{len(layers)}_fc", _weights(rng, (oc, shape[0])), shape[0], q,
                                      per_channel=rng.random() < 0.3)
            layers.append(FullyConnected(input_shape=shape, **params))
            shape, q = layers[-1].output_shape, layers[-1].output_q
        tail = rng.random()
        if tail < 0.3:
            layers.append(Softmax(name=f"l{len(layers)}_softmax", input_shape=shape, input_q=q,
                                  beta=float(rng.choice([1.0, 0.5, 2.0]))))
        elif tail < 0.45:
            layers.append(Lookup(name=f"l{len(layers)}_lut", input_shape=shape,
                                 kind=str(rng.choice(["LOGISTIC", "TANH"])), input_q=q))
    return Model(name="random", input_shape=input_shape, input_q=model_q, layers=layers)


def random_inputs(rng, model, n):
    """n int8 inputs for the model, the first two all -128 and all 127."""
    x = rng.integers(-128, 128, size=(n,) + tuple(model.input_shape)).astype(np.int8)
    if n >= 2:
        x[0], x[1] = -128, 127
    return x
