"""The board design end to end in the Amaranth simulator: boot from an SPI flash model,
then the host's own protocol code (host.protocol.Client) over the UART pins, including
every error path of docs/protocol.md.  A small random model keeps it fast; the shipped
MNIST model runs the same way in the opt-in test."""

import numpy as np
import pytest

from compiler.program import compile_model
from golden.generate import random_model
from golden.ops import run_model
from golden.tflite_io import to_tflite_bytes, load_tflite
from host import protocol
from host.protocol import Client, DeviceError
from sim.run import sim_config
from sim.serial import SimSerial
from hdl.board.soc import Soc

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
    soc = Soc(program, model_id=protocol.model_id(path.read_bytes()), divisor=DIVISOR,
              timeout_cycles=TIMEOUT_CYCLES, sck_half=1, wake_cycles=8)
    weights = program.weight_image
    image = protocol.flash_weights_region(weights) if flash is None else flash
    return SimSerial(soc, image, read_cycles=4 * TIMEOUT_CYCLES + 50_000), soc


def hw_reference(model, program, x):
    """The accelerator's output tensor (before the host tail) from golden."""
    _, inter = run_model(model, x[None], intermediates=True)
    return inter[program.output_name].reshape(-1)


def test_boot_info_and_inference(design):
    path, model, program = design
    port, soc = make_port(design)
    client = Client(port)
    info = client.info()
    assert info.weights_loaded and info.model_id == protocol.model_id(path.read_bytes())
    assert (info.input_bytes, info.output_bytes, info.weight_bytes) == (soc.input_bytes, soc.output_bytes,
                                                                         soc.weight_bytes)
    # The device woke the flash before reading the header and the image at the weight offset.
    cmds = port.flash.commands
    assert cmds[0].opcode == 0xAB and cmds[1].opcode == 0x03 and cmds[1].awake
    assert cmds[1].address == soc.weights_offset and cmds[1].nbytes == soc.boot_bytes

    rng = np.random.default_rng(1)
    cycles = set()
    for _ in range(2):
        x = rng.integers(-128, 128, size=model.input_shape, dtype=np.int8)
        r = client.infer(x)
        assert np.array_equal(r.output, hw_reference(model, program, x))
        assert r.argmax == int(np.argmax(r.output))
        cycles.add(r.cycles)
    assert len(cycles) == 1 and cycles.pop() > 0


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
    assert np.array_equal(client.infer(x).output, hw_reference(model, program, x))


def test_errors_leave_the_device_ready(design):
    path, model, program = design
    port, soc = make_port(design)
    client = Client(port)
    client.info()
    x = np.zeros(model.input_shape, np.int8)

    def expect(code, frame=None, brk=None):
        port.reset_input_buffer()
        if frame is not None:
            port.write(frame)
        if brk is not None:
            port.send_break(brk)
        got = port.read(1)
        assert got == bytes([code]), (protocol.ERROR_NAMES[code], got)
        # Ready at once: the next command succeeds.
        assert np.array_equal(client.infer(x).output, hw_reference(model, program, x))

    expect(protocol.BAD_COMMAND, b"Z")
    expect(protocol.BAD_LENGTH, bytes([protocol.CMD_INFER]) + (soc.input_bytes + 1).to_bytes(2, "little")
           + bytes(soc.input_bytes + 1))
    expect(protocol.BAD_LENGTH, bytes([protocol.CMD_WEIGHTS]) + (3).to_bytes(4, "little") + b"abc")
    # A frame that stops half-way, and one broken by a break condition.
    expect(protocol.TIMEOUT, protocol.infer_frame(x)[:10])
    expect(protocol.FRAMING, protocol.infer_frame(x)[:10], brk=30 * DIVISOR)
    # A WEIGHTS frame that stops half-way leaves no usable weights behind.
    expect_then = protocol.weights_frame(program.weight_image)[:20]
    port.reset_input_buffer()
    port.write(expect_then)
    assert port.read(1) == bytes([protocol.TIMEOUT])
    assert not client.info().weights_loaded
    with pytest.raises(DeviceError, match="NO_WEIGHTS"):
        client.infer(x)


def test_bad_flash_then_weights_over_uart(design):
    path, model, program = design
    port, soc = make_port(design, flash=b"\xff" * 64)      # erased flash
    client = Client(port)
    assert not client.info().weights_loaded
    x = np.arange(soc.input_bytes, dtype=np.int64).astype(np.int8).reshape(model.input_shape)
    with pytest.raises(DeviceError, match="NO_WEIGHTS"):
        client.infer(x)
    client.load_weights(program.weight_image)
    assert client.info().weights_loaded
    assert np.array_equal(client.infer(x).output, hw_reference(model, program, x))


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
    assert report["accelerator_output"] == [int(v) for v in hw_reference(model, program, x)]
    assert report["output"] == [int(v) for v in run_model(model, x[None]).reshape(-1)]
    assert report["cycles"] > 0 and not report["weights_sent"]


@pytest.mark.slow
def test_mnist_model_on_the_simulated_board(mnist_test_set, capsys):
    """The shipped model: 93 KB of weights booted from flash, then MNIST images over the
    UART through hdl.run (minutes in the Amaranth simulator)."""
    import json

    from golden.run import DEFAULT_MODEL
    from hdl import run

    model = load_tflite(str(DEFAULT_MODEL))
    program = compile_model(model, sim_config())
    soc = Soc(program, model_id=protocol.model_id(DEFAULT_MODEL.read_bytes()), divisor=DIVISOR,
              timeout_cycles=TIMEOUT_CYCLES, sck_half=1, wake_cycles=8)
    port = SimSerial(soc, protocol.flash_weights_region(program.weight_image),
                     read_cycles=400_000, chunk_cycles=20_000)
    from host.inputs import mnist_input

    for index in range(2):
        assert run.main(["--port", "sim", "--mnist-index", str(index), "--json"], port=port) == 0
        report = json.loads(capsys.readouterr().out)
        x, label = mnist_input(index, qparams=model.input_q)
        assert report["label"] == label
        assert report["output"] == [int(v) for v in run_model(model, x[None]).reshape(-1)]
        assert 150_000 < report["cycles"] < 210_000
