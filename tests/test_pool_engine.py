# amaranth: UnusedElaboratable=no
"""The pool engine alone in the Amaranth simulator: one POOL (or LOOKUP) descriptor of a
compiled model, the four activation banks answered from NumPy (one cycle of latency, data
held while their ``en`` is low), every result taken from ``o`` under random back-pressure and
compared, value and write address, with the emulator's output.
"""

import dataclasses
from unittest import mock

import numpy as np
import pytest
from amaranth.hdl import Fragment

from compiler.program import LOOKUP, POOL, compile_model
from golden.model import Model, QParams
from golden.ops import Lookup
from hdl.core.layer_desc import encode
from hdl.core.pool_engine import PoolEngine
from hdl.units.pool import Pool
from unit_support import (CONFIG, StreamTaker, bank_ports, emulate_upto, kick, layer_input, lossy_ready, out_positions,
                          pool_model, preload_banks, random_steps, simulate)

MODELS = {
    # 3x3 stride 2 SAME on 7x6x3: padded windows of 4, 6 and 9 elements, clamped by RELU.
    "max-3x3-s2-same-relu": lambda: pool_model((7, 6, 3), "MAX", (3, 3), (2, 2), "SAME", activation="RELU"),
    # A non-square 5x3 window, stride 1, SAME on 6x5x2 (padding 2 rows, 1 column): windows
    # of 6 .. 15 elements, so the divisor changes from element to element.
    "avg-5x3-s1-same": lambda: pool_model((6, 5, 2), "AVERAGE", (5, 3), (1, 1), "SAME"),
    # KWS's classifier head, smaller: a 25x5 average over the whole map (125 elements).
    "avg-whole-map-25x5": lambda: pool_model((25, 5, 3), "AVERAGE", (25, 5), (1, 1), "VALID"),
    # After a 1x1 convolution, so the pooled map is stored above bank base 0: 3x2 windows,
    # stride (1, 2), VALID, clamped by RELU6.
    "avg-3x2-after-conv": lambda: pool_model((5, 6, 3), "AVERAGE", (3, 2), (1, 2), "VALID", activation="RELU6",
                                             q=QParams(0.02, -60), conv_first=True),
}


def lookup_model():
    """A LOGISTIC alone: a LOOKUP step, which the pool engine runs as 1x1 MAX windows."""
    q = QParams(0.06, 5)
    return Model(name="lut", input_shape=(3, 5, 2), input_q=q,
                 layers=(Lookup(name="lut", input_shape=(3, 5, 2), kind="LOGISTIC", input_q=q),))


@dataclasses.dataclass
class PoolCase:
    program: object
    d: object             #: the POOL or LOOKUP step
    fields: dict          #: hdl.core.layer_desc.encode of it
    in_map: np.ndarray    #: the map it reads (the emulator's, after a convolution)
    out: np.ndarray       #: the emulator's output of the step (H, W, C)


def pool_case(model, seed=0, config=CONFIG, index=None, program=None):
    """Compile ``model`` and take its POOL or LOOKUP step ``index`` (the first by default).
    AVERAGE pools whose windows stay inside the map, which the compiler runs as depthwise
    convolutions, stay POOL steps here, so that the engine's division meets them too."""
    if program is None:
        with mock.patch("compiler.program._average_multiplier", return_value=None):
            program = compile_model(model, config)
    k = next(i for i, d in enumerate(program.layers) if d.kind in (POOL, LOOKUP)) if index is None else index
    d = program.layers[k]
    x = np.random.default_rng(seed).integers(-128, 128, program.input_shape).astype(np.int8)
    out = emulate_upto(program, x, k)[0].reshape(d.out_shape)
    return PoolCase(program, d, encode(d, config, k == len(program.layers) - 1), layer_input(program, x, k), out)


def pool_latency(max_window):
    """The latency of the engine's Pool unit (built, then elaborated so that Amaranth does not
    warn about an unused elaboratable)."""
    pool = Pool(lanes=1, max_window=max_window)
    Fragment.get(pool, None)
    return pool.latency


def window_elements(d):
    """Input bytes the engine reads: the unpadded part of every window (TFLite's filter_count)."""
    h, w, c = d.in_shape
    oh, ow, _ = d.out_shape
    (kh, kw), (sh, sw), (pt, pl) = d.kernel, d.stride, d.pads
    rows = [min(oy * sh - pt + kh, h) - max(oy * sh - pt, 0) for oy in range(oh)]
    cols = [min(ox * sw - pl + kw, w) - max(ox * sw - pl, 0) for ox in range(ow)]
    return sum(rows) * sum(cols) * c


def run_engine(cases, stall, seed=0, config=CONFIG):
    """Simulate one engine over each case's descriptor in turn (the banks are reloaded while
    it is idle); returns per case the results taken ((value, bank, address) in order) and the
    cycles from ``start`` to ``done``.  Checks the stream protocol on the way: a refused
    result stays, unchanged."""
    rng = np.random.default_rng(seed)
    max_window = max(case.program.pool_window for case in cases)
    dut = PoolEngine(config, max_window=max_window)
    latency = pool_latency(max_window)
    state = {}
    results = []

    async def run_one(ctx, case):
        d = case.d
        state["banks"] = preload_banks(config, d.in_shape, d.in_base, case.in_map, rng)
        reads = window_elements(d)
        bound = int((reads + int(np.prod(d.out_shape)) * latency) / (1 - stall)) * 2 + 100
        stream = StreamTaker("result")
        taken = stream.taken
        await kick(ctx, dut, case.fields)
        for cycle in range(bound):
            ready = lossy_ready(rng, stall)
            ctx.set(dut.o.ready, ready)
            _, _, valid, payload, done = await ctx.tick().sample(dut.o.valid, dut.o.payload, dut.done)
            stream.step(cycle, valid, ready, (payload.value, payload.bank, payload.addr))
            if done:
                assert not valid, f"cycle {cycle}: done with a result on o"
                break
        else:
            raise AssertionError(f"pool engine not done within {bound} cycles ({len(taken)} results)")
        ctx.set(dut.o.ready, 1)
        for _ in range(latency + 2):
            _, _, valid, done = await ctx.tick().sample(dut.o.valid, dut.done)
            assert not valid and done, "a result after done"
        results.append((taken, cycle + 1, reads))

    async def main(ctx):
        for case in cases:
            await run_one(ctx, case)

    simulate(dut, main, bank_ports(dut.banks, lambda: state["banks"]))
    return results


def check_results(d, results, want):
    positions = out_positions(d)
    assert len(results) == len(positions), f"{len(results)} results, {len(positions)} expected"
    got_pos = [(b, a) for _, b, a in results]
    bad = [k for k, (g, w) in enumerate(zip(got_pos, positions)) if g != w]
    assert not bad, (f"{len(bad)} results at the wrong place, first #{bad[0]}: {got_pos[bad[0]]} "
                     f"instead of {positions[bad[0]]}")
    np.testing.assert_array_equal(np.array([v for v, _, _ in results]).reshape(d.out_shape), want)


@pytest.mark.parametrize("name", MODELS)
def test_results_under_backpressure_equal_emulator(name):
    """Values and (bank, address) of every output element, in raster order, with ``o.ready``
    low 40 % of cycles."""
    case = pool_case(MODELS[name]())
    assert case.d.kind == POOL
    [(results, _, _)] = run_engine([case], stall=0.4, seed=1)
    check_results(case.d, results, case.out)


@pytest.mark.parametrize("name", MODELS)
def test_one_byte_a_cycle_when_always_ready(name):
    """With ``o.ready`` high the engine reads one byte a cycle: ``start`` to ``done`` takes
    the reads plus the Pool unit's latency and the engine's address and read stages."""
    case = pool_case(MODELS[name](), seed=2)
    [(results, cycles, reads)] = run_engine([case], stall=0.0, seed=2)
    check_results(case.d, results, case.out)
    assert cycles <= reads + pool_latency(case.program.pool_window) + 2, f"{cycles} cycles for {reads} reads"


def test_lookup_passes_bytes_to_the_table():
    """A LOOKUP step runs as 1x1 MAX windows: each input byte leaves unchanged at its output
    address, and the program's table maps it to the emulator's output."""
    case = pool_case(lookup_model(), seed=3)
    d = case.d
    assert d.kind == LOOKUP
    [(results, _, _)] = run_engine([case], stall=0.4, seed=3)
    check_results(d, results, case.in_map.reshape(d.out_shape))
    [(_, cycles, reads)] = run_engine([case], stall=0.0, seed=3)
    assert cycles <= reads + pool_latency(case.program.pool_window) + 2, f"{cycles} cycles for {reads} bytes"
    table = case.program.tables[d.table]
    np.testing.assert_array_equal(table[np.array([v for v, _, _ in results]) + 128].reshape(d.out_shape), case.out)


def test_descriptors_back_to_back_on_one_engine():
    """The sequencer reuses the engine: every pool above and a LOOKUP on one instance (its
    divider sized for the largest window), one after the other."""
    cases = [pool_case(MODELS[name](), seed=4) for name in MODELS]
    cases.insert(2, pool_case(lookup_model(), seed=4))
    for case, (results, _, _) in zip(cases, run_engine(cases, stall=0.2, seed=4)):
        want = case.in_map.reshape(case.d.out_shape) if case.d.kind == LOOKUP else case.out
        check_results(case.d, results, want)


N_RANDOM = 6


@pytest.mark.parametrize("index", range(N_RANDOM))
def test_random_model_steps(index):
    """Every POOL and LOOKUP step of a small random model (golden.generate: any window,
    stride and padding, global pools, tables), back to back on one engine."""
    seed, model, program, steps = random_steps((POOL, LOOKUP), N_RANDOM, 2000)[index]
    cases = [pool_case(model, seed=seed, index=k, program=program) for k in steps]
    for case, (results, _, _) in zip(cases, run_engine(cases, stall=0.3, seed=seed)):
        want = case.in_map.reshape(case.d.out_shape) if case.d.kind == LOOKUP else case.out
        check_results(case.d, results, want)
