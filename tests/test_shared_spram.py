# amaranth: UnusedElaboratable=no
"""The four SPRAMs shared by the activation banks and the weights (``act_memory="spram"``),
against a Python model of their contents, under random traffic on every port at once: word
writes of any bytes (or none) of any banks at once (which take the cycle from every reader),
weight loads, weight fetches for the cache and activation reads, whose data must follow the
block-RAM banks' contract (the byte of the last read, held through writes and fetches)."""

import numpy as np
import pytest

from golden.config import AcceleratorConfig
from hdl.core.shared_spram import SharedSprams
from unit_support import simulate

CONFIG = AcceleratorConfig(act_memory="spram", act_bank_bytes=32768)
#: Maps in the low 600 bytes of each SPRAM, 400 weight words above them.
WEIGHT_BASE, MAP_BYTES, WORDS = 300, 600, 400


def word_lanes(word):
    return [(word >> 8 * k) & 0xFF for k in range(4)]


@pytest.mark.parametrize("seed", range(3))
def test_random_traffic_against_model(seed):
    rng = np.random.default_rng(seed)
    dut = SharedSprams(CONFIG, WEIGHT_BASE)
    banks = rng.integers(0, 256, (4, MAP_BYTES))
    weights = rng.integers(0, 1 << 32, WORDS, dtype=np.uint64)
    checked = {"reads": 0, "fetches": 0}

    async def main(ctx):
        # Fill both regions through the ports the host uses while idle.
        for w in range(MAP_BYTES // 2):
            for b in range(4):
                ctx.set(dut.write[b].addr, w)
                ctx.set(dut.write[b].data, int(banks[b, 2 * w]) | int(banks[b, 2 * w + 1]) << 8)
                ctx.set(dut.write[b].mask, 0b11)
                ctx.set(dut.write[b].en, 1)
            await ctx.tick()
        for b in range(4):
            ctx.set(dut.write[b].en, 0)
        for w in range(WORDS):
            ctx.set(dut.load.addr, w)
            ctx.set(dut.load.data.as_value(), int(weights[w]))
            ctx.set(dut.load.we, 1)
            await ctx.tick()
        ctx.set(dut.load.we, 0)
        await ctx.tick()

        expect = [None] * 4              # the byte each bank's data must show
        landing = None                   # the load presented last cycle, which lands now
        for cycle in range(3000):
            # The host loads or writes, never both in one cycle: a load lands a cycle late.
            write = landing is None and rng.random() < 0.2
            load = not write and rng.random() < 0.05
            fetch = rng.random() < 0.3
            # (bank, word, data, byte mask) of each bank that writes
            writes = [(b, int(rng.integers(MAP_BYTES // 2)), int(rng.integers(1 << 16)), int(rng.integers(4)))
                      for b in range(4) if write and rng.random() < 0.6]
            write = bool(writes)
            lw, ld = int(rng.integers(WORDS)), int(rng.integers(1 << 32))
            fw = int(rng.integers(WORDS))
            reads = [(rng.random() < 0.8, int(rng.integers(MAP_BYTES))) for _ in range(4)]
            for b in range(4):
                ctx.set(dut.write[b].en, 0)
            for b, word, data, mask in writes:
                ctx.set(dut.write[b].en, 1)
                ctx.set(dut.write[b].addr, word)
                ctx.set(dut.write[b].data, data)
                ctx.set(dut.write[b].mask, mask)
            ctx.set(dut.load.we, load)
            ctx.set(dut.load.addr, lw)
            ctx.set(dut.load.data.as_value(), ld)
            ctx.set(dut.fetch.en, fetch)
            ctx.set(dut.fetch.addr, fw)
            ctx.set(dut.fetch.word, WEIGHT_BASE + (fw >> 1))
            for b, (en, a) in enumerate(reads):
                ctx.set(dut.read[b].en, en)
                ctx.set(dut.read[b].addr, a)
            busy = write or landing is not None
            assert ctx.get(dut.fetch.ok) == (not busy), f"cycle {cycle}: fetch.ok"
            fetch_taken = fetch and not busy
            for b, (en, a) in enumerate(reads):
                if en and not busy and not fetch:
                    expect[b] = int(banks[b, a])
            this_fetch = int(weights[fw]) if fetch_taken else None
            for b, word, data, mask in writes:
                for k in range(2):
                    if mask >> k & 1:
                        banks[b, 2 * word + k] = data >> 8 * k & 0xFF
            if landing is not None:
                weights[landing[0]] = landing[1]
            landing = (lw, ld) if load else None
            await ctx.tick()
            for b in range(4):
                if expect[b] is not None:
                    got = ctx.get(dut.read[b].data) & 0xFF
                    assert got == expect[b], f"cycle {cycle}: bank {b} data {got}, expected {expect[b]}"
                    checked["reads"] += 1
            assert ctx.get(dut.fetch.valid) == (this_fetch is not None), f"cycle {cycle}: fetch.valid"
            if this_fetch is not None:
                got = [v & 0xFF for v in ctx.get(dut.fetch.data)]
                assert got == word_lanes(this_fetch), f"cycle {cycle}: fetched {got}"
                checked["fetches"] += 1

    simulate(dut, main)
    assert checked["reads"] > 5000 and checked["fetches"] > 300


def test_needs_the_spram_configuration():
    with pytest.raises(ValueError, match="block RAM"):
        SharedSprams(AcceleratorConfig(), 0)
