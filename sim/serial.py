"""A serial port whose far end is the board design running in the Amaranth simulator.

:class:`SimSerial` has the part of pyserial's interface the host code uses (``write``,
``read``, ``reset_input_buffer``, ``timeout``), so ``host.client.Client`` and
``python -m hdl.run`` talk to the simulated :class:`~hdl.board.soc.Soc` exactly as to a board:
the same bytes, bit-banged on the UART pins, while an SPI flash model
(:class:`~sim.models.SpiFlashModel`) serves the weight image the device boots from.

Simulated time is not wall time: a ``read`` gives up after ``read_cycles`` clock cycles of
simulation without the bytes it wants (``timeout`` is accepted and ignored), so tests
stay fast however long a real board would wait; ``clock()`` and ``baudrate`` put the
client's deadlines on the simulated time line.
"""

from amaranth.sim import Simulator

from .models import MultiIoFlashModel, SpiFlashModel, UartMonitor, uart_break, uart_send

#: Simulated clock period (s); only the cycle counts matter.
PERIOD = 1e-6


class SimSerial:
    """``flash`` is what the flash holds from the device's weight offset on (the weight
    header and image: :func:`host.wire.flash_weights_region`, or anything else to
    test a bad boot)."""

    def __init__(self, soc, flash, read_cycles=200_000, chunk_cycles=2_000, vcd=None):
        self.soc = soc
        self.read_cycles, self.chunk_cycles = int(read_cycles), int(chunk_cycles)
        self.timeout = None
        if soc.streams:
            self.flash = MultiIoFlashModel(flash, base=soc.weights_offset)
        else:
            self.flash = SpiFlashModel(flash, base=soc.weights_offset)
        self.monitor = UartMonitor(soc.uart_tx, soc.divisor)
        self._actions = []            # ("byte", value) or ("break", cycles), oldest first
        self._taken = 0               # bytes of monitor.data already read
        self.sim = Simulator(soc)
        self.sim.add_clock(PERIOD)
        if soc.streams:
            self.sim.add_process(self.flash.process_io(soc.flash_sck, soc.flash_cs, soc.flash_dq_o, soc.flash_dq_oe,
                                                       soc.flash_dq_i))
        else:
            self.sim.add_process(self.flash.process(soc.flash_sck, soc.flash_cs, soc.flash_copi, soc.flash_cipo))
        self.sim.add_process(self.monitor.run)
        self.sim.add_process(self._line)
        self._now = 0.0
        self._vcd = self.sim.write_vcd(vcd) if vcd else None
        if self._vcd:
            self._vcd.__enter__()
        self.run(soc.boot_cycles)        # a board has long booted when the host opens the port

    async def _line(self, ctx):
        """The host's transmitter: sends queued bytes and breaks, back to back."""
        while True:
            if self._actions:
                kind, value = self._actions.pop(0)
                if kind == "byte":
                    await uart_send(ctx, self.soc.uart_rx, [value], self.soc.divisor)
                else:
                    await uart_break(ctx, self.soc.uart_rx, value)
            else:
                await ctx.delay(self.soc.divisor * PERIOD)

    @property
    def baudrate(self):
        return 1 / (self.soc.divisor * PERIOD)

    def clock(self):
        """Seconds of simulated time."""
        return self._now

    @property
    def cycles(self):
        """Clock cycles simulated so far."""
        return round(self._now / PERIOD)

    def run(self, cycles):
        """Advance the simulation by ``cycles`` clock cycles."""
        self._now += cycles * PERIOD
        self.sim.run_until(self._now)

    def run_until_idle_line(self, max_cycles):
        """Advance until everything written has been sent (or ``max_cycles``)."""
        done = 0
        while self._actions and done < max_cycles:
            self.run(self.chunk_cycles)
            done += self.chunk_cycles

    def write(self, data):
        self._actions += [("byte", b) for b in bytes(data)]
        return len(data)

    def send_break(self, cycles):
        """Hold the device's RX line low for ``cycles`` (after what is already queued)."""
        self._actions.append(("break", int(cycles)))

    def read(self, n=1):
        """Up to ``n`` bytes the device sent; fewer if ``read_cycles`` pass without them."""
        waited = 0
        # Bytes still queued for sending do not count against the wait.
        self.run_until_idle_line(10 ** 12)
        while len(self.monitor.data) - self._taken < n and waited < self.read_cycles:
            self.run(self.chunk_cycles)
            waited += self.chunk_cycles
        got = bytes(self.monitor.data[self._taken:self._taken + n])
        self._taken += len(got)
        return got

    def reset_input_buffer(self):
        self._taken = len(self.monitor.data)

    def close(self):
        if self._vcd:
            self._vcd.__exit__(None, None, None)
            self._vcd = None
