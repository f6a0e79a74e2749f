# amaranth: UnusedElaboratable=no
"""The requantiser against golden.quant: Amaranth simulation over edge cases and random
vectors (NumPy-seeded and Hypothesis) for every digit width and several lane counts, with
input gaps and output back-pressure, both rounding modes mixed in one stream (the single
rounding where the left shift does not wrap); its timing properties; a cocotb/Icarus run of
the emitted Verilog; and the opt-in UP5K synthesis figures."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from amaranth.sim import Simulator
from hypothesis import given, settings, strategies as st

from cocotb_requant import (INT8_MAX, INT8_MIN, Q30, Q31_MAX, Stimulus, channel, edge_transfers, expected,
                            in_domain, domain_edge_transfers, no_wrap_range, random_transfers, run, single_ok,
                            tensor)
from golden.config import AcceleratorConfig
from golden.quant import INT32_MAX, INT32_MIN, wrap_int32
from hdl.units.requant import DEFAULT_DIGIT_BITS, Requantizer

REPO = Path(__file__).resolve().parent.parent


def simulate(dut, items, *, seed=0, gap=0.0, stall=0.0, tensor=None):
    """Stream ``items`` through ``dut`` under :class:`Stimulus`; return the stimulus (results
    and transfer cycles)."""
    lanes = dut.lanes
    stim = Stimulus(dut.config, items, seed=seed, gap=gap, stall=stall, tensor=tensor)
    budget = 4 * dut.interval * len(items) + 10 * dut.latency

    async def bench(ctx):
        def drive():
            ctx.set(dut.i.valid, stim.valid)
            ctx.set(dut.i.payload, stim.payload)
            ctx.set(dut.o.ready, stim.ready)

        stim.advance(False, False, None)
        drive()
        for _ in range(budget):
            _, _, taken, out_valid, payload = await ctx.tick().sample(
                dut.i.valid & dut.i.ready, dut.o.valid, dut.o.payload)
            stim.advance(taken, out_valid, [payload[lane] for lane in range(lanes)] if out_valid else None)
            if stim.done:
                return
            drive()
        raise AssertionError(f"no progress: {len(stim.results)} of {len(items)} results after {budget} cycles")

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return stim


def check(dut, items, **kwargs):
    stim = simulate(dut, items, **kwargs)
    for item, got in zip(items, stim.results):
        assert got == expected(item), f"{item} gave {got}"


#: (digit_bits, lanes, random transfers): the default width gets the most vectors.
SETTINGS = [(4, 1, 3000), (2, 1, 600), (8, 1, 1500), (4, 2, 600), (2, 3, 200)]


@pytest.mark.parametrize("digit_bits, lanes, count", SETTINGS, ids=[f"k{k}-lanes{n}" for k, n, _ in SETTINGS])
def test_edges_and_random_vectors_match_golden(digit_bits, lanes, count):
    """Edge cases, then NumPy-seeded random transfers, both rounding modes mixed, with 30%
    input gaps and 30% back-pressure: every result equals golden.quant.requantize."""
    config = AcceleratorConfig(requant_lanes=lanes)
    dut = Requantizer(config, digit_bits)
    items = edge_transfers(config) + random_transfers(np.random.default_rng(digit_bits * 10 + lanes), config, count)
    check(dut, items, seed=lanes, gap=0.3, stall=0.3)


NARROW = [(8, 21), (8, 24), (8, 17), (4, 17), (2, 19)]


@pytest.mark.parametrize("digit_bits, requant_bits", NARROW, ids=[f"k{k}-bits{b}" for k, b in NARROW])
def test_narrowed_requantiser_matches_golden_in_its_domain(digit_bits, requant_bits):
    """``requant_bits`` below 32 (what the compiler sets from a model's sums and shifts):
    fewer digits a transfer, and every result in the domain (x' fits the bits) still equals
    golden, at the domain's corners and on random transfers, with gaps and back-pressure."""
    config = AcceleratorConfig(requant_lanes=1, requant_bits=requant_bits)
    dut = Requantizer(config, digit_bits)
    assert dut.steps == -(-requant_bits // digit_bits) < 32 // digit_bits or requant_bits > 32 - digit_bits
    items = domain_edge_transfers(config) + random_transfers(np.random.default_rng(requant_bits), config, 1500)
    assert all(in_domain(config, item) for item in items)
    assert {-128, 127} <= {expected(item)[0] for item in items}
    check(dut, items, seed=requant_bits, gap=0.3, stall=0.3)


HELD = [(8, 21, 0), (8, 21, 1), (4, 32, 0), (4, 32, 1)]


@pytest.mark.parametrize("digit_bits, requant_bits, single", HELD, ids=[f"k{k}-bits{b}-single{s}" for k, b, s in HELD])
def test_held_tensor_matches_golden(digit_bits, requant_bits, single):
    """``held_tensor`` (the drain's: zero point, bounds and rounding mode from the layer's
    descriptor): streams in which every transfer has one tensor, several of them, each
    checked in its own run, with gaps and back-pressure."""
    config = AcceleratorConfig(requant_lanes=1, requant_bits=requant_bits)
    rng = np.random.default_rng(requant_bits + single)
    for t in (tensor(0, single_rounding=single), tensor(-128, -128, 127, single), tensor(5, 5, single_rounding=single),
              tensor(-7, -20, 3, single)):
        items = [{**item, **t} for item in domain_edge_transfers(config) + random_transfers(rng, config, 300)
                 if not single or all(single_ok(lane) for lane in item["lanes"])]
        check(Requantizer(config, digit_bits, held_tensor=True), items, seed=single, gap=0.3, stall=0.3, tensor=t)


def test_edge_cases_are_exercised():
    """The edge list really reaches the corners it claims (so the test above means something)."""
    config = AcceleratorConfig(requant_lanes=1)
    items = edge_transfers(config)
    results = [expected(item)[0] for item in items]
    tensors = [(item["zero_point"], item["act_min"], item["act_max"]) for item in items]
    lanes = [item["lanes"][0] for item in items]
    assert {-128, 127} <= set(results)
    assert any(r == amin > INT8_MIN for r, (_, amin, _) in zip(results, tensors))      # clamped low
    assert any(r == amax < INT8_MAX for r, (_, _, amax) in zip(results, tensors))      # clamped high
    assert any(lane["acc"] + lane["bias"] > INT32_MAX for lane in lanes)               # acc + bias wraps
    assert any(lane["acc"] + lane["bias"] == INT32_MIN for lane in lanes)
    assert {-31, 30, 31} <= {lane["shift"] for lane in lanes}
    assert {0, Q30, Q31_MAX} <= {lane["multiplier"] for lane in lanes}

    # the single rounding: in its domain, at its corners, switching mode transfer by transfer
    single = [item for item in items if item["single_rounding"]]
    assert all(single_ok(lane) for item in single for lane in item["lanes"])
    modes = [item["single_rounding"] for item in items]
    assert sum(a != b for a, b in zip(modes, modes[1:])) >= len(single)
    assert {-128, 127} <= {expected(item)[0] for item in single}
    assert {-31, 0, 1, 30} <= {item["lanes"][0]["shift"] for item in single}
    left_shifted = {int(wrap_int32(lane["acc"] + lane["bias"])) << lane["shift"]
                    for item in single for lane in item["lanes"] if lane["shift"] > 0}
    assert {INT32_MIN, INT32_MAX - 1} <= left_shifted     # x' = x << left at the int32 ends
    # where the two roundings differ (ties, and a double rounding that creates one), both ways
    differ = [expected(item)[0] - expected({**item, "single_rounding": 0})[0] for item in single]
    assert {-1, 1} <= set(differ)


MULTIPLIERS = st.sampled_from([0, 1, Q30, Q30 + 1, Q31_MAX]) | st.integers(0, Q31_MAX)


@st.composite
def lane_strategy(draw, acc_width, single):
    """A lane over the whole domain, or for the single rounding over the part where x << left
    does not wrap (x drawn from that range, so Hypothesis pushes x' to the int32 ends)."""
    limit = 1 << (acc_width - 1)
    acc = draw(st.integers(-limit, limit - 1))
    multiplier = draw(MULTIPLIERS)
    if not single:
        return {"acc": acc, "bias": draw(st.integers(INT32_MIN, INT32_MAX)), "multiplier": multiplier,
                "shift": draw(st.integers(-31, 31))}
    shift = draw(st.integers(-31, 30))
    return channel(draw(st.integers(*no_wrap_range(shift))), multiplier, shift, acc)


@st.composite
def tensor_strategy(draw):
    zp = draw(st.integers(INT8_MIN, INT8_MAX))
    return tensor(zp, draw(st.integers(INT8_MIN, zp)), draw(st.integers(zp, INT8_MAX)), draw(st.booleans()))


@st.composite
def transfer_strategy(draw):
    t = draw(tensor_strategy())
    return {"lanes": [draw(lane_strategy(AcceleratorConfig().acc_width, t["single_rounding"]))], **t}


@settings(max_examples=25, deadline=None)
@given(st.lists(transfer_strategy(), min_size=1, max_size=40))
def test_hypothesis_vectors_match_golden(items):
    """Hypothesis-chosen lanes (it favours the ends of every range) back to back, each
    transfer in either rounding mode."""
    config = AcceleratorConfig(requant_lanes=1)
    check(Requantizer(config), items)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(-300, 300), st.integers(Q30, Q31_MAX), st.integers(-31, 30),
                          st.integers(-1, 1), tensor_strategy()), min_size=1, max_size=40))
def test_hypothesis_near_ties_match_golden(cases):
    """Results inside the int8 range, with x a rounding step either side of an exact tie of
    the single rounding (x * m / 2**(31 - shift) = target + 1/2), in either mode; no x wraps
    when shifted, as |x * 2**shift| stays near 2 * 301."""
    config = AcceleratorConfig(requant_lanes=1)
    items = []
    for target, multiplier, shift, nudge, t in cases:
        x = round((target + 0.5) * 2.0 ** (31 - shift) / multiplier) + nudge
        items.append({"lanes": [channel(min(max(x, INT32_MIN), INT32_MAX), multiplier, shift)], **t})
    assert all(single_ok(lane) for item in items for lane in item["lanes"])
    check(Requantizer(config), items)


TIMING = [(2, 32), (4, 32), (8, 32), (8, 21), (8, 17), (4, 17)]


@pytest.mark.parametrize("digit_bits, requant_bits", TIMING, ids=[f"k{k}-bits{b}" for k, b in TIMING])
def test_timing_properties(digit_bits, requant_bits):
    """Back to back with a ready consumer: a transfer every ``interval`` cycles, one per digit
    (the next transfer enters in the last step), each result exactly ``latency`` cycles
    after its transfer, so ``outputs_per_cycle`` is sustained."""
    config = AcceleratorConfig(requant_lanes=2, requant_bits=requant_bits)
    dut = Requantizer(config, digit_bits)
    items = random_transfers(np.random.default_rng(5), config, 30)
    stim = simulate(dut, items)
    assert stim.results == [expected(item) for item in items]
    assert set(np.diff(stim.in_cycles)) == {dut.interval}
    assert set(np.array(stim.out_cycles) - stim.in_cycles) == {dut.latency}
    assert dut.outputs_per_cycle == config.requant_lanes / dut.interval
    assert dut.interval == -(-requant_bits // digit_bits)


def test_rejects_unsupported_digit_width():
    with pytest.raises(ValueError, match="digit_bits"):
        Requantizer(AcceleratorConfig(), 3)


# ---------------------------------------------------------------- emitted Verilog (cocotb)


@pytest.mark.parametrize("digit_bits, lanes, requant_bits", [(4, 1, 32), (2, 2, 32), (8, 1, 21)])
def test_verilog_matches_golden(digit_bits, lanes, requant_bits, tmp_path):
    """The Verilog from amaranth.back.verilog under Icarus: edge and random vectors with
    gaps and back-pressure, and the latency/interval figures."""
    config = AcceleratorConfig(requant_lanes=lanes, requant_bits=requant_bits)
    run(Requantizer(config, digit_bits), "requant", ["requant_vectors", "requant_timing"], tmp_path,
        config=config, digit_bits=digit_bits, seed=3)


# ---------------------------------------------------------------- synthesis (opt-in)


@pytest.mark.synth
def test_synthesis_meets_up5k_targets(tmp_path):
    """bench/synth_requant.py with the default digit width, the unit as the drain builds it
    (tensor fields held for the layer): no DSP (the MAC array owns them all), no block RAM,
    at most 600 LCs per lane for the unit itself, and 48 MHz."""
    figures_json = tmp_path / "figures.json"
    subprocess.run([sys.executable, str(REPO / "bench" / "synth_requant.py"), "--digit-bits", str(DEFAULT_DIGIT_BITS),
                    "--held-tensor", "--seed", "1", "--json", str(figures_json)], cwd=REPO, check=True)
    figures, = json.loads(figures_json.read_text())
    assert figures["dsp"] == 0
    assert figures["bram"] == 0
    assert figures["lc_requant"] <= 600 * figures["lanes"]
    assert figures["fmax_mhz"] >= 48
