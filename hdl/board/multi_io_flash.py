"""SPI NOR flash reader on one, two or four data lines (W25Q128JV fast reads) for weights that
stream from flash during inference (issue 12); the flash side is modelled by
``sim.models.MultiIoFlashModel``."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["MultiIoFlashReader"]

WAKE = 0xAB
VOLATILE_WRITE_ENABLE, WRITE_SR2, QE = 0x50, 0x31, 0x02
#: The fast read of each width: opcode and 24-bit address on IO0, then dummy clocks, then data.
READ_OPCODE = {1: 0x0B, 2: 0x3B, 4: 0x6B}
DUMMY_CLOCKS = 8


class MultiIoFlashReader(wiring.Component):
    """On a ``start`` pulse, streams the bytes from ``addr`` on ``o`` until ``stop``.

    Each transfer wakes the flash (``0xAB``, then ``cs`` inactive for ``wake_cycles``: the
    iCE40 leaves it powered down), with ``width`` 4 sets QE in the volatile status register
    (``0x50``, then ``0x31 0x02``: W25Q128JV-IQ parts ship with QE clear, and the volatile
    write wears nothing), then reads with the fast read of its width.  A data byte takes
    ``8 / width`` SCK periods of ``2 * sck_half`` cycles.

    SPI mode 0 as :class:`~hdl.board.spi_flash.SpiFlashReader`: outputs change as SCK falls,
    inputs are sampled on the clock edge that ends SCK's high phase.  ``dq_o``/``dq_oe``
    drive the four lines: IO0 while a command or address goes out, IO2 and IO3 high except
    in a quad read's dummy clocks and data (they are /WP and /HOLD until QE is set, and a
    low /HOLD would pause the flash); ``dq_i`` is what the pins read.  ``cs`` is active high.  A byte is held on ``o`` until taken;
    SCK stops while the next one would complete first.  ``stop`` ends the transfer at once
    (a byte not taken in that cycle is dropped).
    """

    def __init__(self, width=4, sck_half=1, wake_cycles=144):
        if width not in READ_OPCODE:
            raise ValueError(f"MultiIoFlashReader: width must be 1, 2 or 4 data lines, got {width!r}")
        if not isinstance(sck_half, int) or sck_half < 1:
            raise ValueError(f"MultiIoFlashReader: sck_half must be an int >= 1, got {sck_half!r}")
        if not isinstance(wake_cycles, int) or wake_cycles < 2:
            raise ValueError(f"MultiIoFlashReader: wake_cycles must be an int >= 2, got {wake_cycles!r}")
        self.width, self.sck_half, self.wake_cycles = width, sck_half, wake_cycles
        super().__init__({
            "start": In(1), "addr": In(24), "stop": In(1),
            "o": Out(stream.Signature(8)), "busy": Out(1),
            "sck": Out(1), "cs": Out(1), "dq_o": Out(4), "dq_oe": Out(4), "dq_i": In(4),
        })

    @property
    def units(self):
        """The opcode bytes before the read, each with the cycles ``cs`` stays inactive after
        it (None: the next byte follows in the same command)."""
        units = [(WAKE, self.wake_cycles)]
        if self.width == 4:
            units += [(VOLATILE_WRITE_ENABLE, 2), (WRITE_SR2, None), (QE, 2)]
        return units

    @property
    def clocks_per_byte(self):
        return 8 // self.width

    def first_byte_cycles(self):
        """Cycles from the ``start`` cycle to the first byte on ``o``: the cycle that takes
        ``start``, the bytes before the read with their gaps, the read's 32 header bits and
        dummy clocks, one byte."""
        period = 2 * self.sck_half
        before = sum(period * 8 + (gap or 0) for _, gap in self.units)
        return 1 + before + period * (32 + DUMMY_CLOCKS + self.clocks_per_byte)

    def elaborate(self, platform):
        m = Module()
        w = self.width
        units = self.units
        read = len(units)                     # the read's unit: opcode and address
        # ``op`` and ``shift`` form one shift register as in SpiFlashReader: IO0 is the top
        # of ``op``; before the read only ``op`` shifts, so ``shift`` keeps the address; the
        # read shifts both (opcode, then address) and then takes the data in at the bottom
        # of ``shift``, whose low byte is the payload.
        op = Signal(8)
        shift = Signal(24)
        unit = Signal(range(read + 1))
        left = Signal(range(max(33, self.wake_cycles + 1)))     # clocks (or gap cycles) left
        gap, dummy, data = Signal(), Signal(), Signal()
        half = Signal(range(self.sck_half))
        tick, fall, hold, phase_end = Signal(), Signal(), Signal(), Signal()
        # Single-line data comes on IO1 (DO); two and four lines are IO1:IO0 and IO3:IO0.
        din = self.dq_i[1] if w == 1 else self.dq_i[:w]

        m.d.comb += [
            self.busy.eq(self.cs | gap | self.o.valid),
            tick.eq(half == self.sck_half - 1),
            # A byte waiting on ``o`` is the bottom of ``shift``: nothing shifts until taken.
            hold.eq(self.o.valid & ~self.o.ready),
            fall.eq(self.cs & self.sck & tick & ~hold),
            phase_end.eq(left == 1),
            self.o.payload.eq(shift[:8]),
            self.dq_o.eq(Cat(op[-1], Const(0b111, 3))),
            self.dq_oe.eq(Cat(self.cs & ~dummy & ~data, Const(0, 1), ~(dummy | data) if w == 4 else Const(1, 1),
                              ~(dummy | data) if w == 4 else Const(1, 1))),
        ]
        with m.If(self.cs & tick & ~(hold & self.sck)):
            m.d.sync += [self.sck.eq(~self.sck), half.eq(0)]
        with m.Elif(self.cs):
            m.d.sync += half.eq(half + 1)
        with m.Else():
            m.d.sync += [self.sck.eq(0), half.eq(0)]
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        def per_unit(values):
            out = Const(values[0], range(max(values) + 1))
            for k, v in enumerate(values[1:], 1):
                out = Mux(unit == k, v, out)
            return out

        next_op = per_unit([opcode for opcode, _ in units[1:]] + [READ_OPCODE[w]])
        gap_after = per_unit([g or 0 for _, g in units])
        continues = per_unit([int(g is None) for _, g in units])

        def next_unit():
            m.d.sync += [unit.eq(unit + 1), op.eq(next_op), left.eq(Mux(unit == read - 1, 32, 8)),
                         self.cs.eq(1), gap.eq(0)]

        with m.If(self.stop):
            m.d.sync += [self.cs.eq(0), gap.eq(0), dummy.eq(0), data.eq(0), self.o.valid.eq(0), self.sck.eq(0)]
        with m.Elif(self.start & ~self.busy):
            m.d.sync += [unit.eq(0), op.eq(units[0][0]), shift.eq(self.addr), left.eq(8), self.cs.eq(1)]
        with m.Elif(gap):
            m.d.sync += left.eq(left - 1)
            with m.If(phase_end):
                next_unit()
        with m.Elif(fall):
            m.d.sync += left.eq(left - 1)
            with m.If(data):
                m.d.sync += shift.eq(Cat(din, shift[:-w]))
                with m.If(phase_end):
                    m.d.sync += [self.o.valid.eq(1), left.eq(self.clocks_per_byte)]
            with m.Elif(dummy):
                with m.If(phase_end):
                    m.d.sync += [dummy.eq(0), data.eq(1), left.eq(self.clocks_per_byte)]
            with m.Elif(unit == read):
                m.d.sync += Cat(shift, op).eq(Cat(shift, op) << 1)
                with m.If(phase_end):
                    m.d.sync += [dummy.eq(1), left.eq(DUMMY_CLOCKS)]
            with m.Else():
                m.d.sync += op.eq(op << 1)
                with m.If(phase_end & continues):
                    next_unit()
                with m.Elif(phase_end):
                    m.d.sync += [self.cs.eq(0), gap.eq(1), left.eq(gap_after)]
        return m
