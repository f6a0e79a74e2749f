"""Models of the board around the design for Amaranth simulations: the SPI NOR flash and both
ends of the UART line, used by the unit tests and the SoC end-to-end tests.

They wait on signal edges and clock ticks rather than inspecting every cycle, so a long
frame costs a few Python wake-ups per bit.  Pins are the DUT's port signals.
"""

from typing import NamedTuple

__all__ = ["FlashCommand", "SpiFlashModel", "uart_send", "uart_break", "UartMonitor"]


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

    def _end(self, opcode, address, bits):
        """Record and act on a command when chip select goes inactive."""
        if opcode is None:
            return
        awake = not self.powered_down
        nbytes = (bits - 32) // 8 if awake and opcode == self.READ and address is not None else 0
        self.commands.append(FlashCommand(opcode, address if opcode == self.READ else None,
                                          nbytes, awake))
        if opcode == self.WAKE:
            self.powered_down = False
        elif opcode == self.POWER_DOWN and awake:
            self.powered_down = True


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
