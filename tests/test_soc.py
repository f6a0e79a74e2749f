"""The board design end to end: boot from an SPI flash model and the weight check, then the
host's own client (host.client.Client) over the UART pins, including every error path of
docs/protocol.md and each defect of the reliability review.  Boot, inference, hdl.run and
maps in SPRAM run in the Amaranth simulator; the error sequences, the review's busy-device
case and the bad flash images in Verilator (sim/board.py), tens of times faster.  A
small random model keeps it fast; the shipped MNIST model runs the same way in the opt-in
test."""

import struct

import numpy as np
import pytest

from compiler.program import compile_model
from golden.generate import random_model
from golden.model import Model, QParams
from golden.ops import Pool2D, run_model
from golden.tflite_io import load_tflite, to_tflite_bytes
from hdl.board.soc import Soc
from host import wire
from host.client import Client, DeviceError
from sim.fuzz import flash_faults, golden_output
from sim.run import sim_config
from sim.serial import SimSerial

DIVISOR = 8
TIMEOUT_CYCLES = 40 * DIVISOR * 10      # 40 byte times


def tiny(tmp_path_factory, seed=48):
    """POOL -> CONV -> CONV -> CONV with a SOFTMAX left to the host: 36 input bytes."""
    model = random_model(np.random.default_rng(seed), max_layers=3)
    path = tmp_path_factory.mktemp("soc") / f"tiny{seed}.tflite"
    path.write_bytes(to_tflite_bytes(model))
    return path


@pytest.fixture(scope="module")
def design(tmp_path_factory):
    path = tiny(tmp_path_factory)
    model = load_tflite(str(path))
    program = compile_model(model, sim_config())
    return path, model, program


def make_port(design, flash=None):
    path, model, program = design
    soc = Soc(program, model_id=wire.model_id(path.read_bytes()), divisor=DIVISOR,
              timeout_cycles=TIMEOUT_CYCLES, sck_half=1, wake_cycles=8)
    image = wire.flash_weights_region(program.weight_image, program.program_id) if flash is None else flash
    return SimSerial(soc, image, read_cycles=4 * TIMEOUT_CYCLES + 50_000), soc


def make_board(design, flash=None):
    """The same device in Verilator (sim/board.py): the same client code, much faster."""
    from sim.board import VerilatorBoard
    path, model, program = design
    soc = Soc(program, model_id=wire.model_id(path.read_bytes()), divisor=DIVISOR,
              timeout_cycles=TIMEOUT_CYCLES, sck_half=1, wake_cycles=8)
    image = wire.flash_weights_region(program.weight_image, program.program_id) if flash is None else flash
    return VerilatorBoard(soc, image, read_cycles=soc.boot_cycles + 4 * TIMEOUT_CYCLES), soc


def read_reply(port):
    """The next reply frame on the line -> (command, status, payload); None if none comes."""
    window = b""
    while window != wire.SYNC:
        b = port.read(1)
        if not b:
            return None
        window = (window + b)[-2:]
    head = port.read(6)
    command, status, length = struct.unpack(wire.REPLY_HEADER_FORMAT, head)
    payload, crc = port.read(length), port.read(4)
    assert struct.unpack("<I", crc)[0] == wire.crc32(head + payload)
    return command, status, payload


def test_boot_info_and_inference(design):
    path, model, program = design
    port, soc = make_port(design)
    client = Client(port)
    info = client.info()
    assert info == wire.Info(soc.input_bytes, soc.output_bytes, soc.weight_bytes, wire.model_id(path.read_bytes()),
                             program.program_id, wire.crc32(program.weight_image), wire.WEIGHTS_FLASH, wire.BOOT_OK)
    # The device woke the flash before reading the header and the image at the weight offset.
    cmds = port.flash.commands
    assert cmds[0].opcode == 0xAB and cmds[1].opcode == 0x03 and cmds[1].awake
    assert cmds[1].address == soc.weights_offset and cmds[1].nbytes == soc.boot_bytes

    rng = np.random.default_rng(1)
    cycles = set()
    for _ in range(2):
        x = rng.integers(-128, 128, size=model.input_shape, dtype=np.int8)
        r = client.infer(x)
        assert np.array_equal(r.output, golden_output(model, program, x))
        assert r.argmax == int(np.argmax(r.output))
        cycles.add(r.cycles)
    assert len(cycles) == 1 and cycles.pop() > 0 and client.attempts == 3


def test_maps_in_spram_on_the_simulated_board(tmp_path_factory):
    """The same model with its maps in the SPRAMs beside the weights (as KWS on the
    iCEBreaker): the weights boot from flash into the shared SPRAMs, the input goes in and
    the output comes out through the map walker, equal to golden."""
    path = tiny(tmp_path_factory)
    model = load_tflite(str(path))
    program = compile_model(model, sim_config().spram_resolved())
    assert program.config.in_spram
    port, soc = make_port((path, model, program))
    client = Client(port)
    assert client.info().weights_loaded
    x = np.random.default_rng(2).integers(-128, 128, size=model.input_shape, dtype=np.int8)
    assert np.array_equal(client.infer(x).output, golden_output(model, program, x))


def test_errors_leave_the_device_ready(design):
    path, model, program = design
    port, soc = make_board(design)
    client = Client(port)
    client.info()
    x = np.zeros(model.input_shape, np.int8)

    def expect(status, command, frame=b"", brk=None):
        port.reset_input_buffer()
        port.write(frame)
        if brk is not None:
            port.send_break(brk)
        assert read_reply(port) == (command, status, b""), wire.ERROR_NAMES[status]
        # Ready at once: the next command succeeds.
        assert np.array_equal(client.infer(x).output, golden_output(model, program, x))

    good = wire.infer_frame(x)
    expect(wire.BAD_COMMAND, ord("Z"), wire.frame(ord("Z")))
    expect(wire.BAD_LENGTH, wire.CMD_INFER, wire.infer_frame(bytes(soc.input_bytes + 1)))
    expect(wire.BAD_LENGTH, wire.CMD_WEIGHTS, wire.weights_frame(b"abc"))
    expect(wire.TIMEOUT, wire.CMD_INFER, good[:20])                  # stops half-way
    expect(wire.FRAMING, wire.CMD_INFER, good[:20], brk=30 * DIVISOR)
    damaged = bytearray(good)
    damaged[4] ^= 0x40                                               # the length: caught by the header CRC
    expect(wire.BAD_CRC, wire.CMD_INFER, bytes(damaged))
    damaged = bytearray(good)
    damaged[20] ^= 0x01                                              # an input byte: the payload CRC
    expect(wire.BAD_CRC, wire.CMD_INFER, bytes(damaged))
    # Bytes outside frames, command bytes and lengths among them, are ignored.
    port.reset_input_buffer()
    port.write(b"?I\x24\x00W" + bytes(range(0, 256, 3)) + wire.SYNC[:1] + b"?")
    assert read_reply(port) is None
    assert client.info().weight_state == wire.WEIGHTS_FLASH


def test_data_shaped_like_commands_never_acts(design):
    """An INFER whose input holds a whole WEIGHTS header, sent while the device is still busy
    with the previous INFER (the review's case: it wiped the weights): the device discards
    the frame it caught half of, answers BUSY, and keeps its weights."""
    path, model, program = design
    port, soc = make_board(design)
    client = Client(port)
    client.info()
    head = struct.pack(wire.FRAME_HEADER_FORMAT, wire.CMD_WEIGHTS, soc.weight_bytes)
    trap = (wire.SYNC + head + struct.pack("<I", wire.crc32(head))) * 4
    x = np.frombuffer(trap[:soc.input_bytes], np.int8).reshape(model.input_shape)
    port.reset_input_buffer()
    port.write(wire.infer_frame(x) + wire.infer_frame(x))
    first, second = read_reply(port), read_reply(port)
    assert first[:2] == (wire.CMD_INFER, wire.OK)
    assert np.array_equal(wire.parse_infer(first[2], soc.output_bytes).output, golden_output(model, program, x))
    assert second == (0, wire.BUSY, b"")
    assert client.info().weight_state == wire.WEIGHTS_FLASH
    assert np.array_equal(client.infer(x).output, golden_output(model, program, x))


def test_failed_upload_then_reload(design):
    """WEIGHTS overwrite the memory as they arrive (no room for a second image): a cut or
    corrupted upload leaves the state PARTIAL and INFER refused, until RELOAD or a good upload."""
    path, model, program = design
    port, soc = make_board(design)
    client = Client(port, retries=0)
    x = np.random.default_rng(4).integers(-128, 128, size=model.input_shape, dtype=np.int8)
    frame = bytearray(wire.weights_frame(program.weight_image))
    frame[30] ^= 0x08
    port.write(bytes(frame))
    assert read_reply(port) == (wire.CMD_WEIGHTS, wire.BAD_CRC, b"")
    assert client.info().weight_state == wire.WEIGHTS_PARTIAL
    with pytest.raises(DeviceError, match="NO_WEIGHTS"):
        client.infer(x)
    client.reload()
    info = client.info()
    assert (info.weight_state, info.boot) == (wire.WEIGHTS_FLASH, wire.BOOT_OK)
    assert np.array_equal(client.infer(x).output, golden_output(model, program, x))
    client.load_weights(program.weight_image)
    assert client.info().weight_state == wire.WEIGHTS_UART
    assert np.array_equal(client.infer(x).output, golden_output(model, program, x))
    # An intact image of the right length but another model's: refused, never run.
    other = bytes((b + 1) & 0xFF for b in program.weight_image)
    with pytest.raises(DeviceError, match="BAD_IMAGE"):
        client.load_weights(other)
    assert client.info().weight_state == wire.WEIGHTS_PARTIAL
    with pytest.raises(DeviceError, match="NO_WEIGHTS"):
        client.infer(x)


@pytest.mark.parametrize("case", ["erased", "header only", "half the image", "one flipped byte",
                                  "another program's image", "right header, other weights"])
def test_bad_flash_images_never_boot_green(design, case):
    path, model, program = design
    flash, boot = flash_faults(program)[case]
    port, soc = make_board(design, flash=flash)
    client = Client(port, retries=0)
    info = client.info()
    assert (info.weight_state, info.boot) == (wire.WEIGHTS_NONE, boot)
    x = np.arange(soc.input_bytes, dtype=np.int64).astype(np.int8).reshape(model.input_shape)
    with pytest.raises(DeviceError, match="NO_WEIGHTS"):
        client.infer(x)
    with pytest.raises(DeviceError, match="BAD_FLASH"):
        client.reload()
    if case == "erased":
        client.load_weights(program.weight_image)
        assert client.info().weights_loaded
        assert np.array_equal(client.infer(x).output, golden_output(model, program, x))


def test_a_model_without_weights_boots_and_runs(tmp_path):
    """Pool only: zero weight bytes.  The device hung in its boot state before."""
    q = QParams(0.1, -2)
    model = Model(name="pool_only", input_shape=(6, 6, 3), input_q=q,
                  layers=(Pool2D(name="pool", input_shape=(6, 6, 3), kind="MAX", filter=(2, 2), stride=(2, 2),
                                 padding="VALID", q=q),))
    path = tmp_path / "pool.tflite"
    path.write_bytes(to_tflite_bytes(model))
    model = load_tflite(str(path))
    program = compile_model(model, sim_config())
    assert len(program.weight_image) == 0
    port, soc = make_board((path, model, program))
    client = Client(port)
    info = client.info()
    assert (info.weight_bytes, info.weight_state, info.boot) == (0, wire.WEIGHTS_FLASH, wire.BOOT_OK)
    x = np.random.default_rng(5).integers(-128, 128, size=model.input_shape, dtype=np.int8)
    assert np.array_equal(client.infer(x).output, golden_output(model, program, x))
    client.load_weights(b"")
    assert client.info().weight_state == wire.WEIGHTS_UART


def test_hdl_run_against_the_rtl(design, tmp_path, capsys):
    """``python -m hdl.run`` itself, its port being the simulated board."""
    import json

    from PIL import Image

    from hdl import run
    from host.inputs import load_image

    path, model, program = design
    h, w, c = model.input_shape
    png = tmp_path / "in.png"
    pixels = np.random.default_rng(3).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(png)
    port, soc = make_port(design)
    assert run.main(["--port", "sim", "--model", str(path), "--image", str(png), "--json"], port=port) == 0
    report = json.loads(capsys.readouterr().out)
    x = load_image(png, model.input_shape, model.input_q)
    assert report["accelerator_output"] == [int(v) for v in golden_output(model, program, x)]
    assert report["output"] == [int(v) for v in run_model(model, x[None]).reshape(-1)]
    assert report["cycles"] > 0 and not report["weights_sent"]


@pytest.mark.slow
def test_mnist_model_on_the_simulated_board(mnist_test_set, capsys):
    """The shipped model: 93 KB of weights booted from flash and checked, then MNIST images
    over the UART through hdl.run (minutes in the Amaranth simulator)."""
    import json

    from golden.run import DEFAULT_MODEL
    from hdl import run
    from host.inputs import mnist_input

    model = load_tflite(str(DEFAULT_MODEL))
    program = compile_model(model, sim_config())
    soc = Soc(program, model_id=wire.model_id(DEFAULT_MODEL.read_bytes()), divisor=DIVISOR,
              timeout_cycles=TIMEOUT_CYCLES, sck_half=1, wake_cycles=8)
    port = SimSerial(soc, wire.flash_weights_region(program.weight_image, program.program_id),
                     read_cycles=400_000, chunk_cycles=20_000)
    for index in range(2):
        assert run.main(["--port", "sim", "--mnist-index", str(index), "--json"], port=port) == 0
        report = json.loads(capsys.readouterr().out)
        x, label = mnist_input(index, qparams=model.input_q)
        assert report["label"] == label
        assert report["output"] == [int(v) for v in run_model(model, x[None]).reshape(-1)]
        assert 150_000 < report["cycles"] < 210_000


def streaming_design(tmp_path_factory):
    """The tiny model with most of its weights streamed from the flash (as VWW and AD on
    the iCEBreaker): a little stays resident in SPRAM, the rest follows it in flash."""
    path = tiny(tmp_path_factory)
    model = load_tflite(str(path))
    program = compile_model(model, sim_config().with_(weight_stream="on", weight_resident_bytes=600))
    assert program.config.streams and program.weights.size and program.stream.size
    return path, model, program


def test_streamed_weights_on_the_simulated_boards(tmp_path_factory):
    """Boot checks the whole flash image (resident and streamed) and copies the resident part;
    inference streams the rest on the flash's four lines, equal to golden, in the Amaranth
    simulator and in Verilator (the C++ flash); a WEIGHTS upload of the image works too."""
    design = streaming_design(tmp_path_factory)
    path, model, program = design
    image = wire.flash_weights_region(program.flash_image, program.program_id)
    x = np.random.default_rng(3).integers(-128, 128, size=model.input_shape, dtype=np.int8)
    want = golden_output(model, program, x)
    port, soc = make_port(design, image)
    client = Client(port)
    info = client.info()
    assert info.weight_bytes == len(program.flash_image) and info.boot == wire.BOOT_OK
    assert np.array_equal(client.infer(x).output, want)
    assert port.flash.contention == 0
    reads = [c for c in port.flash.commands if c.opcode == 0x6B]
    assert [(c.address, c.nbytes) for c in reads] == [(soc.stream_base, program.stream.size)]

    board, soc = make_board(design, image)
    client = Client(board)
    assert client.info().weights_loaded
    cycles = {client.infer(x).cycles for _ in range(2)}
    assert len(cycles) == 1
    client.load_weights(program.flash_image)
    assert client.info().weight_state == wire.WEIGHTS_UART
    assert np.array_equal(client.infer(x).output, want)


@pytest.mark.parametrize("where", ["resident", "streamed"])
def test_a_flipped_weight_byte_fails_the_boot(tmp_path_factory, where):
    """The boot's CRC covers the streamed weights as well as the resident ones."""
    design = streaming_design(tmp_path_factory)
    path, model, program = design
    image = bytearray(wire.flash_weights_region(program.flash_image, program.program_id))
    at = wire.WEIGHTS_HEADER_BYTES + (3 if where == "resident" else program.weights.size + 5)
    image[at] ^= 0x10
    board, _ = make_board(design, bytes(image))
    info = Client(board).info()
    assert info.boot == wire.BOOT_BAD_CRC and not info.weights_loaded


def test_streamed_weights_that_fail_their_crc_give_no_output(tmp_path_factory):
    """A flash whose quad mode does not turn on boots fine (the boot reads on one line) but
    its quad reads return the pull-ups: INFER answers BAD_FLASH, never a wrong output."""
    design = streaming_design(tmp_path_factory)
    path, model, program = design
    port, soc = make_port(design, wire.flash_weights_region(program.flash_image, program.program_id))
    flash = port.flash
    end = flash._end

    def no_quad(*args, **kwargs):
        end(*args, **kwargs)
        flash.sr2 = 0

    flash._end = no_quad
    client = Client(port)
    assert client.info().weights_loaded
    with pytest.raises(DeviceError, match="BAD_FLASH"):
        client.infer(np.zeros(model.input_shape, np.int8))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ad01_int8.tflite", "vww_96_int8.tflite"])
def test_published_streaming_models_on_the_verilator_board(name):
    """AD and VWW as the iCEBreaker runs them, the whole board design in Verilator: boot
    from the flash image (resident and streamed weights, one CRC), the input over the UART
    protocol, the streamed weights read on the flash's four lines: equal to golden, with the
    cycles of the core's simulation (opt-in: about a minute each, most of it compiling)."""
    from published import load_published
    from sim.board import VerilatorBoard
    from sim.run import Engine
    model = load_published(name)
    program = compile_model(model, sim_config())
    assert program.config.streams
    soc = Soc(program, model_id=1, divisor=DIVISOR, timeout_cycles=TIMEOUT_CYCLES, sck_half=1, wake_cycles=8)
    image = wire.flash_weights_region(program.flash_image, program.program_id)
    board = VerilatorBoard(soc, image, read_cycles=soc.boot_cycles + 4_000_000)
    client = Client(board)
    assert client.info().weights_loaded
    x = np.random.default_rng(4).integers(-128, 128, size=model.input_shape, dtype=np.int8)
    hw = program.start_on_host(x[None])                 # VWW's input is stored space-to-depth
    r = client.infer(hw[0])
    assert np.array_equal(r.output, golden_output(model, program, x))
    assert r.cycles == Engine(program, log=lambda *a, **k: None).run(hw)["cycles"][0]
