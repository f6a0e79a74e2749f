"""The reliability table (docs/reliability.md): hostile frames, flash faults and bad inputs
against the board design and the command lines, and what happened.

    python bench/reliability.py [--cases 10000] [--seed 20261203] [--out docs/reliability.md]

Hostile frames and flash faults run on the board design in Verilator (sim/board.py, the
device of tests/test_board_fuzz.py); bad inputs run each command line as a subprocess and
record its exit status and how many lines it printed on stderr.  Any violation (a corrupt
reply, a wrong OK, an unhealthy device, a traceback) stops the run with the case named.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from golden.files import write_atomic  # noqa: E402
from host import wire  # noqa: E402
from host.client import Client, DeviceError  # noqa: E402
from sim.board import VerilatorBoard  # noqa: E402
from sim.fuzz import KINDS, flash_faults, fuzz, fuzz_device, png_header_only  # noqa: E402

KIND_TEXT = {
    "good": "an intact INFO, INFER, RELOAD or WEIGHTS frame",
    "garbage": "1 to 119 random bytes",
    "truncated": "an intact frame cut short",
    "flipped": "an intact frame with 1 to 3 bits flipped",
    "bad_length": "a frame whose length field is wrong for its command (header CRC right)",
    "unknown_command": "a frame with an unknown command byte (header CRC right)",
    "break": "part of a frame, then a break of 10 to 59 bit times",
    "bad_stop": "part of a frame, 1 to 3 bytes with a low stop bit, the rest",
    "back_to_back": "2 to 4 intact frames without waiting for replies",
    "command_shaped": "INFER, then at once an INFER whose input holds whole CRC-checked WEIGHTS headers",
    "weights_corrupt": "WEIGHTS with one bit flipped after the header",
    "weights_cut": "WEIGHTS cut short after its header",
    "weights_foreign": "WEIGHTS carrying an intact image of another model (random bytes, right length)",
}


def cli(*args):
    r = subprocess.run([sys.executable, "-m", *map(str, args)], capture_output=True, text=True, cwd=REPO)
    lines = r.stderr.strip().splitlines()
    if "Traceback" in r.stderr:
        raise SystemExit(f"bench/reliability: traceback from {' '.join(map(str, args))}:\n{r.stderr}")
    return r.returncode, len(lines), lines[-1] if lines else ""


def bad_inputs(tmp):
    (tmp / "file").write_text("x")
    np.save(tmp / "x.npy", np.zeros((1, 28, 28, 1), np.int8))
    np.save(tmp / "empty.npy", np.zeros((0, 28, 28, 1), np.int8))
    bomb = png_header_only(tmp / "bomb.png", 100_000, 100_000)
    x, f = tmp / "x.npy", tmp / "file"
    return [
        ("hdl.build --clock-mhz 0", ["hdl.build", "--clock-mhz", "0", "--verilog", tmp / "a.v"]),
        ("hdl.build --clock-mhz inf", ["hdl.build", "--clock-mhz", "inf", "--verilog", tmp / "a.v"]),
        ("hdl.build --clock-mhz 300 (above the iCE40 PLL)", ["hdl.build", "--clock-mhz", "300", "--verilog", tmp / "a.v"]),
        ("hdl.build --baud 0", ["hdl.build", "--baud", "0", "--verilog", tmp / "a.v"]),
        ("hdl.build --verilog DIRECTORY", ["hdl.build", "--verilog", tmp]),
        ("hdl.build --out under a file", ["hdl.build", "--out", f / "out"]),
        ("hdl.build --bogus", ["hdl.build", "--bogus"]),
        ("sim.run --count 0", ["sim.run", "--mnist", tmp, "--count", "0"]),
        ("sim.run --count -1", ["sim.run", "--mnist", tmp, "--count", "-1"]),
        ("sim.run on an empty input", ["sim.run", "--input", tmp / "empty.npy"]),
        ("sim.run --report under a file", ["sim.run", "--input", x, "--report", f / "r.json"]),
        ("golden.run --output under a file", ["golden.run", "--input", x, "--output", f / "y.npy"]),
        ("hdl.run --timeout inf", ["hdl.run", "--port", "loop://", "--mnist-index", "0", "--timeout", "inf"]),
        ("hdl.run on a 100,000 x 100,000 PNG header", ["hdl.run", "--port", "loop://", "--image", bomb]),
        ("hdl.run --sim on a directory that is no build", ["hdl.run", "--sim", tmp, "--mnist-index", "0"]),
        ("hdl.build --verify-netlist -1", ["hdl.build", "--verify-netlist", "-1"]),
        ("hdl.build --verify-netlist for an ECP5 board", ["hdl.build", "--board", "ulx3s-85f", "--verify-netlist", "2"]),
    ]


def table(rows, header):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=20261203)
    p.add_argument("--out", type=Path, help="write the markdown here (docs/reliability.md)")
    args = p.parse_args(argv)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        model, program, soc, port = fuzz_device(tmp / "tiny.tflite")
        with port:
            report = fuzz(port, model, program, soc, args.cases, args.seed,
                          progress=lambda n: print(f"  {n:,} cases", file=sys.stderr, flush=True))
        fuzz_s = time.monotonic() - t0
        faults = []
        for name, (flash, boot) in flash_faults(program).items():
            with VerilatorBoard(soc, flash, read_cycles=soc.boot_cycles + 4 * soc.timeout_cycles) as board:
                client = Client(board, retries=0)
                info = client.info()
                outcome = []
                for call, what in ((lambda: client.infer(np.zeros(model.input_shape, np.int8)), "INFER"),
                                   (client.reload, "RELOAD")):
                    try:
                        call()
                        outcome.append(f"{what} OK")
                    except DeviceError as e:
                        outcome.append(f"{what} {e.name}")
                client.load_weights(program.flash_image)
                healthy = client.info().weights_loaded
                faults.append((name, wire.WEIGHT_STATE_NAMES[info.weight_state], wire.BOOT_NAMES[info.boot],
                               ", ".join(outcome), "yes" if healthy else "NO"))
                if info.boot != boot or info.weights_loaded or not healthy:
                    raise SystemExit(f"bench/reliability: flash fault {name!r}: {info}")
        inputs = [(name, code, n, line.replace(str(tmp), "DIR"))
                  for name, args in bad_inputs(tmp) for code, n, line in [cli(*args)]]
        for name, code, n, line in inputs:
            if code != 2 or n != 1:
                raise SystemExit(f"bench/reliability: {name}: exit {code}, {n} lines on stderr")

    replies = ", ".join(f"{k} {v:,}" for k, v in report["replies"].items())
    text = f"""# Reliability: what was tried and what happened

Produced by `python bench/reliability.py --cases {args.cases} --seed {args.seed} --out docs/reliability.md`
({time.monotonic() - t0:.0f} s here, the hostile frames {fuzz_s:.0f} s). The device is the board
design (`hdl/board/soc.py`) for a small CONV_2D + DEPTHWISE_CONV_2D model in Verilator
(`sim/board.py`), UART at 4 clock cycles a bit, frame timeout 8 byte times; the rules of
docs/protocol.md apply. The default test suite runs the same {args.cases:,} cases
(`tests/test_board_fuzz.py`).

## Hostile frames ({report['cases']:,} seeded cases, {report['simulated_cycles']:,} simulated cycles)

After every case the device answered INFO with its identity (sizes, model id, program id,
weights CRC) and INFER bit-exact with golden; a case that left the weights `partial` (a
failed upload) was recovered with RELOAD, {report['reloads_after_failed_uploads']:,} times. No reply
failed its CRC, and every OK reply was the right answer to an intact frame that was sent.

{table([(k, KIND_TEXT[k], f"{report['kinds'].get(k, 0):,}") for k in KINDS], ["kind", "case", "cases"])}

Replies seen: {replies}.

## Flash faults (power-on boot)

{table(faults, ["flash holds", "weight state", "boot result", "then", "a good WEIGHTS upload restores it"])}

A model without weights (a pool only) boots and answers INFER bit-exact
(`tests/test_soc.py::test_a_model_without_weights_boots_and_runs`).

## Bad inputs on the command lines

Each exits with status 2 and one line on stderr, before any long work:

{table([(name, code, line) for name, code, n, line in inputs], ["input", "exit", "the line"])}

Crafted `.tflite` files (`tests/test_tflite_io.py`): tables aliasing one large vector are
refused at once (decoding has a budget of a few times the file), a shape whose element
count passes 2**31 - 1 is refused, a bias scale LiteRT's prepare refuses is refused, and a
multiplier needing a left shift past 30 (a tiny or subnormal output scale) is refused naming
the layer.
"""
    print(text)
    if args.out:
        write_atomic(args.out, text)
        print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
