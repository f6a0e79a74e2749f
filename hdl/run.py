"""Run one input on the board over its UART and finish the model on the host.

    python -m hdl.run --port /dev/ttyUSB1 --mnist-index 0
    python -m hdl.run --port /dev/ttyUSB1 --image digit.png [--invert]
    python -m hdl.run --sim build/icebreaker --input x.npy --output y.npy

``--sim DIR`` runs a build directory's own design instead of a board: the Soc the
bitstream was made from (``DIR/soc.v``, with its iCE40 primitives under yosys' models) in
Verilator, booting from ``DIR/flash.bin`` and served over the same serial protocol, at the
build's clock and baud rate (times are the board's); its model and board are the build's.

The model (default: the shipped MNIST CNN) is compiled to know the sizes, the weight image
and the layers the host finishes (a final SOFTMAX); its SHA-256 id, the compiled program's
id and its weights' CRC-32 must match what the board reports.  Weights are sent when the board has none (or with
``--weights-from-model``).  Images must show a white digit on a black background, like
MNIST (``--invert`` for black on white).  Prints the accelerator's output, the finished
output, the predicted class and the cycles; ``--json`` prints one JSON object instead.
Any usage or device error ends with one line on stderr and exit status 2.
"""

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from boards import BOARDS, BoardError, compile_for, get_board
from compiler.program import CompileError
from golden.files import OutputError, check_output, one_line, save_npy
from golden.mnist import DEFAULT_DIR
from golden.model import ModelError
from golden.ops import Softmax
from golden.run import DEFAULT_MODEL, load_input
from golden.run import UsageError as InputFileError
from golden.tflite_io import parse_tflite
from host.inputs import InputError, load_image, mnist_input
from host.client import DEFAULT_TIMEOUT_S, Client, open_serial
from host.wire import DEFAULT_BAUD, WEIGHT_STATE_NAMES, ProtocolError, crc32, model_id


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line through main's handler instead of usage + exit."""

    def error(self, message):
        raise UsageError(message)


def _parser():
    p = _Parser(prog="python -m hdl.run", description=__doc__.split("\n\n")[0])
    where = p.add_mutually_exclusive_group()
    where.add_argument("--port", help="serial port of the board (/dev/ttyUSB1 for the iCEBreaker) or a pyserial URL")
    where.add_argument("--sim", metavar="BUILD_DIR", help="no board: run the design hdl.build wrote to BUILD_DIR "
                       "in Verilator, its flash.bin as the flash")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--image", metavar="FILE", help="image file (PNG, JPEG, ...): white digit on black")
    src.add_argument("--mnist-index", metavar="N", type=int, help="image N of the official MNIST test set")
    src.add_argument("--input", metavar="X.npy", help="inputs of the model's own type and shape, (N, *input_shape) "
                     "or one, as golden.run and sim.run take them")
    p.add_argument("--output", metavar="Y.npy", help="with --input: write the finished outputs (the model's output "
                   "type, as golden.run writes them)")
    p.add_argument("--model", help="the int8 .tflite the bitstream was built from (default: the build's with --sim, "
                   "else the shipped MNIST CNN)")
    p.add_argument("--board", help=f"the board the bitstream was built for ({', '.join(BOARDS)}; default: the build's "
                   "with --sim, else icebreaker): the model is compiled for its configuration")
    p.add_argument("--baud", type=int, default=DEFAULT_BAUD, help=f"UART baud rate (default {DEFAULT_BAUD})")
    p.add_argument("--mnist-dir", metavar="DIR", default=str(DEFAULT_DIR),
                   help="where the MNIST test set is (default: ../shared/data/mnist)")
    p.add_argument("--invert", action="store_true", help="the image is a dark digit on a light background")
    p.add_argument("--weights-from-model", action="store_true",
                   help="send the model's weights even if the board loaded some from flash")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                   help=f"seconds to wait for a reply (default {DEFAULT_TIMEOUT_S:g})")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    return p


def _hex(v):
    return f"0x{v:08x}"


def _check_device(info, program, expected_id, model_path, board):
    if info.model_id != expected_id:
        raise UsageError(f"the board runs model id {_hex(info.model_id)}, {model_path} has id {_hex(expected_id)}: "
                         "give the --model the bitstream was built from, or rebuild and program the board")
    want = {"input": int(np.prod(program.input_shape)), "output": int(np.prod(program.output_desc.out_shape)),
            "weight": len(program.flash_image)}
    got = {"input": info.input_bytes, "output": info.output_bytes, "weight": info.weight_bytes}
    for k in want:
        if want[k] != got[k]:
            raise UsageError(f"the board takes {got[k]} {k} bytes, {model_path} compiles to {want[k]} "
                             "(built for another configuration?)")
    if info.program_id != program.program_id or info.weights_crc != crc32(program.flash_image):
        raise UsageError(f"the board runs program {_hex(info.program_id)} (weights CRC-32 {_hex(info.weights_crc)}), "
                         f"{model_path} compiles to {_hex(program.program_id)} "
                         f"({_hex(crc32(program.flash_image))}) for --board {board}: "
                         "built with another version or board profile? rebuild and program the board")


def _fmt(values):
    return "[" + " ".join(str(int(v)) for v in np.ravel(values)) + "]"


def _virtual_board(args):
    """``--sim``: the build directory's design in Verilator, and the model and board it was
    built for (``--model``/``--board`` may only repeat them)."""
    from sim.board import BoardDesign, BuildDirError, VerilatorBoard
    from sim.verilator import SimulatorError
    try:
        design, report, flash = BoardDesign.from_build_dir(args.sim)
    except BuildDirError as e:
        raise UsageError(f"--sim {e}") from None
    built = report["board"]["name"]
    if args.board not in (None, built):
        raise UsageError(f"--sim {args.sim} was built for --board {built}, not {args.board}")
    args.board = built
    model = report["model"]
    if args.model is None:
        args.model = model.get("path", model["file"])
    try:
        data = Path(args.model).read_bytes()
    except OSError as e:
        raise UsageError(f"{args.model}: cannot read the model the build used ({e.strerror or e}); give --model") from None
    if hashlib.sha256(data).hexdigest() != model["sha256"]:
        raise UsageError(f"{args.model} is not the model {args.sim} was built from ({model['file']}, "
                         f"sha256 {model['sha256'][:12]}...)")
    if not args.json:
        print(f"virtual board: {args.sim} ({design.target} design at {design.clock_hz / 1e6:.3f} MHz, "
              f"UART divisor {design.divisor}) in Verilator", flush=True)
    try:
        return VerilatorBoard.at_clock(design, flash)
    except SimulatorError as e:
        raise UsageError(f"--sim {args.sim}: {e}") from None


def _run(args, port):
    if args.port is None and args.sim is None and port is None:
        raise UsageError("give --port (the board's serial port, /dev/ttyUSB1 for the iCEBreaker) or --sim BUILD_DIR")
    if args.image is None and args.mnist_index is None and args.input is None:
        raise UsageError("nothing to run: give --image FILE, --mnist-index N or --input X.npy")
    if args.output is not None:
        if args.input is None:
            raise UsageError("--output needs --input")
        try:
            check_output(args.output, "--output")
        except OutputError as e:
            raise UsageError(str(e)) from None
    if args.baud <= 0:
        raise UsageError(f"--baud must be positive, got {args.baud}")
    virtual = _virtual_board(args) if args.sim is not None and port is None else None
    try:
        return _session(args, port or virtual)
    finally:
        if virtual is not None:
            virtual.close()


def _session(args, port):
    try:
        board = get_board(args.board or "icebreaker")
    except BoardError as e:
        raise UsageError(str(e)) from None
    model_path = Path(args.model or DEFAULT_MODEL)
    args.model = str(model_path)
    try:
        data = model_path.read_bytes()
    except OSError as e:
        raise UsageError(f"{model_path}: cannot read the model ({e.strerror or e})") from None
    model = parse_tflite(data, str(model_path))[0]
    program = compile_for(model, board.config)
    expected_id = model_id(data)

    label = None
    if args.input is not None:
        x = load_input(args.input, model)
        source = {"input": str(args.input), "count": len(x)}
    elif args.mnist_index is not None:
        if tuple(model.input_shape) != (28, 28, 1):
            raise UsageError(f"--mnist-index needs a 28x28x1 input, {model.name} takes {model.input_shape}")
        x, label = mnist_input(args.mnist_index, args.mnist_dir, qparams=model.input_q)
        source = {"mnist_index": args.mnist_index, "label": label}
    else:
        x = load_image(args.image, model.input_shape, model.input_q, invert=args.invert)
        source = {"image": str(args.image), "invert": args.invert}

    opened = port is None
    if opened:
        port = open_serial(args.port, args.baud, args.timeout)
    try:
        client = Client(port, timeout=args.timeout)
        info = client.info()
        _check_device(info, program, expected_id, model_path, board.name)
        send = args.weights_from_model or not info.weights_loaded
        if send:
            image = program.flash_image
            if not args.json:
                why = ("--weights-from-model" if info.weights_loaded
                       else f"the board has none usable: {WEIGHT_STATE_NAMES.get(info.weight_state, '?')}")
                print(f"sending {len(image)} weight bytes ({why}), about "
                      f"{len(image) * 10 / args.baud:.1f} s at {args.baud} baud", flush=True)
            client.load_weights(image)
        if args.input is not None:
            results = [client.infer(program.start_on_host(row[None])[0]) for row in x]
            return _report_batch(args, model, program, expected_id, source, send, results)
        result = client.infer(program.start_on_host(np.asarray(x)[None])[0])
    finally:
        if opened:
            port.close()

    finished, out_q = program.finish_on_host(np.asarray(result.output)[None])[0], program.model.output_q
    flat = finished.ravel()
    predicted = int(np.argmax(flat))
    real = (flat.astype(np.float64) - out_q.zero_point) * out_q.scale
    tail = [layer.name for layer in model.layers[[la.name for la in model.layers].index(program.output_name) + 1:]]
    report = {
        "model": str(model_path), "model_id": _hex(expected_id), "input": source,
        "weights_sent": bool(send),
        "accelerator_layer": program.output_name, "accelerator_output": [int(v) for v in result.output],
        "cycles": int(result.cycles),
        "host_layers": tail, "output": [int(v) for v in flat], "output_real": [round(float(v), 6) for v in real],
        "predicted": predicted,
        "label": label, "correct": None if label is None else predicted == label,
    }
    if args.json:
        print(json.dumps(report))
        return
    what = f"MNIST test image {args.mnist_index}" if label is not None else f"{args.image}"
    print(f"model {model.name} (id {_hex(expected_id)}), input {what}")
    print(f"accelerator output ({program.output_name}, int8): {_fmt(result.output)}")
    if tail:
        print(f"finished on the host ({', '.join(tail)}, int8): {_fmt(flat)}")
    kind = "probabilities" if isinstance(model.layers[-1], Softmax) else "output, dequantised"
    print(f"{kind}: [" + " ".join(f"{v:.3f}" for v in real) + "]")
    print(f"predicted class: {predicted}")
    print(f"cycles: {result.cycles}")
    if label is not None:
        print(f"label: {label}, " + ("correct" if predicted == label else f"WRONG (predicted {predicted})"))


def _report_batch(args, model, program, expected_id, source, send, results):
    """``--input``: the finished outputs of every row, written with ``--output``."""
    hw = np.stack([np.asarray(r.output) for r in results])
    y = program.finish_on_host(hw)
    if args.output:
        save_npy(args.output, y)
    cycles = sorted({int(r.cycles) for r in results})
    if args.json:
        print(json.dumps({"model": str(args.model), "model_id": _hex(expected_id), "input": source,
                          "weights_sent": bool(send), "cycles": cycles, "output_file": args.output,
                          "output": y.tolist()}))
        return
    print(f"model {model.name} (id {_hex(expected_id)}): {len(results)} inputs from {args.input} on the board, "
          f"{', '.join(map(str, cycles))} cycles each")
    if args.output:
        print(f"wrote {args.output}: {y.shape} {y.dtype}")


def main(argv=None, port=None):
    """Command line; ``port`` replaces opening ``--port`` (any object with pyserial's
    write/read/reset_input_buffer, e.g. a simulated board).  Returns the exit status."""
    try:
        _run(_parser().parse_args(argv), port)
    except (UsageError, InputFileError, ModelError, CompileError, InputError, ProtocolError, ValueError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:   # pyserial's SerialException on read/write is an OSError
        print(f"error: serial port: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
