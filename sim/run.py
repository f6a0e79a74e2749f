"""Run int8 inputs through the generated accelerator, cycle by cycle, like ``golden.run``.

    python -m sim.run --model M.tflite --input X.npy --output Y.npy [--report R.json] [--check]
    python -m sim.run --mnist [DIR] [--count N] [--check]

The default engine is Verilator on the emitted Verilog (a C++ harness of our own, built
once and cached); ``--engine amaranth`` uses the Amaranth simulator (slow, no tools
needed).  Ops at the model's tail that the hardware does not run (SOFTMAX) are finished
on the host by the golden model; the report says which.  ``--check`` compares every
output with the golden model and stops at the first mismatch, naming the first layer whose
hardware output differs.
"""

import json
import sys
import time

import numpy as np

from boards import BOARDS, ICEBREAKER, BoardError, compile_for, get_board
from compiler.program import CompileError
from golden.files import OneLineParser, OutputError, check_output, one_line, save_npy, write_atomic
from golden.mnist import DEFAULT_DIR
from golden.model import ModelError
from golden.ops import run_model
from golden.run import DEFAULT_MODEL, UsageError, load_input, mnist_set
from golden.tflite_io import load_tflite

from hdl.core.accelerator import Accelerator

from . import pysim, verilator
from .verilator import SimulatorError


class Mismatch(Exception):
    pass


def sim_config(config=ICEBREAKER):
    """The configuration simulated: the board's, with behavioural DSPs and memories."""
    return config.with_(target="generic")


class Engine:
    """Builds the simulator once and runs batches through it."""

    def __init__(self, program, engine="verilator", jobs=2, vcd=None, log=print):
        self.program, self.engine, self.jobs, self.vcd, self.log = program, engine, jobs, vcd, log
        self.exe = None
        if engine == "verilator":
            self.exe = verilator.build(Accelerator(program), "accelerator", trace=vcd is not None)

    def run(self, x, progress=None, step_addrs=None):
        p = self.program
        if self.engine == "amaranth":
            if step_addrs is not None:
                raise UsageError("per-layer stepping needs the verilator engine")
            waits = []
            out, cycles = pysim.run(p, x, vcd=self.vcd, waits=waits)
            return {"outputs": out, "cycles": cycles, "flash_wait": np.array(waits or [0] * len(x))}
        r = verilator.run(self.exe, pysim.weight_words(p), [pysim.input_writes(p, row) for row in x],
                          pysim.output_addresses(p), step_addrs=step_addrs, vcd=self.vcd,
                          progress=progress, jobs=1 if step_addrs is not None else self.jobs,
                          flash_image=p.stream_image if p.config.streams else None)
        r["outputs"] = r["outputs"].astype(np.int8)
        return r

    def layer_cycles(self, x_one):
        """Cycles of each hardware layer (data-independent), by stepping one input."""
        if self.engine != "verilator":
            return None
        total = [int(c) for c in self.run(x_one[None], step_addrs=[0])["steps"][0]["cycles"]]
        return {d.name: c - prev for d, c, prev in zip(self.program.layers, total, [0] + total[:-1])}

    def first_bad_layer(self, x_one):
        """Name of the first layer whose hardware output differs from golden, or None."""
        p = self.program
        addrs = [pysim.map_addresses(p.config, d.out_shape, d.out_base, d.out_stride) for d in p.layers]
        flat = sorted({a for layer in addrs for a in layer})
        index = {a: i for i, a in enumerate(flat)}
        mem = self.run(p.start_on_host(x_one[None]), step_addrs=flat)["steps"][0]["mem"]
        _, golden_layers = run_model(p.model, x_one[None], intermediates=True)
        for d, layer_addrs, layer_mem in zip(p.layers, addrs, mem):
            got = layer_mem[[index[a] for a in layer_addrs]].astype(np.int8)
            if not np.array_equal(got, golden_layers[d.name].reshape(-1)):
                return d.name
        return None


def open_engine(program, engine="verilator", jobs=2, vcd=None, log=print):
    """An Engine; Verilator unavailable or unable to build the design falls back to the
    Amaranth simulator, slower but needing nothing, with a note."""
    try:
        return Engine(program, engine, jobs, vcd, log)
    except SimulatorError as e:
        if engine != "verilator":
            raise
        log(f"note: {e}; running the Amaranth simulator instead", file=sys.stderr)
        return Engine(program, "amaranth", jobs, vcd, log)


def simulate(model, x, engine="verilator", jobs=2, check=False, vcd=None, config=ICEBREAKER, log=print):
    """Run a batch through the hardware; returns (outputs, report)."""
    program = compile_for(model, sim_config(config))
    t0 = time.perf_counter()
    eng = open_engine(program, engine, jobs, vcd, log)
    engine = eng.engine
    build_s = time.perf_counter() - t0
    last = [0.0]

    def progress(done, total):
        now = time.perf_counter()
        if now - last[0] > 2 or done == total:
            last[0] = now
            log(f"  simulated {done}/{total} inputs", file=sys.stderr)

    t1 = time.perf_counter()
    hw = program.start_on_host(x)
    r = eng.run(hw, progress=progress)
    sim_s = time.perf_counter() - t1
    y = program.finish_on_host(r["outputs"])
    cycles = int(r["cycles"][0])
    lanes = program.config.lanes
    report = {
        "model": model.name, "engine": engine, "inputs": int(len(x)),
        "cycles_per_inference": cycles,
        "cycles_per_layer": eng.layer_cycles(hw[0]),
        "macs": int(model.macs), "lanes": lanes,
        "utilisation": round(model.macs / (cycles * lanes), 4),
        "host_ops": [layer.op for layer in program.host_tail],
        **({"flash": {"cycles_waiting": int(r["flash_wait"][0]), "cycles_computing": cycles - int(r["flash_wait"][0]),
                      "streamed_bytes": int(program.stream.size), "flash_lines": program.config.flash_lines,
                      "sck": "clock / 2"}} if program.config.streams else {}),
        "memory_map": program.memory_map,
        "inferences_per_second_simulated": round(len(x) / sim_s, 2),
        "simulator_build_seconds": round(build_s, 2),
    }
    if check:
        want = run_model(model, x)
        for i in range(len(x)):
            if not np.array_equal(y[i], want[i]):
                bad = eng.first_bad_layer(x[i]) if engine == "verilator" else None
                where = f", first differing layer: {bad}" if bad else ""
                raise Mismatch(f"input {i}: hardware output differs from golden{where}")
        report["checked"] = "all outputs equal golden"
    return y, report


def main(argv=None):
    p = OneLineParser(prog="python -m sim.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    p.add_argument("--input", help=".npy of shape (N, *input shape) in the model's input type")
    p.add_argument("--output", help="where to write the model's output for every input (.npy)")
    p.add_argument("--mnist", metavar="DIR", nargs="?", const=str(DEFAULT_DIR),
                   help="run the t10k images in DIR and print the hardware's accuracy")
    p.add_argument("--count", type=int, help="with --mnist: only the first N test images")
    p.add_argument("--report", help="write cycles, utilisation and speed to this JSON file")
    p.add_argument("--check", action="store_true", help="compare every output with the golden model")
    p.add_argument("--engine", choices=("verilator", "amaranth"), default="verilator")
    p.add_argument("--board", default="icebreaker",
                   help=f"simulate the accelerator as configured for this board ({', '.join(BOARDS)}; default icebreaker)")
    p.add_argument("--jobs", type=int, default=2, help="simulator processes (verilator)")
    p.add_argument("--vcd", help="write a waveform of the first input")
    args = p.parse_args(argv)
    try:
        if args.input is None and args.mnist is None:
            raise UsageError("nothing to do: give --input X.npy or --mnist DIR")
        if args.input is not None and args.count is not None:
            raise UsageError("--count applies to --mnist only; --input runs every input in the file")
        for option, path in (("--output", args.output), ("--report", args.report), ("--vcd", args.vcd)):
            if path is not None:
                check_output(path, option)
        model = load_tflite(args.model)
        labels = None
        if args.input is not None:
            x = load_input(args.input, model)
        else:
            x, labels = mnist_set(model, args.mnist, args.count)
        try:
            config = get_board(args.board).config
        except BoardError as e:
            raise UsageError(str(e)) from None
        y, report = simulate(model, x, args.engine, args.jobs, args.check, args.vcd, config=config)
        if labels is not None:
            acc = float((y.reshape(len(y), -1).argmax(1) == labels).mean())
            report["accuracy"] = acc
            print(f"hardware accuracy {acc * 100:.2f} % on {len(labels)} MNIST test images")
        if args.output:
            save_npy(args.output, y)
            print(f"wrote {args.output}: {y.shape} int8")
        if args.report:
            write_atomic(args.report, json.dumps(report, indent=2) + "\n")
        print(f"{report['cycles_per_inference']} cycles per inference, utilisation "
              f"{report['utilisation'] * 100:.1f} % of {report['lanes']} lanes, "
              f"{report['inferences_per_second_simulated']} inferences/s simulated"
              + (", all outputs equal golden" if args.check else ""))
        if "flash" in report:
            f = report["flash"]
            print(f"weights streamed from flash: {f['streamed_bytes']} B on {f['flash_lines']} lines at SCK = "
                  f"{f['sck']}; {f['cycles_waiting']} of the cycles waiting for them")
    except Mismatch as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (ModelError, CompileError, UsageError, FileNotFoundError, SimulatorError, OutputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
