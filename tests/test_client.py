"""host.client against the fake device (tests/fake_device.py): commands, errors, retries on
lost and corrupt replies, deadlines."""

import numpy as np
import pytest

from fake_device import FakeDevice
from host import wire
from host.client import Client, CorruptReplyError, DeviceError, NoReplyError, PortError, open_serial
from host.wire import CMD_INFER, CMD_INFO, CMD_RELOAD, CMD_WEIGHTS, ProtocolError


def test_info_infer_weights_and_reload():
    dev = FakeDevice(model_id=0xDEADBEEF)
    c = Client(dev, timeout=0.5)
    assert dev.timeout == 0.5
    info = c.info()
    assert info == wire.Info(4, 3, 8, 0xDEADBEEF, 0x0BADF00D, wire.crc32(bytes(8)), wire.WEIGHTS_FLASH,
                             wire.BOOT_OK)
    x = np.array([1, 2, 3, -4], np.int8)
    r = c.infer(x)
    want, cycles = dev.compute(x.tobytes(), dev.weights)
    np.testing.assert_array_equal(r.output, want)
    assert r.argmax == int(np.argmax(want)) and r.cycles == cycles
    c.load_weights(bytes(8))
    assert c.info().weight_state == wire.WEIGHTS_UART
    np.testing.assert_array_equal(c.infer(x).output, want)
    # An intact image of another model: refused, and the memory it overwrote is unusable.
    with pytest.raises(DeviceError, match="BAD_IMAGE"):
        c.load_weights(bytes(range(8)))
    assert c.info().weight_state == wire.WEIGHTS_PARTIAL
    c.reload()
    assert dev.weights == bytes(8) and c.info().weight_state == wire.WEIGHTS_FLASH
    assert [cmd for cmd, _ in dev.commands] == [CMD_INFO, CMD_INFER, CMD_WEIGHTS, CMD_INFO, CMD_INFER, CMD_WEIGHTS,
                                                 CMD_INFO, CMD_RELOAD, CMD_INFO]
    assert dev.resets == c.attempts == 9     # stale bytes are dropped before every command


def test_infer_needs_the_output_length():
    dev = FakeDevice()
    with pytest.raises(ValueError, match="info"):
        Client(dev).infer(bytes(4))
    assert Client(dev, output_bytes=3).infer(bytes(4)).output.shape == (3,)


@pytest.mark.parametrize("timeout", [None, 0.05, float("inf"), float("nan"), "1"])
def test_timeout_must_be_finite_and_exceed_the_frame_timeout(timeout):
    with pytest.raises(ValueError, match="timeout must be a finite number"):
        Client(FakeDevice(), timeout=timeout)


def test_retries_must_be_a_count():
    with pytest.raises(ValueError, match="retries"):
        Client(FakeDevice(), retries=-1)


@pytest.mark.parametrize("code", [wire.BAD_COMMAND, wire.BAD_LENGTH, wire.NO_WEIGHTS, wire.BAD_FLASH, wire.BAD_IMAGE])
def test_lasting_errors_raise_at_once(code):
    dev = FakeDevice(force={CMD_INFER: code})
    c = Client(dev, output_bytes=3)
    with pytest.raises(DeviceError) as e:
        c.infer(bytes(4))
    assert e.value.code == code and e.value.name == wire.ERROR_NAMES[code] and c.attempts == 1
    msg = str(e.value)
    assert "\n" not in msg and wire.ERROR_NAMES[code] in msg and f"{code:#04x}" in msg and "INFER" in msg
    del dev.force[CMD_INFER]
    assert c.info().input_bytes == 4


@pytest.mark.parametrize("code", sorted(wire.TRANSIENT))
def test_transient_errors_are_retried(code):
    dev = FakeDevice(force={CMD_INFER: code})
    c = Client(dev, output_bytes=3, retries=2)
    with pytest.raises(DeviceError) as e:
        c.infer(bytes(4))
    assert e.value.code == code and c.attempts == 3


@pytest.mark.parametrize("fault", ["drop", "cut", "flip", "noise"])
def test_a_lost_or_corrupt_reply_is_retried(fault):
    dev = FakeDevice(faults=[fault])
    c = Client(dev)
    assert c.info().model_id == 0x12345678
    assert c.attempts == (1 if fault == "noise" else 2)
    assert [cmd for cmd, _ in dev.commands] == [CMD_INFO] * c.attempts


def test_corrupt_every_time_fails_with_one_line():
    c = Client(FakeDevice(faults=["flip"] * 3), retries=2)
    with pytest.raises(CorruptReplyError) as e:
        c.info()
    assert str(e.value) == "INFO reply failed its CRC check (all 3 attempts)"


def test_no_reply_is_one_clear_line():
    c = Client(FakeDevice(mute=True), timeout=0.3, retries=0)
    with pytest.raises(NoReplyError) as e:
        c.info()
    assert str(e.value) == "no reply to INFO within 0.3 s: wrong port or baud rate, or not programmed?"


def test_a_babbling_line_ends_at_the_deadline():
    """Junk that never stops and never holds the sync pattern: the deadline ends the wait."""
    dev = FakeDevice(babble=True, tick=0.01)
    c = Client(dev, timeout=0.5, retries=1)
    with pytest.raises(NoReplyError):
        c.info()
    assert dev.now < 10


def test_a_late_reply_to_another_command_is_skipped():
    dev = FakeDevice()
    c = Client(dev, output_bytes=3)
    dev.reset_input_buffer = lambda: None                 # the stale reply survives the flush
    dev.tx += wire.reply(CMD_INFO, wire.OK, b"x" * wire.INFO_BYTES)
    assert c.infer(bytes(4)).output.shape == (3,) and c.attempts == 1


def test_bad_length_and_bad_header_keep_the_weights():
    dev = FakeDevice()
    c = Client(dev, output_bytes=3)   # no info(): the client cannot check the length itself
    with pytest.raises(DeviceError) as e:
        c.infer(bytes(5))
    assert e.value.code == wire.BAD_LENGTH
    with pytest.raises(DeviceError) as e:
        c.load_weights(bytes(7))
    assert e.value.code == wire.BAD_LENGTH and dev.weight_state == wire.WEIGHTS_FLASH
    frame = bytearray(wire.weights_frame(bytes(8)))
    frame[5] ^= 1                                         # a damaged header: nothing of the payload is taken
    dev.write(frame)
    assert dev.weight_state == wire.WEIGHTS_FLASH and dev.read(100)[3] == wire.BAD_CRC
    assert c.infer(bytes(4)).output.shape == (3,)


def test_a_failed_upload_leaves_no_usable_weights_until_reload():
    dev = FakeDevice()
    c = Client(dev, output_bytes=3, retries=0)
    frame = bytearray(wire.weights_frame(bytes(range(8))))
    frame[-6] ^= 1                                        # a payload byte: caught by the payload CRC
    dev.write(frame)
    assert dev.read(100)[3] == wire.BAD_CRC and dev.weight_state == wire.WEIGHTS_PARTIAL
    with pytest.raises(DeviceError, match="NO_WEIGHTS"):
        c.infer(bytes(4))
    c.reload()
    assert c.info().weights_loaded
    dev.flash_ok = False
    with pytest.raises(DeviceError, match="BAD_FLASH"):
        c.reload()
    assert c.info().weight_state == wire.WEIGHTS_NONE


def test_client_checks_lengths_it_knows():
    c = Client(FakeDevice())
    c.info()
    with pytest.raises(ValueError, match="5 bytes, the device takes 4"):
        c.infer(bytes(5))
    with pytest.raises(ValueError, match="7 bytes, the device takes 8"):
        c.load_weights(bytes(7))


def test_bytes_outside_frames_are_ignored():
    dev = FakeDevice()
    dev.write(b"I\x04\x00W\x08\x00\x00\x00?" + bytes(range(256)).replace(wire.SYNC, b""))
    assert dev.read(100) == b"" and dev.commands == []
    assert Client(dev).info().weights_loaded


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
    with pytest.raises(PortError) as e:
        open_serial("/dev/this-port-does-not-exist")
    assert "cannot open serial port /dev/this-port-does-not-exist" in str(e.value) and "\n" not in str(e.value)
    port = open_serial("loop://", 9600, timeout=0.2)   # echoes the command back: not a device
    try:
        with pytest.raises(ProtocolError):
            Client(port, timeout=0.2, retries=0).info()
        assert port.timeout == 0.2
    finally:
        port.close()
