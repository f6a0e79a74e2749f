"""Host side of the board's UART protocol and of the weight region of its flash image.

docs/protocol.md is the specification; this module follows it exactly.  The constants are
plain module-level ints and bytes so the device generator (``hdl/board/soc.py``) can import them
too, and nothing here imports hardware code.  A :class:`Client` talks to anything with
pyserial's ``write(bytes)``, ``read(n)`` (returning fewer bytes when its timeout expires)
and ``reset_input_buffer()``: a real serial port from :func:`open_serial`, a test double,
or a simulated port that runs the RTL.
"""

import hashlib
import struct
from dataclasses import dataclass

import numpy as np

from golden.files import one_line

# ---------------------------------------------------------------- constants (docs/protocol.md)

#: Command bytes.
CMD_INFO = 0x3F      # "?"
CMD_INFER = 0x49     # "I"
CMD_WEIGHTS = 0x57   # "W"

#: Status bytes: the first byte of every reply.
OK = 0x00
BAD_COMMAND = 0x81   # the command byte is not one of the above
BAD_LENGTH = 0x82    # the length field does not equal what the model needs
TIMEOUT = 0x83       # a frame stopped arriving (no byte for FRAME_TIMEOUT_S)
FRAMING = 0x84       # a byte with a bad stop bit, including a break
NO_WEIGHTS = 0x85    # INFER before any weights were loaded
ERROR_NAMES = {BAD_COMMAND: "BAD_COMMAND", BAD_LENGTH: "BAD_LENGTH", TIMEOUT: "TIMEOUT",
               FRAMING: "FRAMING", NO_WEIGHTS: "NO_WEIGHTS"}
ERROR_MEANINGS = {
    BAD_COMMAND: "the command byte is not one the device knows",
    BAD_LENGTH: "the length field does not equal what the model needs",
    TIMEOUT: "a frame stopped arriving before it was complete",
    FRAMING: "a byte arrived with a bad stop bit or a break (wrong baud rate?)",
    NO_WEIGHTS: "no weights loaded (flash boot failed and no WEIGHTS command yet)",
}

#: INFO reply after the status byte: magic, input bytes (u16), output bytes (u16),
#: weight bytes (u32), model id (u32), flags (u8).
INFO_MAGIC = b"CNN1"
INFO_FORMAT = "<4sHHIIB"
INFO_REPLY_BYTES = struct.calcsize(INFO_FORMAT)   # 17
FLAG_WEIGHTS_LOADED = 0x01
#: INFER reply after the status byte and the output tensor: argmax (u8), cycles (u32).
INFER_TRAILER_FORMAT = "<BI"
INFER_TRAILER_BYTES = struct.calcsize(INFER_TRAILER_FORMAT)   # 5
#: Largest length field of each command.
MAX_INPUT_BYTES = 0xFFFF
MAX_WEIGHT_BYTES = 0xFFFFFFFF

#: Flash layout: the weight header at WEIGHTS_OFFSET, the image right after it.
WEIGHTS_OFFSET = 0x100000
WEIGHTS_MAGIC = b"CNNW"
WEIGHTS_HEADER_FORMAT = "<4sI"
WEIGHTS_HEADER_BYTES = struct.calcsize(WEIGHTS_HEADER_FORMAT)   # 8

#: UART defaults: 8N1 at DEFAULT_BAUD; the device gives up on a frame after FRAME_TIMEOUT_S
#: without a byte, and sends an error code only once the line has been quiet that long.
DEFAULT_BAUD = 115200
FRAME_TIMEOUT_S = 0.1
#: How long the host waits for a reply byte by default (an inference takes milliseconds).
DEFAULT_TIMEOUT_S = 2.0


# ---------------------------------------------------------------- errors


class ProtocolError(Exception):
    """The device's reply is missing, short or malformed, or the port failed; one line."""


class NoReplyError(ProtocolError):
    """Nothing, or not all of a reply, arrived within the timeout."""


class PortError(ProtocolError):
    """The serial port cannot be opened (or pyserial is missing)."""


class DeviceError(ProtocolError):
    """The device answered with an error code (docs/protocol.md, Errors)."""

    def __init__(self, code, command=None):
        self.code = int(code)
        self.name = ERROR_NAMES.get(self.code, f"UNKNOWN_{self.code:#04x}")
        self.command = command
        to = f" to {command}" if command else ""
        meaning = ERROR_MEANINGS.get(self.code, "not a documented error code")
        super().__init__(f"device answered{to} with error {self.code:#04x} {self.name}: {meaning}")


# ---------------------------------------------------------------- frames


def _as_bytes(data, what):
    """bytes-like, or an int8/uint8 ndarray flattened in C (NHWC) order."""
    if isinstance(data, np.ndarray):
        if data.dtype not in (np.int8, np.uint8):
            raise ValueError(f"{what} must be int8 (or raw bytes), got {data.dtype}")
        return np.ascontiguousarray(data).tobytes()
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"{what} must be bytes or an int8 ndarray, got {type(data).__name__}")


def info_frame():
    """INFO: the command byte alone."""
    return bytes([CMD_INFO])


def infer_frame(x):
    """INFER: command, length (u16), the int8 input tensor in NHWC order."""
    data = _as_bytes(x, "input")
    if len(data) > MAX_INPUT_BYTES:
        raise ValueError(f"input has {len(data)} bytes, the INFER length field holds at most {MAX_INPUT_BYTES}")
    return bytes([CMD_INFER]) + struct.pack("<H", len(data)) + data


def weights_frame(image):
    """WEIGHTS: command, length (u32), the weight image."""
    data = _as_bytes(image, "weight image")
    if len(data) > MAX_WEIGHT_BYTES:
        raise ValueError(f"weight image has {len(data)} bytes, more than a u32 length holds")
    return bytes([CMD_WEIGHTS]) + struct.pack("<I", len(data)) + data


def weights_header(length):
    """The flash weight header at WEIGHTS_OFFSET: magic and image length (u32)."""
    if not 0 <= length <= MAX_WEIGHT_BYTES:
        raise ValueError(f"weight image length {length} does not fit a u32")
    return struct.pack(WEIGHTS_HEADER_FORMAT, WEIGHTS_MAGIC, length)


def flash_weights_region(image):
    """What goes at WEIGHTS_OFFSET in the flash image: header, then the image."""
    data = _as_bytes(image, "weight image")
    return weights_header(len(data)) + data


def model_id(tflite_bytes):
    """The first four bytes of the SHA-256 of the .tflite file, as a little-endian u32."""
    return int.from_bytes(hashlib.sha256(bytes(tflite_bytes)).digest()[:4], "little")


@dataclass(frozen=True)
class Info:
    input_bytes: int
    output_bytes: int
    weight_bytes: int
    model_id: int
    weights_loaded: bool


@dataclass(frozen=True)
class Result:
    output: np.ndarray   #: int8, the accelerator's last layer, flat
    argmax: int          #: first index of the largest output value, as the device computed it
    cycles: int          #: compute cycles of this inference


def parse_info(payload):
    """INFO reply after the status byte -> Info; ProtocolError if it is not this firmware's."""
    if len(payload) != INFO_REPLY_BYTES:
        raise ProtocolError(f"INFO reply has {len(payload)} bytes after the status, expected {INFO_REPLY_BYTES}")
    magic, inp, out, wts, mid, flags = struct.unpack(INFO_FORMAT, payload)
    if magic != INFO_MAGIC:
        raise ProtocolError(f"INFO reply starts with {magic!r}, not {INFO_MAGIC!r}: not this project's firmware?")
    return Info(inp, out, wts, mid, bool(flags & FLAG_WEIGHTS_LOADED))


def parse_infer(payload, output_bytes):
    """INFER reply after the status byte -> Result."""
    if len(payload) != output_bytes + INFER_TRAILER_BYTES:
        raise ProtocolError(f"INFER reply has {len(payload)} bytes after the status, "
                            f"expected {output_bytes + INFER_TRAILER_BYTES}")
    output = np.frombuffer(payload[:output_bytes], np.int8).copy()
    argmax, cycles = struct.unpack(INFER_TRAILER_FORMAT, payload[output_bytes:])
    return Result(output, argmax, cycles)


# ---------------------------------------------------------------- client


class Client:
    """One command at a time, one reply each (docs/protocol.md).

    ``timeout`` is the longest wait for reply bytes; when the port has a ``timeout``
    attribute (pyserial) it is set to it, otherwise the port's ``read`` must bound itself.
    A reply ends early only when a ``read`` returns nothing, so a call never waits longer
    than (reply bytes + 1) port timeouts and never forever.  It must exceed the device's
    frame timeout, after which error codes arrive.

    INFER needs the output length: pass ``output_bytes`` or call :meth:`info` first.
    """

    def __init__(self, port, timeout=DEFAULT_TIMEOUT_S, output_bytes=None):
        if timeout is not None:
            if not timeout > FRAME_TIMEOUT_S:
                raise ValueError(f"timeout must exceed the device's frame timeout of {FRAME_TIMEOUT_S} s, "
                                 f"got {timeout}")
            if hasattr(port, "timeout"):
                port.timeout = timeout
        self.port = port
        self.timeout = timeout if timeout is not None else getattr(port, "timeout", None)
        self.output_bytes = output_bytes
        self.last_info = None

    # -- transport

    def _wait_text(self):
        return f"within {self.timeout:g} s" if isinstance(self.timeout, (int, float)) else "before the port timed out"

    def _send(self, frame):
        self.port.reset_input_buffer()   # a late reply to an earlier command must not be read as this one's
        self.port.write(frame)
        flush = getattr(self.port, "flush", None)
        if callable(flush):
            flush()   # pyserial: wait until every byte is on the line, so the timeout counts from there

    def _read(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.port.read(n - len(buf))
            if not chunk:
                break
            buf += chunk
        return bytes(buf)

    def _transact(self, command, frame, reply_bytes):
        """Send a frame, check the status byte, return the ``reply_bytes`` that follow it."""
        self._send(frame)
        status = self._read(1)
        if not status:
            raise NoReplyError(f"no reply from device {self._wait_text()} to {command}: "
                               f"wrong port, or not programmed?")
        code = status[0]
        if code != OK:
            if code in ERROR_NAMES:
                raise DeviceError(code, command)
            raise ProtocolError(f"device answered {command} with unexpected status byte {code:#04x}: "
                                f"wrong baud rate, or not this project's firmware?")
        payload = self._read(reply_bytes)
        if len(payload) < reply_bytes:
            raise NoReplyError(f"{command} reply cut short: {1 + len(payload)} of {1 + reply_bytes} bytes "
                               f"arrived {self._wait_text()}")
        return payload

    # -- commands

    def info(self):
        """INFO -> Info; remembers it, so later INFER and WEIGHTS know the sizes."""
        info = parse_info(self._transact("INFO", info_frame(), INFO_REPLY_BYTES))
        self.last_info = info
        self.output_bytes = info.output_bytes
        return info

    def infer(self, x):
        """INFER one int8 input (any shape, NHWC order) -> Result."""
        if self.output_bytes is None:
            raise ValueError("output length unknown: call info() first or pass output_bytes to Client")
        frame = infer_frame(x)
        if self.last_info is not None and len(frame) - 3 != self.last_info.input_bytes:
            raise ValueError(f"input has {len(frame) - 3} bytes, the device takes {self.last_info.input_bytes}")
        result = parse_infer(self._transact("INFER", frame, self.output_bytes + INFER_TRAILER_BYTES),
                             self.output_bytes)
        if 0 < self.output_bytes <= 256:
            want = int(np.argmax(result.output))
            if result.argmax != want:
                raise ProtocolError(f"INFER reply inconsistent: device argmax {result.argmax}, "
                                    f"but its output's largest value is at {want} (corrupted reply?)")
        return result

    def load_weights(self, image):
        """WEIGHTS: replace the whole weight image in the device's SPRAM."""
        frame = weights_frame(image)
        if self.last_info is not None and len(frame) - 5 != self.last_info.weight_bytes:
            raise ValueError(f"weight image has {len(frame) - 5} bytes, the device takes "
                             f"{self.last_info.weight_bytes}")
        self._transact("WEIGHTS", frame, 0)
        if self.last_info is not None:
            i = self.last_info
            self.last_info = Info(i.input_bytes, i.output_bytes, i.weight_bytes, i.model_id, True)


def open_serial(port, baud=DEFAULT_BAUD, timeout=DEFAULT_TIMEOUT_S):
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
