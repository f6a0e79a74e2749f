"""ActivationTable against golden.nonlinear.lookup_table, in the Amaranth simulator and
(cocotb) on its Verilog: bitstream tables, run-time reloads, bypass, gaps and back-pressure."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden.model import QParams
from golden.nonlinear import lookup_table
from hdl.units.act_table import ActivationTable

import cocotb_units

ALL_INT8 = np.arange(-128, 128)


def simulate(dut, items, *, writes=(), gap=0.0, stall=0.0, seed=0):
    """Load ``writes`` ([(index, value)]) through the write port, then stream ``items``
    ([(vector, bypass)]) with random input gaps and ``o.ready`` stalls; returns the outputs."""
    rng = np.random.default_rng(seed)
    out = []

    async def produce(ctx):
        for index, value in writes:
            ctx.set(dut.write.addr, int(index))
            ctx.set(dut.write.data, int(value))
            ctx.set(dut.write.en, 1)
            await ctx.tick()
        ctx.set(dut.write.en, 0)
        for vector, bypass in items:
            while rng.random() < gap:
                await ctx.tick()
            ctx.set(dut.i.payload, [int(v) for v in vector])
            ctx.set(dut.bypass, bool(bypass))
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)
            ctx.set(dut.bypass, not bypass)      # only the value at the transfer counts

    async def consume(ctx):
        while len(out) < len(items):
            ready = rng.random() >= stall
            ctx.set(dut.o.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if ready and valid:
                out.append([int(v) for v in payload])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(produce, background=True)
    sim.add_testbench(consume)
    sim.run()
    return np.array(out)


def _inputs(rng, lanes, n=200):
    """Every int8 value in every lane, then random vectors."""
    x = np.stack([np.roll(ALL_INT8, 37 * lane) for lane in range(lanes)], axis=1)
    return np.concatenate([x, rng.integers(-128, 128, size=(n, lanes))])


def test_bitstream_table_matches_golden_with_gaps_and_backpressure():
    table = lookup_table("TANH", QParams(0.03, 11))
    dut = ActivationTable(3, init=table)
    x = _inputs(np.random.default_rng(1), 3)
    got = simulate(dut, [(row, 0) for row in x], gap=0.3, stall=0.4, seed=2)
    np.testing.assert_array_equal(got, table[x + 128])


def test_run_time_reload_then_per_transfer_bypass():
    """A LOGISTIC table written over the bitstream's TANH, with bypass on random transfers."""
    rng = np.random.default_rng(3)
    table = lookup_table("LOGISTIC", QParams(0.08, -20))
    dut = ActivationTable(2, init=lookup_table("TANH", QParams(0.03, 11)))
    x = _inputs(rng, 2)
    bypass = rng.random(len(x)) < 0.5
    got = simulate(dut, list(zip(x, bypass)), writes=list(enumerate(table)),
                   gap=0.2, stall=0.5, seed=4)
    np.testing.assert_array_equal(got, np.where(bypass[:, None], x, table[x + 128]))


def test_default_table_is_identity():
    x = _inputs(np.random.default_rng(5), 1, n=0)
    np.testing.assert_array_equal(simulate(ActivationTable(), [(row, 0) for row in x]), x)


def test_full_rate_declared_latency_and_stall_holds_output():
    """One vector per cycle at the declared latency; a stalled output stays put and i waits."""
    table = lookup_table("TANH", QParams(0.05, 0))
    dut = ActivationTable(1, init=table)

    async def testbench(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        seen = []
        for cycle, v in enumerate(range(-128, 128)):
            ctx.set(dut.i.payload, [v])
            _, _, ready, valid, out = await ctx.tick().sample(dut.i.ready, dut.o.valid, dut.o.payload)
            assert ready
            if valid:
                seen.append((cycle, int(out[0])))
        assert seen == [(k + dut.latency, int(table[k])) for k in range(256 - dut.latency)]
        ctx.set(dut.o.ready, 0)
        ctx.set(dut.i.payload, [-128])
        held = int(table[255])                    # the lookup of 127, accepted last
        for _ in range(3):                        # stalled: same output, input not taken
            _, _, ready, valid, out = await ctx.tick().sample(dut.i.ready, dut.o.valid, dut.o.payload)
            assert not ready and valid and int(out[0]) == held
        ctx.set(dut.o.ready, 1)
        _, _, valid, out = await ctx.tick().sample(dut.o.valid, dut.o.payload)
        assert valid and int(out[0]) == held
        await ctx.tick()
        assert ctx.get(dut.o.valid) and int(ctx.get(dut.o.payload)[0]) == table[0]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()


def test_act_table_verilog_in_icarus(tmp_path):
    """The emitted Verilog, run by cocotb on Icarus: bitstream table, bypass, reload."""
    kind, q = cocotb_units.TABLE_INIT
    dut = ActivationTable(cocotb_units.TABLE_LANES, init=lookup_table(kind, q))
    cocotb_units.run(dut, "act_table", "table_matches_golden", tmp_path)


@pytest.mark.synth
def test_synthesis_meets_up5k_targets(tmp_path):
    """bench/synth_units.py on the 2-lane table: one SB_RAM40_4K per lane, no read-during-write
    emulation logic around them (a few dozen LCs), 48 MHz."""
    figures = cocotb_units.synthesise("act_table", tmp_path)
    assert figures["bram"] == 2
    assert figures["lc_unit"] <= 60
    assert figures["fmax_mhz"] >= 48
