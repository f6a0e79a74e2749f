# amaranth: UnusedElaboratable=no
"""The frame timeout: expires after exactly its cycles of quiet, holds, restarts on activity."""

import pytest
from amaranth.sim import Simulator

from hdl.board.frame_timer import FrameTimer


def test_expires_after_its_cycles_and_restarts():
    dut = FrameTimer(20)
    seen = []

    async def bench(ctx):
        for gap in (5, 19, 40):
            ctx.set(dut.activity, 1)
            await ctx.tick()
            ctx.set(dut.activity, 0)
            first = None
            for k in range(gap):
                await ctx.tick()
                if first is None and ctx.get(dut.expired):
                    first = k + 1
            seen.append((first, ctx.get(dut.expired)))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    # Up on the 20th quiet cycle after the activity, and held.
    assert seen == [(None, 0), (None, 0), (20, 1)]


@pytest.mark.parametrize("bad", [0, 2.5])
def test_bad_timeout_rejected(bad):
    with pytest.raises(ValueError, match="timeout_cycles"):
        FrameTimer(bad)
