"""Hostile frames against the board design in Verilator (sim/board.py): ten thousand seeded
cases of wrong lengths, truncations, breaks and bad stop bits, flipped bits, back-to-back
and busy-time frames, data shaped like commands, corrupted, cut or foreign WEIGHTS images.

After every case the device must be healthy: it answers INFO with its identity, and after
at most a RELOAD (the documented recovery from a failed upload) INFER is bit-exact with
golden.  At no point may it send a reply that fails its CRC, or an OK reply that is not the
right answer to an intact frame that was sent: never a silent wrong result.
"""

import collections
import json
import os
import struct

import numpy as np
import pytest

from compiler.program import compile_model
from golden.generate import random_model
from golden.ops import run_model
from golden.tflite_io import load_tflite, to_tflite_bytes
from hdl.board.soc import Soc
from host import wire
from host.client import Client
from sim.run import sim_config

board = pytest.importorskip("sim.board")

DIVISOR = 4
TIMEOUT_CYCLES = 24 * 10 * DIVISOR          # 24 byte times
CASES = int(os.environ.get("CNN2FPGA_FUZZ_CASES", 10_000))
KINDS = ["good", "garbage", "truncated", "flipped", "bad_length", "unknown_command", "break", "bad_stop",
         "back_to_back", "command_shaped", "weights_corrupt", "weights_cut", "weights_foreign"]


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "tiny.tflite"
    path.write_bytes(to_tflite_bytes(random_model(np.random.default_rng(48), max_layers=3)))
    model = load_tflite(str(path))
    program = compile_model(model, sim_config())
    soc = Soc(program, model_id=wire.model_id(path.read_bytes()), divisor=DIVISOR, timeout_cycles=TIMEOUT_CYCLES,
              sck_half=1, wake_cycles=8)
    flash = wire.flash_weights_region(program.weight_image, program.program_id)
    # A read waits longer than the device can stay busy (a RELOAD's boot) plus the frame
    # timeout and an error reply, so an empty read means the device is idle and done.
    with board.VerilatorBoard(soc, flash, read_cycles=soc.boot_cycles + 3 * TIMEOUT_CYCLES) as port:
        yield model, program, soc, port


def golden_output(model, program, x):
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
        assert len(head) == 6, f"reply cut in its header: {data[i:].hex()}"
        command, status, length = struct.unpack(wire.REPLY_HEADER_FORMAT, head)
        payload, crc = data[i + 8:i + 8 + length], data[i + 8 + length:i + 12 + length]
        assert len(crc) == 4 and struct.unpack("<I", crc)[0] == wire.crc32(head + payload), \
            f"reply fails its CRC: {data[i:i + 12 + length].hex()}"
        out.append((command, status, payload))
        i += 12 + length


def drain(port):
    """Everything the device sends until it has been quiet for the read timeout."""
    got = bytearray()
    while chunk := port.read(4096):
        got += chunk
    return bytes(got)


def test_hostile_frames_leave_the_device_healthy_and_never_silently_wrong(device, tmp_path):
    model, program, soc, port = device
    rng = np.random.default_rng(20261203)
    image = program.weight_image
    client = Client(port, retries=0)
    want_info = client.info()
    assert want_info.weights_loaded
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
    write = port.write
    port.write = lambda data: (sent_log.append(bytes(data).hex()[:80]), write(data))[1]
    for case in range(CASES):
        kind = KINDS[case % len(KINDS)] if case < len(KINDS) else str(rng.choice(KINDS))
        counts[kind] += 1
        intact = []                  # (command, input bytes) of the intact frames sent
        sent_log.clear()
        if kind == "good":
            data, cmd, x = any_frame()
            port.write(data)
            intact.append((cmd, x))
        elif kind == "garbage":
            port.write(rng.integers(0, 256, int(rng.integers(1, 120)), dtype=np.uint8).tobytes())
        elif kind == "truncated":
            data = any_frame()[0]
            port.write(data[:int(rng.integers(1, len(data)))])
        elif kind == "flipped":
            data = any_frame()[0]
            port.write(flip(data, int(rng.integers(1, 4))))
        elif kind == "bad_length":
            cmd = int(rng.choice([wire.CMD_INFO, wire.CMD_INFER, wire.CMD_WEIGHTS, wire.CMD_RELOAD]))
            n = int(rng.integers(0, 80))
            if n == {wire.CMD_INFER: soc.input_bytes, wire.CMD_WEIGHTS: soc.weight_bytes}.get(cmd, 0):
                n += 1
            port.write(wire.frame(cmd, rng.integers(0, 256, n, dtype=np.uint8).tobytes()))
        elif kind == "unknown_command":
            cmd = int(rng.choice([c for c in range(256) if c not in wire.COMMAND_NAMES]))
            port.write(wire.frame(cmd, rng.integers(0, 256, int(rng.integers(0, 40)), dtype=np.uint8).tobytes()))
        elif kind == "break":
            data = any_frame()[0]
            port.write(data[:int(rng.integers(0, len(data)))])
            port.send_break(int(rng.integers(1, 40)) * DIVISOR)
        elif kind == "bad_stop":
            data = any_frame()[0]
            cut = int(rng.integers(0, len(data)))
            port.write(data[:cut])
            port.write_bad_stop(data[cut:cut + int(rng.integers(1, 4))])
            port.write(data[cut + 1:])
        elif kind == "back_to_back":
            frames = [any_frame() for _ in range(int(rng.integers(2, 5)))]
            port.write(b"".join(f[0] for f in frames))
            intact += [(cmd, x) for _, cmd, x in frames]
        elif kind == "command_shaped":
            # An input holding whole, CRC-checked frame headers, sent while the device is busy.
            head = struct.pack(wire.FRAME_HEADER_FORMAT, wire.CMD_WEIGHTS, soc.weight_bytes)
            trap = ((wire.SYNC + head + struct.pack("<I", wire.crc32(head))) * 8)[:soc.input_bytes]
            first = frame_of("INFER")
            port.write(first[0] + wire.frame(wire.CMD_INFER, trap))
            intact += [first[1:], (wire.CMD_INFER, trap)]
            outputs.setdefault(trap, golden_output(model, program, np.frombuffer(trap, np.int8).reshape(
                model.input_shape)).tobytes())
        elif kind == "weights_corrupt":
            data = wire.frame(wire.CMD_WEIGHTS, image)             # one bit flipped after the header
            port.write(data[:11] + flip(data[11:], 1))
        elif kind == "weights_cut":
            data = wire.frame(wire.CMD_WEIGHTS, image)
            port.write(data[:int(rng.integers(11, len(data)))])
        elif kind == "weights_foreign":
            port.write(wire.frame(wire.CMD_WEIGHTS, rng.integers(0, 256, len(image), dtype=np.uint8).tobytes()))

        for cmd, status, payload in replies(drain(port)):
            statuses[wire.ERROR_NAMES.get(status, "OK")] += 1
            if status != wire.OK:
                continue
            sent = [x for c, x in intact if c == cmd]
            assert sent, f"case {case} ({kind}): OK reply to {cmd:#04x}, which was not sent intact"
            if cmd == wire.CMD_INFER:
                out = payload[:soc.output_bytes]
                assert any(out == outputs[x] for x in sent), f"case {case} ({kind}): INFER answered wrongly"
            if cmd == wire.CMD_INFO:
                assert wire.parse_info(payload).program_id == program.program_id

        try:
            info = client.info()
        except Exception as e:
            late = drain(port)
            raise AssertionError(f"case {case} ({kind}): INFO after it failed: {e}; sent {sent_log}; "
                                 f"then the device sent {late.hex()}") from e
        assert (info.input_bytes, info.output_bytes, info.weight_bytes, info.model_id, info.program_id,
                info.weights_crc) == (want_info.input_bytes, want_info.output_bytes, want_info.weight_bytes,
                                      want_info.model_id, want_info.program_id, want_info.weights_crc), case
        if not info.weights_loaded:
            assert info.weight_state == wire.WEIGHTS_PARTIAL, (case, kind, info)
            client.reload()
            reloads += 1
        x = inputs[case % len(inputs)]
        assert client.infer(x).output.tobytes() == outputs[x.tobytes()], (case, kind)

    assert port.framing_errors == 0                  # the device's own bytes always framed right
    report = {"cases": CASES, "kinds": dict(sorted(counts.items())), "replies": dict(sorted(statuses.items())),
              "reloads_after_failed_uploads": reloads, "simulated_cycles": port.cycles}
    (tmp_path / "fuzz.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report))
    assert CASES < 1000 or all(counts[k] > CASES // len(KINDS) // 2 for k in KINDS)
