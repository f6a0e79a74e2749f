"""The generated accelerator, cycle by cycle, against the golden model."""

import shutil

import numpy as np
import pytest

from compiler.program import compile_model
from golden.config import AcceleratorConfig
from golden.generate import random_inputs, random_model
from golden.mnist import DEFAULT_DIR, load_test_set, quantize_images
from golden.ops import run_model
from golden.run import DEFAULT_MODEL
from golden.tflite_io import load_tflite
from sim import pysim
from sim.run import finish_on_host, simulate

N_RANDOM = 40


@pytest.mark.parametrize("seed", range(N_RANDOM))
def test_random_model_in_amaranth_simulator(seed):
    """Every op mix the generator makes, through the RTL, equal to golden's final output."""
    rng = np.random.default_rng(seed)
    model = random_model(rng)
    program = compile_model(model, AcceleratorConfig())
    x = random_inputs(rng, model, 3)
    out, cycles = pysim.run(program, x, max_cycles=100_000)
    np.testing.assert_array_equal(finish_on_host(program, out), run_model(model, x))
    # The first run also loads activation tables; after that only the model sets the count.
    assert cycles[1] == cycles[2], "cycle count must not depend on the data"


@pytest.fixture(scope="module")
def mnist():
    try:
        images, labels = load_test_set(DEFAULT_DIR)
    except FileNotFoundError as e:
        pytest.skip(f"MNIST test data absent ({e}); it is expected at ../shared/data/mnist")
    return images[:100], labels[:100]


def test_shipped_model_on_100_images_verilator(mnist):
    if shutil.which("verilator") is None:
        pytest.skip("verilator not installed (make setup installs it)")
    model = load_tflite(DEFAULT_MODEL)
    x = quantize_images(mnist[0], model.input_q)
    y, report = simulate(model, x, check=True, log=lambda *a, **k: None)
    assert report["checked"] == "all outputs equal golden"
    assert report["cycles_per_inference"] <= 200_000
    assert sum(report["cycles_per_layer"].values()) == report["cycles_per_inference"]
    assert report["utilisation"] >= 0.87
    assert report["host_ops"] == ["SOFTMAX"]
