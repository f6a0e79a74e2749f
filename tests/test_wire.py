"""host.wire against docs/protocol.md, byte for byte."""

import struct
import zlib

import numpy as np
import pytest

from host import wire as W


def test_constants_are_the_documented_bytes():
    assert W.SYNC == b"\xc3\x5a"
    assert (W.CMD_INFO, W.CMD_INFER, W.CMD_WEIGHTS, W.CMD_RELOAD) == tuple(b"?IWR")
    assert W.OK == 0
    assert W.ERROR_NAMES == {
        0x81: "BAD_COMMAND", 0x82: "BAD_LENGTH", 0x83: "TIMEOUT", 0x84: "FRAMING", 0x85: "NO_WEIGHTS",
        0x86: "BAD_CRC", 0x87: "BAD_FLASH", 0x88: "BUSY", 0x89: "BAD_IMAGE"}
    assert W.TRANSIENT == {W.TIMEOUT, W.FRAMING, W.BAD_CRC, W.BUSY}
    assert W.INFO_MAGIC == b"CNN2" and W.INFO_BYTES == 26 and W.INFER_TRAILER_BYTES == 4
    assert (W.WEIGHTS_OFFSET, W.WEIGHTS_MAGIC, W.WEIGHTS_HEADER_BYTES) == (0x100000, b"CNNW", 16)
    assert (W.FRAME_OVERHEAD, W.REPLY_OVERHEAD) == (15, 12)
    assert (W.DEFAULT_BAUD, W.FRAME_TIMEOUT_S) == (115200, 0.1)


def test_crc_is_zlibs_and_the_residue_constant_holds():
    assert W.crc32(b"123456789") == 0xCBF43926           # the CRC-32 check value
    rng = np.random.default_rng(0)
    for n in (0, 1, 5, 100):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        reg = 0xFFFFFFFF
        for b in data + struct.pack("<I", zlib.crc32(data)):
            reg ^= b
            for _ in range(8):
                reg = (reg >> 1) ^ (0xEDB88320 if reg & 1 else 0)
        assert reg == W.CRC_RESIDUE


def test_frames_byte_for_byte():
    head = b"\x49\x04\x00\x00\x00"
    payload = b"\x01\xff\x7f\x80"
    want = W.SYNC + head + struct.pack("<I", zlib.crc32(head)) + payload + struct.pack("<I", zlib.crc32(payload))
    assert W.infer_frame(np.array([[1, -1], [127, -128]], np.int8)) == want
    assert W.infer_frame(payload) == want
    info = W.info_frame()
    assert info[:7] == W.SYNC + b"?\x00\x00\x00\x00" and info[-4:] == b"\x00\x00\x00\x00" and len(info) == 15
    assert W.reload_frame()[2] == ord("R")
    assert W.weights_frame(np.array([-1, 2], np.int8))[2:7] == b"W\x02\x00\x00\x00"
    r = W.reply(W.CMD_INFO, W.OK, b"ab")
    assert r[:8] == W.SYNC + b"?\x00\x02\x00\x00\x00" and r[8:10] == b"ab"
    assert r[10:] == struct.pack("<I", zlib.crc32(r[2:10]))


def test_flash_header_carries_program_id_and_crc():
    image = b"\xaa\xbb\xcc"
    region = W.flash_weights_region(image, 0x12345678)
    assert region == b"CNNW" + struct.pack("<III", 3, 0x12345678, zlib.crc32(image)) + image


def test_frame_builders_reject_bad_inputs():
    with pytest.raises(ValueError, match="int8"):
        W.infer_frame(np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="at most 65535"):
        W.infer_frame(bytes(65536))
    with pytest.raises(TypeError):
        W.weights_frame([1, 2, 3])


def test_model_id_is_sha256_prefix_little_endian():
    assert W.model_id(b"") == 0x42C4B0E3
    assert W.model_id(b"abc") == 0xBF1678BA


def test_parse_replies_byte_for_byte():
    payload = (b"CNN2" + b"\x10\x03" + b"\x0a\x00" + b"\x20\x6c\x01\x00" + b"\x78\x56\x34\x12" + b"\x0d\xf0\xad\x0b"
               + b"\x01\x02\x03\x04" + b"\x01\x00")
    info = W.parse_info(payload)
    assert info == W.Info(784, 10, 93216, 0x12345678, 0x0BADF00D, 0x04030201, W.WEIGHTS_FLASH, W.BOOT_OK)
    assert info.weights_loaded
    assert not W.parse_info(payload[:-2] + b"\x03\x00").weights_loaded
    with pytest.raises(W.ProtocolError, match="not this project's firmware"):
        W.parse_info(b"XXXX" + payload[4:])
    r = W.parse_infer(b"\x05\xfb\x7f" + b"\x40\xe2\x01\x00", 3)
    assert r.output.dtype == np.int8 and list(r.output) == [5, -5, 127]
    assert (r.argmax, r.cycles) == (2, 123456)
