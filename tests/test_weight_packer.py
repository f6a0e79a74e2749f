"""Weight bytes into load-port words: lowest lane first, one write per word, restart to word 0."""

import numpy as np
from amaranth.sim import Simulator

from hdl.board.weight_packer import WeightPacker
from sim.run import sim_config


def test_packs_words_in_order():
    config = sim_config()
    dut = WeightPacker(config)
    data = np.random.default_rng(0).integers(0, 256, 5 * config.cols, dtype=np.uint8)
    writes = []

    async def bench(ctx):
        for run, write in ((data, 0), (data, 1)):
            ctx.set(dut.restart, 1)
            await ctx.tick()
            ctx.set(dut.restart, 0)
            for b in run:
                ctx.set(dut.valid, 1)
                ctx.set(dut.data, int(b))
                ctx.set(dut.write, write)
                await ctx.tick()
                ctx.set(dut.valid, 0)
                for _ in range(2):
                    if ctx.get(dut.wload.we):
                        writes.append((ctx.get(dut.wload.addr), ctx.get(dut.wload.data.as_value())))
                    await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    words = [int.from_bytes(bytes(data[i:i + config.cols]), "little") for i in range(0, len(data), config.cols)]
    assert writes == list(enumerate(words))      # the first run had write low: nothing written
