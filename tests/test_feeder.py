"""The feeder alone in the Amaranth simulator: one CONV descriptor of a compiled model, the
four activation banks and the weight memory answered from NumPy (one cycle of latency,
data held while their ``en`` is low), every term taken from ``o`` under random
back-pressure.  The dot products of each pass must equal the accumulators computed in
NumPy from the model's weights (padding fed as the input zero point), which the harness
first checks against the emulator's pre-requantisation values.
"""

import numpy as np
import pytest
from amaranth.hdl import Cat

from hdl.core.feeder import Feeder
from unit_support import (CONFIG, CONV_CASES, StreamTaker, bank_ports, conv_case, dense_model, kick,
                          lane_accumulators, lossy_ready, pass_accumulators, pass_pixels, preload_banks, random_steps,
                          read_port, simulate)


def run_feeder(cases, stall, seed=0, config=CONFIG):
    """Simulate one feeder over each case's descriptor in turn, as the sequencer runs layers
    (the banks are reloaded while it is idle); returns per case the terms taken (act rows,
    weight columns, first, last) and the cycle of each transfer.  Checks the stream protocol
    on the way: a term refused by ``ready`` stays, unchanged, and while it waits no memory
    is read."""
    rng = np.random.default_rng(seed)
    garbage = rng.integers(-128, 128, config.cols)
    state = {}

    def read_weights(addr):
        addr, weights = int(addr), state["weights"]
        return [int(v) for v in (weights[addr] if addr < len(weights) else garbage)]

    dut = Feeder(config)
    reading = Cat(dut.weights.en, *(port.en for port in dut.banks))
    results = []

    async def run_one(ctx, case):
        d = case.d
        state["banks"] = preload_banks(config, d.in_shape, d.in_base, case.in_map, rng)
        state["weights"] = case.program.weights
        n_terms = len(pass_pixels(d)) * d.taps
        bound = int(n_terms / (1 - stall)) * 2 + 100
        stream, cycles = StreamTaker("term"), []
        terms = stream.taken
        await kick(ctx, dut, case.fields)
        for cycle in range(bound):
            ready = lossy_ready(rng, stall)
            ctx.set(dut.o.ready, ready)
            _, _, valid, payload, reads, done = await ctx.tick().sample(dut.o.valid, dut.o.payload, reading,
                                                                        dut.done)
            term = (tuple(payload.act), tuple(payload.weight), payload.first, payload.last)
            if stream.step(cycle, valid, ready, term):
                assert not reads, f"cycle {cycle}: a memory read while the output waits"
            elif valid:
                cycles.append(cycle)
            if done:
                assert not valid, f"cycle {cycle}: done with a term on o"
                break
        else:
            raise AssertionError(f"feeder not done within {bound} cycles ({len(terms)} of {n_terms} terms)")
        ctx.set(dut.o.ready, 1)
        for _ in range(8):                              # and nothing comes later
            _, _, valid, done = await ctx.tick().sample(dut.o.valid, dut.done)
            assert not valid and done, "a term after done"
        results.append((terms, cycles))

    async def main(ctx):
        for case in cases:
            await run_one(ctx, case)

    simulate(dut, main, [*bank_ports(dut.banks, lambda: state["banks"]), read_port(dut.weights, read_weights)])
    return results


def pass_sums(terms, d, config=CONFIG):
    """The terms cut into passes by their flags, checked, and each pass's dot products."""
    passes = len(pass_pixels(d))
    assert len(terms) == passes * d.taps, f"{len(terms)} terms, {passes} passes of {d.taps} expected"
    first = np.array([t[2] for t in terms]).reshape(passes, d.taps)
    last = np.array([t[3] for t in terms]).reshape(passes, d.taps)
    want_first = np.zeros_like(first)
    want_first[:, 0] = 1
    want_last = np.zeros_like(last)
    want_last[:, -1] = 1
    np.testing.assert_array_equal(first, want_first, err_msg="first flags")
    np.testing.assert_array_equal(last, want_last, err_msg="last flags")
    act = np.array([t[0] for t in terms], np.int64).reshape(passes, d.taps, config.rows)
    wt = np.array([t[1] for t in terms], np.int64).reshape(passes, d.taps, config.cols)
    return np.einsum("ptr,ptc->prc", act, wt)


@pytest.mark.parametrize("name", CONV_CASES)
def test_passes_under_backpressure_equal_numpy(name):
    """Every pass's dot products (all rows x columns, including the lanes past the map or the
    channels, which the drain discards) under random ``o.ready`` (low 40 % of cycles): no term
    lost, duplicated or changed while waiting, no memory read while it waits, ``done`` last."""
    case = CONV_CASES[name]()
    [(terms, _)] = run_feeder([case], stall=0.4, seed=1)
    np.testing.assert_array_equal(pass_sums(terms, case.d), pass_accumulators(case.d, case.acc))


@pytest.mark.parametrize("name", CONV_CASES)
def test_one_term_a_cycle_when_always_ready(name):
    """With ``o.ready`` always high the terms leave back to back, passes and channel groups
    included (the array is fed every cycle), and the dot products still match."""
    case = CONV_CASES[name]()
    [(terms, cycles)] = run_feeder([case], stall=0.0, seed=2)
    np.testing.assert_array_equal(pass_sums(terms, case.d), pass_accumulators(case.d, case.acc))
    gaps = np.flatnonzero(np.diff(cycles) != 1)
    assert len(gaps) == 0, f"bubbles after terms {gaps[:10].tolist()} of {len(terms)}"


def test_padding_is_fed_as_zero_point_not_read():
    """A map of one value with a zero point far from it: each padded tap of the first block
    (top-left corner, 3x3 SAME) shows up as the zero point in the activations, never as the
    bank's byte at the address computed for it."""
    case = CONV_CASES["conv-stride1"]()
    case.in_map[:] = 77
    case.acc = lane_accumulators(case.layer, case.d, case.in_map, CONFIG)
    [(terms, _)] = run_feeder([case], stall=0.0, seed=3)
    d = case.d
    # Pass 0 is block (0, 0): pixel (0, 0) (row 0) reads the padding at ky = 0 or kx = 0.
    c = d.in_shape[2]
    row0 = np.array([t[0][0] for t in terms[:d.taps]]).reshape(3, 3, c)
    want = np.full((3, 3, c), 77)
    want[0, :, :] = d.pad_value
    want[:, 0, :] = d.pad_value
    np.testing.assert_array_equal(row0, want)
    np.testing.assert_array_equal(pass_sums(terms, d), pass_accumulators(d, case.acc))


def test_layers_back_to_back_on_one_feeder():
    """The sequencer reuses the feeder: a depthwise layer, a strided convolution, the two
    layers of the dense model, a padded convolution and depthwise groups sharing weight
    words, one after the other on one instance: nothing a descriptor leaves behind (channel
    and lane counters, trackers) may change the next one's terms."""
    names = ["depthwise", "conv-stride2", "conv-stride1", "depthwise-mult1"]
    cases = [CONV_CASES[n]() for n in names]
    dense_conv = conv_case(dense_model(), index=0)
    cases[2:2] = [dense_conv, CONV_CASES["dense"]()]
    for case, (terms, _) in zip(cases, run_feeder(cases, stall=0.2, seed=4)):
        np.testing.assert_array_equal(pass_sums(terms, case.d), pass_accumulators(case.d, case.acc),
                                      err_msg=case.d.name)


N_RANDOM = 6


@pytest.mark.parametrize("index", range(N_RANDOM))
def test_random_model_layers(index):
    """Every CONV step of a small random model (golden.generate: strides up to 3, non-square
    kernels, depthwise, dense layers), back to back on one feeder."""
    seed, model, program, steps = random_steps(("CONV",), N_RANDOM, 2000)[index]
    cases = [conv_case(model, index=k, program=program, seed=seed) for k in steps]
    for case, (terms, _) in zip(cases, run_feeder(cases, stall=0.3, seed=seed)):
        np.testing.assert_array_equal(pass_sums(terms, case.d), pass_accumulators(case.d, case.acc),
                                      err_msg=f"seed {seed} {case.d.name}")
