"""Weights (and their parameters) streamed from the SPI flash during inference: the
compiler's residency and stream layout, and the core reading them from a model of the
board's flash, bit-exact with golden."""

import shutil

import numpy as np
import pytest

from boards import ICEBREAKER
from compiler.emulate import run_program
from compiler.program import CompileError, _most_saved, compile_model
from golden.config import AcceleratorConfig, ConfigError
from golden.generate import random_inputs, random_model
from golden.ops import run_model
from model_builders import depthwise_model, residual_model
from sim import pysim
from sim.models import MultiIoFlashModel
from sim.run import Engine

#: Maps in SPRAM, weights streamed; ``weight_resident_bytes`` small so small models stream.
def streaming(resident=64, **kw):
    return AcceleratorConfig(act_memory="spram", act_bank_bytes=32768, weight_stream="on",
                             weight_resident_bytes=resident, **kw)


def convs(program):
    return [d for d in program.layers if d.kind == "CONV"]


def test_auto_streams_only_models_that_do_not_fit():
    """A model that fits on chip compiles as without streaming; the flag resolves to "off"."""
    model = random_model(np.random.default_rng(4))
    program = compile_model(model, ICEBREAKER.with_(target="generic"))
    assert program.config.weight_stream == "off" and program.stream.size == 0
    plain = compile_model(model, ICEBREAKER.with_(target="generic", weight_stream="off"))
    assert program.layers == plain.layers
    np.testing.assert_array_equal(program.weights, plain.weights)


def test_stream_layout_follows_execution_and_carries_parameters():
    model = random_model(np.random.default_rng(0))
    program = compile_model(model, streaming())
    cfg = program.config
    assert cfg.streams and all(d.streamed for d in convs(program))
    at = 0
    for d in convs(program):
        words = -(-d.groups // d.word_groups)
        assert d.weight_base == at, "streamed steps follow each other in execution order"
        assert d.param_words == 3 * d.word_groups * d.group_channels
        units = program.stream[at:at + words * d.unit_words].reshape(words, d.unit_words, cfg.cols)
        # The three words of each channel after the taps are its bias, multiplier and shift.
        params = units[:, d.taps:].reshape(-1, 4).view("<i4").reshape(-1, 3)[:d.conv_shape[2]]
        sl = slice(d.param_base, d.param_base + d.conv_shape[2])
        np.testing.assert_array_equal(params[:, 0], program.params.bias[sl])
        np.testing.assert_array_equal(params[:, 1], program.params.multiplier[sl])
        np.testing.assert_array_equal(params[:, 2], program.params.shift[sl])
        at += words * d.unit_words
    assert at == len(program.stream)
    assert program.memory_map["stream"]["bytes"] == program.stream.size
    x = random_inputs(np.random.default_rng(1), model, 2)
    np.testing.assert_array_equal(program.finish_on_host(run_program(program, program.start_on_host(x))),
                                  run_model(model, x))


def test_residency_saves_the_most_stall():
    """A knapsack, not greedy: the one big item whose stall saved beats two smaller ones."""
    size = {"a": 60, "b": 50, "c": 50}
    stall = {"a": 10.0, "b": 9.0, "c": 9.0}
    assert _most_saved(list(size), size, stall, 100) == {"b", "c"}
    assert _most_saved(list(size), size, stall, 60) == {"a"}
    assert _most_saved(list(size), size, stall, 0) == set()


def test_published_models_compile_for_the_icebreaker_by_streaming():
    from published import load_published
    for name, streamed in (("ad01_int8.tflite", 150_000), ("vww_96_int8.tflite", 150_000)):
        program = compile_model(load_published(name), ICEBREAKER)
        assert program.config.streams and program.config.in_spram
        assert program.stream.size > streamed
        # What stays resident fits the SPRAMs beside the maps.
        plan = program.memory_map["spram"]
        assert plan["weight_base"] + plan["weight_words_per_spram"] <= 16384


def test_add_is_refused_when_weights_stream():
    with pytest.raises(CompileError, match="ADD takes its tables from the parameter memory"):
        compile_model(residual_model(), streaming())


@pytest.mark.parametrize("kw, message", [
    ({"weight_stream": "on"}, "needs act_memory 'auto' or 'spram'"),
    ({"weight_stream": "maybe", "act_memory": "spram"}, "weight_stream must be"),
    ({"flash_lines": 3}, "flash_lines must be 1, 2 or 4"),
    ({"weight_stream": "auto", "act_memory": "auto", "param_depth": 128}, "param_depth must be at least 256"),
    ({"weight_resident_bytes": -1}, "weight_resident_bytes"),
])
def test_config_errors(kw, message):
    with pytest.raises(ConfigError, match=message):
        AcceleratorConfig(**kw)


CASES = [("random1", 64, 2), ("random5", 400, 512), ("depthwise", 64, 512)]


@pytest.mark.parametrize("case, resident, buffer", CASES, ids=[f"{c}-res{r}-buf{b}" for c, r, b in CASES])
def test_streamed_weights_in_amaranth_simulator(case, resident, buffer):
    """Every layer streamed through a two-word prefetch buffer (the flash waits for the
    cache), some resident (res400), depthwise: equal to golden, the same cycles every
    inference, and the time spent waiting for the flash counted."""
    rng = np.random.default_rng(int(case[6:]) if case.startswith("random") else 0)
    model = random_model(rng) if case.startswith("random") else depthwise_model()
    program = compile_model(model, streaming(resident, stream_buffer_words=buffer))
    assert any(d.streamed for d in convs(program))
    x = random_inputs(rng, model, 2)
    flash = MultiIoFlashModel(program.stream_image)
    waits = []
    out, cycles = pysim.run(program, program.start_on_host(x), max_cycles=400_000, waits=waits, flash=flash)
    np.testing.assert_array_equal(program.finish_on_host(out), run_model(model, x))
    assert cycles[0] == cycles[1] and waits[0] == waits[1]
    assert 0 < waits[0] < cycles[0]
    assert flash.contention == 0
    # One quad read an inference, of exactly the stream, after the wake and the QE write.
    reads = [c for c in flash.commands if c.opcode == MultiIoFlashModel.QUAD_READ]
    assert [(c.address, c.nbytes) for c in reads] == [(0, program.stream.size)] * 2
    assert flash.quad_enabled


@pytest.mark.parametrize("fault", ["erased", "one bit", "QE clear"])
def test_a_wrong_stream_is_never_silently_used(fault, monkeypatch):
    """The weights really come from the flash, and never silently wrong: with the stream
    erased, one bit flipped, or a flash whose quad mode does not turn on (its quad reads
    return the pull-ups), the streamed bytes fail their CRC at the end of the inference."""
    rng = np.random.default_rng(1)
    model = random_model(rng)
    program = compile_model(model, streaming())
    x = program.start_on_host(random_inputs(rng, model, 1))
    image = bytearray(program.stream_image)
    if fault == "erased":
        image = b"\xff" * len(image)
    elif fault == "one bit":
        image[len(image) // 2] ^= 0x08
    flash = MultiIoFlashModel(bytes(image))
    if fault == "QE clear":
        monkeypatch.setattr(flash, "_end", lambda *a, **k: MultiIoFlashModel._end(flash, *a, **k)
                            or setattr(flash, "sr2", 0))
    with pytest.raises(RuntimeError, match="failed their CRC-32"):
        pysim.run(program, x, max_cycles=400_000, flash=flash)


def test_verilator_flash_equals_the_amaranth_simulators():
    """The C++ harness's flash (sim/flash_model.h) against MultiIoFlashModel: the same
    outputs, cycles and flash waits, cycle for cycle."""
    if shutil.which("verilator") is None:
        pytest.skip("verilator not installed (make setup installs it)")
    rng = np.random.default_rng(5)
    model = random_model(rng)
    program = compile_model(model, streaming(400))
    x = program.start_on_host(random_inputs(rng, model, 2))
    waits = []
    want, cycles = pysim.run(program, x, max_cycles=400_000, waits=waits)
    r = Engine(program, log=lambda *a, **k: None).run(x)
    np.testing.assert_array_equal(r["outputs"], want)
    assert list(r["cycles"]) == list(cycles) and list(r["flash_wait"]) == waits
