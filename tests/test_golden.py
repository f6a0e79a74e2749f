"""Golden model vs LiteRT's BUILTIN_REF kernels, bit for bit, final output and every layer."""

import numpy as np
import pytest

from golden.generate import random_inputs, random_model
from golden.litert import run_litert
from golden.mnist import quantize_images
from golden.ops import Conv2D, FullyConnected, Lookup, Pool2D
from golden.ops import run_model
from golden.run import DEFAULT_MODEL
from golden.tflite_io import load_tflite, to_tflite_bytes

N_RANDOM_MODELS = 60


def assert_same(model, x, blob):
    want, want_layers = run_litert(blob, x, intermediates=True)
    got, got_layers = run_model(model, x, intermediates=True)
    for layer in model.layers:
        a, b = got_layers[layer.name], want_layers[layer.name]
        if not np.array_equal(a, b):
            diff = np.argwhere(a != b)[0]
            pytest.fail(f"layer {layer.name} ({type(layer).__name__}) differs first at {tuple(diff)}: "
                        f"golden {a[tuple(diff)]} vs LiteRT {b[tuple(diff)]}\n{model.summary()}")
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("seed", range(N_RANDOM_MODELS))
def test_random_model_matches_litert(seed):
    rng = np.random.default_rng(seed)
    model = random_model(rng)
    assert_same(model, random_inputs(rng, model, 64), to_tflite_bytes(model))


def test_random_models_cover_every_op_and_option():
    seen = set()
    for seed in range(N_RANDOM_MODELS):
        for layer in random_model(np.random.default_rng(seed)).layers:
            kind = type(layer).__name__
            seen.add(kind)
            if isinstance(layer, (Conv2D, Pool2D)):
                seen.add((kind, layer.padding))
                seen.add((kind, "strided") if max(layer.stride) > 1 else (kind, "unit stride"))
            if isinstance(layer, (Conv2D, FullyConnected)):
                seen.add((kind, "per-channel" if layer.per_channel else "per-tensor"))
                seen.add(("activation", layer.activation))
                seen.add(("left shift", bool((layer.multipliers_shifts[1] > 0).any())))
            if isinstance(layer, (Pool2D, Lookup)):
                seen.add(layer.kind)
    want = {"Conv2D", "FullyConnected", "Pool2D", "Reshape", "Lookup", "Softmax", "MAX", "AVERAGE",
            "LOGISTIC", "TANH", ("Conv2D", "SAME"), ("Conv2D", "VALID"), ("Pool2D", "SAME"),
            ("Pool2D", "VALID"), ("Conv2D", "strided"), ("Pool2D", "strided"), ("Conv2D", "per-channel"),
            ("Conv2D", "per-tensor"), ("FullyConnected", "per-tensor"), ("FullyConnected", "per-channel"),
            ("activation", "NONE"), ("activation", "RELU"), ("activation", "RELU6"),
            ("activation", "RELU_N1_TO_1"), ("left shift", True)}
    assert want <= seen, f"generator misses {want - seen}"


@pytest.fixture(scope="module")
def mnist_x(mnist_test_set):
    return mnist_test_set[0][:1000]


def test_shipped_model_matches_litert_on_1000_images(mnist_x):
    model = load_tflite(DEFAULT_MODEL)
    x = quantize_images(mnist_x, model.input_q)
    assert_same(model, x, DEFAULT_MODEL.read_bytes())
