"""MapWalker: the addresses it walks equal the compiler's bank layout, element by element."""

import pytest
from amaranth.sim import Simulator

from boards import ICEBREAKER
from compiler.program import bank_address
from hdl.core.accelerator import host_address
from hdl.board.map_walker import MapWalker


def expected(shape, base):
    h, w, c = shape
    return [host_address(ICEBREAKER, *bank_address(shape, base, y, x, ch))
            for y in range(h) for x in range(w) for ch in range(c)]


MAPS = [((5, 7, 3), 11), ((4, 4, 1), 0), ((1, 1, 10), 100), ((3, 2, 2), 7), ((1, 5, 1), 3), ((28, 28, 1), 0),
        ((1, 1, 1), 0), ((1, 1, 1), 9)]


@pytest.mark.parametrize("pair", [(0, 1), (2, 3), (4, 5), (6, 7)])
def test_walks_the_bank_layout(pair):
    maps = [MAPS[k] for k in pair]
    dut = MapWalker(ICEBREAKER, maps)
    got = {}

    async def bench(ctx):
        for sel, (shape, base) in enumerate(maps):
            ctx.set(dut.select, sel)
            ctx.set(dut.restart, 1)
            await ctx.tick()
            ctx.set(dut.restart, 0)
            seen = []
            for _ in range(shape[0] * shape[1] * shape[2]):
                seen.append(ctx.get(dut.addr))
                ctx.set(dut.next, 1)
                await ctx.tick()
                ctx.set(dut.next, 0)
                await ctx.tick()          # gaps between elements change nothing
            got[sel] = seen

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    for sel, (shape, base) in enumerate(maps):
        assert got[sel] == expected(shape, base)


def test_refuses_a_map_beyond_the_bank():
    with pytest.raises(ValueError, match="does not fit"):
        MapWalker.check(ICEBREAKER, [((200, 200, 4), 0)])
