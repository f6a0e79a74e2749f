"""The write combiner of SPRAM-map configurations against a model of the four SPRAMs: random
byte writes (merging into words, moving to other words, rewriting bytes) and flush requests;
every byte lands, last write winning, only in cycles marked ``stall``; ``empty`` is true
exactly when nothing waits; a flush empties it within three cycles; and a drain pass of four
channels on four banks costs two write cycles."""

import numpy as np
import pytest

from golden.config import AcceleratorConfig
from hdl.core.write_combiner import WriteCombiner
from unit_support import simulate

CONFIG = AcceleratorConfig(act_memory="spram", act_bank_bytes=32768)


class Sprams:
    """The four SPRAMs' bytes as the word writes leave them."""

    def __init__(self):
        self.bytes = [{} for _ in range(CONFIG.banks)]

    def apply(self, ctx, dut):
        """Apply this cycle's word writes; returns how many banks wrote a byte."""
        wrote = 0
        for b, port in enumerate(dut.o):
            if ctx.get(port.en):
                word, data, mask = ctx.get(port.addr), ctx.get(port.data), ctx.get(port.mask)
                wrote += mask != 0
                for k in range(2):
                    if mask >> k & 1:
                        self.bytes[b][2 * word + k] = data >> 8 * k & 0xFF
        return wrote


def drive(ctx, dut, write, flush):
    en, bank, addr, data = write or (0, 0, 0, 0)
    ctx.set(dut.i.en, en)
    ctx.set(dut.i.bank, bank)
    ctx.set(dut.i.addr, addr)
    ctx.set(dut.i.data, data)
    ctx.set(dut.flush, flush)


@pytest.mark.parametrize("seed, rate, span", [(0, 0.9, 6), (1, 0.5, 40), (2, 0.3, 3)])
def test_random_writes_all_land(seed, rate, span):
    """Bytes at ``rate`` a cycle over ``span`` bytes of each bank, flush requested at random."""
    rng = np.random.default_rng(seed)
    dut = WriteCombiner(CONFIG)
    sprams = Sprams()
    written = [{} for _ in range(CONFIG.banks)]
    checks = {"empty": 0, "stalls": 0}

    async def main(ctx):
        for cycle in range(4000):
            write = None
            if rng.random() < rate:
                b, a = int(rng.integers(CONFIG.banks)), int(rng.integers(span))
                write = (1, b, a, int(rng.integers(256)))
            drive(ctx, dut, write, int(rng.random() < 0.2))
            stall = ctx.get(dut.stall)
            wrote = sprams.apply(ctx, dut)
            assert wrote == 0 or stall, f"cycle {cycle}: a write outside a stall cycle"
            checks["stalls"] += stall
            if ctx.get(dut.empty):
                assert sprams.bytes == written, f"cycle {cycle}: empty with bytes still waiting"
                checks["empty"] += 1
            if write:
                written[write[1]][write[2]] = write[3]
            await ctx.tick()
        drive(ctx, dut, None, 1)
        for _ in range(4):
            sprams.apply(ctx, dut)
            if ctx.get(dut.empty):
                break
            await ctx.tick()
        assert ctx.get(dut.empty), "a flush did not empty the combiner within three cycles"
        assert sprams.bytes == written

    simulate(dut, main)
    assert checks["empty"] >= 1 and checks["stalls"] > 100


def test_a_pass_writes_in_two_cycles():
    """Sixteen elements in the drain's order (bank by bank for each of four consecutive
    channels), one every third cycle as the requantiser delivers them: two write cycles,
    the last in the cycle after the flush request."""
    dut = WriteCombiner(CONFIG)
    sprams = Sprams()
    base = 40
    elements = [(b, base + c, 16 * c + b) for c in range(4) for b in range(CONFIG.banks)]

    async def main(ctx):
        stalls = []
        schedule = {3 * k: e for k, e in enumerate(elements)}
        end = 3 * len(elements)
        for cycle in range(end + 4):
            e = schedule.get(cycle)
            drive(ctx, dut, (1, *e) if e else None, int(cycle >= end))
            if ctx.get(dut.stall):
                stalls.append(cycle)
            sprams.apply(ctx, dut)
            await ctx.tick()
        assert ctx.get(dut.empty)
        assert len(stalls) == 2, f"write cycles {stalls}"
        assert stalls[-1] == end + 1, "the flush lands the cycle after it is asked for"

    simulate(dut, main)
    assert sprams.bytes == [{base + c: 16 * c + b for c in range(4)} for b in range(CONFIG.banks)]
