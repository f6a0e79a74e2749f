"""python -m hdl.run against the fake device (tests/fake_device.py), with the shipped model.

The fake computes the accelerator's part with the compiler's functional emulator, using the
weight image it holds (flash boot or WEIGHTS), so a corrupted weight upload changes the
output; the finished output must equal the golden model's."""

import dataclasses
import json

import numpy as np
import pytest

from boards import ICEBREAKER, get_board
from compiler.emulate import cycles, run_program
from compiler.program import compile_model
from golden.mnist import DEFAULT_DIR, quantize_images
from golden.ops import run_model
from golden.run import DEFAULT_MODEL
from golden.tflite_io import load_tflite
from hdl.run import main
from host import wire as P
from host.inputs import InputError, image_pixels, load_image, mnist_input
from fake_device import FakeDevice
from sim.fuzz import png_header_only

Image = pytest.importorskip("PIL.Image", reason="Pillow is needed for image inputs: pip install pillow")


@pytest.fixture(scope="module")
def shipped():
    model = load_tflite(DEFAULT_MODEL)
    program = compile_model(model, ICEBREAKER)
    return model, program, P.model_id(DEFAULT_MODEL.read_bytes())


def board(shipped, **kw):
    """A fake iCEBreaker programmed for the shipped model."""
    model, program, mid = shipped
    per_inference = sum(cycles(program).values())

    def compute(x, weights):
        loaded = np.frombuffer(weights, np.int8).reshape(program.weights.shape)
        p = dataclasses.replace(program, weights=loaded)
        out = run_program(p, p.start_on_host(np.frombuffer(x, np.int8).reshape((1,) + tuple(model.input_shape))))
        return out.reshape(-1), per_inference

    args = dict(input_bytes=int(np.prod(program.input_shape)),
                output_bytes=int(np.prod(program.output_desc.out_shape)),
                weight_bytes=program.weights.size, model_id=mid, program_id=program.program_id, compute=compute,
                weights=program.weight_image)
    args.update(kw)
    return FakeDevice(**args)


def digit_png(path, invert=False, size=(28, 28)):
    """A white '7' on black (or black on white), drawn with Pillow."""
    from PIL import ImageDraw
    img = Image.new("L", size, 255 if invert else 0)
    d = ImageDraw.Draw(img)
    w, h = size
    fg = 0 if invert else 255
    d.line([(w * 0.25, h * 0.25), (w * 0.75, h * 0.25), (w * 0.45, h * 0.8)], fill=fg, width=max(2, w // 10))
    img.save(path)
    return path


def run(capsys, argv, port):
    code = main(argv, port=port)
    out, err = capsys.readouterr()
    return code, out, err


def error_line(capsys, argv, port=None):
    code, out, err = run(capsys, argv, port)
    assert code == 2, (out, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


# ---------------------------------------------------------------- inputs


def test_load_image_quantises_like_mnist(tmp_path):
    model = load_tflite(DEFAULT_MODEL)
    px = np.random.default_rng(1).integers(0, 256, (28, 28), dtype=np.uint8)
    Image.fromarray(px).save(tmp_path / "r.png")
    x = load_image(tmp_path / "r.png", model.input_shape, model.input_q)
    assert x.dtype == np.int8 and x.shape == (28, 28, 1)
    np.testing.assert_array_equal(x, quantize_images(px[None], model.input_q)[0])
    Image.fromarray(255 - px).save(tmp_path / "inv.png")
    np.testing.assert_array_equal(load_image(tmp_path / "inv.png", model.input_shape, model.input_q, invert=True), x)


def test_load_image_resizes_converts_and_composites(tmp_path):
    model = load_tflite(DEFAULT_MODEL)
    big = digit_png(tmp_path / "big.png", size=(112, 112))
    px = image_pixels(big, (28, 28, 1))
    assert px.shape == (28, 28) and px.max() > 200 and px[0, 0] == 0
    rgb = Image.new("RGB", (10, 6), (255, 0, 0))
    rgb.save(tmp_path / "rgb.jpg")
    assert image_pixels(tmp_path / "rgb.jpg", (4, 5, 3)).shape == (4, 5, 3)
    assert image_pixels(tmp_path / "rgb.jpg", (4, 5, 1)).shape == (4, 5)
    x = load_image(tmp_path / "rgb.jpg", (4, 5, 3), model.input_q)
    assert x.shape == (4, 5, 3) and x.dtype == np.int8
    clear = Image.new("RGBA", (28, 28), (0, 0, 0, 0))   # transparent background: black, white with invert
    clear.save(tmp_path / "clear.png")
    assert image_pixels(tmp_path / "clear.png", (28, 28, 1)).max() == 0
    assert image_pixels(tmp_path / "clear.png", (28, 28, 1), invert=True).max() == 0
    with pytest.raises(InputError, match="not an image"):
        image_pixels(tmp_path / "clear.png", (28, 28, 2))


def test_image_errors(tmp_path):
    with pytest.raises(InputError, match="image file not found"):
        image_pixels(tmp_path / "missing.png", (28, 28, 1))
    (tmp_path / "text.png").write_text("not a picture\n")
    with pytest.raises(InputError, match="cannot read the image") as e:
        image_pixels(tmp_path / "text.png", (28, 28, 1))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("size", [(30000, 30000), (100000, 100000)])
def test_decompression_bomb_is_one_line(shipped, tmp_path, capsys, size):
    png = png_header_only(tmp_path / "bomb.png", *size)
    err = error_line(capsys, ["--image", str(png)], board(shipped))
    assert "more than the 50,000,000 accepted" in err or "decompression bomb" in err.lower()


def test_mnist_input(mnist_test_set):
    model = load_tflite(DEFAULT_MODEL)
    images, labels = mnist_test_set
    x, label = mnist_input(3, qparams=model.input_q)
    np.testing.assert_array_equal(x, quantize_images(images[3:4], model.input_q)[0])
    assert label == labels[3]
    with pytest.raises(InputError, match="out of range"):
        mnist_input(len(images), qparams=model.input_q)


def test_mnist_input_missing_directory(tmp_path):
    with pytest.raises(InputError, match="MNIST file not found"):
        mnist_input(0, tmp_path, qparams=load_tflite(DEFAULT_MODEL).input_q)


# ---------------------------------------------------------------- main against the fake board


def test_image_end_to_end(shipped, tmp_path, capsys):
    model, program, mid = shipped
    png = digit_png(tmp_path / "seven.png")
    dev = board(shipped)
    code, out, err = run(capsys, ["--image", str(png)], dev)
    assert code == 0, err
    x = load_image(png, model.input_shape, model.input_q)
    want = run_model(model, x[None])[0]
    assert f"finished on the host (softmax, int8): [{' '.join(map(str, want))}]" in out
    assert f"predicted class: {int(np.argmax(want))}" in out
    assert f"cycles: {sum(cycles(program).values())}" in out
    assert f"id 0x{mid:08x}" in out and "probabilities: [" in out
    assert "sending" not in out   # the board had weights from flash
    assert [c for c, _ in dev.commands] == [P.CMD_INFO, P.CMD_INFER]


def test_mnist_index_end_to_end_json(shipped, mnist_test_set, capsys):
    model, program, mid = shipped
    images, labels = mnist_test_set
    i = 0
    code, out, err = run(capsys, ["--mnist-index", str(i), "--json", "--mnist-dir", str(DEFAULT_DIR)],
                         board(shipped))
    assert code == 0, err
    r = json.loads(out)
    x = quantize_images(images[i:i + 1], model.input_q)
    want, inter = run_model(model, x, intermediates=True)
    assert r["output"] == want[0].tolist()
    assert r["accelerator_output"] == inter[program.output_name][0].tolist()
    assert r["accelerator_layer"] == program.output_name and r["host_layers"] == ["softmax"]
    assert r["predicted"] == int(np.argmax(want[0]))
    assert r["label"] == int(labels[i]) and r["correct"] == (r["predicted"] == r["label"])
    assert r["model_id"] == f"0x{mid:08x}" and r["weights_sent"] is False
    assert abs(sum(r["output_real"]) - 1) < 0.05   # softmax probabilities


def test_mnist_index_text_prints_label(shipped, mnist_test_set, capsys):
    code, out, err = run(capsys, ["--mnist-index", "1"], board(shipped))
    assert code == 0, err
    assert f"label: {int(mnist_test_set[1][1])}, " in out
    assert "accelerator output (dense2, int8): [" in out


def test_weights_are_sent_when_missing_or_asked(shipped, tmp_path, capsys):
    _, program, _ = shipped
    png = digit_png(tmp_path / "d.png")
    dev = board(shipped, flash_ok=False)
    code, out, err = run(capsys, ["--image", str(png)], dev)
    assert code == 0, err
    assert f"sending {program.weights.size} weight bytes (the board has none usable: none)" in out
    assert dev.weights == program.weight_image and dev.weight_state == P.WEIGHTS_UART
    assert [c for c, _ in dev.commands] == [P.CMD_INFO, P.CMD_WEIGHTS, P.CMD_INFER]
    model = program.model
    x = load_image(png, model.input_shape, model.input_q)
    assert json.loads(run(capsys, ["--image", str(png), "--json"], dev)[1])["output"] == \
        run_model(model, x[None])[0].tolist()

    dev = board(shipped)
    code, out, _ = run(capsys, ["--image", str(png), "--json", "--weights-from-model"], dev)
    assert code == 0 and json.loads(out)["weights_sent"] is True
    assert [c for c, _ in dev.commands] == [P.CMD_INFO, P.CMD_WEIGHTS, P.CMD_INFER]


def test_invert(shipped, tmp_path, capsys):
    white = digit_png(tmp_path / "w.png")
    black = digit_png(tmp_path / "b.png", invert=True)
    _, a, _ = run(capsys, ["--image", str(white), "--json"], board(shipped))
    _, b, _ = run(capsys, ["--image", str(black), "--json", "--invert"], board(shipped))
    assert json.loads(a)["output"] == json.loads(b)["output"]


# ---------------------------------------------------------------- errors: exit 2, one line


def test_bad_port(tmp_path, capsys):
    png = digit_png(tmp_path / "d.png")
    err = error_line(capsys, ["--port", str(tmp_path / "no-such-tty"), "--image", str(png)])
    assert "no-such-tty" in err and ("cannot open serial port" in err or "pyserial" in err)


def test_not_our_device(tmp_path, capsys):
    pytest.importorskip("serial")
    png = digit_png(tmp_path / "d.png")
    err = error_line(capsys, ["--port", "loop://", "--image", str(png), "--timeout", "0.3"])
    assert "INFO reply announces" in err and "not this project's firmware" in err


def test_model_id_mismatch(shipped, tmp_path, capsys):
    _, _, mid = shipped
    png = digit_png(tmp_path / "d.png")
    err = error_line(capsys, ["--image", str(png)], board(shipped, model_id=0x0BADF00D))
    assert "0x0badf00d" in err and f"0x{mid:08x}" in err


def test_size_mismatch(shipped, tmp_path, capsys):
    png = digit_png(tmp_path / "d.png")
    err = error_line(capsys, ["--image", str(png)], board(shipped, output_bytes=11))
    assert "11 output bytes" in err and "compiles to 10" in err


def test_program_mismatch(shipped, tmp_path, capsys):
    """Same model, sizes and ids, but the board was built from another program (another
    version or profile): its program id and weights CRC say so."""
    _, program, _ = shipped
    png = digit_png(tmp_path / "d.png")
    err = error_line(capsys, ["--image", str(png)], board(shipped, program_id=program.program_id ^ 1))
    assert f"0x{program.program_id ^ 1:08x}" in err and f"compiles to 0x{program.program_id:08x}" in err
    wrong = bytes(program.weights.size)
    err = error_line(capsys, ["--image", str(png)], board(shipped, weights=wrong))
    assert f"0x{P.crc32(wrong):08x}" in err and "rebuild and program the board" in err


@pytest.mark.parametrize("code", sorted(P.ERROR_NAMES))
def test_device_error_codes(shipped, tmp_path, capsys, code):
    png = digit_png(tmp_path / "d.png")
    err = error_line(capsys, ["--image", str(png)], board(shipped, force={P.CMD_INFER: code}))
    assert P.ERROR_NAMES[code] in err and f"{code:#04x}" in err


def test_weights_rejected(shipped, tmp_path, capsys):
    png = digit_png(tmp_path / "d.png")
    err = error_line(capsys, ["--image", str(png), "--weights-from-model"],
                     board(shipped, force={P.CMD_WEIGHTS: P.BAD_LENGTH}))
    assert "WEIGHTS" in err and "BAD_LENGTH" in err


def test_no_reply(shipped, tmp_path, capsys):
    png = digit_png(tmp_path / "d.png")
    err = error_line(capsys, ["--image", str(png)], board(shipped, mute=True))
    assert "no reply to INFO within 2 s" in err and "or not programmed?" in err


def test_usage_errors(shipped, tmp_path, capsys):
    png = digit_png(tmp_path / "d.png")
    dev = board(shipped)
    assert "image file not found" in error_line(capsys, ["--image", str(tmp_path / "none.png")], dev)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    assert "cannot read the image" in error_line(capsys, ["--image", str(tmp_path / "bad.png")], dev)
    assert "--port" in error_line(capsys, ["--image", str(png)])
    assert "nothing to run" in error_line(capsys, [], dev)
    assert "not allowed with" in error_line(capsys, ["--image", str(png), "--mnist-index", "0"], dev)
    assert "invalid int value" in error_line(capsys, ["--mnist-index", "x"], dev)
    assert "cannot read the model" in error_line(capsys, ["--image", str(png), "--model",
                                                          str(tmp_path / "none.tflite")], dev)
    (tmp_path / "bad.tflite").write_bytes(b"garbage")
    assert "not a valid TFLite" in error_line(capsys, ["--image", str(png), "--model", str(tmp_path / "bad.tflite")],
                                              dev)
    assert "frame timeout" in error_line(capsys, ["--image", str(png), "--timeout", "0.01"], dev)
    assert "MNIST file not found" in error_line(capsys, ["--mnist-index", "0", "--mnist-dir", str(tmp_path)], dev)
    assert dev.commands == []   # nothing reached the board


def test_mnist_index_out_of_range(shipped, mnist_test_set, capsys):
    assert "out of range" in error_line(capsys, ["--mnist-index", "10000"], board(shipped))
    assert "out of range" in error_line(capsys, ["--mnist-index", "-1"], board(shipped))


def test_board_option_compiles_for_that_board(shipped, tmp_path, capsys):
    """A ULX3S build holds the weights for its 4 x 16 array (a different byte count): hdl.run
    must compile for the board it talks to, or it refuses the board's own device."""
    model, icebreaker_program, mid = shipped
    ulx3s = compile_model(model, get_board("ulx3s-85f").config)
    assert ulx3s.weights.size != icebreaker_program.weights.size
    png = digit_png(tmp_path / "seven.png")
    dev = board((model, ulx3s, mid))
    err = error_line(capsys, ["--image", str(png)], dev)
    assert f"{ulx3s.weights.size} weight bytes" in err and f"compiles to {icebreaker_program.weights.size}" in err
    code, out, err = run(capsys, ["--image", str(png), "--board", "ulx3s-85f"], board((model, ulx3s, mid)))
    assert code == 0, err
    want = run_model(model, load_image(png, model.input_shape, model.input_q)[None])[0]
    assert f"[{' '.join(map(str, want))}]" in out
    assert "unknown board 'nope'" in error_line(capsys, ["--image", str(png), "--board", "nope"], dev)


def test_input_and_output_files_like_golden_run(shipped, tmp_path, capsys):
    """--input X.npy (the model's own type, any count) and --output Y.npy: the finished
    outputs equal golden.run's."""
    model, program, _ = shipped
    x = np.random.default_rng(7).integers(-128, 128, size=(3, *model.input_shape), dtype=np.int8)
    np.save(tmp_path / "x.npy", x)
    code, out, err = run(capsys, ["--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy")],
                         board(shipped))
    assert code == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), run_model(model, x))
    assert "3 inputs from" in out and "wrote" in out
    code, out, _ = run(capsys, ["--input", str(tmp_path / "x.npy"), "--json"], board(shipped))
    assert code == 0 and json.loads(out)["output"] == run_model(model, x).tolist()
    assert "--output needs --input" in error_line(capsys, ["--mnist-index", "0", "--output", str(tmp_path / "y.npy")],
                                                  board(shipped))
    assert "is a directory" in error_line(capsys, ["--input", str(tmp_path / "x.npy"), "--output", str(tmp_path)],
                                          board(shipped))
    np.save(tmp_path / "f.npy", x.astype(np.float32))
    assert "input must be" in error_line(capsys, ["--input", str(tmp_path / "f.npy")], board(shipped))


# ---------------------------------------------------------------- --sim: a build directory's design

def build_dir(out, model_path, board_name="icebreaker", clock_hz=39.75e6):
    """What ``hdl.build`` leaves for ``--sim``, without yosys and nextpnr: the Soc's Verilog
    with the board's primitives (hdl.build.write_virtual_board), a flash image with an
    erased bitstream region, and the report's sections that ``--sim`` reads."""
    import hashlib

    from hdl.build import flash_image, load_program, make_soc, write_virtual_board
    b = get_board(board_name)
    program, data = load_program(model_path, b.config)
    soc = make_soc(program, data, clock_hz, P.DEFAULT_BAUD, b.weights_offset)
    out.mkdir()
    (out / "flash.bin").write_bytes(flash_image(b"", program.weight_image, b, program.program_id))
    report = {"status": "built", "board": {"name": b.name},
              "model": {"file": str(model_path), "path": str(model_path), "sha256": hashlib.sha256(data).hexdigest()},
              "virtual_board": write_virtual_board(out, soc, clock_hz)}
    (out / "report.json").write_text(json.dumps(report))
    return program, report


def test_sim_runs_the_build_directory_design_bit_exact(shipped, tmp_path, capsys):
    """The shipped model's iCEBreaker Soc (SB_MAC16 and SPRAM under yosys' models) boots
    from flash.bin and answers over the UART like the board, equal to golden.  (The build's
    own opt-in test, tests/test_build.py, also checks the cycles against its report.)"""
    model = shipped[0]
    build_dir(tmp_path / "b", DEFAULT_MODEL)
    x = np.random.default_rng(3).integers(-128, 128, (2, *model.input_shape)).astype(np.int8)
    np.save(tmp_path / "x.npy", x)
    code, out, err = run(capsys, ["--sim", str(tmp_path / "b"), "--input", str(tmp_path / "x.npy"),
                                  "--output", str(tmp_path / "y.npy"), "--json"], None)
    assert code == 0, err
    result = json.loads(out)
    assert result["weights_sent"] is False        # booted from the flash image
    assert len(result["cycles"]) == 1            # every input took the same cycles
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), run_model(model, x))


def test_sim_errors_are_one_line(shipped, tmp_path, capsys):
    png = digit_png(tmp_path / "d.png")
    assert "not a build directory" in error_line(capsys, ["--sim", str(tmp_path), "--image", str(png)])
    assert "not allowed with" in error_line(capsys, ["--sim", str(tmp_path), "--port", "loop://",
                                                     "--image", str(png)])
    _, report = build_dir(tmp_path / "b", DEFAULT_MODEL)
    b = str(tmp_path / "b")
    assert "built for --board icebreaker, not ulx3s" in error_line(capsys, ["--sim", b, "--board", "ulx3s",
                                                                            "--image", str(png)])
    other = tmp_path / "other.tflite"
    other.write_bytes(DEFAULT_MODEL.read_bytes() + b"\0")
    assert "is not the model" in error_line(capsys, ["--sim", b, "--model", str(other), "--image", str(png)])
    (tmp_path / "b" / "flash.bin").write_bytes(b"\xff" * 100)
    assert "ends before the weights" in error_line(capsys, ["--sim", b, "--image", str(png)])
    (tmp_path / "b" / "soc.v").unlink()
    assert "incomplete build" in error_line(capsys, ["--sim", b, "--image", str(png)])
    report.update(status="failed", problem="misses timing")
    (tmp_path / "b" / "report.json").write_text(json.dumps(report))
    assert "the build there failed (misses timing)" in error_line(capsys, ["--sim", b, "--image", str(png)])
