# amaranth: UnusedElaboratable=no
"""The drain alone in the Amaranth simulator: the array's results of every pass of one CONV
descriptor fed in chain order (:func:`hdl.units.mac_array.chain_order`) from accumulators computed
in NumPy, the parameter memory answered from ``program.params`` (one cycle of latency, held
while ``param.en`` is low), and each byte written compared with the emulator's output at
its :func:`compiler.program.bank_address` position.
"""

import numpy as np
import pytest

from compiler.program import ADD, LOOKUP, POOL
from hdl.core.drain import Drain
from hdl.units.act_table import ActivationTable
from hdl.units.mac_array import chain_order
from hdl.units.requant import Requantizer
from unit_support import (CONFIG, CONV_CASES, conv_case, conv_model, dense_model, depthwise_model, group_lane, kick,
                          out_positions, pass_pixels, random_steps, read_port, simulate)

CASES = {
    **CONV_CASES,
    # Depthwise 9x7x2 VALID (7x5) with a fused pool (3x2): row 6 and column 4 never computed.
    "depthwise-fused-pool": lambda: conv_case(depthwise_model(shape=(9, 7, 2), mult=2, padding="VALID",
                                                              pool=True)),
    # Activation tables after requantisation, loaded through ``table_write``.
    "conv-logistic": lambda: conv_case(conv_model(table="LOGISTIC", seed=6)),
    "conv-fused-pool-tanh": lambda: conv_case(conv_model(shape=(6, 5, 3), oc=4, pool=True, table="TANH", seed=7)),
}


def drain_options(program):
    """What the accelerator builds the drain with for ``program``."""
    kinds = {d.kind for d in program.layers}
    return dict(tables=len(program.tables) > 0, aux=bool(kinds & {POOL, LOOKUP}), adds=ADD in kinds)


def chain_values(case, rng, config=CONFIG):
    """The array's output for every pass, in chain order.  Lanes the drain must discard
    (pixels past the computed map, columns past the layer's channels, rows 1 .. 3 of a
    one-pixel pass) carry random values instead of what the array would compute there, so
    that using one shows."""
    d, acc = case.d, case.acc
    oh, ow = (2 * d.out_shape[0], 2 * d.out_shape[1]) if d.fused_pool else d.conv_shape[:2]
    out_c = d.conv_shape[2]
    junk = 1 << (config.acc_width - 3)
    values = []
    for g, pixels in pass_pixels(d):
        for lane in chain_order(config):
            r, c = divmod(lane, config.cols)
            oy, ox = pixels[r]
            k = c - group_lane(d, g)               # the column's channel in the group
            used = (0 <= k < d.group_channels and g * d.group_channels + k < out_c and oy < oh and ox < ow
                    and (d.block == 2 or r == 0))
            values.append(int(acc[g, oy, ox, c]) if used else int(rng.integers(-junk, junk)))
    return values


def run_drain(cases, gap, seed=0, options=None, config=CONFIG):
    """Simulate one drain over each case's descriptor in turn (as the sequencer runs layers,
    loading a case's activation table before it), with ``i.valid`` low a ``gap`` fraction of
    cycles; returns per case the writes (bank, address, byte) in order."""
    rng = np.random.default_rng(seed)
    if options is None:
        options = {k: any(drain_options(c.program)[k] for c in cases) for k in ("tables", "aux", "adds")}
    dut = Drain(config, **options)
    width = 32 if options["adds"] else config.acc_width
    rq = Requantizer(config.with_(requant_lanes=1, acc_width=width), digit_bits=config.requant_digit_bits)
    flush = rq.latency + ActivationTable().latency + 2
    state = {"values": [], "fed": 0}

    def read_params(addr):
        a, p = int(addr), state["params"]
        if a >= len(p.bias):
            return {"bias": 0x1234567, "multiplier": 0x7654321, "shift": -5}
        return {"bias": int(p.bias[a]), "multiplier": int(p.multiplier[a]), "shift": int(p.shift[a])}

    async def array(ctx):
        """As the MAC array: a result offered stays offered until taken; ``flush`` drops
        the rest of the pass (a pass is ``lanes`` results)."""
        offering = False
        while True:
            fed = state["fed"]
            if not offering:
                offering = fed < len(state["values"]) and rng.random() >= gap
            ctx.set(dut.i.valid, offering)
            if offering:
                ctx.set(dut.i.payload, state["values"][fed])
            _, _, ready, flush = await ctx.tick().sample(dut.i.ready, dut.flush)
            assert not (flush and ready), "the drain takes a result while it flushes"
            if offering and ready:
                state["fed"], offering = fed + 1, False
            if flush:
                state["fed"], offering = -(-state["fed"] // config.lanes) * config.lanes, False

    results = []

    async def run_one(ctx, case):
        d, program = case.d, case.program
        state["params"] = program.params
        if d.table >= 0:
            for k, v in enumerate(program.tables[d.table]):
                ctx.set(dut.table_write.addr, k)
                ctx.set(dut.table_write.data, int(v))
                ctx.set(dut.table_write.en, 1)
                await ctx.tick()
            ctx.set(dut.table_write.en, 0)
        values = chain_values(case, rng)
        elements = int(np.prod(d.out_shape))
        bound = int(len(values) / (1 - gap)) * 2 + elements * rq.interval + 4 * flush + 100
        writes = []
        await kick(ctx, dut, case.fields)
        state["values"], state["fed"] = values, 0       # the array's results arrive after start
        for cycle in range(bound):
            _, _, done, en, bank, addr, data = await ctx.tick().sample(
                dut.done, dut.write.en, dut.write.bank, dut.write.addr, dut.write.data)
            if en:
                writes.append((bank, addr, data))
            if done:
                assert state["fed"] == len(values), f"done with {state['fed']} of {len(values)} results taken"
                break
        else:
            raise AssertionError(f"drain not done within {bound} cycles ({state['fed']} of {len(values)} results "
                                 f"taken, {len(writes)} of {elements} written)")
        for _ in range(flush):
            _, _, done, en = await ctx.tick().sample(dut.done, dut.write.en)
            assert done and not en, "a write after done"
        results.append(writes)

    async def main(ctx):
        for case in cases:
            await run_one(ctx, case)

    simulate(dut, main, [array, read_port(dut.param, read_params)])
    return results


def check_writes(case, writes):
    """Every element of the output map written once, at its bank address, with the
    emulator's byte; nothing else written."""
    positions = out_positions(case.d)
    index = {pos: k for k, pos in enumerate(positions)}
    stray = [(b, a) for b, a, _ in writes if (b, a) not in index]
    assert not stray, f"{len(stray)} writes outside the output map, first {stray[:5]}"
    count = np.zeros(len(positions), int)
    got = np.zeros(len(positions), np.int64)
    for b, a, v in writes:
        count[index[b, a]] += 1
        got[index[b, a]] = v
    shape = case.d.out_shape
    missing = np.argwhere(count.reshape(shape) == 0)
    assert len(missing) == 0, f"{len(missing)} elements never written, first (y, x, c) {missing[:5].tolist()}"
    twice = np.argwhere(count.reshape(shape) > 1)
    assert len(twice) == 0, f"{len(twice)} elements written more than once, first {twice[:5].tolist()}"
    np.testing.assert_array_equal(got.reshape(shape), case.out)


@pytest.mark.parametrize("name", CASES)
def test_writes_equal_emulator(name):
    """Results arriving with random gaps (``i.valid`` low 30 % of cycles)."""
    case = CASES[name]()
    check_writes(case, run_drain([case], gap=0.3, seed=1)[0])


@pytest.mark.parametrize("name", ["conv-stride1", "conv-fused-pool"])
def test_back_to_back_results_with_every_option(name):
    """A result offered every cycle, to a drain built with tables, the pool engine's ``aux``
    input and the 32-bit ADD path (the largest program's drain): CONV layers unaffected."""
    case = CASES[name]()
    check_writes(case, run_drain([case], gap=0.0, seed=2, options=dict(tables=True, aux=True, adds=True))[0])


def test_layers_back_to_back_on_one_drain():
    """The sequencer reuses the drain: a table layer, a depthwise layer with shared weight
    words, a fused pool, the dense model's two layers and a strided layer on one instance."""
    names = ["conv-logistic", "depthwise-mult1", "conv-fused-pool", "conv-stride2"]
    cases = [CASES[n]() for n in names]
    cases[3:3] = [conv_case(dense_model(), index=0), CASES["dense"]()]
    for case, writes in zip(cases, run_drain(cases, gap=0.2, seed=3)):
        check_writes(case, writes)


N_RANDOM = 6


@pytest.mark.parametrize("index", range(N_RANDOM))
def test_random_model_layers(index):
    """Every CONV step of a small random model (golden.generate: strides up to 3, non-square
    kernels, depthwise, dense layers, tables), back to back on one drain."""
    seed, model, program, steps = random_steps(("CONV",), N_RANDOM, 2000)[index]
    cases = [conv_case(model, index=k, program=program, seed=seed) for k in steps]
    for case, writes in zip(cases, run_drain(cases, gap=0.2, seed=seed)):
        check_writes(case, writes)
