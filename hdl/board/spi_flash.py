"""Single-bit SPI reader for a 25-series NOR flash (W25Q128 on the iCEBreaker): boot-time
copy of the weight image (docs/protocol.md, "Flash layout and boot")."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SpiFlashReader"]


class SpiFlashReader(wiring.Component):
    """On a ``start`` pulse, wakes the flash and streams the bytes from ``addr`` on ``o``
    until ``stop``.

    The iCE40 leaves the flash in deep power-down after configuration, so every transfer
    first sends ``0xAB`` (release from power-down) and keeps ``cs`` inactive for
    ``wake_cycles`` (tRES1, 3 us on the W25Q128: 144 cycles at 48 MHz), then reads with
    ``0x03`` and a 24-bit address, MSB first.  ``start`` samples ``addr`` and is ignored while
    ``busy``.  ``stop`` ends the transfer at once, whatever its phase (a NOR flash read may
    end at any clock; a byte being shifted in is dropped, and so is one waiting on ``o`` that
    is not taken in that cycle): the consumer raises it with the last byte it wants, so the
    reader needs no byte counter of its own.

    SPI mode 0, ``sck_half`` cycles per SCK half-period: ``copi`` changes as SCK falls and
    the flash samples it as SCK rises.  ``cipo`` is sampled on the clock edge that ends
    SCK's high phase: the flash has driven the bit since the previous falling edge (a whole
    SCK period of setup), and only drives the next one after SCK falls at its pin, which is
    later than that edge by our clock-to-out and the pad delays (hold).  ``sck``, ``cs``
    and ``copi`` come straight from flip-flops; ``cs`` is active high (the board's ``cs_n``
    pin inverts it).

    As SPI master the reader simply stops SCK while a received byte waits on ``o``, so
    ``o`` honours ``o.ready``.  ``o.payload`` is the bottom of the receive shift register:
    the next byte's first bit is only shifted in once the pending byte has been taken.
    """

    WAKE = 0xAB
    READ = 0x03

    def __init__(self, sck_half=1, wake_cycles=144):
        if not isinstance(sck_half, int) or sck_half < 1:
            raise ValueError(f"SpiFlashReader: sck_half must be an int >= 1, got {sck_half!r}")
        if not isinstance(wake_cycles, int) or wake_cycles < 1:
            raise ValueError(f"SpiFlashReader: wake_cycles must be an int >= 1, "
                             f"got {wake_cycles!r}")
        self.sck_half = sck_half
        self.wake_cycles = wake_cycles
        super().__init__({
            "start": In(1),
            "addr": In(24),
            "stop": In(1),
            "o": Out(stream.Signature(8)),
            "busy": Out(1),
            "sck": Out(1),
            "cs": Out(1),
            "copi": Out(1),
            "cipo": In(1),
        })

    def cycles(self, length):
        """Cycles from the ``start`` cycle to the first cycle with ``cs`` inactive again after
        reading ``length`` bytes, when ``o.ready`` never stalls and ``stop`` comes with the
        last byte: 16 half-periods per byte on the wire (two opcodes, three address bytes,
        the data), the wake gap, the cycle that offers the last byte and the one that drops
        ``cs``."""
        return 16 * self.sck_half * (length + 5) + self.wake_cycles + 2

    def elaborate(self, platform):
        m = Module()
        # ``op`` and ``shift`` form one shift register: copi is its top bit (the opcode's MSB,
        # then the address), received bits enter at the bottom, and the byte read is its
        # bottom 8 bits.  During the wake command only ``op`` shifts, keeping the address.
        op = Signal(8)
        shift = Signal(24, reset_less=True)
        # ``count`` times a unit (the wake command, the wake gap in cycles, the 32-bit read
        # header, a data byte): a down-counter loaded with its length - 2, negative in the
        # unit's last bit.
        count = Signal(range(-2, max(31, self.wake_cycles - 1)), reset_less=True)
        gap = Signal()                       # cs inactive between the two commands
        reading = Signal()                   # the frame is the read, not the wake command
        data = Signal()                      # the read's header is out: units are data bytes
        blocked = Signal()                   # o was stalled in the last cycle: SCK holds
        load, running, tick, fall, unit_end, gap_end = (Signal() for _ in range(6))

        m.d.comb += [
            self.copi.eq(op[-1]),
            self.o.payload.eq(shift[:8]),
            self.busy.eq(self.cs | gap | self.o.valid),
            load.eq(self.start & ~self.busy & ~self.stop),
            running.eq(self.cs & ~blocked),
            fall.eq(running & tick & self.sck),
            unit_end.eq(fall & count[-1]),
            gap_end.eq(gap & count[-1]),
        ]
        # The control flags as set/hold terms: the events above are mutually exclusive, so
        # they need no priority logic, and ``stop`` clears them all.  ``blocked`` is registered so that o.ready only
        # reaches two flip-flops and no enable; it lags by a cycle, which is early enough:
        # the payload only shifts on a falling edge, and the first one after a byte comes
        # at least two cycles after the byte's, so at least one after o.valid rises.
        m.d.sync += [
            self.cs.eq((load | gap_end | (self.cs & ~(unit_end & ~reading))) & ~self.stop),
            gap.eq(((unit_end & ~reading) | (gap & ~count[-1])) & ~self.stop),
            reading.eq((gap_end | reading) & ~self.stop),
            data.eq((data | unit_end) & reading & ~self.stop),
            self.o.valid.eq(((unit_end & data) | (self.o.valid & ~self.o.ready)) & ~self.stop),
            blocked.eq(self.o.valid & ~self.o.ready),
        ]

        if self.sck_half == 1:
            m.d.comb += tick.eq(1)
        else:
            half = Signal(range(-1, self.sck_half - 1), reset_less=True)
            m.d.comb += tick.eq(half[-1])
            with m.If(tick | ~self.cs):
                m.d.sync += half.eq(self.sck_half - 2)
            with m.Elif(running):
                m.d.sync += half.eq(half - 1)
        with m.If(self.stop):
            m.d.sync += self.sck.eq(0)
        with m.Elif(running & tick):
            m.d.sync += self.sck.eq(~self.sck)

        # Multi-bit registers: one If/Elif chain each, load first, so that yosys maps the
        # chain's condition to the flip-flops' enable rather than to a feedback mux.
        with m.If(load | gap_end):
            m.d.sync += op.eq(Mux(gap, self.READ, self.WAKE))
        with m.Elif(fall):
            m.d.sync += op.eq(Cat(shift[-1], op[:-1]))
        with m.If(load):
            m.d.sync += shift.eq(self.addr)
        with m.Elif(fall & reading):
            m.d.sync += shift.eq(Cat(self.cipo, shift[:-1]))
        with m.If(load | gap_end | unit_end):
            # The next unit: the read header after the gap, the gap after the wake command,
            # else a byte (the wake command at load, a data byte after the header or a byte).
            m.d.sync += count.eq(Mux(gap, 30, Mux(self.cs & ~reading, self.wake_cycles - 2, 6)))
        with m.Elif(gap | fall):
            m.d.sync += count.eq(count - 1)
        return m
