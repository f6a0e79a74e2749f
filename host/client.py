"""The host end of docs/protocol.md: one command at a time, each retried on a lost, corrupt
or damaged exchange, each with a deadline.

A :class:`Client` talks to anything with pyserial's ``write(bytes)``, ``read(n)``
(returning fewer bytes when its timeout expires) and ``reset_input_buffer()``: a real
serial port from :func:`open_serial`, a test double, or a simulated board
(``sim.serial``).  A port may also offer ``clock()`` (seconds on its own time line, which a
simulated board advances by simulating) and ``baudrate``; otherwise the wall clock counts.
"""

import math
import struct
import time

from golden.files import one_line

from . import wire
from .wire import (CMD_INFER, CMD_INFO, CMD_RELOAD, CMD_WEIGHTS, COMMAND_NAMES, ERROR_MEANINGS, ERROR_NAMES, OK,
                   REPLY_HEADER_FORMAT, SYNC, TRANSIENT, ProtocolError)

#: How long a read waits for the next reply byte by default (an inference takes milliseconds).
DEFAULT_TIMEOUT_S = 2.0
#: Attempts after the first when an exchange is lost or damaged.
DEFAULT_RETRIES = 2


class NoReplyError(ProtocolError):
    """Nothing, or not all of a reply, arrived in time."""


class CorruptReplyError(ProtocolError):
    """A reply arrived whose CRC, length or contents are wrong."""


class PortError(ProtocolError):
    """The serial port cannot be opened (or pyserial is missing)."""


class DeviceError(ProtocolError):
    """The device answered with an error status (docs/protocol.md, Errors)."""

    def __init__(self, code, command=None):
        self.code = int(code)
        self.name = ERROR_NAMES.get(self.code, f"UNKNOWN_{self.code:#04x}")
        self.command = command
        to = f" to {command}" if command else ""
        meaning = ERROR_MEANINGS.get(self.code, "not a documented status")
        super().__init__(f"device answered{to} with error {self.code:#04x} {self.name}: {meaning}")


class Client:
    """``timeout``: the longest wait for the next reply byte (more than the device's frame
    timeout, after which it answers a cut frame); ``retries``: how often a lost, corrupt or
    damaged exchange is sent again, after the line has been quiet for the frame timeout so
    that the device has given up on whatever it was receiving.  Each command has a
    deadline: the time to send its frame at the port's baud rate, plus ``timeout`` for each
    attempt; it raises rather than waits longer.  INFER needs the output length: pass
    ``output_bytes`` or call :meth:`info` first."""

    def __init__(self, port, timeout=DEFAULT_TIMEOUT_S, retries=DEFAULT_RETRIES, output_bytes=None):
        if not isinstance(timeout, (int, float)) or not math.isfinite(timeout) or timeout <= wire.FRAME_TIMEOUT_S:
            raise ValueError(f"timeout must be a finite number of seconds above the device's frame timeout "
                             f"({wire.FRAME_TIMEOUT_S} s), got {timeout!r}")
        if not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an int >= 0, got {retries!r}")
        if hasattr(port, "timeout"):
            port.timeout = timeout
        self.port, self.timeout, self.retries = port, float(timeout), retries
        self.output_bytes = output_bytes
        self.last_info = None
        self.attempts = 0          #: exchanges sent, retries included (tests read it)
        self._clock = getattr(port, "clock", time.monotonic)

    # -- transport

    def _read(self, n, deadline):
        buf = bytearray()
        while len(buf) < n and self._clock() < deadline:
            chunk = self.port.read(n - len(buf))
            if not chunk:
                break
            buf += chunk
        return bytes(buf)

    def _settle(self):
        """Wait until the line has been quiet for the frame timeout (discarding what comes),
        so the device is idle and hunting for a frame again."""
        old = getattr(self.port, "timeout", None)
        if old is not None:
            self.port.timeout = 1.5 * wire.FRAME_TIMEOUT_S
        try:
            end = self._clock() + 4 * self.timeout
            while self.port.read(64) and self._clock() < end:
                pass
        finally:
            if old is not None:
                self.port.timeout = old

    def _reply(self, command, deadline, max_payload):
        """The next reply that answers ``command``: (status, payload).  A reply to another
        command (a late one) is skipped from its header on."""
        name = COMMAND_NAMES[command]
        while True:
            window = b""
            while window != SYNC:        # hunt for the sync pattern
                b = self._read(1, deadline)
                if not b:
                    raise NoReplyError(f"no reply to {name} within {self.timeout:g} s: wrong port or baud rate, "
                                       "or not programmed?")
                window = (window + b)[-len(SYNC):]
            head = self._read(struct.calcsize(REPLY_HEADER_FORMAT), deadline)
            if len(head) < struct.calcsize(REPLY_HEADER_FORMAT):
                raise NoReplyError(f"{name} reply cut short in its header")
            echo, status, length = struct.unpack(REPLY_HEADER_FORMAT, head)
            if echo != command:
                continue             # another command's late reply: hunt on through it
            if length > max_payload:
                raise CorruptReplyError(f"{name} reply announces {length} bytes, at most {max_payload} expected: "
                                        "not this project's firmware, or a damaged line?")
            rest = self._read(length + wire.CRC_BYTES, deadline)
            if len(rest) < length + wire.CRC_BYTES:
                raise NoReplyError(f"{name} reply cut short: {len(rest)} of {length + wire.CRC_BYTES} bytes "
                                   "after its header arrived")
            payload, crc = rest[:length], struct.unpack("<I", rest[length:])[0]
            if wire.crc32(head + payload) != crc:
                raise CorruptReplyError(f"{name} reply failed its CRC check")
            return status, payload

    def _transact(self, command, payload, max_payload):
        """Send one command frame and return its reply's payload, retrying damaged exchanges."""
        name = COMMAND_NAMES[command]
        data = wire.frame(command, payload)
        baud = getattr(self.port, "baudrate", None)
        send_s = len(data) * 10 / baud if isinstance(baud, (int, float)) and baud > 0 else 0.0
        deadline = self._clock() + send_s + (1 + self.retries) * (self.timeout + 2 * wire.FRAME_TIMEOUT_S)
        failure = None
        for attempt in range(1 + self.retries):
            if attempt:
                self._settle()
            if self._clock() >= deadline:
                break
            self.attempts += 1
            self.port.reset_input_buffer()   # a late reply to an earlier command is not this one's
            self.port.write(data)
            flush = getattr(self.port, "flush", None)
            if callable(flush):
                flush()
            try:
                status, body = self._reply(command, deadline, max_payload)
            except (NoReplyError, CorruptReplyError) as e:
                failure = e
                continue
            if status == OK:
                return body
            failure = DeviceError(status, name)
            if status not in TRANSIENT:
                raise failure
        if failure is None:
            raise NoReplyError(f"no reply to {name} before its deadline")
        if isinstance(failure, DeviceError) or not self.retries:
            raise failure
        raise type(failure)(f"{failure} (all {1 + self.retries} attempts)")

    # -- commands

    def info(self):
        """INFO -> Info; remembers it, so later INFER and WEIGHTS know the sizes."""
        info = wire.parse_info(self._transact(CMD_INFO, b"", wire.INFO_BYTES))
        self.last_info = info
        self.output_bytes = info.output_bytes
        return info

    def infer(self, x):
        """INFER one int8 input (any shape, NHWC order) -> Result."""
        if self.output_bytes is None:
            raise ValueError("output length unknown: call info() first or pass output_bytes to Client")
        data = wire.as_bytes(x, "input")
        if self.last_info is not None and len(data) != self.last_info.input_bytes:
            raise ValueError(f"input has {len(data)} bytes, the device takes {self.last_info.input_bytes}")
        n = self.output_bytes + wire.INFER_TRAILER_BYTES
        return wire.parse_infer(self._transact(CMD_INFER, data, n), self.output_bytes)

    def load_weights(self, image):
        """WEIGHTS: replace the whole weight image (checked by its frame's CRC)."""
        data = wire.as_bytes(image, "weight image")
        if self.last_info is not None and len(data) != self.last_info.weight_bytes:
            raise ValueError(f"weight image has {len(data)} bytes, the device takes {self.last_info.weight_bytes}")
        self._transact(CMD_WEIGHTS, data, 0)
        self.last_info = None

    def reload(self):
        """RELOAD: copy the weights from flash again; DeviceError BAD_FLASH if they fail the check."""
        self._transact(CMD_RELOAD, b"", 0)
        self.last_info = None


def open_serial(port, baud=wire.DEFAULT_BAUD, timeout=DEFAULT_TIMEOUT_S):
    """Open a serial port (8N1) with pyserial; a device path or a pyserial URL (``loop://``,
    ``socket://host:port``).  PortError, one line, if pyserial is missing or it cannot be opened."""
    try:
        import serial
    except ImportError:
        raise PortError("talking to the board needs pyserial: pip install pyserial") from None
    try:
        return serial.serial_for_url(port, baudrate=baud, timeout=timeout, bytesize=8, parity="N",
                                     stopbits=1)
    except (serial.SerialException, OSError, ValueError) as e:
        raise PortError(f"cannot open serial port {port}: {one_line(e)}") from None
