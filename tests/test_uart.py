# amaranth: UnusedElaboratable=no
"""UartTx and UartRx in the Amaranth simulator against the sim.models line models: every byte
value at full rate, odd and even divisors, exact bit timing, framing errors and breaks,
glitches; divisor_for; Verilog emission."""


import pytest
from amaranth.back import verilog
from amaranth.hdl import ClockDomain, Module, Signal
from amaranth.sim import Simulator

from hdl.board.uart import UartRx, UartTx, divisor_for
from sim.models import UartMonitor, uart_break, uart_send
from synth_support import synthesise

ALL_BYTES = bytes(range(256))


def run_rx(divisor, stimulus):
    """A UartRx whose ``rx`` the testbench ``stimulus(ctx, rx_pin)`` drives; every cycle's
    ``o.valid``/``error`` pulse as ``(cycle, "byte"|"error", value)``."""
    dut = UartRx(divisor)
    events = []

    async def monitor(ctx):
        cycle = 0
        async for _, _, valid, error, payload in ctx.tick().sample(
                dut.o.valid, dut.error, dut.o.payload):
            if valid:
                events.append((cycle, "byte", payload))
            if error:
                events.append((cycle, "error", None))
            cycle += 1

    async def testbench(ctx):
        await stimulus(ctx, dut.rx)
        await ctx.tick().repeat(2 * dut.latency)     # let a last frame finish, catch stray pulses

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(monitor)
    sim.add_testbench(testbench)
    sim.run()
    return dut, events


@pytest.mark.parametrize("divisor", [4, 5])
def test_rx_every_byte_back_to_back_at_declared_latency(divisor):
    """Frames exactly 10 bits apart; the first byte's pulse comes ``latency`` cycles after
    its start bit begins, and each later one a frame after the previous."""
    async def stimulus(ctx, rx):
        await ctx.tick()
        await uart_send(ctx, rx, ALL_BYTES, divisor)

    dut, events = run_rx(divisor, stimulus)
    assert [kind for _, kind, _ in events] == ["byte"] * 256
    assert bytes(value for _, _, value in events) == ALL_BYTES
    # The line goes low after the edge that ends cycle 0.
    starts = [1 + 10 * divisor * k for k in range(256)]
    assert [cycle for cycle, _, _ in events] == [start + dut.latency for start in starts]


@pytest.mark.parametrize("divisor", [4, 5])
def test_tx_to_rx_loopback_every_byte_and_tx_waveform(divisor):
    """UartTx driving UartRx and a UartMonitor at full rate: all 256 values through both,
    transfers accepted ``frame_cycles`` apart; the first frame checked cycle by cycle."""
    m = Module()
    m.submodules.tx = tx = UartTx(divisor)
    m.submodules.rx = rx = UartRx(divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    line = UartMonitor(tx.tx, divisor)
    received, accepts, levels = bytearray(), [], []

    async def producer(ctx):
        ctx.set(tx.i.valid, 1)
        for byte in ALL_BYTES:
            ctx.set(tx.i.payload, byte)
            await ctx.tick().until(tx.i.ready)
        ctx.set(tx.i.valid, 0)

    async def observer(ctx):
        cycle = 0
        async for _, _, ready, valid, level, rx_valid, rx_byte in ctx.tick().sample(
                tx.i.ready, tx.i.valid, tx.tx, rx.o.valid, rx.o.payload):
            if ready and valid:
                accepts.append(cycle)
            levels.append(level)
            if rx_valid:
                received.append(rx_byte)
            cycle += 1
            if len(received) == 256:
                return

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_process(line.run)
    sim.add_testbench(producer, background=True)
    sim.add_testbench(observer)
    sim.run()

    assert bytes(received) == ALL_BYTES
    assert bytes(line.data) == ALL_BYTES and line.errors == []
    assert [b - a for a, b in zip(accepts, accepts[1:])] == [tx.frame_cycles] * 255
    # Byte 0x00 accepted at cycle 0: tx low from cycle 1 for start + 8 data bits, then the stop.
    assert accepts[0] == 0
    assert levels[:1 + 10 * divisor] == [1] + [0] * (9 * divisor) + [1] * divisor


def test_tx_idle_high_and_holds_ready_low_during_frame():
    dut = UartTx(4)

    async def testbench(ctx):
        assert ctx.get(dut.tx) == 1 and ctx.get(dut.i.ready) == 1
        ctx.set(dut.i.payload, 0xFF)
        ctx.set(dut.i.valid, 1)
        await ctx.tick()
        ctx.set(dut.i.valid, 0)
        for _ in range(dut.frame_cycles - 1):
            assert not ctx.get(dut.i.ready)
            await ctx.tick()
        assert ctx.get(dut.i.ready) and ctx.get(dut.tx) == 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()


@pytest.mark.parametrize("divisor", [4, 5])
def test_framing_error_gives_one_pulse_then_recovers(divisor):
    """A frame whose stop bit is the next frame's (low) start bit: one error and no byte; the
    receiver ignores the rest of the line until it has been high, then takes the next byte."""
    async def stimulus(ctx, rx):
        await uart_send(ctx, rx, b"\xA5", divisor, stop_bits=0)
        await uart_send(ctx, rx, b"\x00\x00", divisor)
        await ctx.tick().repeat(3 * divisor)
        await uart_send(ctx, rx, b"\x3C\xC3", divisor)

    _, events = run_rx(divisor, stimulus)
    assert [(kind, value) for _, kind, value in events] == [
        ("error", None), ("byte", 0x00), ("byte", 0x3C), ("byte", 0xC3)]


def test_framing_error_without_a_following_high_is_one_error():
    """A frame with a low stop bit followed by a frame of zeros is decoded as one error; the
    zero frame's own start bit is not seen because the line never went high in between."""
    divisor = 6

    async def stimulus(ctx, rx):
        await uart_send(ctx, rx, b"\x81\x00", divisor, stop_bits=0)
        await ctx.tick().repeat(2 * divisor)
        await uart_send(ctx, rx, b"\x5A", divisor)

    _, events = run_rx(divisor, stimulus)
    assert [(kind, value) for _, kind, value in events] == [("error", None), ("byte", 0x5A)]


@pytest.mark.parametrize("frames", [1, 7])
def test_break_gives_exactly_one_error_then_next_byte(frames):
    divisor = 5

    async def stimulus(ctx, rx):
        await uart_send(ctx, rx, b"\x11", divisor)
        await uart_break(ctx, rx, frames * 12 * divisor)
        await ctx.tick().repeat(divisor)
        await uart_send(ctx, rx, b"\x22", divisor)

    _, events = run_rx(divisor, stimulus)
    assert [(kind, value) for _, kind, value in events] == [
        ("byte", 0x11), ("error", None), ("byte", 0x22)]


@pytest.mark.parametrize("divisor", [5, 8, 9])
def test_glitches_shorter_than_half_a_bit_are_ignored(divisor):
    async def stimulus(ctx, rx):
        for width in range(1, (divisor + 1) // 2):   # every width < divisor / 2
            await uart_break(ctx, rx, width)
            await ctx.tick().repeat(2 * divisor)
        await uart_send(ctx, rx, b"\x96", divisor)

    _, events = run_rx(divisor, stimulus)
    assert [(kind, value) for _, kind, value in events] == [("byte", 0x96)]


def test_monitor_flags_framing_error_and_resynchronises():
    """UartMonitor on a bare pin: a low stop bit is an error at that position; decoding
    resumes after the line has been high."""
    m = Module()
    m.domains.sync = ClockDomain()
    pin = Signal(init=1)
    line = UartMonitor(pin, 7)

    async def testbench(ctx):
        await uart_send(ctx, pin, b"\x12", 7)
        await uart_send(ctx, pin, b"\x34", 7, stop_bits=0)
        await uart_send(ctx, pin, b"\x00\x56", 7)
        await ctx.tick().repeat(20)

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_process(line.run)
    sim.add_testbench(testbench)
    sim.run()
    assert bytes(line.data) == b"\x12\x56" and line.errors == [1]


def test_divisor_for():
    assert divisor_for(48_000_000, 115_200) == 417
    assert divisor_for(12_000_000, 115_200) == 104
    assert divisor_for(12_000_000, 3_000_000) == 4
    with pytest.raises(ValueError, match="2 %"):
        divisor_for(1_000_000, 300_000)          # 3: 333 kBd, 11 % fast
    with pytest.raises(ValueError, match="2 %"):
        divisor_for(48_000_000, 1_000_000_000)


@pytest.mark.parametrize("unit", [UartTx, UartRx])
def test_divisor_below_four_rejected(unit):
    with pytest.raises(ValueError, match=">= 4"):
        unit(3)


@pytest.mark.parametrize("unit", [UartTx, UartRx])
def test_converts_to_verilog(unit):
    text = verilog.convert(unit(417), name=unit.__name__)
    assert f"module {unit.__name__}" in text


@pytest.mark.synth
def test_synthesis_small_and_fast(tmp_path):
    """Each unit alone on the UP5K (bench/synth.py's harness): together well under 100 LCs,
    both far above 50 MHz at the protocol's 48 MHz / 115200 divisor."""
    tx = synthesise(UartTx(divisor_for(48e6, 115_200)), tmp_path / "tx")
    rx = synthesise(UartRx(divisor_for(48e6, 115_200)), tmp_path / "rx")
    assert tx["lc_unit"] + rx["lc_unit"] <= 90
    assert min(tx["fmax_mhz"], rx["fmax_mhz"]) >= 60
