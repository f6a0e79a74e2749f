"""The MAC array and its DSP wrapper against NumPy: Amaranth simulation of the generic target,
cocotb/Icarus runs of the emitted Verilog for both targets (the iCE40 one against yosys' own
SB_MAC16 model), and the opt-in UP5K synthesis figures."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from amaranth.sim import Simulator

from boards import ICEBREAKER
from cocotb_mac_array import Stimulus, expected_results, random_reductions, run
from golden.config import MAX_PRODUCT, AcceleratorConfig
from hdl.units.dsp import DualMul8
from hdl.units.mac_array import MacArray, chain_order

REPO = Path(__file__).resolve().parent.parent
SHAPES = [(1, 2), (2, 2), (4, 4), (3, 2), (1, 1)]


def shape_id(shape):
    return f"{shape[0]}x{shape[1]}"


def simulate(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def stream(config, reductions, *, seed=0, gap=0.0, stall=0.0, dut=None):
    """Push ``reductions`` through ``dut`` (a new MacArray by default); return its results,
    per reduction the cycle of the input transfer carrying ``last``, the cycle of every
    output transfer, and the array."""
    dut = dut or MacArray(config)
    stim = Stimulus(config, reductions, seed=seed, gap=gap, stall=stall)
    last_cycles, out_cycles = [], []
    budget = 40 * len(stim.terms) + 20 * dut.latency + 4 * config.lanes * len(reductions)

    async def bench(ctx):
        def drive():
            ctx.set(dut.i.valid, stim.valid)
            ctx.set(dut.i.payload, stim.payload)
            ctx.set(dut.o.ready, stim.ready)

        stim.advance(False, None)
        drive()
        for cycle in range(budget):
            _, _, taken, last, out, payload = await ctx.tick().sample(
                dut.i.valid & dut.i.ready, dut.i.payload.last, dut.o.valid & dut.o.ready, dut.o.payload)
            if taken and last:
                last_cycles.append(cycle)
            if out:
                out_cycles.append(cycle)
            stim.advance(taken, payload if out else None)
            if stim.done:
                return
            drive()
        raise AssertionError(f"no progress: {len(stim.results)} of {stim.count} results after {budget} cycles")

    simulate(dut, bench)
    return stim.results, last_cycles, out_cycles, dut


def test_dual_mul_generic():
    """Behavioural DualMul8: both lanes, extremes included, `latency` cycles behind, CE stalls."""
    dut = DualMul8("generic")
    rng = np.random.default_rng(1)
    extremes = [(-128, -128), (-128, 127), (127, 127), (-1, -128), (0, -128)]
    pairs = extremes + [tuple(p) for p in rng.integers(-128, 128, (400, 2))]

    async def bench(ctx):
        pipeline = [None] * dut.latency
        k = 0
        while k < len(pairs) or any(pipeline):
            a = pairs[k % len(pairs)]
            b = pairs[(k * 7 + 3) % len(pairs)]
            ce = bool(rng.random() >= 0.2)
            ctx.set(dut.a, list(a))
            ctx.set(dut.b, list(b))
            ctx.set(dut.ce, ce)
            if pipeline[-1] is not None:
                pa, pb = pipeline[-1]
                p = ctx.get(dut.p)
                assert [p[0], p[1]] == [pa[0] * pb[0], pa[1] * pb[1]]
            await ctx.tick()
            if ce:
                pipeline = [(a, b) if k < len(pairs) else None] + pipeline[:-1]
                k += 1

    simulate(dut, bench)


@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_random_reductions_with_gaps_and_backpressure(shape):
    config = AcceleratorConfig(rows=shape[0], cols=shape[1])
    reductions = random_reductions(np.random.default_rng(sum(shape)), config, 40)
    results, *_ = stream(config, reductions, seed=7, gap=0.3, stall=0.4)
    assert results == expected_results(reductions)


@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_back_to_back_at_full_rate(shape):
    """Reductions of at least `min_terms` terms stream without a bubble; every result starts
    to leave exactly `latency` cycles after its last term and leaves in `lanes` consecutive
    cycles."""
    config = AcceleratorConfig(rows=shape[0], cols=shape[1])
    rng = np.random.default_rng(3)
    dut = MacArray(config)
    shortest = dut.min_terms
    reductions = [(rng.integers(-128, 128, (n, config.rows)), rng.integers(-128, 128, (n, config.cols)))
                  for n in [shortest, shortest, 1 + shortest, 17 + shortest, shortest, 40, shortest]]
    results, last_cycles, out_cycles, _ = stream(config, reductions, dut=dut)
    assert results == expected_results(reductions)
    assert np.diff(last_cycles).tolist() == [len(acts) for acts, _ in reductions[1:]]
    firsts = out_cycles[::config.lanes]
    assert [o - i for i, o in zip(last_cycles, firsts)] == [dut.latency] * len(reductions)
    assert out_cycles == [first + k for first in firsts for k in range(config.lanes)]


@pytest.mark.parametrize("shape", [(2, 2), (4, 4), (1, 1), (1, 2)], ids=shape_id)
def test_short_reductions_are_spaced_not_lost(shape):
    """1-term reductions back to back: a finished reduction may not be copied over results
    still in the chain, so once the chain is busy a `last` enters every `min_terms` cycles."""
    config = AcceleratorConfig(rows=shape[0], cols=shape[1])
    reductions = random_reductions(np.random.default_rng(5), config, 12, max_terms=1)
    results, last_cycles, _, dut = stream(config, reductions)
    assert results == expected_results(reductions)
    spacing = np.diff(last_cycles).tolist()
    assert set(spacing[len(spacing) // 2:]) == {dut.min_terms}


@pytest.mark.parametrize("acc_width,shape", [(17, (2, 2)), (25, (1, 2))])
def test_extremes_at_maximum_depth(acc_width, shape):
    """max_reduction terms of (-128)*(-128) and of (-128)*127 reach the accumulator's limits
    without wrapping; the compiler never asks for more."""
    config = AcceleratorConfig(rows=shape[0], cols=shape[1], acc_width=acc_width)
    n = config.max_reduction
    assert n * MAX_PRODUCT <= config.acc_limit
    acts = np.full((n, config.rows), -128)
    weights = np.tile([-128, 127] * config.cols, (n, 1))[:, :config.cols]
    flipped = np.where(np.arange(n)[:, None] % 2, acts, 127)
    reductions = [(acts, weights), (flipped, weights), (acts, weights)]
    results, *_ = stream(config, reductions, seed=2, gap=0.2, stall=0.2)
    assert results == expected_results(reductions)
    assert results[0][0] == n * MAX_PRODUCT


# ---------------------------------------------------------------- emitted Verilog (cocotb)


def test_dual_mul_ice40_against_yosys_model(tmp_path):
    """The hand-instantiated SB_MAC16 under yosys' cells_sim.v model: all 65536 signed
    operand pairs in both lanes, sign handling and -128 * -128 included."""
    dut = DualMul8("ice40")
    run(dut, "dual_mul8", "dual_mul_exhaustive", tmp_path, config=ICEBREAKER, latency=dut.latency, seed=1)


@pytest.mark.parametrize("config", [AcceleratorConfig(rows=2, cols=3), ICEBREAKER],
                         ids=lambda c: f"{c.target}-{c.rows}x{c.cols}")
def test_mac_array_verilog(config, tmp_path):
    dut = MacArray(config)
    run(dut, "mac_array", ["mac_array_random", "mac_array_latency"], tmp_path,
        config=config, latency=dut.latency, seed=11)


# ---------------------------------------------------------------- synthesis (opt-in)


@pytest.mark.synth
def test_synthesis_meets_up5k_targets(tmp_path):
    """bench/synth_mac_array.py on the 4x4 iCEBreaker array: all 8 DSPs still in dual 8x8
    mode, <= 1,200 LCs for the array itself (the bench's LFSR and XOR tree, about 200 LCs,
    are counted apart) and 48 MHz."""
    figures_json = tmp_path / "figures.json"
    subprocess.run([sys.executable, str(REPO / "bench" / "synth_mac_array.py"), "--seed", "1",
                    "--json", str(figures_json)], cwd=REPO, check=True)
    figures = json.loads(figures_json.read_text())
    assert figures["dsp_mode_8x8"], "yosys rewrote the hand-instantiated SB_MAC16s"
    assert figures["dsp"] == 8
    assert figures["lc_array"] <= 1200
    assert figures["fmax_mhz"] >= 48


@pytest.mark.parametrize("shape", [(4, 4), (2, 2), (4, 16)], ids=shape_id)
def test_flush_drops_the_rest_of_a_reduction(shape):
    """A consumer that needs only the first results of a reduction takes them, then raises
    ``flush`` for a cycle (taking nothing): the rest of that reduction is gone and the next
    one's results follow, whole and in order."""
    config = AcceleratorConfig(rows=shape[0], cols=shape[1])
    rng = np.random.default_rng(sum(shape))
    reductions = random_reductions(rng, config, 30)
    keep = [int(rng.integers(1, config.lanes + 1)) for _ in reductions]
    order = chain_order(config)
    want = []
    for (acts, weights), k in zip(reductions, keep):
        sums = acts.astype(np.int64).T @ weights.astype(np.int64)        # (rows, cols)
        want.append([int(sums[lane // config.cols, lane % config.cols]) for lane in order[:k]])
    dut = MacArray(config)
    got = [[] for _ in reductions]
    terms = [(acts[t], weights[t], t == 0, t == len(acts) - 1) for acts, weights in reductions
             for t in range(len(acts))]

    async def bench(ctx):
        fed, current, flushing = 0, 0, False
        for cycle in range(40 * len(terms) + 50 * len(reductions)):
            if fed < len(terms):
                act, weight, first, last = terms[fed]
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload, {"act": [int(v) for v in act], "weight": [int(v) for v in weight],
                                        "first": first, "last": last})
            else:
                ctx.set(dut.i.valid, 0)
            ctx.set(dut.flush, flushing)
            ctx.set(dut.o.ready, not flushing)
            _, _, taken, out, value = await ctx.tick().sample(dut.i.valid & dut.i.ready,
                                                              dut.o.valid & dut.o.ready, dut.o.payload)
            fed += bool(taken)
            flushing = False
            if out:
                got[current].append(value)
                if len(got[current]) == keep[current]:
                    flushing, current = True, current + 1
                    if current == len(reductions):
                        return
        raise AssertionError(f"{current} of {len(reductions)} reductions out")

    simulate(dut, bench)
    assert got == want
