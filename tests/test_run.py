"""The golden command line: outputs, per-layer dumps, MNIST scoring and one-line errors."""

import subprocess
import sys

import numpy as np
import pytest

from golden.generate import random_inputs, random_model
from golden.mnist import DEFAULT_DIR
from golden.ops import run_model
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
