"""The golden command line: outputs, per-layer dumps, MNIST scoring and one-line errors."""

import subprocess
import sys

import numpy as np
import pytest

from golden.generate import random_graph, random_inputs, random_model
from golden.mnist import DEFAULT_DIR, load_test_set, mnist_inputs
from golden.model import Model, QParams
from golden.ops import FullyConnected, Quantize, Reshape, run_model
from golden.run import DEFAULT_MODEL
from golden.tflite_io import save_tflite


def cli(*args):
    return subprocess.run([sys.executable, "-m", "golden.run", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    rng = np.random.default_rng(7)
    model = random_model(rng)
    path = tmp_path_factory.mktemp("m") / "random.tflite"
    save_tflite(model, path)
    return model, path, random_inputs(rng, model, 5)


def test_input_output_and_layers(model_file, tmp_path):
    model, path, x = model_file
    np.save(tmp_path / "x.npy", x)
    r = cli("--model", path, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy",
            "--layers", tmp_path / "layers")
    assert r.returncode == 0, r.stderr
    want, inter = run_model(model, x, intermediates=True)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), want)
    dumps = sorted((tmp_path / "layers").iterdir())
    assert len(dumps) == len(model.layers)
    for f, layer in zip(dumps, model.layers):
        assert layer.name in f.name
        np.testing.assert_array_equal(np.load(f), inter[layer.name])


def test_single_unbatched_input(model_file, tmp_path):
    model, path, x = model_file
    np.save(tmp_path / "x.npy", x[0])
    r = cli("--model", path, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), run_model(model, x[:1]))


def test_mnist_accuracy_is_printed():
    if not (DEFAULT_DIR / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"MNIST test data absent at {DEFAULT_DIR}")
    r = cli("--model", DEFAULT_MODEL, "--mnist", DEFAULT_DIR, "--count", 300)
    assert r.returncode == 0, r.stderr
    assert "accuracy" in r.stdout and "300 MNIST test images" in r.stdout


def _bad_inputs(tmp_path, model_file):
    model, path, x = model_file
    np.save(tmp_path / "f32.npy", x.astype(np.float32))
    np.save(tmp_path / "shape.npy", np.zeros((2, 3), np.int8))
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    (tmp_path / "junk.tflite").write_bytes(b"\x00" * 40)
    return [
        (["--model", tmp_path / "missing.tflite", "--mnist"], "missing.tflite"),
        (["--model", tmp_path / "junk.tflite", "--mnist"], "junk.tflite"),
        (["--model", path, "--input", tmp_path / "nope.npy"], "nope.npy"),
        (["--model", path, "--input", tmp_path / "f32.npy"], "int8"),
        (["--model", path, "--input", tmp_path / "shape.npy"], "shape"),
        (["--model", path, "--input", tmp_path / "junk.npy"], "junk.npy"),
        (["--model", path], "nothing to do"),
    ]


def test_bad_input_gives_one_line_and_status_2(model_file, tmp_path):
    for args, needle in _bad_inputs(tmp_path, model_file):
        r = cli(*args, "--output", tmp_path / "out.npy")
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], (args, r.stderr)
        assert "Traceback" not in r.stderr
        assert not (tmp_path / "out.npy").exists()


@pytest.mark.parametrize("io", [("uint8", "uint8"), ("float32", "float32"), ("uint8", "float32"), ("int8", "uint8")])
def test_models_take_and_write_their_own_io_types(io, tmp_path):
    rng = np.random.default_rng(11)
    model = random_graph(rng, io=io)
    save_tflite(model, tmp_path / "m.tflite")
    x = random_inputs(rng, model, 6)
    np.save(tmp_path / "x.npy", x)
    r = cli("--model", tmp_path / "m.tflite", "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    assert r.returncode == 0, r.stderr
    y = np.load(tmp_path / "y.npy")
    assert y.dtype == np.dtype(io[1])
    np.testing.assert_array_equal(y, run_model(model, x))
    wrong = "int8" if io[0] != "int8" else "uint8"
    np.save(tmp_path / "w.npy", x.astype(wrong))
    r = cli("--model", tmp_path / "m.tflite", "--input", tmp_path / "w.npy", "--output", tmp_path / "z.npy")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert f"must be {io[0]}" in r.stderr and wrong in r.stderr
    assert not (tmp_path / "z.npy").exists()


def test_float_input_with_nan_is_refused(tmp_path):
    model = random_graph(np.random.default_rng(3), io=("float32", "int8"))
    save_tflite(model, tmp_path / "m.tflite")
    x = np.full((1, *model.input_shape), np.nan, np.float32)
    np.save(tmp_path / "x.npy", x)
    r = cli("--model", tmp_path / "m.tflite", "--input", tmp_path / "x.npy")
    assert r.returncode == 2 and "NaN" in r.stderr and "Traceback" not in r.stderr


def _uint8_28x28_model():
    """An MNIST classifier as many exports write it: uint8 (28, 28) in, QUANTIZE, Flatten, dense, uint8 out."""
    rng = np.random.default_rng(2)
    edge, body = QParams(1 / 255, 0, "uint8"), QParams(1 / 255, -128)
    out_q = QParams(0.1, 0)
    layers = [Quantize("q", (28, 28), input_q=edge, output_q=body),
              Reshape("flat", (28, 28), new_shape=(784,), q=body),
              FullyConnected("dense", (784,), weights=rng.integers(-127, 128, (10, 784)).astype(np.int8),
                             weight_scales=np.full(1, 0.01, np.float32), input_q=body, output_q=out_q),
              Quantize("out", (10,), input_q=out_q, output_q=QParams(0.1, 128, "uint8"))]
    return Model("mnist_uint8", (28, 28), edge, layers)


def test_mnist_output_on_a_28x28_uint8_model(tmp_path):
    if not (DEFAULT_DIR / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"MNIST test data absent at {DEFAULT_DIR}")
    model = _uint8_28x28_model()
    save_tflite(model, tmp_path / "m.tflite")
    r = cli("--model", tmp_path / "m.tflite", "--mnist", DEFAULT_DIR, "--count", 20, "--output", tmp_path / "y.npy")
    assert r.returncode == 0, r.stderr
    y = np.load(tmp_path / "y.npy")
    assert y.dtype == np.uint8 and y.shape == (20, 10)
    x = mnist_inputs(load_test_set(DEFAULT_DIR)[0][:20], model)
    assert x.dtype == np.uint8 and x.shape == (20, 28, 28)
    np.testing.assert_array_equal(y, run_model(model, x))
    assert "20 MNIST test images" in r.stdout


def test_mnist_on_a_model_that_is_not_28x28_is_one_line(model_file):
    _, path, _ = model_file
    r = cli("--model", path, "--mnist", DEFAULT_DIR, "--count", 5)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "28x28" in r.stderr or "absent" in r.stderr or "not found" in r.stderr
