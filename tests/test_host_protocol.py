"""host.protocol against docs/protocol.md: frames byte for byte, and the Client against a
pure-Python fake device that parses frames byte by byte and answers like the board."""

import struct

import numpy as np
import pytest

from host import protocol as P
from host.protocol import (CMD_INFER, CMD_INFO, CMD_WEIGHTS, Client, DeviceError, Info, NoReplyError,
                           ProtocolError)


class FakeDevice:
    """The device side of docs/protocol.md, without time.

    Bytes written are parsed one at a time as the board's receiver would.  Time is
    approximated by the host's behaviour: a ``read`` means the host has stopped sending and
    waits, so the line is quiet.  Hence
    - after an error the device discards every byte until the next ``read``, and only then
      queues the error code (the quiet period, then the error);
    - a frame still incomplete at a ``read`` ends in TIMEOUT;
    - ``send_break()`` (pyserial's name) is a break on the line: FRAMING.
    ``read(n)`` returns at most ``n`` queued reply bytes and fewer, at once, when there are
    no more (a port whose timeout expired).  Knobs: ``mute`` (never answers), ``cut`` (a
    reply stops after that many bytes), ``force`` (command byte -> error code answered
    instead, after the whole frame), ``weights_loaded`` (flash boot succeeded).

    ``compute(x_bytes, weights_image) -> (int8 output, cycles)`` is the accelerator; the
    default one is a small deterministic function of the input and the weights.
    """

    def __init__(self, input_bytes=4, output_bytes=3, weight_bytes=8, model_id=0x12345678,
                 weights_loaded=True, weights=None, compute=None, mute=False, cut=None, force=None):
        self.input_bytes, self.output_bytes, self.weight_bytes = input_bytes, output_bytes, weight_bytes
        self.model_id = model_id
        self.weights = weights if weights is not None else (bytes(weight_bytes) if weights_loaded else None)
        self.compute = compute or self._default_compute
        self.mute, self.cut, self.force = mute, cut, dict(force or {})
        self.frame = bytearray()     # the command being received
        self.error = None            # error code waiting for the line to go quiet
        self.tx = bytearray()        # reply bytes not yet read
        self.discarded = 0
        self.commands = []           # (command byte, frame length) of every complete frame
        self.resets = 0
        self.timeout = None          # Client sets this like pyserial's

    # -- what the host sees

    def write(self, data):
        for b in bytes(data):
            self._byte(b)
        return len(data)

    def read(self, n=1):
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
        self._fail(P.FRAMING)

    # -- the device

    @property
    def weights_loaded(self):
        return self.weights is not None

    def _default_compute(self, x, weights):
        x = np.frombuffer(x, np.int8).astype(np.int64)
        w = np.frombuffer(weights, np.int8).astype(np.int64)
        out = np.array([(x.sum() * (i + 1) + w[i % len(w)]) % 256 - 128 for i in range(self.output_bytes)])
        return out.astype(np.int8), 1000 + int(x.sum()) % 1000

    def _fail(self, code):
        self.frame.clear()
        self.error = code

    def _quiet(self):
        if self.error is None and self.frame:
            self._fail(P.TIMEOUT)
        if self.error is not None:
            self._reply(bytes([self.error]))
            self.error = None

    def _reply(self, data):
        self.tx += data if self.cut is None else data[:self.cut]

    def _byte(self, b):
        if self.error is not None:
            self.discarded += 1
            return
        f = self.frame
        f.append(b)
        cmd = f[0]
        if cmd == CMD_INFO:
            self._complete()
        elif cmd == CMD_INFER:
            if len(f) == 3 and struct.unpack("<H", f[1:3])[0] != self.input_bytes:
                self._fail(P.BAD_LENGTH)
            elif len(f) == 3 + self.input_bytes:
                self._complete()
        elif cmd == CMD_WEIGHTS:
            if len(f) == 5 and struct.unpack("<I", f[1:5])[0] != self.weight_bytes:
                self._fail(P.BAD_LENGTH)
            elif len(f) == 5 + self.weight_bytes:
                self._complete()
        else:
            self._fail(P.BAD_COMMAND)

    def _complete(self):
        f, cmd = bytes(self.frame), self.frame[0]
        self.frame.clear()
        self.commands.append((cmd, len(f)))
        if cmd in self.force:
            self._fail(self.force[cmd])
            return
        if cmd == CMD_INFO:
            self._reply(b"\x00" + P.INFO_MAGIC + struct.pack("<HHIIB", self.input_bytes, self.output_bytes,
                                                             self.weight_bytes, self.model_id,
                                                             int(self.weights_loaded)))
        elif cmd == CMD_WEIGHTS:
            self.weights = f[5:]
            self._reply(b"\x00")
        elif self.weights is None:
            self._fail(P.NO_WEIGHTS)
        else:
            out, cycles = self.compute(f[3:], self.weights)
            out = np.asarray(out, np.int8).reshape(-1)
            assert out.size == self.output_bytes
            self._reply(b"\x00" + out.tobytes() + struct.pack("<BI", int(np.argmax(out)), cycles))


# ---------------------------------------------------------------- constants and frames


def test_constants_are_the_documented_bytes():
    assert (P.CMD_INFO, P.CMD_INFER, P.CMD_WEIGHTS) == (0x3F, 0x49, 0x57) == tuple(b"?IW")
    assert P.OK == 0
    assert {c: P.ERROR_NAMES[c] for c in range(0x81, 0x86)} == {
        0x81: "BAD_COMMAND", 0x82: "BAD_LENGTH", 0x83: "TIMEOUT", 0x84: "FRAMING", 0x85: "NO_WEIGHTS"}
    assert (P.BAD_COMMAND, P.BAD_LENGTH, P.TIMEOUT, P.FRAMING, P.NO_WEIGHTS) == (0x81, 0x82, 0x83, 0x84, 0x85)
    assert P.INFO_MAGIC == b"CNN1" and P.INFO_REPLY_BYTES == 17 and P.INFER_TRAILER_BYTES == 5
    assert (P.WEIGHTS_OFFSET, P.WEIGHTS_MAGIC, P.WEIGHTS_HEADER_BYTES) == (0x100000, b"CNNW", 8)
    assert (P.DEFAULT_BAUD, P.FRAME_TIMEOUT_S) == (115200, 0.1)
    for name in ("CMD_INFO", "OK", "BAD_LENGTH", "WEIGHTS_OFFSET", "DEFAULT_BAUD"):
        assert type(getattr(P, name)) is int


def test_frames_byte_for_byte():
    assert P.info_frame() == b"\x3f"
    x = np.array([[1, -1], [127, -128]], np.int8)
    assert P.infer_frame(x) == b"\x49\x04\x00\x01\xff\x7f\x80"
    assert P.infer_frame(b"\x01\xff\x7f\x80") == b"\x49\x04\x00\x01\xff\x7f\x80"
    assert P.infer_frame(np.zeros((28, 28, 1), np.int8))[:3] == b"I\x10\x03"
    assert P.weights_frame(b"\x01\x02\x03") == b"\x57\x03\x00\x00\x00\x01\x02\x03"
    assert P.weights_frame(np.array([-1, 2], np.int8)) == b"W\x02\x00\x00\x00\xff\x02"
    assert P.weights_header(0x16C20) == b"CNNW\x20\x6c\x01\x00"
    assert P.flash_weights_region(b"\xaa\xbb") == b"CNNW\x02\x00\x00\x00\xaa\xbb"


def test_frame_builders_reject_bad_inputs():
    with pytest.raises(ValueError, match="int8"):
        P.infer_frame(np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="at most 65535"):
        P.infer_frame(bytes(65536))
    with pytest.raises(TypeError):
        P.weights_frame([1, 2, 3])
    with pytest.raises(ValueError):
        P.weights_header(-1)


def test_model_id_is_sha256_prefix_little_endian():
    # sha256(b"") = e3b0c442..., sha256(b"abc") = ba7816bf...
    assert P.model_id(b"") == 0x42C4B0E3
    assert P.model_id(b"abc") == 0xBF1678BA


def test_parse_replies_byte_for_byte():
    payload = b"CNN1" + b"\x10\x03" + b"\x0a\x00" + b"\x20\x6c\x01\x00" + b"\x78\x56\x34\x12" + b"\x01"
    assert P.parse_info(payload) == Info(784, 10, 93216, 0x12345678, True)
    assert P.parse_info(payload[:-1] + b"\x02").weights_loaded is False
    with pytest.raises(ProtocolError, match="not this project's firmware"):
        P.parse_info(b"XXXX" + payload[4:])
    r = P.parse_infer(b"\x05\xfb\x7f" + b"\x02" + b"\x40\xe2\x01\x00", 3)
    assert r.output.dtype == np.int8 and list(r.output) == [5, -5, 127]
    assert (r.argmax, r.cycles) == (2, 123456)


# ---------------------------------------------------------------- Client against the fake device


def test_info_infer_and_weights():
    dev = FakeDevice(model_id=0xDEADBEEF)
    c = Client(dev, timeout=0.5)
    assert dev.timeout == 0.5
    info = c.info()
    assert info == Info(4, 3, 8, 0xDEADBEEF, True)
    x = np.array([1, 2, 3, -4], np.int8)
    r = c.infer(x)
    want, cycles = dev.compute(x.tobytes(), dev.weights)
    np.testing.assert_array_equal(r.output, want)
    assert r.argmax == int(np.argmax(want)) and r.cycles == cycles
    image = bytes(range(8))
    c.load_weights(image)
    assert dev.weights == image and c.last_info.weights_loaded
    r2 = c.infer(x)
    np.testing.assert_array_equal(r2.output, dev.compute(x.tobytes(), image)[0])
    assert [cmd for cmd, _ in dev.commands] == [CMD_INFO, CMD_INFER, CMD_WEIGHTS, CMD_INFER]
    assert dev.resets == 4   # stale bytes are dropped before every command


def test_infer_needs_the_output_length():
    dev = FakeDevice()
    with pytest.raises(ValueError, match="info"):
        Client(dev).infer(bytes(4))
    r = Client(dev, output_bytes=3).infer(bytes(4))
    assert r.output.shape == (3,)


def test_timeout_must_exceed_the_frame_timeout():
    with pytest.raises(ValueError, match="frame timeout"):
        Client(FakeDevice(), timeout=0.05)


@pytest.mark.parametrize("code", [P.BAD_COMMAND, P.BAD_LENGTH, P.TIMEOUT, P.FRAMING, P.NO_WEIGHTS])
def test_forced_error_codes_raise_device_error(code):
    dev = FakeDevice(force={CMD_INFER: code})
    c = Client(dev, output_bytes=3)
    with pytest.raises(DeviceError) as e:
        c.infer(bytes(4))
    assert e.value.code == code and e.value.name == P.ERROR_NAMES[code]
    msg = str(e.value)
    assert "\n" not in msg and P.ERROR_NAMES[code] in msg and f"{code:#04x}" in msg and "INFER" in msg
    # the device is ready again right after an error code
    del dev.force[CMD_INFER]
    assert c.info().input_bytes == 4


def test_no_weights_until_weights_are_sent():
    dev = FakeDevice(weights_loaded=False)
    c = Client(dev)
    assert c.info().weights_loaded is False
    with pytest.raises(DeviceError) as e:
        c.infer(bytes(4))
    assert e.value.code == P.NO_WEIGHTS
    c.load_weights(bytes(8))
    assert c.info().weights_loaded is True
    c.infer(bytes(4))


def test_bad_length_discards_the_rest_of_the_frame_then_answers():
    dev = FakeDevice()
    c = Client(dev, output_bytes=3)   # no info(): the client cannot check the length itself
    with pytest.raises(DeviceError) as e:
        c.infer(bytes(5))
    assert e.value.code == P.BAD_LENGTH and dev.discarded == 5
    with pytest.raises(DeviceError) as e:
        c.load_weights(bytes(7))
    assert e.value.code == P.BAD_LENGTH
    assert dev.weights == bytes(8)   # the old image survives
    assert c.infer(bytes(4)).output.shape == (3,)


def test_client_checks_lengths_it_knows():
    c = Client(FakeDevice())
    c.info()
    with pytest.raises(ValueError, match="5 bytes, the device takes 4"):
        c.infer(bytes(5))
    with pytest.raises(ValueError, match="7 bytes, the device takes 8"):
        c.load_weights(bytes(7))


def test_bad_command_and_incomplete_frame_and_break():
    dev = FakeDevice()
    dev.write(b"\x00\x01\x02")
    assert dev.read(1) == bytes([P.BAD_COMMAND]) and dev.discarded == 2
    dev.write(b"I\x04\x00\x01")   # stops mid-frame: the device times out
    assert dev.read(1) == bytes([P.TIMEOUT])
    dev.write(b"?")
    assert dev.read(100)[:5] == b"\x00CNN1"
    dev.send_break()
    dev.write(b"?")               # discarded: the line is not quiet yet
    assert dev.read(100) == bytes([P.FRAMING])
    c = Client(dev)
    dev.send_break()              # an error code left over from before is dropped, not read as the reply
    dev._quiet()
    assert c.info().output_bytes == 3


def test_no_reply_is_one_clear_line():
    c = Client(FakeDevice(mute=True), timeout=0.3)
    with pytest.raises(NoReplyError) as e:
        c.info()
    assert str(e.value) == "no reply from device within 0.3 s to INFO: wrong port, or not programmed?"


@pytest.mark.parametrize("cut", [1, 5, 17])
def test_short_reply_is_an_error(cut):
    c = Client(FakeDevice(cut=cut))
    with pytest.raises(NoReplyError, match=f"INFO reply cut short: {cut} of 18 bytes"):
        c.info()


def test_short_infer_reply_is_an_error():
    c = Client(FakeDevice(cut=4), output_bytes=3)
    with pytest.raises(NoReplyError, match="INFER reply cut short: 4 of 9 bytes"):
        c.infer(bytes(4))


def test_unknown_status_byte_and_wrong_argmax():
    dev = FakeDevice()
    c = Client(dev, output_bytes=3)
    dev.compute = lambda x, w: (np.array([1, 9, 3], np.int8), 7)
    assert c.infer(bytes(4)).argmax == 1

    class Garbage(FakeDevice):
        def _reply(self, data):
            self.tx += b"\x42" + data[1:]
    with pytest.raises(ProtocolError, match="unexpected status byte 0x42"):
        Client(Garbage()).info()

    class WrongArgmax(FakeDevice):
        def _reply(self, data):
            self.tx += data[:-5] + b"\x00" + data[-4:]
    bad = WrongArgmax()
    bad.compute = lambda x, w: (np.array([1, 9, 3], np.int8), 7)
    with pytest.raises(ProtocolError, match="device argmax 0"):
        Client(bad, output_bytes=3).infer(bytes(4))


def test_reads_in_pieces():
    """A port that returns one byte per read (a slow line) still gives whole replies."""
    class Trickle(FakeDevice):
        def read(self, n=1):
            return super().read(min(n, 1))
    c = Client(Trickle(model_id=7))
    assert c.info().model_id == 7
    assert c.infer(bytes(4)).output.shape == (3,)


def test_open_serial_with_pyserial():
    pytest.importorskip("serial")
    with pytest.raises(P.PortError) as e:
        P.open_serial("/dev/this-port-does-not-exist")
    assert "cannot open serial port /dev/this-port-does-not-exist" in str(e.value) and "\n" not in str(e.value)
    port = P.open_serial("loop://", 9600, timeout=0.2)   # echoes the command back: not a device
    try:
        with pytest.raises(ProtocolError, match="unexpected status byte 0x3f"):
            Client(port, timeout=0.2).info()
        assert port.timeout == 0.2
    finally:
        port.close()
