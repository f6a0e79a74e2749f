"""8N1 UART transmitter and receiver for the host link (docs/protocol.md), sized for the UP5K.

Bit timing uses down-counters loaded with ``n - 2`` whose sign bit is the "n cycles have
passed" strobe: a carry chain and a register, never an equality comparator on the counter.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UartTx", "UartRx", "divisor_for"]


def divisor_for(clk_hz, baud):
    """Clock cycles per bit for ``baud`` at ``clk_hz``, rounded; ValueError beyond 2 % error."""
    divisor = max(1, round(clk_hz / baud))
    if abs(clk_hz / divisor - baud) > 0.02 * baud:
        raise ValueError(f"{clk_hz} Hz cannot make {baud} baud within 2 % (divisor {divisor})")
    return divisor


def _check_divisor(divisor):
    if not isinstance(divisor, int) or divisor < 4:
        raise ValueError(f"UART divisor must be an int >= 4 cycles per bit, got {divisor!r}")


def _bit_timer(cycles):
    """A signed down-counter wide enough to be loaded with ``cycles - 2``; its sign bit ends the
    wait.  Always loaded before use, so it needs no reset."""
    return Signal(range(-1, cycles - 1), name="timer", reset_less=True)


class UartTx(wiring.Component):
    """Sends each byte accepted on ``i`` as 8N1, LSB first, ``divisor`` cycles per bit on ``tx``.

    ``tx`` is the low bit of the frame shift register, so the pin is driven straight from a
    flip-flop.  ``i.ready`` is high while idle; back-to-back bytes start :attr:`frame_cycles`
    apart (the stop bit is one cycle longer than a bit, which every receiver accepts).
    ``sent`` is the byte accepted last, from the cycle after it until its start bit ends
    (``divisor`` cycles): a consumer that checksums what is sent needs no copy of its own.
    """

    def __init__(self, divisor):
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__({"i": In(stream.Signature(8)), "tx": Out(1, init=1), "sent": Out(8)})

    @property
    def frame_cycles(self):
        """Cycles between the start bits of two back-to-back bytes."""
        return 10 * self.divisor + 1

    def elaborate(self, platform):
        m = Module()
        frame = Signal(9, init=0x1FF)        # bits still to send, LSB on the line; refills with 1s
        left = Signal(range(11))             # bit periods left in the frame, stop bit included
        timer = _bit_timer(self.divisor)

        m.d.comb += [self.tx.eq(frame[0]), self.sent.eq(frame[1:]), self.i.ready.eq(left == 0)]
        with m.If(self.i.ready):
            with m.If(self.i.valid):
                m.d.sync += [frame.eq(Cat(0, self.i.payload)), left.eq(10),
                             timer.eq(self.divisor - 2)]
        with m.Elif(timer[-1]):
            m.d.sync += [frame.eq(Cat(frame[1:], 1)), left.eq(left - 1),
                         timer.eq(self.divisor - 2)]
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
        return m


class UartRx(wiring.Component):
    """Receives 8N1 bytes on ``rx``, ``divisor`` cycles per bit, sampling each bit mid-way.

    ``rx`` goes through two flip-flops (it is asynchronous) and a third that finds the
    falling edge of a start bit; a start bit that is high again at its middle was a glitch
    and is dropped.  Each byte is offered on ``o`` for exactly one cycle and ``o.ready`` is
    ignored: a UART cannot be held off, so a sink that is not ready loses the byte.  (An
    ``always_ready`` signature would say so in the type, but its constant ``ready`` breaks
    ``wiring.connect`` to ordinary sinks and ``verilog.convert``.)  ``o.payload`` holds until
    the next start bit is confirmed.

    A low stop bit pulses ``error`` for one cycle instead of ``o.valid``; a break (the line
    held low) produces exactly that.  A start bit needs a falling edge, so after an error the
    receiver waits for the line to go high again and a long break counts once.
    """

    def __init__(self, divisor):
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__({
            "rx": In(1, init=1),
            "o": Out(stream.Signature(8)),
            "error": Out(1),
        })

    @property
    def latency(self):
        """Cycles from the first low cycle of a start bit on ``rx`` to the cycle of its
        ``o.valid`` (or ``error``) pulse: two synchroniser stages, the edge register, half a
        bit to the start bit's middle, then nine bits to the stop bit's middle."""
        return 3 + self.divisor // 2 + 9 * self.divisor

    def elaborate(self, platform):
        m = Module()
        rx = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, rx, init=1)
        prev = Signal(init=1)
        busy = Signal()                      # inside a frame
        checking = Signal()                  # waiting for the middle of the start bit
        # Received bits enter at the top behind a marker bit; the marker reaching bit 0 means
        # eight data bits are in and the next sample is the stop bit.
        shift = Signal(9, reset_less=True)
        timer = _bit_timer(self.divisor)

        m.d.sync += [prev.eq(rx), self.o.valid.eq(0), self.error.eq(0)]
        m.d.comb += self.o.payload.eq(shift[1:])
        # One load for both waits: two constant loads under separate conditions let yosys
        # give the bits different set/reset nets, which a logic block's eight flip-flops
        # cannot have, so nextpnr splits the carry chain (95 -> 55 MHz).
        with m.If(~busy | timer[-1]):
            m.d.sync += timer.eq(Mux(busy, self.divisor - 2, self.divisor // 2 - 2))
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
        with m.If(~busy):
            with m.If(prev & ~rx):
                m.d.sync += [busy.eq(1), checking.eq(1)]
        with m.Elif(timer[-1]):
            with m.If(checking):
                m.d.sync += [checking.eq(0), shift.eq(1 << 8), busy.eq(~rx)]
            with m.Elif(shift[0]):
                m.d.sync += [busy.eq(0), self.o.valid.eq(rx), self.error.eq(~rx)]
            with m.Else():
                m.d.sync += shift.eq(Cat(shift[1:], rx))
        return m
