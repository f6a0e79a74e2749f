"""The board's wire format (docs/protocol.md): command and reply frames, their CRC, the
flash weight header, and the identifiers that tie a device to the program it was built for.

One module for both ends: the device generator (``hdl/board/soc.py``) takes its constants
from here, and the host (``host/client.py``) encodes and decodes with it, so the two cannot
drift apart.  Nothing here imports hardware code.
"""

import hashlib
import struct
import zlib
from dataclasses import dataclass

import numpy as np

# ---------------------------------------------------------------- frames

#: Every frame, both ways, starts with these two bytes.
SYNC = b"\xc3\x5a"
#: Command frame: SYNC, command (u8), payload length (u32), CRC-32 (u32) of the command and
#: length, payload, CRC-32 (u32) of the payload.  The device checks the header's CRC before
#: it acts on a single payload byte, so data that looks like a header (an input tensor
#: holding a sync pattern, "W" and a weight length) is never taken for a command.
FRAME_HEADER_FORMAT = "<BI"
#: Reply frame: SYNC, the command it answers (u8), status (u8), payload length (u32),
#: payload, CRC-32 (u32) of everything after SYNC.
REPLY_HEADER_FORMAT = "<BBI"
CRC_BYTES = 4
FRAME_OVERHEAD = len(SYNC) + struct.calcsize(FRAME_HEADER_FORMAT) + 2 * CRC_BYTES     # 15
REPLY_OVERHEAD = len(SYNC) + struct.calcsize(REPLY_HEADER_FORMAT) + CRC_BYTES     # 12
#: The CRC register (reflected CRC-32, before its final inversion) after some bytes and
#: their own CRC: a receiver checks one constant instead of comparing four bytes.
CRC_RESIDUE = 0xDEBB20E3

#: Command bytes.
CMD_INFO = 0x3F      # "?"
CMD_INFER = 0x49     # "I"
CMD_WEIGHTS = 0x57   # "W"
CMD_RELOAD = 0x52    # "R": copy the weights from flash again, as at power-on
COMMAND_NAMES = {CMD_INFO: "INFO", CMD_INFER: "INFER", CMD_WEIGHTS: "WEIGHTS", CMD_RELOAD: "RELOAD"}

#: Status of a reply.
OK = 0x00
BAD_COMMAND = 0x81   # the command byte is not one of the above
BAD_LENGTH = 0x82    # the length field does not equal what the command needs
TIMEOUT = 0x83       # a frame stopped arriving (no byte for FRAME_TIMEOUT_S)
FRAMING = 0x84       # a byte with a bad stop bit, including a break, inside a frame
NO_WEIGHTS = 0x85    # INFER while no checked weight image is loaded
BAD_CRC = 0x86       # the frame arrived whole but its CRC does not match
BAD_FLASH = 0x87     # RELOAD: the flash's weight image failed its check
BUSY = 0x88          # bytes arrived while the device booted, computed or replied: discarded
BAD_IMAGE = 0x89     # WEIGHTS: an intact image, but not the one the bitstream was built for
ERROR_NAMES = {BAD_COMMAND: "BAD_COMMAND", BAD_LENGTH: "BAD_LENGTH", TIMEOUT: "TIMEOUT", FRAMING: "FRAMING",
               NO_WEIGHTS: "NO_WEIGHTS", BAD_CRC: "BAD_CRC", BAD_FLASH: "BAD_FLASH", BUSY: "BUSY",
               BAD_IMAGE: "BAD_IMAGE"}
ERROR_MEANINGS = {
    BAD_COMMAND: "the command byte is not one the device knows",
    BAD_LENGTH: "the length field does not equal what the model needs",
    TIMEOUT: "a frame stopped arriving before it was complete",
    FRAMING: "a byte arrived with a bad stop bit or a break (wrong baud rate?)",
    NO_WEIGHTS: "no checked weight image is loaded (flash image bad, or a WEIGHTS upload failed)",
    BAD_CRC: "the frame arrived corrupted (CRC mismatch)",
    BAD_FLASH: "the weight image in flash failed its check (header or CRC)",
    BUSY: "bytes arrived while the device was busy and were discarded",
    BAD_IMAGE: "the weight image is not the one the bitstream was built for (its CRC-32 differs)",
}
#: Errors that say the frame was damaged or came too early: sending it again may succeed.
TRANSIENT = frozenset({TIMEOUT, FRAMING, BAD_CRC, BUSY})

#: INFO payload: magic, input bytes (u16), output bytes (u16), weight bytes (u32), model id
#: (u32), program id (u32), CRC-32 of the weight image (u32), weight state (u8), boot
#: result (u8).
INFO_MAGIC = b"CNN2"
INFO_FORMAT = "<4sHHIIIIBB"
INFO_BYTES = struct.calcsize(INFO_FORMAT)   # 26
#: Weight state: where the weight memory's contents came from.  Only FLASH and UART are usable.
WEIGHTS_NONE = 0      # nothing checked: the flash image failed its check at boot or RELOAD
WEIGHTS_FLASH = 1     # the flash image, checked
WEIGHTS_UART = 2      # a WEIGHTS upload, checked
WEIGHTS_PARTIAL = 3   # a WEIGHTS upload overwrote the memory and then failed (cut short, bad CRC, other image)
WEIGHT_STATE_NAMES = {WEIGHTS_NONE: "none", WEIGHTS_FLASH: "flash", WEIGHTS_UART: "uart",
                      WEIGHTS_PARTIAL: "partial upload"}
#: Boot result: the last flash check (power-on or RELOAD).
BOOT_OK = 0
BOOT_BAD_HEADER = 1   # magic, length or program id differ from the bitstream's
BOOT_BAD_CRC = 2      # the header matched, the image's CRC-32 did not
BOOT_NAMES = {BOOT_OK: "ok", BOOT_BAD_HEADER: "bad header", BOOT_BAD_CRC: "bad CRC"}
#: INFER payload after the output tensor: cycles (u32).
INFER_TRAILER_FORMAT = "<I"
INFER_TRAILER_BYTES = struct.calcsize(INFER_TRAILER_FORMAT)   # 4
MAX_PAYLOAD = 0xFFFFFFFF
MAX_IO_BYTES = 0xFFFF          #: input and output tensors (INFO's u16 fields)

#: Flash layout: the weight header at WEIGHTS_OFFSET (the iCEBreaker's; boards give their
#: own), the image right after it.  Header: magic, image length (u32), program id (u32),
#: CRC-32 of the image (u32).
WEIGHTS_OFFSET = 0x100000
WEIGHTS_MAGIC = b"CNNW"
WEIGHTS_HEADER_FORMAT = "<4sIII"
WEIGHTS_HEADER_BYTES = struct.calcsize(WEIGHTS_HEADER_FORMAT)   # 16

#: UART defaults: 8N1 at DEFAULT_BAUD; the device gives up on a frame after FRAME_TIMEOUT_S
#: without a byte, and answers an error only once the line has been quiet that long.
DEFAULT_BAUD = 115200
FRAME_TIMEOUT_S = 0.1


class ProtocolError(Exception):
    """The device's reply is missing, short or malformed, or the port failed; one line."""


def crc32(data):
    """CRC-32 as zlib computes it (reflected, polynomial 0xEDB88320, inverted in and out)."""
    return zlib.crc32(bytes(data)) & 0xFFFFFFFF


def as_bytes(data, what):
    """bytes-like, or an int8/uint8 ndarray flattened in C (NHWC) order."""
    if isinstance(data, np.ndarray):
        if data.dtype not in (np.int8, np.uint8):
            raise ValueError(f"{what} must be int8 (or raw bytes), got {data.dtype}")
        return np.ascontiguousarray(data).tobytes()
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"{what} must be bytes or an int8 ndarray, got {type(data).__name__}")


def frame(command, payload=b""):
    """A command frame: SYNC, command, length, the header's CRC-32, payload, its CRC-32."""
    payload = bytes(payload)
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes does not fit the u32 length field")
    head = struct.pack(FRAME_HEADER_FORMAT, command, len(payload))
    return SYNC + head + struct.pack("<I", crc32(head)) + payload + struct.pack("<I", crc32(payload))


def reply(command, status, payload=b""):
    """A reply frame, as the device sends it (tests and models use this)."""
    body = struct.pack(REPLY_HEADER_FORMAT, command, status, len(payload)) + bytes(payload)
    return SYNC + body + struct.pack("<I", crc32(body))


def info_frame():
    return frame(CMD_INFO)


def infer_frame(x):
    data = as_bytes(x, "input")
    if len(data) > MAX_IO_BYTES:
        raise ValueError(f"input has {len(data)} bytes, the device takes at most {MAX_IO_BYTES}")
    return frame(CMD_INFER, data)


def weights_frame(image):
    return frame(CMD_WEIGHTS, as_bytes(image, "weight image"))


def reload_frame():
    return frame(CMD_RELOAD)


# ---------------------------------------------------------------- identity and flash


def model_id(tflite_bytes):
    """The first four bytes of the SHA-256 of the .tflite file, as a little-endian u32."""
    return int.from_bytes(hashlib.sha256(bytes(tflite_bytes)).digest()[:4], "little")


def weights_header(image, program_id):
    """The flash weight header at the board's weight offset."""
    image = as_bytes(image, "weight image")
    if len(image) > MAX_PAYLOAD:
        raise ValueError(f"weight image of {len(image)} bytes does not fit a u32 length")
    return struct.pack(WEIGHTS_HEADER_FORMAT, WEIGHTS_MAGIC, len(image), program_id & 0xFFFFFFFF, crc32(image))


def flash_weights_region(image, program_id):
    """What goes at the weight offset of the flash: header, then the image."""
    image = as_bytes(image, "weight image")
    return weights_header(image, program_id) + image


# ---------------------------------------------------------------- replies


@dataclass(frozen=True)
class Info:
    input_bytes: int
    output_bytes: int
    weight_bytes: int
    model_id: int
    program_id: int
    weights_crc: int      #: CRC-32 of the image the bitstream was built for
    weight_state: int     #: WEIGHTS_*
    boot: int             #: BOOT_*

    @property
    def weights_loaded(self):
        return self.weight_state in (WEIGHTS_FLASH, WEIGHTS_UART)


@dataclass(frozen=True)
class Result:
    output: np.ndarray   #: int8, the accelerator's last layer, flat
    cycles: int          #: compute cycles of this inference

    @property
    def argmax(self):
        """First index of the largest output value (the reply's CRC vouches for the tensor)."""
        return int(np.argmax(self.output))


def parse_info(payload):
    """INFO payload -> Info; ProtocolError if it is not this firmware's."""
    if len(payload) != INFO_BYTES:
        raise ProtocolError(f"INFO reply carries {len(payload)} bytes, expected {INFO_BYTES}")
    magic, *fields = struct.unpack(INFO_FORMAT, payload)
    if magic != INFO_MAGIC:
        raise ProtocolError(f"INFO reply starts with {magic!r}, not {INFO_MAGIC!r}: not this project's firmware?")
    return Info(*fields)


def parse_infer(payload, output_bytes):
    """INFER payload -> Result."""
    if len(payload) != output_bytes + INFER_TRAILER_BYTES:
        raise ProtocolError(f"INFER reply carries {len(payload)} bytes, expected {output_bytes + INFER_TRAILER_BYTES}")
    output = np.frombuffer(payload[:output_bytes], np.int8).copy()
    (cycles,) = struct.unpack(INFER_TRAILER_FORMAT, payload[output_bytes:])
    return Result(output, cycles)
