"""Golden model vs LiteRT's BUILTIN_REF kernels, bit for bit, final output and every layer."""

import numpy as np
import pytest

from golden.generate import random_graph, random_inputs, random_model
from golden.litert import run_litert
from golden.mnist import quantize_images
from golden.model import type_name
from golden.ops import OPS, Conv2D, FullyConnected, Lookup, Pool2D, run_model
from golden.run import DEFAULT_MODEL
from golden.tflite_io import load_tflite, to_tflite_bytes
from published import PUBLISHED_FILES, published_path

N_RANDOM_MODELS = 60


def assert_same(model, x, blob):
    want, want_layers = run_litert(blob, x, intermediates=True)
    got, got_layers = run_model(model, x, intermediates=True)
    for layer in model.layers:
        a, b = got_layers[layer.name], want_layers[layer.name]
        if not np.array_equal(a, b):
            diff = np.argwhere(a != b)[0]
            pytest.fail(f"layer {layer.name} ({layer.op}) differs first at {tuple(diff)}: "
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


N_RANDOM_GRAPHS = 100


@pytest.mark.parametrize("seed", range(N_RANDOM_GRAPHS))
def test_random_graph_matches_litert(seed):
    rng = np.random.default_rng(1000 + seed)
    model = random_graph(rng)
    assert_same(model, random_inputs(rng, model, 24), to_tflite_bytes(model))


def test_random_graphs_cover_every_op_and_option():
    seen = set()
    for seed in range(N_RANDOM_GRAPHS):
        model = random_graph(np.random.default_rng(1000 + seed))
        seen |= {f for layer in model.layers for f in layer.features()}
        seen.add(("graph", "chain" if model.is_chain else "branching"))
        seen.add(("input", type_name(model.input_q)))
        seen.add(("output", type_name(model.output_q)))
    want = {name for cls in OPS for name in cls.TFLITE} | {
        ("graph", "chain"), ("graph", "branching"),
        ("input", "int8"), ("input", "uint8"), ("input", "float32"),
        ("output", "int8"), ("output", "uint8"), ("output", "float32"),
        ("QUANTIZE", "int8 -> int8"), ("QUANTIZE", "uint8 -> int8"), ("QUANTIZE", "float32 -> int8"),
        ("QUANTIZE", "int8 -> uint8"), ("DEQUANTIZE", "int8 -> float32"),
        ("ADD", "same shape"), ("ADD", "broadcast"), ("ADD", "different scales"),
        ("MEAN", "keep_dims"), ("MEAN", "drop dims"), ("MEAN", "spatial"), ("MEAN", "other axes"),
        ("MEAN", "rescaled"), ("MEAN", "same quantisation"),
        ("PAD", "fill = zero point"), ("PAD", "other fill"),
        ("CONCATENATION", "channels"), ("CONCATENATION", "other axis"), ("CONCATENATION", "many inputs"),
        ("Reshape", "flatten"), ("Reshape", "rank 2"), ("Reshape", "rank 3"),
        ("Pool2D", "global"), ("Pool2D", "SAME"), ("Pool2D", "VALID"), ("Pool2D", "strided"),
        ("DEPTHWISE_CONV_2D", "multiplier 1"), ("DEPTHWISE_CONV_2D", "multiplier > 1"),
        ("DEPTHWISE_CONV_2D", "per-channel"), ("DEPTHWISE_CONV_2D", "per-tensor"), ("DEPTHWISE_CONV_2D", "SAME"),
        ("DEPTHWISE_CONV_2D", "VALID"), ("DEPTHWISE_CONV_2D", "strided"),
        ("CONV_2D", "SAME"), ("CONV_2D", "VALID"), ("CONV_2D", "per-channel"), ("CONV_2D", "per-tensor"),
        ("FULLY_CONNECTED", "per-channel"), ("FULLY_CONNECTED", "per-tensor"),
        ("activation", "NONE"), ("activation", "RELU"), ("activation", "RELU6"), ("activation", "RELU_N1_TO_1"),
        ("left shift", True)}
    assert want <= seen, f"generator misses {sorted(map(str, want - seen))}"


@pytest.mark.parametrize("name", PUBLISHED_FILES)
def test_published_model_matches_litert_on_100_inputs(name):
    path = published_path(name)
    model = load_tflite(path)
    assert_same(model, random_inputs(np.random.default_rng(5), model, 100), path.read_bytes())
