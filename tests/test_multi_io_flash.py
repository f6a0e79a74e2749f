# amaranth: UnusedElaboratable=no
"""MultiIoFlashReader against sim.models.MultiIoFlashModel in the Amaranth simulator: one, two
and four data lines, SCK half-periods 1 and 2, random back-pressure, ``stop`` with the last
byte wanted; the commands the flash saw (wake, the volatile QE write for quad, the fast
read), no bus fight, and the first byte's latency as declared."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hdl.board.multi_io_flash import READ_OPCODE, MultiIoFlashReader
from sim.models import FlashCommand, MultiIoFlashModel

BASE = 0x100000
IMAGE = np.random.default_rng(11).integers(0, 256, 4096, dtype=np.uint8).tobytes()
READS = [(BASE, 20), (BASE + 4090, 9), (BASE - 2, 5), (BASE + 1234, 1)]


def expected(address, n):
    return bytes(IMAGE[a - BASE] if 0 <= a - BASE < len(IMAGE) else 0xFF for a in range(address, address + n))


def simulate(dut, flash, reads, stall=0.0, seed=0):
    """Each read: start, take bytes (o.ready low with probability ``stall``), ``stop`` with
    the last.  Returns the bytes of each read and the cycles from start to its first byte."""
    rng = np.random.default_rng(seed)
    got, first = [], []

    async def bench(ctx):
        for address, n in reads:
            assert not ctx.get(dut.busy)
            ctx.set(dut.addr, address)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            data, cycle, first_valid = bytearray(), 1, None
            while len(data) < n:
                ready = rng.random() >= stall
                valid = ctx.get(dut.o.valid)
                if valid and first_valid is None:
                    first_valid = cycle
                ctx.set(dut.o.ready, ready)
                ctx.set(dut.stop, ready and valid and len(data) == n - 1)
                if ready and valid:
                    data.append(ctx.get(dut.o.payload))
                await ctx.tick()
                cycle += 1
                assert cycle < 100_000
            ctx.set(dut.stop, 0)
            ctx.set(dut.o.ready, 0)
            assert not ctx.get(dut.busy) and not ctx.get(dut.cs) and not ctx.get(dut.sck)
            got.append(bytes(data))
            first.append(first_valid)
            await ctx.tick().repeat(4)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(flash.process_io(dut.sck, dut.cs, dut.dq_o, dut.dq_oe, dut.dq_i))
    sim.add_testbench(bench)
    sim.run()
    return got, first


@pytest.mark.parametrize("width", [1, 2, 4])
@pytest.mark.parametrize("sck_half", [1, 2])
def test_reads_on_every_width(width, sck_half):
    dut = MultiIoFlashReader(width=width, sck_half=sck_half, wake_cycles=6)
    flash = MultiIoFlashModel(IMAGE, BASE)
    got, first = simulate(dut, flash, READS)
    assert got == [expected(a, n) for a, n in READS]
    assert first == [dut.first_byte_cycles()] * len(READS)
    assert flash.contention == 0
    setup = [FlashCommand(0xAB, None, 0, awake=True)]
    if width == 4:
        setup += [FlashCommand(0x50, None, 0, True), FlashCommand(0x31, None, 0, True)]
    reads = [c for c in flash.commands if c.opcode == READ_OPCODE[width]]
    assert [(c.address, c.awake) for c in reads] == [(a, True) for a, _ in READS]
    assert all(c.nbytes >= n for c, (_, n) in zip(reads, READS))
    first_wake = [FlashCommand(0xAB, None, 0, awake=False)] + setup[1:]
    assert flash.commands[:len(setup)] == first_wake
    assert flash.quad_enabled == (width == 4)


@pytest.mark.parametrize("width", [2, 4])
def test_backpressure_holds_the_bytes(width):
    dut = MultiIoFlashReader(width=width, sck_half=1, wake_cycles=4)
    got, _ = simulate(dut, MultiIoFlashModel(IMAGE, BASE), [(BASE + 7, 40), (BASE + 100, 17)], stall=0.7, seed=width)
    assert got == [expected(BASE + 7, 40), expected(BASE + 100, 17)]


def test_quad_bytes_every_two_sck_periods():
    """Width 4 at SCK = clock / 2: a byte every four cycles once data flows."""
    dut = MultiIoFlashReader(width=4, sck_half=1, wake_cycles=4)
    flash = MultiIoFlashModel(IMAGE, BASE)
    times = []

    async def bench(ctx):
        ctx.set(dut.addr, BASE)
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        cycle = 1
        while len(times) < 16:
            if ctx.get(dut.o.valid):
                times.append(cycle)
            ctx.set(dut.stop, len(times) == 16)
            await ctx.tick()
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(flash.process_io(dut.sck, dut.cs, dut.dq_o, dut.dq_oe, dut.dq_i))
    sim.add_testbench(bench)
    sim.run()
    assert set(np.diff(times)) == {4}


@pytest.mark.parametrize("kwargs, match", [({"width": 3}, "width"), ({"sck_half": 0}, "sck_half"),
                                           ({"wake_cycles": 1}, "wake_cycles")])
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiIoFlashReader(**kwargs)


def test_model_quad_read_needs_qe_and_sr2_reads_back():
    """The model on its own, bit-banged: a quad read with QE clear returns the pull-ups;
    after the volatile write of status register 2 it returns data, and 0x35 reads QE back."""
    from amaranth.hdl import Module, Signal
    sck, cs, dq_o, dq_oe, dq_i = Signal(), Signal(), Signal(4), Signal(4), Signal(4)
    flash = MultiIoFlashModel(IMAGE, BASE, powered_down=False)
    results = []

    async def frame(ctx, send, clocks_in=0, width=1):
        """Select, send ``send`` (bytes, IO0, MSB first), then ``clocks_in`` clocks reading
        ``width`` lines; returns the bits read as an int."""
        ctx.set(cs, 1)
        bits = [b >> (7 - k) & 1 for b in send for k in range(8)]
        value = 0
        for k in range(len(bits) + clocks_in):
            out = k < len(bits)
            ctx.set(dq_o, bits[k] if out else 0)
            ctx.set(dq_oe, 1 if out else 0)
            await ctx.delay(1e-6)
            ctx.set(sck, 1)
            await ctx.delay(1e-6)
            if not out:
                lines = ctx.get(dq_i)
                value = value << width | ((lines >> 1) & 1 if width == 1 else lines & ((1 << width) - 1))
            ctx.set(sck, 0)
        ctx.set(dq_oe, 0)
        await ctx.delay(1e-6)
        ctx.set(cs, 0)
        await ctx.delay(1e-6)
        return value

    quad_read = bytes([0x6B, 0x10, 0x00, 0x00])

    async def bench(ctx):
        results.append(await frame(ctx, quad_read, 8 + 4, width=4) & 0xFFFF)
        await frame(ctx, b"\x50")
        await frame(ctx, b"\x31\x02")
        results.append(await frame(ctx, b"\x35", 8))
        results.append(await frame(ctx, quad_read, 8 + 4, width=4) & 0xFFFF)

    sim = Simulator(Module())
    sim.add_process(flash.process_io(sck, cs, dq_o, dq_oe, dq_i))
    sim.add_testbench(bench)
    sim.run()
    assert results == [0xFFFF, 0x02, IMAGE[0] << 8 | IMAGE[1]]
    assert flash.quad_enabled and flash.contention == 0


@pytest.mark.synth
def test_synthesis(tmp_path):
    """The quad reader alone on the UP5K (bench/synth.py's harness): 119 LCs and 62 MHz when
    written (81 LCs on one line); not yet in the Soc (issue 12)."""
    from synth_support import synthesise
    figures = synthesise(MultiIoFlashReader(width=4, wake_cycles=128), tmp_path)
    assert figures["lc_unit"] <= 125
    assert figures["fmax_mhz"] >= 55
