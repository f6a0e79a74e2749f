"""A pure-Python device for docs/protocol.md, without time: what the host-side tests talk to.

Bytes written are parsed one at a time as the board's receiver does: hunting for the sync
pattern, then the header and its CRC (nothing of a payload is acted on before it checks
out), the payload and its CRC.  Time is approximated by the host's behaviour: a ``read``
means the host has stopped sending and waits, so the line is quiet.  Hence
- after an error the device discards every byte until the next ``read``, and only then
  answers (the quiet period, then the error);
- a frame still incomplete at a ``read`` ends in TIMEOUT;
- ``send_break()`` (pyserial's name) inside a frame is FRAMING; between frames, nothing.

Knobs: ``mute`` (never answers), ``faults`` (one per reply, in order: ``None`` as sent,
``"drop"`` lost, ``"cut"`` only its first half, ``"flip"`` one payload bit flipped, ``"noise"``
preceded by junk bytes), ``force`` (command -> status answered instead, after the whole
frame), ``babble`` (the line never goes quiet: every read returns junk), and a ``clock``
that advances by ``tick`` seconds per read.

``compute(x_bytes, weights_image) -> (int8 output, cycles)`` is the accelerator; the default
one is a small deterministic function of the input and the weights.
"""

import struct

import numpy as np

from host import wire
from host.wire import CMD_INFER, CMD_INFO, CMD_RELOAD, CMD_WEIGHTS, SYNC


class FakeDevice:
    def __init__(self, input_bytes=4, output_bytes=3, weight_bytes=8, model_id=0x12345678, program_id=0x0BADF00D,
                 weights=None, flash_ok=True, compute=None, mute=False, faults=(), force=None, babble=False,
                 tick=0.0):
        self.input_bytes, self.output_bytes, self.weight_bytes = input_bytes, output_bytes, weight_bytes
        self.model_id, self.program_id = model_id, program_id
        self.flash = bytes(weights) if weights is not None else bytes(weight_bytes)
        self.flash_ok = flash_ok
        self.weights_crc = wire.crc32(self.flash)
        self.compute = compute or self._default_compute
        self.mute, self.faults, self.force = mute, list(faults), dict(force or {})
        self.babble, self.tick, self.now = babble, tick, 0.0
        self._reset_frame()
        self.error = None            # status waiting for the line to go quiet
        self.error_command = 0
        self.tx = bytearray()        # reply bytes not yet read
        self.discarded = 0           # bytes thrown away after an error
        self.ignored = 0             # bytes outside frames
        self.commands = []           # (command, payload length) of every frame that checked out
        self.resets = 0
        self.timeout = None          # Client sets this like pyserial's
        self._boot()

    # -- what the host sees

    def clock(self):
        return self.now

    def write(self, data):
        for b in bytes(data):
            self._byte(b)
        return len(data)

    def read(self, n=1):
        self.now += self.tick
        if self.babble:
            return b"\x00" * n
        self._quiet()
        if self.mute:
            self.tx.clear()
            return b""
        out = bytes(self.tx[:n])
        del self.tx[:n]
        return out

    def reset_input_buffer(self):
        self.resets += 1
        self.tx.clear()

    def send_break(self, duration=0.25):
        if self.stage != "hunt":
            self._fail(wire.FRAMING)

    # -- the device

    def _boot(self):
        if self.flash_ok:
            self.weights, self.weight_state, self.boot = self.flash, wire.WEIGHTS_FLASH, wire.BOOT_OK
        else:
            self.weights, self.weight_state, self.boot = None, wire.WEIGHTS_NONE, wire.BOOT_BAD_CRC

    @property
    def weights_loaded(self):
        return self.weight_state in (wire.WEIGHTS_FLASH, wire.WEIGHTS_UART)

    def _default_compute(self, x, weights):
        x = np.frombuffer(x, np.int8).astype(np.int64)
        w = np.frombuffer(weights, np.int8).astype(np.int64)
        out = np.array([(x.sum() * (i + 1) + w[i % len(w)]) % 256 - 128 for i in range(self.output_bytes)])
        return out.astype(np.int8), 1000 + int(x.sum()) % 1000

    def _reset_frame(self):
        self.stage, self.window, self.buf, self.command, self.length = "hunt", b"", bytearray(), 0, 0

    def _fail(self, code):
        self.error, self.error_command = code, self.command
        self._reset_frame()

    def _quiet(self):
        if self.error is None and self.stage not in ("hunt", "sync"):
            self._fail(wire.TIMEOUT)
        self.window = b""
        if self.stage == "sync":
            self._reset_frame()
        if self.error is not None:
            self._reply(self.error_command, self.error)
            self.error = None

    def _reply(self, command, status, payload=b""):
        data = wire.reply(command, status, payload)
        fault = self.faults.pop(0) if self.faults else None
        if fault == "drop":
            return
        if fault == "cut":
            data = data[:len(data) // 2]
        elif fault == "flip":
            data = bytearray(data)
            data[-5 if len(data) > 12 else 4] ^= 0x10
        elif fault == "noise":
            data = b"\x5a\xc3\x00junk" + data
        self.tx += data

    def _expected_length(self, command):
        return {CMD_INFO: 0, CMD_RELOAD: 0, CMD_INFER: self.input_bytes, CMD_WEIGHTS: self.weight_bytes}[command]

    def _byte(self, b):
        if self.error is not None:
            self.discarded += 1
            return
        if self.stage == "hunt":
            self.window = (self.window + bytes([b]))[-2:]
            if self.window == SYNC:
                self.stage, self.buf = "head", bytearray()
            else:
                self.ignored += 1
            return
        self.buf.append(b)
        if self.stage == "head":
            if len(self.buf) == 1:
                self.command = b
                if b not in wire.COMMAND_NAMES:
                    self._fail(wire.BAD_COMMAND)
            elif len(self.buf) == 9:
                head, crc = bytes(self.buf[:5]), struct.unpack("<I", self.buf[5:])[0]
                self.length = struct.unpack("<I", head[1:])[0]
                if wire.crc32(head) != crc:
                    self._fail(wire.BAD_CRC)
                elif self.length != self._expected_length(self.command):
                    self._fail(wire.BAD_LENGTH)
                else:
                    if self.command == CMD_WEIGHTS:
                        self.weight_state = wire.WEIGHTS_PARTIAL    # no double buffer, like the board
                    self.stage, self.buf = "payload", bytearray()
        elif len(self.buf) == self.length + 4:
            payload, crc = bytes(self.buf[:self.length]), struct.unpack("<I", self.buf[self.length:])[0]
            command = self.command
            self._reset_frame()
            if wire.crc32(payload) != crc:
                self._reply(command, wire.BAD_CRC)
            else:
                self._complete(command, payload)

    def _complete(self, command, payload):
        self.commands.append((command, len(payload)))
        if command in self.force:
            self._reply(command, self.force[command])
        elif command == CMD_INFO:
            self._reply(command, wire.OK, struct.pack(
                wire.INFO_FORMAT, wire.INFO_MAGIC, self.input_bytes, self.output_bytes, self.weight_bytes,
                self.model_id, self.program_id, self.weights_crc, self.weight_state, self.boot))
        elif command == CMD_WEIGHTS and wire.crc32(payload) != self.weights_crc:
            self._reply(command, wire.BAD_IMAGE)           # memory overwritten: state stays partial
        elif command == CMD_WEIGHTS:
            self.weights, self.weight_state = payload, wire.WEIGHTS_UART
            self._reply(command, wire.OK)
        elif command == CMD_RELOAD:
            self._boot()
            self._reply(command, wire.OK if self.flash_ok else wire.BAD_FLASH)
        elif not self.weights_loaded:
            self._reply(command, wire.NO_WEIGHTS)
        else:
            out, cycles = self.compute(payload, self.weights)
            out = np.asarray(out, np.int8).reshape(-1)
            assert out.size == self.output_bytes
            self._reply(command, wire.OK, out.tobytes() + struct.pack(wire.INFER_TRAILER_FORMAT, cycles))
