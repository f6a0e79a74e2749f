"""The INFER reply's argmax against numpy's (first index of the largest int8)."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hdl.board.argmax import Argmax


@pytest.mark.parametrize("values", [[-128] * 5, [3, 7, 7, -1], [127, 127], list(range(-128, 128, 37))[::-1],
                                    list(np.random.default_rng(0).integers(-128, 128, 200))])
def test_first_largest(values):
    dut = Argmax()
    got = []

    async def bench(ctx):
        for _ in range(2):                      # twice: clear must forget the first run
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            for i, v in enumerate(values):
                ctx.set(dut.valid, 1)
                ctx.set(dut.value, int(v) & 0xFF)
                ctx.set(dut.index, i)
                await ctx.tick()
            ctx.set(dut.valid, 0)
            got.append(ctx.get(dut.best_at))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    want = int(np.argmax(np.array(values, np.int64))) & 0xFF
    assert got == [want, want]
