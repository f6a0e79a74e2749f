# amaranth: UnusedElaboratable=no
"""SpiFlashReader against sim.models.SpiFlashModel in the Amaranth simulator: data at several
addresses and lengths (across the 0x100000 weight header and the image's ends), o.ready
back-pressure, ``stop`` with the last byte wanted (and mid-command), the wake-up before every
read and its gap, timing, SCK half-periods 1 and 2;
the model's own power-down behaviour; Verilog emission."""

import itertools

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from hdl.board.spi_flash import SpiFlashReader
from sim.models import FlashCommand, SpiFlashModel
from synth_support import synthesise

BASE = 0x0F8000
IMAGE = np.random.default_rng(7).integers(0, 256, 0x10000, dtype=np.uint8).tobytes()
END = BASE + len(IMAGE)
#: (address, length): across the header boundary, the header, inside, the image's start and
#: end (erased 0xFF outside), and a single byte.
READS = [(0x0FFFF0, 40), (0x100000, 8), (0x101234, 17), (BASE - 3, 6), (END - 5, 9), (0x345678, 1)]


def expected(address, length):
    return bytes(IMAGE[a - BASE] if BASE <= a < END else 0xFF
                 for a in range(address, address + length))


def simulate(dut, reads, *, stall=0.0, seed=0):
    """Run ``reads`` one after another with ``o.ready`` low at random (probability ``stall``),
    a stray ``start`` pulse in the middle of each (ignored while busy), ``stop`` with the
    last byte taken.  Returns the model,
    the bytes of each read, each read's cycles from start until cs is inactive for good, and
    each wake gap (cycles with cs inactive between the two commands)."""
    rng = np.random.default_rng(seed)
    flash = SpiFlashModel(IMAGE, BASE)
    got, durations, gaps = [], [], []

    async def testbench(ctx):
        for address, length in reads:
            assert not ctx.get(dut.busy)
            ctx.set(dut.addr, address)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            data, cycle, cs_edges, last_cs = bytearray(), 0, [], 1
            while True:
                ready = rng.random() >= stall
                ctx.set(dut.o.ready, ready)
                taken = ready and ctx.get(dut.o.valid)
                ctx.set(dut.stop, taken and len(data) == length - 1)
                if cycle == 5:                        # a start while busy: ignored
                    ctx.set(dut.addr, 0)
                    ctx.set(dut.start, 1)
                _, _, payload, busy, cs = await ctx.tick().sample(dut.o.payload, dut.busy, dut.cs)
                ctx.set(dut.start, 0)
                ctx.set(dut.stop, 0)
                cycle += 1
                if taken:
                    data.append(payload)
                if cs != last_cs:
                    cs_edges.append(cycle)
                    last_cs = cs
                if not busy:
                    break
            got.append(bytes(data))
            # Edges: inactive after the wake command, active for the read, inactive at the end.
            assert len(cs_edges) == 3
            gaps.append(cs_edges[1] - cs_edges[0])
            durations.append(cs_edges[2])
            await ctx.tick().repeat(3)
            assert not ctx.get(dut.cs) and not ctx.get(dut.sck)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(flash.process(dut.sck, dut.cs, dut.copi, dut.cipo))
    sim.add_testbench(testbench)
    sim.run()
    return flash, got, durations, gaps


@pytest.mark.parametrize("sck_half", [1, 2])
def test_reads_wake_first_and_take_the_declared_time(sck_half):
    dut = SpiFlashReader(sck_half=sck_half, wake_cycles=7)
    flash, got, durations, gaps = simulate(dut, READS)
    assert got == [expected(a, n) for a, n in READS]
    assert gaps == [dut.wake_cycles] * len(READS)
    assert durations == [dut.cycles(n) for _, n in READS]
    # Powered down until the first 0xAB; every read preceded by a wake command.
    wakes = [FlashCommand(0xAB, None, 0, awake=k > 0) for k in range(len(READS))]
    reads = [FlashCommand(0x03, a, n, awake=True) for a, n in READS]
    assert flash.commands == [c for pair in zip(wakes, reads) for c in pair]


@pytest.mark.parametrize("sck_half", [1, 2])
def test_random_backpressure_holds_sck(sck_half):
    dut = SpiFlashReader(sck_half=sck_half, wake_cycles=3)
    reads = [(0x0FFFFA, 60), (END - 20, 30), (BASE, 1)]
    flash, got, durations, _ = simulate(dut, reads, stall=0.6, seed=sck_half)
    assert got == [expected(a, n) for a, n in reads]
    assert ([c for c in flash.commands if c.opcode == 0x03]
            == [FlashCommand(0x03, a, n, True) for a, n in reads])
    # Stalls stretch a read.
    assert all(d >= dut.cycles(n) for d, (_, n) in zip(durations, reads))
    assert durations[0] > dut.cycles(reads[0][1])


def test_sck_mode0_waveform_and_registered_pins():
    """SCK idles low, each half lasts sck_half cycles, COPI only changes while SCK is low."""
    dut = SpiFlashReader(sck_half=2, wake_cycles=4)
    flash = SpiFlashModel(IMAGE, BASE)
    trace = []

    async def testbench(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.addr, 0x100000)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        received = 0
        while ctx.get(dut.busy):
            trace.append((ctx.get(dut.cs), ctx.get(dut.sck), ctx.get(dut.copi)))
            received += ctx.get(dut.o.valid)
            ctx.set(dut.stop, received == 2)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(flash.process(dut.sck, dut.cs, dut.copi, dut.cipo))
    sim.add_testbench(testbench)
    sim.run()
    # SCK's run lengths in each cs-active stretch; the last one (low, cs about to go) aside.
    stretches = [list(g) for active, g in itertools.groupby(trace, key=lambda t: t[0]) if active]
    assert len(stretches) == 2
    for stretch in stretches:
        runs = [len(list(g)) for _, g in itertools.groupby(sck for _, sck, _ in stretch)]
        assert set(runs[:-1]) == {dut.sck_half} and runs[-1] <= dut.sck_half
    assert all(sck == 0 for cs, sck, _ in trace if not cs)
    # COPI changes only with or after a falling edge, never while SCK is high.
    assert all(copi == prev_copi
               for (_, _, prev_copi), (_, sck, copi) in zip(trace, trace[1:]) if sck)


async def bitbang(ctx, pins, send, receive=0):
    """Select the flash, send the bytes ``send`` and clock in ``receive`` bytes (SPI mode 0,
    1 us per half-period, no clock domain needed)."""
    sck, cs, copi, cipo = pins
    ctx.set(cs, 1)
    bits = [b >> (7 - k) & 1 for b in send for k in range(8)] + [0] * (8 * receive)
    value = 0
    for bit in bits:
        ctx.set(copi, bit)
        await ctx.delay(1e-6)
        ctx.set(sck, 1)
        await ctx.delay(1e-6)
        value = value << 1 | ctx.get(cipo)
        ctx.set(sck, 0)
    await ctx.delay(1e-6)
    ctx.set(cs, 0)
    await ctx.delay(1e-6)
    return (value & ((1 << 8 * receive) - 1)).to_bytes(receive, "big")


def test_model_reads_erased_until_woken_and_after_power_down():
    pins = [Signal(name=n) for n in ("sck", "cs", "copi", "cipo")]
    flash = SpiFlashModel(b"\x12\x34\x56", base=0x100000)
    read = bytes([0x03, 0x10, 0x00, 0x00])
    results = []

    async def testbench(ctx):
        results.append(await bitbang(ctx, pins, read, 4))
        await bitbang(ctx, pins, b"\xAB")
        results.append(await bitbang(ctx, pins, read, 4))
        await bitbang(ctx, pins, b"\xB9")
        results.append(await bitbang(ctx, pins, read, 1))

    sim = Simulator(Module())
    sim.add_process(flash.process(*pins))
    sim.add_testbench(testbench)
    sim.run()
    assert results == [b"\xFF" * 4, b"\x12\x34\x56\xFF", b"\xFF"]
    assert flash.commands == [
        FlashCommand(0x03, 0x100000, 0, False), FlashCommand(0xAB, None, 0, False),
        FlashCommand(0x03, 0x100000, 4, True), FlashCommand(0xB9, None, 0, True),
        FlashCommand(0x03, 0x100000, 0, False)]


@pytest.mark.parametrize("kwargs", [{"sck_half": 0}, {"wake_cycles": 0}])
def test_bad_parameters_rejected(kwargs):
    with pytest.raises(ValueError, match=">= 1"):
        SpiFlashReader(**kwargs)


def test_converts_to_verilog():
    text = verilog.convert(SpiFlashReader(), name="SpiFlashReader")
    assert "module SpiFlashReader" in text


@pytest.mark.parametrize("at", [1, 4, 20, 150, 220])
def test_stop_in_any_phase_idles_at_once_and_the_next_read_is_whole(at):
    """``stop`` in the wake command, the wake gap, the read header or a data byte: cs falls
    on the next edge, nothing more is offered, and a read started afterwards is intact."""
    dut = SpiFlashReader(sck_half=1, wake_cycles=5)
    flash = SpiFlashModel(IMAGE, BASE)
    after = []

    async def testbench(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.addr, BASE + 100)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        await ctx.tick().repeat(at)
        ctx.set(dut.stop, 1)
        await ctx.tick()
        ctx.set(dut.stop, 0)
        assert (ctx.get(dut.busy), ctx.get(dut.cs), ctx.get(dut.o.valid)) == (0, 0, 0)
        for _ in range(50):
            assert not ctx.get(dut.cs) and not ctx.get(dut.o.valid)
            await ctx.tick()
        ctx.set(dut.addr, BASE + 7)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        while len(after) < 5:
            if ctx.get(dut.o.valid):
                after.append(ctx.get(dut.o.payload))
                ctx.set(dut.stop, len(after) == 5)
            await ctx.tick()
        ctx.set(dut.stop, 0)
        assert not ctx.get(dut.busy)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(flash.process(dut.sck, dut.cs, dut.copi, dut.cipo))
    sim.add_testbench(testbench)
    sim.run()
    assert bytes(after) == expected(BASE + 7, 5)
    assert flash.commands[-1] == FlashCommand(0x03, BASE + 7, 5, awake=True)


@pytest.mark.synth
def test_synthesis_small_and_fast(tmp_path):
    """The reader alone on the UP5K (bench/synth.py's harness): with no byte counter (its
    consumer says when to stop) it is mostly the 32-bit command and receive shift register."""
    figures = synthesise(SpiFlashReader(), tmp_path)
    assert figures["lc_unit"] <= 80
    assert figures["fmax_mhz"] >= 55
