"""Fast checks of golden.train: the hand-written backward pass, quantisation and loaders."""

import numpy as np
import pytest

from golden import train as T
from golden.model import Model, QParams
from golden.ops import Conv2D, FullyConnected, Pool2D, Reshape, Softmax


def _random_params(seed=0):
    rng = np.random.default_rng(seed)
    params = T.init_params(rng)
    for w_b in params.values():
        w_b[1] = rng.normal(0, 0.1, w_b[1].shape).astype(np.float32)
    return params


def test_gradients_match_finite_differences():
    """Every parameter tensor, including paths through both pools and every ReLU."""
    rng = np.random.default_rng(1)
    params = {k: [a.astype(np.float64) for a in v] for k, v in _random_params(1).items()}
    x = rng.random((2, 28, 28, 1))
    labels = np.array([3, 8])
    _, grads, _ = T.loss_and_grads(params, x, labels)
    eps = 1e-6
    for name, tensors in params.items():
        for a, g in zip(tensors, grads[name]):
            assert g.shape == a.shape
            for _ in range(4):
                idx = tuple(int(rng.integers(0, s)) for s in a.shape)
                old = a[idx]
                a[idx] = old + eps
                up = T.loss_and_grads(params, x, labels)[0]
                a[idx] = old - eps
                down = T.loss_and_grads(params, x, labels)[0]
                a[idx] = old
                assert (up - down) / (2 * eps) == pytest.approx(g[idx], rel=1e-4, abs=1e-8), (name, idx)


def test_maxpool_backward_routes_to_argmax_and_drops_odd_edge():
    a = np.arange(2 * 5 * 5 * 3, dtype=np.float32).reshape(2, 5, 5, 3)[:, ::-1]
    out, arg = T._maxpool(a)
    assert out.shape == (2, 2, 2, 3)
    np.testing.assert_array_equal(out, a[:, :4, :4].reshape(2, 2, 2, 2, 2, 3).max(axis=(2, 4)))
    dx = T._maxpool_backward(np.ones_like(out), arg, a.shape)
    assert dx.sum() == out.size
    assert not dx[:, 4].any() and not dx[:, :, 4].any()
    np.testing.assert_array_equal(dx[dx > 0], 1)


def test_training_logs_each_epoch_and_is_reproducible():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (32, 28, 28)).astype(np.uint8)
    labels = np.arange(32) % 10
    logs = []
    a = T.train(images, labels, epochs=2, seed=5, log=logs.append, batch_size=16)
    b = T.train(images, labels, epochs=2, seed=5, log=lambda s: None, batch_size=16)
    assert len(logs) == 2 and "train acc" in logs[0]
    for name in a:
        np.testing.assert_array_equal(a[name][0], b[name][0])


def test_activation_qparams():
    assert T.activation_qparams(0.0, 6.0) == QParams(6.0 / 255, -128)
    q = T.activation_qparams(-1.0, 3.0)
    assert q.scale == pytest.approx(4.0 / 255) and q.zero_point == -64
    assert T.activation_qparams(0.5, 2.0).zero_point == -128   # range widened to include 0
    assert T.activation_qparams(-3.0, -1.0).zero_point == 127


def test_quantize_builds_valid_model():
    params = _random_params(2)
    images = np.random.default_rng(3).integers(0, 256, (20, 28, 28)).astype(np.uint8)
    model = T.quantize(params, images)
    assert isinstance(model, Model)
    assert model.input_q == QParams(1 / 255, -128)
    assert [l.name for l in model.layers] == ["conv1", "pool1", "conv2", "pool2", "conv3", "flatten",
                                              "dense1", "dense2", "softmax"]
    kinds = [Conv2D, Pool2D, Conv2D, Pool2D, Conv2D, Reshape, FullyConnected, FullyConnected, Softmax]
    assert all(isinstance(l, k) for l, k in zip(model.layers, kinds))
    assert model.output_shape == (10,) and model.output_q == QParams(1 / 256, -128)
    layers = {l.name: l for l in model.layers}
    for name in ("conv1", "conv2", "conv3", "dense1"):
        assert layers[name].activation == "RELU" and layers[name].output_q.zero_point == -128
    assert layers["pool1"].q == layers["conv1"].output_q
    assert layers["flatten"].q == layers["conv3"].output_q and layers["flatten"].output_shape == (576,)
    for name in ("conv1", "conv2", "conv3"):
        layer = layers[name]
        assert layer.weights.shape == (layer.out_channels, 3, 3, layer.weights.shape[3])
        assert layer.weight_scales.size == layer.out_channels
        assert np.all(np.abs(layer.weights.astype(int)).max(axis=(1, 2, 3)) == 127)
    for name in ("dense1", "dense2"):
        assert layers[name].weight_scales.size == 1 and np.abs(layers[name].weights.astype(int)).max() == 127
    assert layers["dense1"].weights.shape == (64, 576)

    w, b = params["conv2"]
    s = layers["conv2"].weight_scales
    np.testing.assert_allclose(layers["conv2"].weights.astype(np.float32) * s[:, None, None, None],
                               w.transpose(3, 0, 1, 2), atol=float(s.max()) / 2 + 1e-7)
    bias_scale = layers["conv2"].input_q.scale * s.astype(np.float64)
    np.testing.assert_allclose(layers["conv2"].bias * bias_scale, b, atol=float(bias_scale.max()))


def test_quantized_dense_matches_nhwc_flatten():
    """dense1's int8 weights, applied to the NHWC-flattened conv3 output, give the float layer."""
    params = _random_params(4)
    images = np.random.default_rng(5).integers(0, 256, (8, 28, 28)).astype(np.uint8)
    model = T.quantize(params, images)
    dense1 = next(l for l in model.layers if l.name == "dense1")
    flat = T.forward(params, T.to_float(images))[0]["flatten"]
    want = flat @ params["dense1"][0]
    got = flat @ (dense1.weights.astype(np.float32).T * dense1.weight_scales[0])
    np.testing.assert_allclose(got, want, atol=0.05 * np.abs(want).max())


def test_int8_input_is_pixel_minus_128():
    px = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    q = T.to_int8(px)
    assert q.dtype == np.int8 and q.shape == (1, 16, 16, 1)
    np.testing.assert_array_equal(q[..., 0].astype(int), px.astype(int) - 128)


def _data_dir():
    if not (T.DATA_DIR / "mnist_5k.csv.gz").exists():
        pytest.skip(f"MNIST data not found at {T.DATA_DIR}")
    return T.DATA_DIR


def test_load_mnist_csv():
    images, labels = T.load_mnist_csv(_data_dir() / "mnist_5k.csv.gz")
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(labels), [500] * 10)


def test_load_mnist_idx():
    data = _data_dir()
    if not (data / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"MNIST data not found at {data}")
    images, labels = T.load_mnist_idx(data)
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and set(np.unique(labels)) == set(range(10))
