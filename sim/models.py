"""Models of the board around the design for Amaranth simulations: the SPI NOR flash and both
ends of the UART line, used by the unit tests and the SoC end-to-end tests.

They wait on signal edges and clock ticks rather than inspecting every cycle, so a long
frame costs a few Python wake-ups per bit.  Pins are the DUT's port signals.
"""

from typing import NamedTuple

__all__ = ["FlashCommand", "SpiFlashModel", "MultiIoFlashModel", "uart_send", "uart_break", "UartMonitor"]


class FlashCommand(NamedTuple):
    """One chip-select period as :class:`SpiFlashModel` saw it."""
    opcode: int
    #: The 24-bit address of a ``0x03`` read, if all of it arrived; otherwise None.
    address: "int | None"
    #: Whole data bytes the flash shifted out (0 unless an awake read).
    nbytes: int
    #: Whether the flash was out of power-down when the command came (``0xAB`` acts either way).
    awake: bool


class SpiFlashModel:
    """A 25-series SPI NOR flash (W25Q128-like) in SPI mode 0, single-bit I/O.

    ``image`` is stored at flash address ``base``; every other address reads ``0xFF``
    (erased), and reads wrap at 2**24 like the W25Q128's.  Commands:

    - ``0xAB`` release from power-down (takes effect when CS goes inactive);
    - ``0xB9`` deep power-down;
    - ``0x03`` read: 24-bit address MSB first, then data MSB first for as long as SCK runs.

    The model starts in deep power-down (``powered_down=True``), as the iCE40 leaves the
    flash after configuration.  A powered-down flash ignores everything but ``0xAB`` and
    does not drive its output: a read then returns ``0xFF`` bytes (the pull-up), as on the
    board, and is recorded with ``awake=False``, so a design that forgets the wake-up reads
    erased flash rather than crashing the test.  ``commands`` lists each chip-select period
    with at least one whole opcode (:class:`FlashCommand`).  The model does not check tRES1:
    time the wake gap in the testbench.

    ``cipo`` changes as soon as SCK has fallen (a real part takes up to tCLQV, and holds
    the old bit at least that edge), and is high while the flash is deselected.  CS must
    be inactive when the simulation starts.
    """

    WAKE, POWER_DOWN, READ = 0xAB, 0xB9, 0x03

    def __init__(self, image, base=0, *, powered_down=True):
        self.image = bytes(image)
        self.base = base
        self.powered_down = powered_down
        self.commands = []

    def byte(self, address):
        """The byte stored at flash ``address``."""
        offset = (address & 0xFFFFFF) - self.base
        return self.image[offset] if 0 <= offset < len(self.image) else 0xFF

    def process(self, sck, cs, copi, cipo):
        """The simulator process driving ``cipo`` from ``sck``, ``cs`` (active high) and
        ``copi``; add it with ``sim.add_process``."""
        async def run(ctx):
            selected = False
            ctx.set(cipo, 1)
            async for rise, fall, now_selected, mosi in \
                    ctx.posedge(sck).negedge(sck).changed(cs).sample(copi):
                if now_selected != selected:
                    selected = bool(now_selected)
                    if selected:
                        bits = header = 0
                        opcode = address = None
                    else:
                        self._end(opcode, address, bits)
                        ctx.set(cipo, 1)
                elif selected and rise:
                    if bits < 32:
                        header = header << 1 | mosi
                    bits += 1
                    if bits == 8:
                        opcode = header
                    elif bits == 32:
                        address = header & 0xFFFFFF
                elif (selected and fall and address is not None and opcode == self.READ
                        and not self.powered_down):
                    index = bits - 32
                    ctx.set(cipo, self.byte(address + index // 8) >> (7 - index % 8) & 1)
        return run

    #: Data lines of each read command.
    READ_WIDTH = {READ: 1}

    def _data_start(self, opcode):
        """Clocks before a read's first data bit: opcode and address."""
        return 32

    def _end(self, opcode, address, bits, written=None):
        """Record and act on a command when chip select goes inactive (``written``: the byte
        after the opcode, for commands that write one)."""
        if opcode is None:
            return
        awake = not self.powered_down
        width = self.READ_WIDTH.get(opcode)
        nbytes = 0
        if awake and width and address is not None:
            nbytes = max(0, (bits - self._data_start(opcode)) * width // 8)
        self.commands.append(FlashCommand(opcode, address if width else None, nbytes, awake))
        if opcode == self.WAKE:
            self.powered_down = False
        elif opcode == self.POWER_DOWN and awake:
            self.powered_down = True


class MultiIoFlashModel(SpiFlashModel):
    """The same flash on all four I/O lines (IO0 = DI, IO1 = DO, IO2 = /WP, IO3 = /HOLD), with
    the W25Q128JV's fast reads as its datasheet times them:

    - ``0x0B`` fast read, ``0x3B`` dual output, ``0x6B`` quad output fast read: opcode and
      24-bit address on IO0 (one bit a clock), then :attr:`DUMMY` dummy clocks, then data
      on IO1, IO1:IO0 (high bit first) or IO3:IO0, changing as SCK falls, the first bit
      driven as the last dummy clock falls;
    - ``0x03`` read (no dummy clocks, IO1), ``0xAB`` wake, ``0xB9`` power down, as the
      single-line model;
    - ``0x50`` write enable for volatile status, then ``0x31`` and a byte: status register 2,
      whose bit 1 is QE, volatile (lost at power-down in the part; kept here); ``0x35``
      reads it back on IO1.  A quad read while QE is clear drives nothing (IO2 and IO3 are
      /WP and /HOLD then), so the host reads its pull-ups: 0xFF.

    ``quad_enabled`` is QE at power-up (W25Q128JV-IQ parts ship with it clear).  The host's
    pins are ``dq_o`` (its outputs), ``dq_oe`` (their enables) and ``dq_i`` (what it reads:
    the flash where the flash drives, else the host's own output, else the pull-up's 1).
    A line driven by both ends at once is a bus fight: it is counted in ``contention``.
    """

    FAST_READ, DUAL_READ, QUAD_READ = 0x0B, 0x3B, 0x6B
    VOLATILE_WRITE_ENABLE, WRITE_SR2, READ_SR2 = 0x50, 0x31, 0x35
    QE = 0x02
    #: Dummy clocks of the fast reads (0x0B, 0x3B, 0x6B) after the address.
    DUMMY = 8
    #: Data lines of each read command.
    READ_WIDTH = {SpiFlashModel.READ: 1, FAST_READ: 1, DUAL_READ: 2, QUAD_READ: 4}

    def __init__(self, image, base=0, *, powered_down=True, quad_enabled=False):
        super().__init__(image, base, powered_down=powered_down)
        self.sr2 = self.QE if quad_enabled else 0
        self.contention = 0
        self._volatile_we = False

    @property
    def quad_enabled(self):
        return bool(self.sr2 & self.QE)

    def _data_start(self, opcode):
        """Clocks before a read's first data bit: opcode, address and dummy clocks."""
        return super()._data_start(opcode) + (0 if opcode == self.READ else self.DUMMY)

    def process_io(self, sck, cs, dq_o, dq_oe, dq_i):
        """The simulator process for the four I/O lines; add it with ``sim.add_process``."""
        async def run(ctx):
            selected = False
            drive, driven = 0, 0              # the flash's output bits and which lines it drives

            def update(host, host_oe):
                if host_oe & driven:
                    self.contention += 1
                ctx.set(dq_i, (drive & driven) | (host & host_oe & ~driven) | (0xF & ~(host_oe | driven)))

            update(0, 0)
            async for rise, fall, now_selected, _, _, host, host_oe in \
                    ctx.posedge(sck).negedge(sck).changed(cs).changed(dq_o, dq_oe).sample(dq_o, dq_oe):
                if now_selected != selected:
                    selected = bool(now_selected)
                    if selected:
                        bits = header = 0
                        opcode = address = written = None
                    else:
                        self._end(opcode, address, bits, written)
                        drive = driven = 0
                elif selected and rise:
                    if bits < 32:
                        header = header << 1 | (host & 1)
                    bits += 1
                    if bits == 8:
                        opcode = header
                    elif bits == 16:
                        written = header & 0xFF
                    elif bits == 32 and opcode in self.READ_WIDTH:
                        address = header & 0xFFFFFF
                elif selected and fall and opcode is not None and not self.powered_down:
                    drive, driven = self._output(opcode, address, bits)
                update(host, host_oe)
        return run

    def _output(self, opcode, address, bits):
        """The flash's (output bits, driven lines) after the falling edge that ends clock
        ``bits``."""
        if opcode == self.READ_SR2 and bits >= 8:
            return (self.sr2 >> (7 - (bits - 8) % 8) & 1) << 1, 0b0010
        width = self.READ_WIDTH.get(opcode)
        if width is None or address is None or bits < self._data_start(opcode):
            return 0, 0
        if width == 4 and not self.quad_enabled:
            return 0, 0
        index = (bits - self._data_start(opcode)) * width
        value = self.byte(address + index // 8) >> (8 - width - index % 8) & ((1 << width) - 1)
        return (value << 1, 0b0010) if width == 1 else (value, (1 << width) - 1)

    def _end(self, opcode, address, bits, written=None):
        awake = not self.powered_down
        super()._end(opcode, address, bits)
        if opcode is None:
            return
        # A volatile status write needs 0x50 as the command just before it.
        enabled, self._volatile_we = self._volatile_we, awake and opcode == self.VOLATILE_WRITE_ENABLE
        if awake and enabled and opcode == self.WRITE_SR2 and written is not None:
            self.sr2 = written


async def uart_send(ctx, rx_pin, data, divisor, stop_bits=1):
    """Drive ``rx_pin`` with ``data`` as 8N1 frames, LSB first, ``divisor`` cycles per bit and
    ``stop_bits`` stop bits, back to back; the line is left idle (high).  ``stop_bits=0``
    sends frames whose stop bit is the next frame's start bit: with a low bit after it, a
    framing error."""
    for byte in data:
        for bit in [0, *(byte >> k & 1 for k in range(8))] + [1] * stop_bits:
            ctx.set(rx_pin, bit)
            await ctx.tick().repeat(divisor)
    ctx.set(rx_pin, 1)


async def uart_break(ctx, rx_pin, cycles):
    """Hold ``rx_pin`` low (a break) for ``cycles`` clock cycles, then release it high."""
    ctx.set(rx_pin, 0)
    await ctx.tick().repeat(cycles)
    ctx.set(rx_pin, 1)


class UartMonitor:
    """Decodes the 8N1 frames a DUT sends on ``tx_pin`` at ``divisor`` cycles per bit.

    Run :meth:`run` as a background process (``sim.add_process(monitor.run)``).  Each bit is
    sampled at its middle, timed from the start bit's falling edge; a start bit that is
    high again at its middle is ignored.  Good bytes collect in ``data``; a low stop bit
    appends ``len(data)`` at that moment to ``errors`` and the monitor waits for the line to
    go high before looking for the next start bit.
    """

    def __init__(self, tx_pin, divisor):
        self.tx = tx_pin
        self.divisor = divisor
        self.data = bytearray()
        self.errors = []

    async def run(self, ctx):
        """The simulator process; it never returns."""
        bit_middle = ctx.tick().sample(self.tx)
        while True:
            await ctx.negedge(self.tx)
            # The edge follows a clock edge; the n-th tick after it samples the line n - 1
            # cycles into the start bit.
            start, = await bit_middle.repeat(self.divisor // 2 + 1)
            if start:
                continue
            byte = 0
            for k in range(8):
                bit, = await bit_middle.repeat(self.divisor)
                byte |= bit << k
            stop, = await bit_middle.repeat(self.divisor)
            if stop:
                self.data.append(byte)
            else:
                self.errors.append(len(self.data))
                await ctx.posedge(self.tx)
