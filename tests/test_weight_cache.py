"""The weight cache of SPRAM-map configurations: fills of random groups from a model of the
shared SPRAMs' fetch port that refuses cycles at random (drain writes), then every word of
the group read back by absolute address, one cycle after its address, and held while the
read enable is low; every fetch names the SPRAM word of its address."""

import numpy as np
import pytest

from golden.config import AcceleratorConfig
from hdl.core.weight_cache import WeightCache
from unit_support import simulate

CONFIG = AcceleratorConfig(act_memory="spram", act_bank_bytes=32768)
DEPTH = 96
SPRAM_BASE = 3001          #: the SPRAM word where the weights start


def lanes(word):
    return [(int(word) >> 8 * k) & 0xFF for k in range(4)]


@pytest.mark.parametrize("refuse", [0.0, 0.4])
def test_fills_then_reads(refuse):
    rng = np.random.default_rng(int(refuse * 10))
    dut = WeightCache(CONFIG, DEPTH, SPRAM_BASE)
    memory = rng.integers(0, 1 << 32, 5000, dtype=np.uint64)
    fills = [(int(rng.integers(0, 5000 - DEPTH)), int(rng.integers(1, DEPTH + 1))) for _ in range(6)]
    fills.append((4999 - DEPTH, DEPTH))

    async def main(ctx):
        for base, count in fills:
            ctx.set(dut.fill.base, base)
            ctx.set(dut.fill.count, count)
            ctx.set(dut.fill.start, 1)
            await ctx.tick()
            ctx.set(dut.fill.start, 0)
            pending, cycles = None, 0
            while True:
                ctx.set(dut.fetch.valid, pending is not None)
                if pending is not None:
                    ctx.set(dut.fetch.data.as_value(), int(memory[pending]))
                ok = rng.random() >= refuse
                ctx.set(dut.fetch.ok, ok)
                issued = ctx.get(dut.fetch.en) and ok
                addr = ctx.get(dut.fetch.addr)
                if ctx.get(dut.fetch.en):
                    assert ctx.get(dut.fetch.word) == SPRAM_BASE + (addr >> 1), f"word of {addr}"
                await ctx.tick()
                cycles += 1
                pending = addr if issued else None
                if ctx.get(dut.fill.done):
                    break
                assert cycles < 4 * count + 20, "fill did not finish"
            assert pending is None, "done with a word still arriving"
            ctx.set(dut.fetch.valid, 0)
            if refuse == 0:
                assert cycles == count + 1, f"{count} words took {cycles} cycles"
            await ctx.tick()
            assert not ctx.get(dut.fill.done), "done must be a one-cycle pulse"
            order = rng.permutation(count)
            for k in order:
                ctx.set(dut.read.addr, base + int(k))
                ctx.set(dut.read.en, 1)
                await ctx.tick()
                ctx.set(dut.read.en, 0)
                for held in range(int(rng.integers(1, 4))):         # and holds while en is low
                    ctx.set(dut.read.addr, int(rng.integers(0, 5000)))
                    got = [v & 0xFF for v in ctx.get(dut.read.data)]
                    assert got == lanes(memory[base + k]), f"fill at {base}: word {k}, cycle {held}"
                    await ctx.tick()

    simulate(dut, main)
