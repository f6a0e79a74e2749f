"""The generated accelerator, cycle by cycle, against the golden model."""

import functools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from boards import ICEBREAKER, get_board
from compiler.program import CompileError, compile_model
from golden.config import AcceleratorConfig
from golden.generate import random_graph, random_inputs, random_model
from golden.mnist import quantize_images
from golden.model import Model, QParams
from golden.ops import FullyConnected
from golden.ops import run_model
from golden.quant import requantize
from golden.run import DEFAULT_MODEL
from golden.tflite_io import load_tflite
from sim import pysim
from sim.run import simulate
from published import load_published
from model_builders import (broadcast_add_model, concat_model, depthwise_model, pad_mean_model, residual_model,
                            strided_conv)
from unit_support import pool_model

N_RANDOM = 40
REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("seed", range(N_RANDOM))
def test_random_model_in_amaranth_simulator(seed):
    """Every op mix the generator makes, through the RTL, equal to golden's final output."""
    rng = np.random.default_rng(seed)
    model = random_model(rng)
    program = compile_model(model, AcceleratorConfig())
    x = random_inputs(rng, model, 3)
    out, cycles = pysim.run(program, program.start_on_host(x), max_cycles=100_000)
    np.testing.assert_array_equal(program.finish_on_host(out), run_model(model, x))
    # The first run also loads activation tables; after that only the model sets the count.
    assert cycles[1] == cycles[2], "cycle count must not depend on the data"


#: The four banks in the SPRAMs beside the weights, fed through the weight cache.
SPRAM_MAPS = AcceleratorConfig(act_memory="spram", act_bank_bytes=32768)


@pytest.mark.parametrize("case", [f"random{seed}" for seed in range(8)] + ["residual", "depthwise", "pad-mean"])
def test_maps_in_spram_in_amaranth_simulator(case):
    """Maps in SPRAM: drain writes stall the readers, each channel group's weights are
    fetched into the cache first; the outputs equal golden's all the same."""
    if case.startswith("random"):
        rng = np.random.default_rng(int(case[6:]))
        model = random_model(rng)
    else:
        rng = np.random.default_rng(0)
        model = {"residual": residual_model, "depthwise": depthwise_model, "pad-mean": pad_mean_model}[case]()
    program = compile_model(model, SPRAM_MAPS)
    x = random_inputs(rng, model, 3)
    out, cycles = pysim.run(program, program.start_on_host(x), max_cycles=200_000)
    np.testing.assert_array_equal(program.finish_on_host(out), run_model(model, x))
    assert cycles[1] == cycles[2], "cycle count must not depend on the data"


@pytest.mark.parametrize("shape, filt, stride, padding, activation", [
    ((25, 5, 3), (25, 5), (1, 1), "VALID", "NONE"),      # KWS's head: one 125-element window
    ((5, 6, 3), (3, 2), (1, 2), "VALID", "RELU6"),
    ((6, 6, 2), (2, 2), (2, 2), "SAME", "NONE"),         # SAME that pads nothing
])
def test_average_pool_inside_the_map_runs_as_depthwise(shape, filt, stride, padding, activation):
    """An AVERAGE pool whose windows never cross the map's edge is a depthwise convolution
    of ones whose multiplier reproduces TFLite's rounded division: no pool step, and the
    outputs equal golden's, the extremes of the int8 range included."""
    model = pool_model(shape, "AVERAGE", filt, stride, padding, activation=activation, q=QParams(0.05, -7))
    program = compile_model(model, AcceleratorConfig())
    assert [d.kind for d in program.layers] == ["CONV"] and program.layers[0].depthwise
    rng = np.random.default_rng(4)
    x = np.concatenate([np.full((1, *shape), -128, np.int8), np.full((1, *shape), 127, np.int8),
                        random_inputs(rng, model, 2)])
    out, _ = pysim.run(program, program.start_on_host(x), max_cycles=100_000)
    np.testing.assert_array_equal(program.finish_on_host(out), run_model(model, x))


def test_average_pool_with_padded_windows_keeps_the_pool_engine():
    model = pool_model((6, 5, 2), "AVERAGE", (5, 3), (1, 1), "SAME")
    assert [d.kind for d in compile_model(model, AcceleratorConfig()).layers] == ["POOL"]


@pytest.fixture(scope="module")
def mnist(mnist_test_set):
    images, labels = mnist_test_set
    return images[:100], labels[:100]


def test_shipped_model_on_100_images_verilator(mnist):
    if shutil.which("verilator") is None:
        pytest.skip("verilator not installed (make setup installs it)")
    model = load_tflite(DEFAULT_MODEL)
    x = quantize_images(mnist[0], model.input_q)
    y, report = simulate(model, x, check=True, log=lambda *a, **k: None)
    assert report["checked"] == "all outputs equal golden"
    assert report["cycles_per_inference"] <= 188_712          # issue 10: no worse than before it
    assert sum(report["cycles_per_layer"].values()) == report["cycles_per_inference"]
    assert report["utilisation"] >= 0.94
    assert report["host_ops"] == ["SOFTMAX"]


@pytest.mark.slow
def test_all_10k_mnist_images_on_the_hardware(mnist, tmp_path):
    """Opt-in (make bench): the whole test set, bit-exact, accuracy measured on the hardware."""
    out = tmp_path / "hw_mnist.json"
    subprocess.run([sys.executable, str(REPO / "bench" / "hw_mnist.py"), "--out", str(out)], check=True)
    report = json.loads(out.read_text())
    assert report["checked"] == "all outputs equal golden"
    assert report["accuracy"] >= 0.975


def _fc_model_where_roundings_differ():
    """A small FULLY_CONNECTED model and inputs on which single and double rounding give
    different int8 outputs (rare: found by a seeded search), so the test sees the mode."""
    for seed in range(200):
        rng = np.random.default_rng(seed)
        q = QParams(0.05, -10)
        layer = FullyConnected(name="fc", input_shape=(16,), weights=rng.integers(-127, 128, (8, 16)).astype(np.int8),
                               bias=rng.integers(-5000, 5000, 8).astype(np.int32),
                               weight_scales=np.array([0.01], np.float32), input_q=q,
                               output_q=QParams(float(rng.uniform(0.5, 4)), 3))
        model = Model(name="fc_rounding", input_shape=(16,), input_q=q, layers=(layer,))
        x = rng.integers(-128, 128, (64, 16)).astype(np.int8)
        acc = (x.astype(np.int64) - q.zero_point) @ layer.weights.T.astype(np.int64) + layer.bias
        mult, shift = layer.multipliers_shifts
        lo, hi = layer.act_range
        double = requantize(acc, mult, shift, layer.output_q.zero_point, lo, hi, single_rounding=False)
        rows = np.flatnonzero((double != run_model(model, x)).any(axis=1))
        if len(rows):
            return model, x[rows[:2]], double[rows[:2]]
    raise AssertionError("no model found where the roundings differ")


def test_fully_connected_rounds_once_in_hardware():
    model, x, double = _fc_model_where_roundings_differ()
    program = compile_model(model, AcceleratorConfig())
    out, _ = pysim.run(program, program.start_on_host(x))
    got = program.finish_on_host(out)
    np.testing.assert_array_equal(got, run_model(model, x))
    assert (got != double).any()


@pytest.mark.parametrize("kwargs, weight_bytes, word_groups", [
    ({"pool": True, "padding": "VALID"}, None, 1), ({"pool": True, "padding": "VALID"}, 128, 2),
    ({"mult": 3, "stride": (1, 1)}, None, 1),
    ({"c": 6, "mult": 1, "stride": (2, 2)}, None, 1), ({"c": 6, "mult": 1, "stride": (2, 2)}, 128, 4)])
def test_depthwise_in_amaranth_simulator(kwargs, weight_bytes, word_groups):
    """Depthwise groups (one input channel, the multiplier's columns) with a fused 2x2 max
    pool, with a multiplier of 3, and strided, through the RTL: each group in weight words
    of its own, or (in a weight memory of 128 B) groups sharing words, four channels a word
    with the last word half used; the random models add strides and sizes."""
    model = depthwise_model(**kwargs)
    config = AcceleratorConfig() if weight_bytes is None else AcceleratorConfig(weight_mem_bytes=weight_bytes)
    program = compile_model(model, config)
    assert program.layers[0].depthwise and program.layers[0].word_groups == word_groups
    x = random_inputs(np.random.default_rng(8), model, 2)
    out, _ = pysim.run(program, program.start_on_host(x), max_cycles=100_000)
    np.testing.assert_array_equal(program.finish_on_host(out), run_model(model, x))


@pytest.mark.parametrize("config", [AcceleratorConfig(), ICEBREAKER.with_(target="generic", act_memory="spram")],
                         ids=["bram", "spram"])
def test_space_to_depth_input_in_amaranth_simulator(config):
    """A stride-2 first convolution (KWS's 10x4 kernel, SAME) on the input the host stores
    space-to-depth, through the RTL with block-RAM and with SPRAM maps: 2x2 pixel blocks, and
    outputs equal to golden's."""
    conv = strided_conv("conv", (13, 6, 1), (10, 4), "SAME", 3)
    model = Model(name="s2d", input_shape=(13, 6, 1), input_q=conv.input_q, layers=(conv,))
    program = compile_model(model, config)
    assert program.input_layout is not None and program.layers[0].block == 2
    x = random_inputs(np.random.default_rng(5), model, 2)
    out, _ = pysim.run(program, program.start_on_host(x), max_cycles=100_000)
    np.testing.assert_array_equal(program.finish_on_host(out), run_model(model, x))


def test_pad_and_mean_in_amaranth_simulator():
    """Folded PADs (the convolutions' padding) and a MEAN run as a depthwise sum, through the RTL."""
    model = pad_mean_model()
    program = compile_model(model, AcceleratorConfig())
    x = random_inputs(np.random.default_rng(12), model, 2)
    out, _ = pysim.run(program, program.start_on_host(x), max_cycles=100_000)
    np.testing.assert_array_equal(program.finish_on_host(out), run_model(model, x))


@pytest.mark.parametrize("pooled", [True, False])
def test_concatenation_in_amaranth_simulator(pooled):
    """A conv (with a fused pool) and a pool engine step writing their slices of a channel
    CONCATENATION in place, through the RTL."""
    model = concat_model(pooled=pooled)
    program = compile_model(model, AcceleratorConfig())
    x = random_inputs(np.random.default_rng(13), model, 2)
    out, _ = pysim.run(program, program.start_on_host(x), max_cycles=100_000)
    np.testing.assert_array_equal(program.finish_on_host(out), run_model(model, x))


@pytest.mark.parametrize("kwargs", [{"small_first": True}, {"scalar": True}])
def test_broadcast_add_in_amaranth_simulator(kwargs):
    """The add engine repeating a per-channel vector, and one value, over a map, through the RTL."""
    model = broadcast_add_model(**kwargs)
    program = compile_model(model, AcceleratorConfig())
    x = random_inputs(np.random.default_rng(14), model, 2)
    out, _ = pysim.run(program, program.start_on_host(x), max_cycles=100_000)
    np.testing.assert_array_equal(program.finish_on_host(out), run_model(model, x))


def test_residual_block_in_amaranth_simulator():
    """Conv, conv, ADD of the two (different scales), dense: the add engine and the planner
    keeping the first conv's output live across the second."""
    model = residual_model()
    program = compile_model(model, AcceleratorConfig())
    assert [d.kind for d in program.layers] == ["CONV", "CONV", "ADD", "CONV"]
    x = random_inputs(np.random.default_rng(10), model, 3)
    out, _ = pysim.run(program, program.start_on_host(x), max_cycles=100_000)
    np.testing.assert_array_equal(program.finish_on_host(out), run_model(model, x))


#: Random graphs (part 1's generator) run with room for their maps and tables: 40 with int8
#: edges, 8 with uint8 or float32 edges (QUANTIZE/DEQUANTIZE there run on the host).
GRAPH_CONFIG = AcceleratorConfig(act_bank_bytes=8192, param_depth=4096, table_slots=8)
GRAPH_IO = [("int8", "int8")] * 40 + [("uint8", "uint8"), ("float32", "float32"), ("uint8", "float32"),
                                      ("float32", "uint8")] * 2


@functools.cache
def compiling_graph_seeds(io):
    """The first seeds whose random graph with ``io`` edges the accelerator runs (about 1 in
    3 with int8 edges: broadcasting ADDs, PADs that are not a convolution's padding, MEANs
    over other than the spatial axes and CONCATENATIONs that would move data are refused in
    one line)."""
    count = GRAPH_IO.count(io)
    seeds = [s for s in range(400) if _compiles(random_graph(np.random.default_rng(s), io=io))]
    assert len(seeds) >= count, f"only {len(seeds)} of 400 random graphs with {io} edges compile"
    return seeds[:count]


def _compiles(model):
    try:
        compile_model(model, GRAPH_CONFIG)
        return True
    except CompileError:
        return False


@pytest.mark.parametrize("index", range(len(GRAPH_IO)))
def test_random_graph_in_amaranth_simulator(index):
    """Residual ADDs, depthwise, requantising QUANTIZEs, views, pools, tables, MEANs, folded
    PADs and concatenations in random DAGs, through the RTL, equal to golden."""
    io = GRAPH_IO[index]
    seed = compiling_graph_seeds(io)[GRAPH_IO[:index].count(io)]
    rng = np.random.default_rng(seed)
    model = random_graph(rng, io=io)
    program = compile_model(model, GRAPH_CONFIG)
    x = random_inputs(rng, model, 2)
    out, _ = pysim.run(program, program.start_on_host(x), max_cycles=400_000)
    np.testing.assert_array_equal(program.finish_on_host(out), run_model(model, x))


#: KWS's maps need 5,172 B per bank, ResNet-8's 13,056 B (three live 32x32x16 maps), more
#: than the UP5K's block RAM gives the four banks: the iCEBreaker keeps KWS's in SPRAM, and
#: its array and requantiser run ResNet-8 with larger banks (and its 1,882 parameter entries,
#: more than the UP5K's block RAM holds).
RESNET_CONFIG = ICEBREAKER.with_(act_bank_bytes=16384, param_depth=2048)


ULX3S = get_board("ulx3s-85f").config


@pytest.mark.parametrize("name, config, max_cycles", [
    ("kws_ref_model.tflite", ICEBREAKER, 320_000),           # maps in SPRAM
    ("pretrainedResnet_quant.tflite", RESNET_CONFIG, 1_450_000),
    ("micro_speech_quantized.tflite", ICEBREAKER, 25_000),
    ("hello_world_int8.tflite", ICEBREAKER, 300),
    # The ULX3S's 64 lanes with the weights in block RAM: the AD autoencoder's 258 KiB of
    # dense weights, and VWW's 203 KiB (1.2 M cycles, opt-in for its simulation time).
    ("ad01_int8.tflite", ULX3S, 18_500),
    pytest.param("vww_96_int8.tflite", ULX3S, 1_200_000, marks=pytest.mark.slow),
    # The UP5K streams the weights that do not fit its SPRAMs from the flash.
    pytest.param("ad01_int8.tflite", ICEBREAKER, 690_000, marks=pytest.mark.slow),
    pytest.param("vww_96_int8.tflite", ICEBREAKER, 1_600_000, marks=pytest.mark.slow),
])
def test_published_model_through_verilator(name, config, max_cycles):
    """Eight random inputs per model through the emitted Verilog, equal to golden; the cycle
    bounds are today's counts (bench/published_hw.py) rounded up, so a slowdown fails."""
    if shutil.which("verilator") is None:
        pytest.skip("verilator not installed (make setup installs it)")
    model = load_published(name)
    x = random_inputs(np.random.default_rng(9), model, 8)
    y, report = simulate(model, x, check=True, config=config, log=lambda *a, **k: None)
    assert report["checked"] == "all outputs equal golden"
    assert report["engine"] == "verilator"
    assert report["cycles_per_inference"] <= max_cycles
