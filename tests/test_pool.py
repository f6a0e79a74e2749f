"""Pool against golden Pool2D.run, in the Amaranth simulator and (cocotb) on its Verilog.

Windows are delivered the way the sequencer will: output pixels in raster order, each
window's unpadded elements in (ky, kx) order, one transfer per element carrying every
channel.  The AVERAGE arithmetic is proven exhaustively: every sum of every window size
1 .. max_window goes through the divider hardware and is compared with golden's rounding;
whole-unit runs then cover the accumulator on random windows of every size.
"""

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden.model import QParams
from golden.ops import Pool2D
from hdl.units.pool import Pool, PoolMode, RoundingDivider

import cocotb_units
from cocotb_units import window_positions, window_stream


def pool_layer(shape, kind, filt, stride, padding, activation="NONE", q=QParams(0.05, -3)):
    return Pool2D("pool", shape, kind=kind, filter=filt, stride=stride, padding=padding,
                  activation=activation, q=q)


def simulate(dut, jobs, *, gap=0.0, stall=0.0, seed=0):
    """Stream each job ``(settings, transfers, n_out)`` through ``dut`` in turn.

    ``settings`` ([(port, value)]) are applied while the unit is empty; ``gap`` and ``stall``
    are the probabilities of an idle input cycle and of ``o.ready`` low.  Returns the output
    vectors of each job.
    """
    rng = np.random.default_rng(seed)
    results = [[] for _ in jobs]

    async def produce(ctx):
        for (settings, stream, n_out), job in zip(jobs, results):
            for port, value in settings:
                ctx.set(port, value)
            for payload in stream:
                while rng.random() < gap:
                    await ctx.tick()
                ctx.set(dut.i.payload, payload)
                ctx.set(dut.i.valid, 1)
                await ctx.tick().until(dut.i.ready)
                ctx.set(dut.i.valid, 0)
            while len(job) < n_out:
                await ctx.tick()

    async def consume(ctx):
        for (_, _, n_out), job in zip(jobs, results):
            while len(job) < n_out:
                ready = rng.random() >= stall
                ctx.set(dut.o.ready, ready)
                _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
                if ready and valid:
                    job.append([int(v) for v in payload])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(produce)
    sim.add_testbench(consume, background=True)
    sim.run()
    return [np.array(r, dtype=np.int8) for r in results]


def check_against_golden(dut, layers, xs, **kw):
    """Each HWC image through ``dut`` as the sequencer would deliver it, vs golden Pool2D.run."""
    jobs = []
    for layer, x in zip(layers, xs):
        lo, hi = layer.act_range
        settings = [(dut.mode, PoolMode[layer.kind]), (dut.act_min, lo), (dut.act_max, hi)]
        stream = [{"data": v, "first": f, "last": last} for v, f, last in window_stream(x, layer)]
        jobs.append((settings, stream, len(window_positions(layer))))
    for layer, x, got in zip(layers, xs, simulate(dut, jobs, **kw)):
        want = layer.run(x[None])[0].reshape(-1, x.shape[-1])
        np.testing.assert_array_equal(got, want, err_msg=f"{layer.kind} {layer.filter} "
                                      f"{layer.stride} {layer.padding} {layer.activation}")


def _random_map(rng, shape):
    return rng.integers(-128, 128, size=shape, dtype=np.int8)


def golden_windows(kind, windows):
    """Golden's result for each window (a list of channel vectors) pooled on its own."""
    out = []
    for window in windows:
        x = np.array(window, dtype=np.int8).reshape(1, 1, len(window), -1)
        out.append(pool_layer(x.shape[1:], kind, (1, len(window)), (1, 1), "VALID").run(x)[0, 0, 0])
    return np.array(out)


def test_random_maps_match_golden_with_gaps_and_backpressure():
    """MAX and AVERAGE, VALID and SAME (border windows of 1 .. 16 elements), clamped."""
    rng = np.random.default_rng(1)
    lanes = 3
    layers = [
        pool_layer((6, 6, lanes), "MAX", (2, 2), (2, 2), "VALID"),
        pool_layer((5, 5, lanes), "AVERAGE", (2, 2), (2, 2), "SAME"),          # 4, 2 and 1
        pool_layer((5, 4, lanes), "AVERAGE", (3, 3), (1, 1), "SAME", "RELU"),  # 9, 6, 4
        pool_layer((7, 7, lanes), "AVERAGE", (4, 4), (3, 3), "SAME", "RELU6", QParams(0.02, -50)),
        pool_layer((5, 5, lanes), "MAX", (3, 3), (2, 2), "SAME", "RELU_N1_TO_1", QParams(0.01, 10)),
        pool_layer((4, 6, lanes), "AVERAGE", (1, 1), (1, 1), "VALID"),         # windows of 1
        pool_layer((6, 6, lanes), "AVERAGE", (4, 4), (1, 1), "SAME"),          # 4 .. 16
    ]
    xs = [_random_map(rng, layer.input_shape) for layer in layers]
    check_against_golden(Pool(lanes), layers, xs, gap=0.3, stall=0.4, seed=2)


def test_edge_values_and_equal_windows():
    """All -128, all 127, all equal, and alternating extremes (sums at the rounding ties)."""
    lanes = 4
    base = np.array([-128, 127, -1, 0], dtype=np.int8)
    xs, layers = [], []
    for kind in ("MAX", "AVERAGE"):
        for pattern in ("equal", "alternate"):
            x = np.broadcast_to(base, (4, 4, lanes)).copy()
            if pattern == "alternate":
                x[::2, ::2] = np.int8(127)
                x[1::2, 1::2] = np.int8(-128)
            layers.append(pool_layer((4, 4, lanes), kind, (2, 2), (2, 2), "VALID"))
            xs.append(x)
        layers.append(pool_layer((4, 4, lanes), kind, (4, 4), (4, 4), "VALID"))     # 16 elements
        xs.append(np.full((4, 4, lanes), -128, np.int8))
    check_against_golden(Pool(lanes), layers, xs)


def test_every_window_size_on_random_windows():
    """Windows of each size 1..16 in a row ((1, n) filters), random and extreme contents."""
    rng = np.random.default_rng(6)
    lanes = 4
    layers, xs = [], []
    for n in range(1, 17):
        windows = rng.integers(-128, 128, size=(6, n, lanes))
        windows[0], windows[1] = -128, 127
        x = windows.reshape(1, -1, lanes).astype(np.int8)
        for kind in ("AVERAGE", "MAX"):
            layers.append(pool_layer(x.shape, kind, (1, n), (1, n), "VALID"))
            xs.append(x)
    check_against_golden(Pool(lanes), layers, xs, gap=0.1, stall=0.2, seed=3)


def test_divider_is_exact_for_every_sum_and_window_size():
    """Every window size n in 1..max_window with every sum in [-128 n, 127 n] (n = 1 is also
    every MAX result), against golden's AVERAGE_POOL rounding on windows with those sums."""
    lanes, maxw = 128, 16
    dut = RoundingDivider(lanes, maxw)
    stream, want = [], []
    for n in range(1, maxw + 1):
        sums = np.arange(-128 * n, 127 * n + 1)
        sums = np.resize(sums, -(-len(sums) // lanes) * lanes).reshape(-1, lanes)
        base = np.floor_divide(sums, n)
        extra = sums - base * n                         # elements holding base + 1
        elems = base[:, None, :] + (np.arange(n)[None, :, None] < extra[:, None, :])
        x = elems.reshape(1, -1, lanes).astype(np.int8)  # the windows side by side in a row
        layer = pool_layer(x.shape, "AVERAGE", (1, n), (1, n), "VALID")
        want.append(layer.run(x[None])[0, 0])
        # The divider's input: offset sums with the bias the accumulator adds, (n - 1) // 2.
        stream += [{"sums": list(row + 128 * n + (n - 1) // 2), "count": n} for row in sums]
    settings = [(dut.act_min, -128), (dut.act_max, 127)]
    got, = simulate(dut, [(settings, stream, len(stream))], gap=0.2, stall=0.2)
    np.testing.assert_array_equal(got, np.concatenate(want))


def test_back_to_back_single_windows_have_no_bubble_and_declared_latency():
    """Windows of one element every cycle: i.ready never drops and each result takes latency."""
    dut = Pool(2)
    values = [(v, -v - 1) for v in range(-128, 128, 7)]
    want = [tuple(int(v) for v in row) for row in golden_windows("AVERAGE", [[v] for v in values])]
    seen = []

    async def testbench(ctx):
        ctx.set(dut.mode, PoolMode.AVERAGE)
        ctx.set(dut.act_min, -128)
        ctx.set(dut.act_max, 127)
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        for cycle in range(len(values) + dut.latency + 1):
            if cycle < len(values):
                ctx.set(dut.i.payload, {"data": values[cycle], "first": 1, "last": 1})
            else:
                ctx.set(dut.i.valid, 0)
            _, _, ready, valid, out = await ctx.tick().sample(dut.i.ready, dut.o.valid, dut.o.payload)
            assert ready
            if valid:
                seen.append((cycle, tuple(int(v) for v in out)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert seen == [(k + dut.latency, v) for k, v in enumerate(want)]


def test_stalled_output_holds_input_waits_and_everything_drains_in_order():
    """With o.ready low the result waits unchanged, the next windows still stream in until
    the unit is full, then i.ready drops; released, every accepted window comes out in order."""
    dut = Pool(1)
    windows = [[5], [1, 9, 2]] + [[v] for v in range(10, 40)]
    want = [int(v[0]) for v in golden_windows("MAX", [[[x] for x in w] for w in windows])]
    items = [(v, k == 0, k == len(w) - 1) for w in windows for k, v in enumerate(w)]

    async def testbench(ctx):
        ctx.set(dut.mode, PoolMode.MAX)
        ctx.set(dut.act_min, -128)
        ctx.set(dut.act_max, 127)
        ctx.set(dut.i.valid, 1)
        sent, blocked, shown = 0, 0, set()
        while blocked < 3:
            value, first, last = items[sent]
            ctx.set(dut.i.payload, {"data": [value], "first": first, "last": last})
            _, _, ready, valid, out = await ctx.tick().sample(dut.i.ready, dut.o.valid, dut.o.payload)
            sent, blocked = sent + ready, 0 if ready else blocked + 1
            if valid:
                shown.add(int(out[0]))
        assert shown == {want[0]} and sent >= 1 + 3 + 1
        ctx.set(dut.i.valid, 0)
        ctx.set(dut.o.ready, 1)
        outs = []
        for _ in range(dut.latency + sent + 1):
            _, _, valid, out = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid:
                outs.append(int(out[0]))
        finished = sum(last for _, _, last in items[:sent])
        assert outs == want[:finished]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()


def test_pool_verilog_in_icarus(tmp_path):
    """The emitted Verilog, run by cocotb on Icarus, against golden on random windows."""
    cocotb_units.run(Pool(cocotb_units.POOL_LANES), "pool", "pool_matches_golden", tmp_path)


@pytest.mark.synth
def test_synthesis_meets_up5k_targets(tmp_path):
    """bench/synth_units.py on the 16-lane pool: LUT logic only, within its measured size
    (about 210 LCs a lane), 48 MHz."""
    figures = cocotb_units.synthesise("pool", tmp_path)
    assert figures["dsp"] == 0 and figures["bram"] == 0
    assert figures["lc_unit"] <= 3500
    assert figures["fmax_mhz"] >= 48
