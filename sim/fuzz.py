"""Hostile frames against a board design (a ``sim.board.VerilatorBoard``), shared by the
default test suite (tests/test_board_fuzz.py) and ``bench/reliability.py``.

Seeded cases of thirteen kinds: good frames, garbage, truncated frames, flipped bits, wrong
lengths, unknown commands, breaks, bad stop bits, back-to-back frames, data shaped like
commands sent while the device is busy, and corrupted, cut or foreign WEIGHTS images.  After
every case the device must be healthy: it answers INFO with its identity, and after at most
a RELOAD (the documented recovery from a failed upload) INFER is bit-exact with golden.  At
no point may it send a reply that fails its CRC, or an OK reply that is not the right answer
to an intact frame that was sent: never a silent wrong result.  A violation raises
:class:`FuzzFailure` naming the case.
"""

import collections
import struct
import zlib

import numpy as np

from compiler.program import compile_model
from golden.generate import random_model
from golden.ops import run_model
from golden.tflite_io import load_tflite, to_tflite_bytes
from hdl.board.soc import Soc
from host import wire
from host.client import Client

from .run import sim_config

#: The fuzz device's UART (the fastest the receiver takes) and frame timeout (8 byte times).
DIVISOR = 4
TIMEOUT_CYCLES = 8 * 10 * DIVISOR

KINDS = ["good", "garbage", "truncated", "flipped", "bad_length", "unknown_command", "break", "bad_stop",
         "back_to_back", "command_shaped", "weights_corrupt", "weights_cut", "weights_foreign"]


class FuzzFailure(AssertionError):
    """The device misbehaved in a case; the message names it."""


def fuzz_device(path):
    """The device the fuzz runs against, its model written to ``path``: CONV_2D then
    DEPTHWISE_CONV_2D, 80 weight bytes and 30 input bytes, so a case costs few cycles.
    Returns (model, program, soc, VerilatorBoard)."""
    from .board import VerilatorBoard
    path.write_bytes(to_tflite_bytes(random_model(np.random.default_rng(54), max_layers=3)))
    model = load_tflite(str(path))
    program = compile_model(model, sim_config())
    soc = Soc(program, model_id=wire.model_id(path.read_bytes()), divisor=DIVISOR, timeout_cycles=TIMEOUT_CYCLES,
              sck_half=1, wake_cycles=8)
    flash = wire.flash_weights_region(program.flash_image, program.program_id)
    # A read waits longer than the device can stay busy (a RELOAD's boot) plus the frame
    # timeout and an error reply, so an empty read means the device is idle and done.
    return model, program, soc, VerilatorBoard(soc, flash, read_cycles=soc.boot_cycles + 3 * TIMEOUT_CYCLES)


def png_header_only(path, width, height):
    """A PNG whose header announces ``width`` x ``height`` and whose data is a few bytes: what
    a decompression bomb looks like to a reader before it decodes."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


def golden_output(model, program, x):
    """The accelerator's output tensor (before the host tail) for one input, from golden."""
    _, inter = run_model(model, x[None], intermediates=True)
    return inter[program.output_name].reshape(-1)


def replies(data):
    """Reply frames in a byte stream: (command, status, payload); AssertionError on any
    reply that is malformed or fails its CRC (the device must never send one)."""
    out, i = [], 0
    while True:
        i = data.find(wire.SYNC, i)
        if i < 0:
            return out
        head = data[i + 2:i + 8]
        if len(head) < 6:
            raise FuzzFailure(f"reply cut in its header: {data[i:].hex()}")
        command, status, length = struct.unpack(wire.REPLY_HEADER_FORMAT, head)
        payload, crc = data[i + 8:i + 8 + length], data[i + 8 + length:i + 12 + length]
        if len(crc) < 4 or struct.unpack("<I", crc)[0] != wire.crc32(head + payload):
            raise FuzzFailure(f"reply fails its CRC: {data[i:i + 12 + length].hex()}")
        out.append((command, status, payload))
        i += 12 + length


def drain(port):
    """Everything the device sends until it has been quiet for the read timeout."""
    got = bytearray()
    while chunk := port.read(4096):
        got += chunk
    return bytes(got)


def fuzz(port, model, program, soc, cases, seed=20261203, progress=None):
    """Run ``cases`` seeded cases; a report: cases per kind, replies per status, the RELOADs
    that recovered failed uploads, simulated cycles.  FuzzFailure on any violation."""
    rng = np.random.default_rng(seed)
    image = program.flash_image
    client = Client(port, retries=0)
    want_info = client.info()
    if not want_info.weights_loaded:
        raise FuzzFailure("the device has no usable weights before the first case")
    want_ident = (want_info.input_bytes, want_info.output_bytes, want_info.weight_bytes, want_info.model_id,
                  want_info.program_id, want_info.weights_crc)
    inputs = [rng.integers(-128, 128, size=model.input_shape, dtype=np.int8) for _ in range(16)]
    outputs = {x.tobytes(): golden_output(model, program, x).tobytes() for x in inputs}

    def frame_of(name):
        """A random intact frame: (bytes, command, input bytes or None)."""
        if name == "INFER":
            x = inputs[rng.integers(len(inputs))].tobytes()
            return wire.frame(wire.CMD_INFER, x), wire.CMD_INFER, x
        if name == "WEIGHTS":
            return wire.frame(wire.CMD_WEIGHTS, image), wire.CMD_WEIGHTS, None
        cmd = {"INFO": wire.CMD_INFO, "RELOAD": wire.CMD_RELOAD}[name]
        return wire.frame(cmd), cmd, None

    def any_frame():
        return frame_of(rng.choice(["INFO", "INFER", "INFER", "RELOAD", "WEIGHTS"]))

    def flip(data, n):
        data = bytearray(data)
        for _ in range(n):
            data[rng.integers(len(data))] ^= 1 << int(rng.integers(8))
        return bytes(data)

    counts, statuses, reloads = collections.Counter(), collections.Counter(), 0
    sent_log = []                    # what a case wrote, for the message when it fails

    def send(data):
        sent_log.append(bytes(data).hex()[:80])
        port.write(data)
    for case in range(cases):
        kind = KINDS[case % len(KINDS)] if case < len(KINDS) else str(rng.choice(KINDS))
        if progress and case and case % 1000 == 0:
            progress(case)
        counts[kind] += 1
        intact = []                  # (command, input bytes) of the intact frames sent
        sent_log.clear()
        if kind == "good":
            data, cmd, x = any_frame()
            send(data)
            intact.append((cmd, x))
        elif kind == "garbage":
            send(rng.integers(0, 256, int(rng.integers(1, 120)), dtype=np.uint8).tobytes())
        elif kind == "truncated":
            data = any_frame()[0]
            send(data[:int(rng.integers(1, len(data)))])
        elif kind == "flipped":
            data, cmd, x = any_frame()
            damaged = flip(data, int(rng.integers(1, 4)))
            send(damaged)
            if damaged == data:          # two flips of one bit cancel: an intact frame after all
                intact.append((cmd, x))
        elif kind == "bad_length":
            cmd = int(rng.choice([wire.CMD_INFO, wire.CMD_INFER, wire.CMD_WEIGHTS, wire.CMD_RELOAD]))
            n = int(rng.integers(0, 80))
            if n == {wire.CMD_INFER: soc.input_bytes, wire.CMD_WEIGHTS: soc.weight_bytes}.get(cmd, 0):
                n += 1
            send(wire.frame(cmd, rng.integers(0, 256, n, dtype=np.uint8).tobytes()))
        elif kind == "unknown_command":
            cmd = int(rng.choice([c for c in range(256) if c not in wire.COMMAND_NAMES]))
            send(wire.frame(cmd, rng.integers(0, 256, int(rng.integers(0, 40)), dtype=np.uint8).tobytes()))
        elif kind == "break":
            data = any_frame()[0]
            send(data[:int(rng.integers(0, len(data)))])
            # Ten bit times or more: a shorter low pulse is a byte on the wire (nine are 0x00).
            port.send_break(int(rng.integers(10, 60)) * port.divisor)
        elif kind == "bad_stop":
            data = any_frame()[0]
            cut = int(rng.integers(0, len(data)))
            send(data[:cut])
            port.write_bad_stop(data[cut:cut + int(rng.integers(1, 4))])
            send(data[cut + 1:])
        elif kind == "back_to_back":
            frames = [any_frame() for _ in range(int(rng.integers(2, 5)))]
            send(b"".join(f[0] for f in frames))
            intact += [(cmd, x) for _, cmd, x in frames]
        elif kind == "command_shaped":
            # An input holding whole, CRC-checked frame headers, sent while the device is busy.
            head = struct.pack(wire.FRAME_HEADER_FORMAT, wire.CMD_WEIGHTS, soc.weight_bytes)
            trap = ((wire.SYNC + head + struct.pack("<I", wire.crc32(head))) * 8)[:soc.input_bytes]
            first = frame_of("INFER")
            send(first[0] + wire.frame(wire.CMD_INFER, trap))
            intact += [first[1:], (wire.CMD_INFER, trap)]
            outputs.setdefault(trap, golden_output(model, program, np.frombuffer(trap, np.int8).reshape(
                model.input_shape)).tobytes())
        elif kind == "weights_corrupt":
            data = wire.frame(wire.CMD_WEIGHTS, image)             # one bit flipped after the header
            send(data[:11] + flip(data[11:], 1))
        elif kind == "weights_cut":
            data = wire.frame(wire.CMD_WEIGHTS, image)
            send(data[:int(rng.integers(11, len(data)))])
        elif kind == "weights_foreign":
            send(wire.frame(wire.CMD_WEIGHTS, rng.integers(0, 256, len(image), dtype=np.uint8).tobytes()))

        for cmd, status, payload in replies(drain(port)):
            statuses[wire.ERROR_NAMES.get(status, "OK")] += 1
            if status != wire.OK:
                continue
            sent = [x for c, x in intact if c == cmd]
            if not sent:
                raise FuzzFailure(f"case {case} ({kind}): OK reply to {cmd:#04x}, which was not sent intact")
            if cmd == wire.CMD_INFER:
                out = payload[:soc.output_bytes]
                if not any(out == outputs[x] for x in sent):
                    raise FuzzFailure(f"case {case} ({kind}): INFER answered wrongly")
            if cmd == wire.CMD_INFO:
                if wire.parse_info(payload).program_id != program.program_id:
                    raise FuzzFailure(f"case {case} ({kind}): INFO names another program")

        try:
            info = client.info()
            ident = (info.input_bytes, info.output_bytes, info.weight_bytes, info.model_id, info.program_id,
                     info.weights_crc)
            if ident != want_ident:
                raise FuzzFailure(f"INFO says {ident}, not {want_ident}")
            if not info.weights_loaded:
                if info.weight_state != wire.WEIGHTS_PARTIAL:
                    raise FuzzFailure(f"weights unusable in state {info.weight_state}")
                client.reload()
                reloads += 1
            x = inputs[case % len(inputs)]
            if client.infer(x).output.tobytes() != outputs[x.tobytes()]:
                raise FuzzFailure("INFER differs from golden")
        except Exception as e:
            late = drain(port)
            raise FuzzFailure(f"case {case} ({kind}): the device is not healthy after it: {e}; the case sent "
                              f"{sent_log}; then the device sent {late.hex()}") from e

    if port.framing_errors:
        raise FuzzFailure(f"{port.framing_errors} bytes from the device had a bad stop bit")
    return {"cases": cases, "seed": seed, "kinds": dict(sorted(counts.items())),
            "replies": dict(sorted(statuses.items())), "reloads_after_failed_uploads": reloads,
            "simulated_cycles": port.cycles}


def flash_faults(program):
    """Flash contents a device must refuse at boot, each with the boot result INFO must
    report: {name: (bytes from the weight offset on, BOOT_*)}."""
    image = program.flash_image
    good = wire.flash_weights_region(image, program.program_id)
    flipped = bytearray(good)
    flipped[wire.WEIGHTS_HEADER_BYTES + len(image) // 2] ^= 0x20
    other = bytes((b + 1) & 0xFF for b in image)
    return {
        "erased": (b"\xff" * 64, wire.BOOT_BAD_HEADER),
        "header only": (good[:wire.WEIGHTS_HEADER_BYTES], wire.BOOT_BAD_CRC),
        "half the image": (good[:wire.WEIGHTS_HEADER_BYTES + len(image) // 2], wire.BOOT_BAD_CRC),
        "one flipped byte": (bytes(flipped), wire.BOOT_BAD_CRC),
        "another program's image": (wire.flash_weights_region(other, program.program_id ^ 0x5A5A),
                                    wire.BOOT_BAD_HEADER),
        "right header, other weights": (wire.weights_header(image, program.program_id) + other, wire.BOOT_BAD_CRC),
    }
