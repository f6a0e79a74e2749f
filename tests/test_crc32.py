"""The device's bit-serial CRC-32 against zlib, with bytes at the closest spacing it allows
(its latency) and at random larger gaps; its flags and its busy time."""

import struct
import zlib

import numpy as np
import pytest
from amaranth.sim import Simulator

from hdl.board.crc32 import Crc32
from host.wire import CRC_RESIDUE


def run(chunks, expect=0, seed=0):
    """Feed each chunk after a clear; per chunk: (value, residue_ok, expect_ok, busy cycles)."""
    dut = Crc32(expect=expect)
    rng = np.random.default_rng(seed)
    got = []

    async def bench(ctx):
        for chunk in chunks:
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            busy = 0
            for i, b in enumerate(chunk):
                ctx.set(dut.valid, 1)
                ctx.set(dut.data, b)
                await ctx.tick()
                ctx.set(dut.valid, 0)
                busy = 0
                while ctx.get(dut.busy):
                    busy += 1
                    await ctx.tick()
                assert busy <= Crc32.latency - 1
                for _ in range(int(rng.integers(0, 3)) if i % 2 else 0):
                    await ctx.tick()
            got.append((ctx.get(dut.value), ctx.get(dut.residue_ok), ctx.get(dut.expect_ok), busy))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_zlib_and_checks_residue(seed):
    rng = np.random.default_rng(seed)
    data = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in (1, 7, 40)]
    chunks = []
    for d in data:
        chunks += [d, d + struct.pack("<I", zlib.crc32(d))]
    got = run(chunks, seed=seed)
    for d, (plain, framed) in zip(data, zip(got[::2], got[1::2])):
        assert plain[0] == zlib.crc32(d) ^ 0xFFFFFFFF and not plain[1]
        assert framed[0] == CRC_RESIDUE and framed[1]
    damaged = bytearray(data[2] + struct.pack("<I", zlib.crc32(data[2])))
    damaged[5] ^= 0x04
    assert not run([bytes(damaged)])[0][1]


def test_expect_flag_and_empty_input():
    image = b"weights"
    value, _, ok, _ = run([image], expect=~zlib.crc32(image))[0]
    assert ok and value == zlib.crc32(image) ^ 0xFFFFFFFF
    assert not run([image + b"!"], expect=~zlib.crc32(image))[0][2]
    # Nothing fed: the register stays at its start, which is ~crc32(b"").
    assert run([b""], expect=~zlib.crc32(b""))[0][:1] == (0xFFFFFFFF,)
