"""A serial port whose far end is the board design running in Verilator: the same bytes as
on a board, bit-banged on the UART pins of a Verilated :class:`~hdl.board.soc.Soc`, while the
harness (``sim/board_harness.cpp``) models the SPI flash holding the weight image.

:class:`VerilatorBoard` has the part of pyserial's interface ``host.client.Client`` uses
(``write``, ``read``, ``reset_input_buffer``, ``timeout``, ``baudrate``, ``clock``) and what
tests need beyond it (breaks, bytes with a bad stop bit, the LEDs), like ``sim.serial.SimSerial``
but hundreds of times faster, so that thousands of hostile frames fit the default suite.
Simulated time is not wall time: a ``read`` gives up after ``read_cycles`` clock cycles
without the bytes it wants, and ``clock()`` is simulated seconds.
"""

import dataclasses
import json
import subprocess
import tempfile
from pathlib import Path

from host.wire import FRAME_TIMEOUT_S

from .tools import amaranth_verilog
from .verilator import SimulatorError, build

BOARD_HARNESS = Path(__file__).with_name("board_harness.cpp")
#: The Soc's pins, as the board harness drives them.
BOARD_PORTS = {"clk": "input", "rst": "input", "uart_rx": "input", "uart_tx": "output", "flash_sck": "output",
               "flash_cs": "output", "flash_copi": "output", "flash_cipo": "input", "led_ready": "output",
               "led_error": "output"}
#: Those of a Soc whose weights stream: the flash's four I/O lines (the harness's C2F_QUAD).
QUAD_BOARD_PORTS = {**{k: v for k, v in BOARD_PORTS.items() if k not in ("flash_copi", "flash_cipo")},
                    "flash_dq_o": "output", "flash_dq_oe": "output", "flash_dq_i": "input"}
TOP = "cnn_soc"
#: What ``hdl.build`` writes beside a bitstream for :meth:`BoardDesign.from_build_dir`.
SOC_VERILOG = "soc.v"


class BuildDirError(Exception):
    """A build directory that holds no runnable design; the message is one line."""


@dataclasses.dataclass(frozen=True)
class BoardDesign:
    """A board design as Verilog text with what the harness needs to know about it: the
    Verilog's primitives (``target``: "ice40" instantiates SB_MAC16 and SB_SPRAM256KA,
    simulated with yosys' models), the UART divisor, the flash offset of the weight header,
    the cycles the device boots in, and its clock."""

    verilog: str
    target: str
    divisor: int
    weights_offset: int
    boot_cycles: int
    clock_hz: float

    @classmethod
    def of_soc(cls, soc, clock_hz=1e6):
        return cls(amaranth_verilog(soc, TOP), soc.program.config.target, soc.divisor, soc.weights_offset,
                   soc.boot_cycles, clock_hz)

    @classmethod
    def from_build_dir(cls, path):
        """The design ``hdl.build`` built in ``path`` (its ``report.json`` and Verilog), and
        the flash image it wrote: ``(design, report, flash bytes from the weight offset)``."""
        path = Path(path)
        try:
            report = json.loads((path / "report.json").read_text())
        except FileNotFoundError:
            raise BuildDirError(f"{path}: no report.json: not a build directory (python -m hdl.build --out DIR)") from None
        except (OSError, ValueError) as e:
            raise BuildDirError(f"{path / 'report.json'}: unreadable ({e})") from None
        if report.get("status") != "built":
            raise BuildDirError(f"{path}: the build there failed ({report.get('problem')}); nothing to run")
        vb = report.get("virtual_board")
        if not isinstance(vb, dict):
            raise BuildDirError(f"{path}: built by a version without the virtual board; rebuild it")
        try:
            verilog = (path / vb["verilog"]).read_text()
            flash = (path / "flash.bin").read_bytes()
            design = cls(verilog, vb["target"], int(vb["divisor"]), int(vb["weights_offset"]),
                         int(vb["boot_cycles"]), float(vb["clock_hz"]))
        except (OSError, KeyError, TypeError, ValueError) as e:
            raise BuildDirError(f"{path}: incomplete build ({e.__class__.__name__}: {e})") from None
        if len(flash) <= design.weights_offset:
            raise BuildDirError(f"{path / 'flash.bin'}: {len(flash)} bytes, ends before the weights at "
                                f"{design.weights_offset:#x}")
        return design, report, flash[design.weights_offset:]


def build_board(design, verbose=False):
    """The simulator executable for ``design`` (a :class:`BoardDesign` or a Soc; cached by its
    Verilog)."""
    if not isinstance(design, BoardDesign):
        design = BoardDesign.of_soc(design)
    extra = {}
    if design.target == "ice40":
        from hdl.units.dsp import ICE40_SIM_DEFINES, ice40_sim_model
        extra = {"extra_sources": [ice40_sim_model()], "defines": ICE40_SIM_DEFINES}
    ports = QUAD_BOARD_PORTS if "flash_dq_o" in design.verilog else BOARD_PORTS
    return build(design.verilog, TOP, harness=BOARD_HARNESS, required_ports=ports, verbose=verbose, **extra)


class VerilatorBoard:
    """``design`` is a :class:`BoardDesign` or a Soc; ``flash`` what the flash holds from its
    ``weights_offset`` on (header and image: ``host.wire.flash_weights_region``, or anything
    else to test a bad boot); ``period`` the clock period in seconds that ``clock()`` and
    ``baudrate`` assume."""

    def __init__(self, design, flash, read_cycles=200_000, period=1e-6, exe=None):
        self.read_cycles, self.period = int(read_cycles), period
        self.divisor = design.divisor
        self.timeout = None
        exe = exe or build_board(design)
        self._dir = tempfile.TemporaryDirectory(prefix="board-")
        image = Path(self._dir.name) / "flash.bin"
        image.write_bytes(bytes(flash))
        self._proc = subprocess.Popen([str(exe), str(image), str(design.weights_offset), str(design.divisor)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.cycles = 0
        self.led_ready = self.led_error = 0
        self.framing_errors = 0
        self.run(design.boot_cycles)        # a board has long booted when the host opens the port

    @classmethod
    def at_clock(cls, design, flash, exe=None):
        """``design`` at its own clock (``clock()`` is the board's time), each read waiting as
        long as the host's serial port would (hdl.run, the gate-level check)."""
        return cls(design, flash, exe=exe, period=1 / design.clock_hz,
                   read_cycles=round(1.5 * FRAME_TIMEOUT_S * design.clock_hz))

    def _command(self, line):
        try:
            self._proc.stdin.write(line + "\n")
            self._proc.stdin.flush()
            reply = self._proc.stdout.readline()
        except (BrokenPipeError, OSError) as e:
            raise SimulatorError(f"board simulator stopped: {e}") from None
        parts = reply.split()
        if not parts or parts[0] != "d":
            raise SimulatorError(f"board simulator stopped (exit {self._proc.poll()}): {reply!r}")
        self.cycles, self.led_ready, self.led_error, self.framing_errors = map(int, parts[1:5])
        return bytes.fromhex(parts[5]) if len(parts) > 5 else b""

    # -- pyserial's part

    @property
    def baudrate(self):
        return 1 / (self.divisor * self.period)

    def clock(self):
        """Seconds of simulated time."""
        return self.cycles * self.period

    def write(self, data):
        data = bytes(data)
        if data:
            self._command("w " + data.hex())
        return len(data)

    def read(self, n=1):
        """Up to ``n`` bytes the device sent; fewer if ``read_cycles`` pass without them
        (bytes still queued for sending do not count against the wait)."""
        return self._command(f"r {int(n)} {self.read_cycles}")

    def reset_input_buffer(self):
        self._command("x")

    # -- beyond it

    def send_break(self, cycles):
        """Hold the device's RX line low for ``cycles`` (after what is already queued)."""
        self._command(f"b {int(cycles)}")

    def write_bad_stop(self, data):
        """Bytes whose stop bit is low: framing errors."""
        self._command("f " + bytes(data).hex())

    def run(self, cycles):
        self._command(f"c {int(cycles)}")

    def close(self):
        if self._proc.poll() is None:
            try:
                self._proc.stdin.write("q\n")
                self._proc.stdin.flush()
            except OSError:
                pass
            self._proc.wait(timeout=10)
        self._dir.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
