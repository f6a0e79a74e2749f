"""Cycle-accurate simulation of the whole accelerator with Verilator and a C++ harness.

``build`` turns an Amaranth component (or its Verilog) into a simulator executable,
cached by content so that an unchanged design is compiled only once; ``run`` feeds it a
job (weights, a batch of inputs, the addresses to read back) and returns the outputs and
cycle counts.  The harness (``sim/harness.cpp``) drives the accelerator's host ports
exactly as a host would: weights through the load port one word per cycle, each input
through the activation-memory port one byte per cycle, a start pulse, clock until done,
then the outputs read back one byte per cycle.  With ``step_addrs`` each input runs layer
by layer (``step`` = 1 at every start) and those addresses are read after every layer.

Required top-level ports (names in the emitted Verilog; widths up to 64 bits, except the
weight load data, which may be wider; host data 8 bits): ``clk rst start step busy done
layer last cycles host_addr host_wdata host_we host_rdata wload_addr wload_data wload_we``.

Job file (little-endian), written by ``run``::

    "C2FJ" u32 version=1, u32 flags (bit 0 stepping), u32 n_weights, u32 n_inputs,
    u32 n_out, u32 n_step, u32 weight_bytes, u64 max_cycles (0 = no limit)
    u32 weight_addr[n_weights], n_weights words of weight_bytes bytes
    u32 out_addr[n_out], u32 step_addr[n_step]
    per input: u32 k, u32 addr[k], u8 data[k]

Result file, written by the harness::

    "C2FR" u32 version=1, u32 n_inputs, u32 n_out, u32 n_step, u32 0,
    u64 total_ticks, u64 load_ticks
    per input: u64 cycles, u64 ticks, u32 layer, u32 last, u32 n_steps, u32 0, u8 out[n_out],
               per step: u32 layer, u32 last, u64 cycles, u8 mem[n_step]
"""

import functools
import hashlib
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from amaranth.hdl import Value

from .tools import amaranth_verilog

__all__ = ["SimulatorError", "build", "run", "parse_ports", "REQUIRED_PORTS", "HARNESS"]

HARNESS = Path(__file__).with_name("harness.cpp")

#: Port name -> direction the harness expects.
REQUIRED_PORTS = {
    "clk": "input", "rst": "input", "start": "input", "step": "input",
    "busy": "output", "done": "output", "layer": "output", "last": "output",
    "cycles": "output",
    "host_addr": "input", "host_wdata": "input", "host_we": "input", "host_rdata": "output",
    "wload_addr": "input", "wload_data": "input", "wload_we": "input",
}

#: Verilator options; ``-O3`` and fast X handling for speed, no assertions.
VERILATOR_FLAGS = [
    "--cc", "--exe", "--build", "-O3", "--x-assign", "fast", "--x-initial", "fast",
    "--noassert", "-Wno-fatal", "-Wno-lint", "-Wno-style", "-j", "2",
]
#: C++ optimisation of the generated model (Verilator's default is -Os).
MAKE_FLAGS = "OPT_FAST=-O2 OPT_SLOW=-O1 OPT_GLOBAL=-O2"

VERILATOR_MISSING = "verilator not found: run `make setup` or apt-get install verilator"


class SimulatorError(RuntimeError):
    """Verilator missing, the build failed, or the simulation failed or timed out."""


def default_cache_dir():
    env = os.environ.get("CNN2FPGA_VERILATOR_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cnn2fpga" / "verilator"


@functools.lru_cache(maxsize=None)
def _verilator_version(exe):
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    except OSError as e:
        raise SimulatorError(f"{VERILATOR_MISSING} ({e})") from None
    return out.stdout.strip()


_PORT_RE = re.compile(
    r"^\s*(input|output|inout)\s+(?:wire\s+|reg\s+|logic\s+)?(?:signed\s+)?"
    r"(?:\[\s*(\d+)\s*:\s*(\d+)\s*\]\s*)?\\?([A-Za-z_][\w$]*)\s*[;,)]", re.M)


def parse_ports(verilog_text, top_name):
    """``{name: (direction, width)}`` of module ``top_name`` in ``verilog_text``."""
    m = re.search(rf"^\s*module\s+\\?{re.escape(top_name)}\b(.*?)^\s*endmodule", verilog_text,
                  re.M | re.S)
    if not m:
        raise SimulatorError(f"module {top_name!r} not found in the Verilog")
    ports = {}
    for direction, msb, lsb, name in _PORT_RE.findall(m.group(1)):
        width = abs(int(msb) - int(lsb)) + 1 if msb else 1
        ports[name] = (direction, width)
    return ports


def _check_ports(ports, top_name, required=REQUIRED_PORTS):
    missing = [p for p in required if p not in ports]
    if missing:
        raise SimulatorError(f"top {top_name!r} lacks ports the harness drives: {', '.join(missing)}")
    wrong = [p for p, d in required.items() if ports[p][0] != d]
    if wrong:
        raise SimulatorError(f"top {top_name!r}: wrong direction for {', '.join(wrong)}")
    if required is not REQUIRED_PORTS:
        return
    wide = [p for p in REQUIRED_PORTS if ports[p][1] > 64 and p != "wload_data"]
    if wide:
        raise SimulatorError(f"top {top_name!r}: ports wider than 64 bits not supported: {', '.join(wide)}")
    for p in ("host_wdata", "host_rdata"):
        if ports[p][1] > 8:
            raise SimulatorError(f"top {top_name!r}: {p} must be at most 8 bits")


def _verilog_of(design, top_name):
    if isinstance(design, str):
        return design
    return amaranth_verilog(design, top_name, ports=_harness_ports(design))


def _harness_ports(component):
    """The component's ports named as the harness drives them: a port group's members after
    its name and one underscore (the accelerator's ``host.addr`` is ``host_addr``), where
    Amaranth joins with two, which Verilator would mangle in the C++ names.  Directions are
    inferred (a port the design drives is an output)."""
    return {"_".join(map(str, path)): (Value.cast(value), None)
            for path, _, value in component.signature.flatten(component)}


def build(design, top_name, workdir=None, trace=False, *, extra_sources=(), defines=None,
          cache_dir=None, verbose=True, harness=HARNESS, required_ports=REQUIRED_PORTS):
    """Compile ``design`` (an Amaranth component or Verilog text) into a simulator.

    ``top_name`` names the top module (and the Verilated class ``V<top_name>``).  The
    executable is cached under ``cache_dir`` (default ``$CNN2FPGA_VERILATOR_CACHE`` or
    ``~/.cache/cnn2fpga/verilator``) by a hash of the Verilog, the harness, the flags and
    the Verilator version; a cache hit returns at once.  ``workdir``, if given, receives
    a copy of the Verilog and of the build log for inspection.  ``trace=True`` builds a
    (slower) simulator that can write a VCD (``run(..., vcd=path)``).  ``extra_sources``
    (paths) are more Verilog files, e.g. models of instantiated primitives (yosys'
    ice40 ``cells_sim.v`` needs ``defines={"NO_ICE40_DEFAULT_ASSIGNMENTS": 1}``);
    ``defines`` are Verilog preprocessor defines.  ``harness`` and ``required_ports`` pick
    another C++ harness and the ports it drives (the board's: ``sim/board_harness.cpp``).

    Returns the path of the executable; its directory also holds ``ports.json``,
    ``<top_name>.v`` and ``build.log``.
    """
    if not re.fullmatch(r"[A-Za-z_]\w*", top_name):
        raise SimulatorError(f"top name {top_name!r} is not a plain identifier")
    verilator = shutil.which("verilator")
    if verilator is None:
        raise SimulatorError(VERILATOR_MISSING)
    text = _verilog_of(design, top_name)
    ports = parse_ports(text, top_name)
    _check_ports(ports, top_name, required_ports)

    prefix = f"V{top_name}"
    flags = VERILATOR_FLAGS + ["--top-module", top_name, "--prefix", prefix,
                               "-CFLAGS", f"-DC2F_TOP={prefix}", "-MAKEFLAGS", MAKE_FLAGS]
    if trace:
        flags += ["--trace", "-CFLAGS", "-DC2F_TRACE"]
    if "flash_wait" in ports:
        flags += ["-CFLAGS", "-DC2F_FLASH"]          # a core whose weights stream: the harness runs the flash
    if "flash_dq_o" in ports:
        flags += ["-CFLAGS", "-DC2F_QUAD"]           # a board whose weights stream: the flash's four lines
    flags += [f"-D{k}={v}" for k, v in sorted((defines or {}).items())]
    extra = [(f"extra{i}_{Path(p).name}", Path(p).read_text()) for i, p in enumerate(extra_sources)]
    harness = Path(harness)
    headers = [(h.name, h.read_text()) for h in sorted(harness.parent.glob("*.h"))]   # the harnesses' includes
    key = hashlib.sha256(json.dumps(
        [text, harness.read_text(), headers, flags, extra, _verilator_version(verilator),
         top_name]).encode()).hexdigest()[:20]

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = cache / key
    exe = final / "sim"
    if workdir is not None:
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / f"{top_name}.v").write_text(text)
    if exe.exists():
        if workdir is not None and (final / "build.log").exists():
            shutil.copyfile(final / "build.log", workdir / f"{top_name}.build.log")
        return exe

    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{key}.tmp.", dir=cache))
    try:
        (tmp / f"{top_name}.v").write_text(text)
        shutil.copyfile(harness, tmp / "harness.cpp")
        for name, src in headers:
            (tmp / name).write_text(src)
        for name, src in extra:
            (tmp / name).write_text(src)
        cmd = [verilator, *flags, "--Mdir", "obj", "-o", "sim", f"{top_name}.v",
               *[name for name, _ in extra], "harness.cpp"]
        if verbose:
            print(f"compiling simulator (about a minute) ... [{top_name}{', trace' if trace else ''}]",
                  file=sys.stderr, flush=True)
        t0 = time.monotonic()
        with open(tmp / "build.log", "w") as log:
            log.write(" ".join(cmd) + "\n")
            log.flush()
            rc = subprocess.run(cmd, cwd=tmp, stdout=log, stderr=subprocess.STDOUT).returncode
        if workdir is not None:
            shutil.copyfile(tmp / "build.log", workdir / f"{top_name}.build.log")
        if rc != 0 or not (tmp / "obj" / "sim").exists():
            tail = "\n".join((tmp / "build.log").read_text(errors="replace").splitlines()[-15:])
            raise SimulatorError(f"verilator build of {top_name!r} failed (exit {rc}); last lines of "
                                 f"the log:\n{tail}")
        shutil.move(str(tmp / "obj" / "sim"), tmp / "sim")
        shutil.rmtree(tmp / "obj")
        (tmp / "ports.json").write_text(json.dumps(
            {"top": top_name, "trace": trace, "build_seconds": round(time.monotonic() - t0, 1),
             "ports": {k: list(v) for k, v in ports.items()}}, indent=1))
        try:
            os.rename(tmp, final)
        except OSError:                 # another process finished the same build first
            if not exe.exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return exe


def _ports_of(exe):
    p = Path(exe).with_name("ports.json")
    return json.loads(p.read_text())["ports"] if p.exists() else None


def _u32(a, what, width=32):
    a = np.asarray(a)
    if a.size and (a.min() < 0 or a.max() >= 1 << width):
        raise SimulatorError(f"{what} out of range for a {width}-bit port")
    return a.astype("<u4").reshape(-1)


def _input_blocks(inputs_writes, input_addrs, addr_bits):
    """The per-input part of the job file, and the number of inputs."""
    if input_addrs is not None:
        addrs = _u32(input_addrs, "input address", addr_bits)
        data = np.asarray(inputs_writes)
        if data.ndim == 1:
            data = data[None]
        if data.ndim != 2 or data.shape[1] != addrs.size:
            raise SimulatorError(f"inputs must be (N, {addrs.size}) bytes with input_addrs")
        n, k = data.shape
        head = np.concatenate([np.array([k], "<u4"), addrs]).view(np.uint8)
        block = np.empty((n, head.size + k), np.uint8)
        block[:, :head.size] = head
        block[:, head.size:] = data.astype(np.int64) & 0xFF
        return block.tobytes(), n
    parts = []
    for w in inputs_writes:
        w = np.asarray(w, dtype=np.int64).reshape(-1, 2)
        parts += [np.array([len(w)], "<u4").tobytes(), _u32(w[:, 0], "input address", addr_bits).tobytes(),
                  (w[:, 1] & 0xFF).astype(np.uint8).tobytes()]
    return b"".join(parts), len(inputs_writes)


def write_job(path, weights_words, inputs_writes, output_addrs, step_addrs=None, *,
              weight_addrs=None, input_addrs=None, max_cycles=0, ports=None):
    """Write a job file for the harness (see the module docstring); returns the input count."""
    width = lambda p, d: ports[p][1] if ports else d
    weight_bytes = (width("wload_data", 32) + 7) // 8
    mask = (1 << 8 * weight_bytes) - 1
    words = [int(w) & mask for w in np.asarray(weights_words, dtype=object).reshape(-1)]
    wbytes = b"".join(w.to_bytes(weight_bytes, "little") for w in words)
    if weight_addrs is None:
        weight_addrs = np.arange(len(words))
    waddr = _u32(weight_addrs, "weight address", width("wload_addr", 32))
    if waddr.size != len(words):
        raise SimulatorError("weight_addrs and weights_words differ in length")
    addr_bits = width("host_addr", 32)
    out = _u32(output_addrs, "output address", addr_bits)
    step = _u32([] if step_addrs is None else step_addrs, "step address", addr_bits)
    inputs, n = _input_blocks(inputs_writes, input_addrs, addr_bits)
    header = b"C2FJ" + np.array([1, int(step_addrs is not None), len(words), n, out.size, step.size,
                                 weight_bytes], "<u4").tobytes() + np.array([max_cycles], "<u8").tobytes()
    with open(path, "wb") as f:
        for part in (header, waddr.tobytes(), wbytes, out.tobytes(), step.tobytes(), inputs):
            f.write(part)
    return n


_REC = [("cycles", "<u8"), ("ticks", "<u8"), ("layer", "<u4"), ("last", "<u4"),
        ("n_steps", "<u4"), ("flash_wait", "<u4")]


def read_result(path):
    """Parse a harness result file into the dict ``run`` returns (without timing)."""
    buf = Path(path).read_bytes()
    if buf[:4] != b"C2FR":
        raise SimulatorError("bad result file")
    _, n, n_out, n_step, _ = np.frombuffer(buf, "<u4", 5, 4)
    total, load = np.frombuffer(buf, "<u8", 2, 24)
    n, n_out, n_step = int(n), int(n_out), int(n_step)
    rec = np.dtype(_REC + [("out", np.uint8, (n_out,))])
    pos = 40
    step_rec = np.dtype([("layer", "<u4"), ("last", "<u4"), ("cycles", "<u8"), ("mem", np.uint8, (n_step,))])
    head = np.frombuffer(buf, rec, 1, pos) if n else None
    if n == 0 or head["n_steps"][0] == 0:          # fixed-size records: one frombuffer
        recs = np.frombuffer(buf, rec, n, pos)
        steps = None
    else:
        rows, steps = [], []
        for _ in range(n):
            r = np.frombuffer(buf, rec, 1, pos)
            pos += rec.itemsize
            s = np.frombuffer(buf, step_rec, int(r["n_steps"][0]), pos)
            pos += s.nbytes
            rows.append(r)
            steps.append({"layer": s["layer"].astype(np.int64), "last": s["last"].astype(bool),
                          "cycles": s["cycles"].astype(np.int64), "mem": s["mem"].copy()})
        recs = np.concatenate(rows)
    return {
        "outputs": recs["out"].reshape(n, n_out).copy(),
        "cycles": recs["cycles"].astype(np.int64),
        "ticks": recs["ticks"].astype(np.int64),
        "layer": recs["layer"].astype(np.int64),
        "last": recs["last"].astype(bool),
        "flash_wait": recs["flash_wait"].astype(np.int64),
        "steps": steps,
        "sim_ticks": int(total),
        "load_ticks": int(load),
    }


def _split(inputs_writes, input_addrs, parts):
    """Split the inputs into at most ``parts`` contiguous chunks."""
    if input_addrs is not None:
        seq = np.asarray(inputs_writes)
        if seq.ndim == 1:
            seq = seq[None]
    else:
        seq = list(inputs_writes)
    bounds = np.linspace(0, len(seq), max(1, min(parts, len(seq))) + 1).astype(int)
    return [seq[a:b] for a, b in zip(bounds, bounds[1:])]


def _merge(results):
    if len(results) == 1:
        return results[0]
    out = {k: np.concatenate([r[k] for r in results])
           for k in ("outputs", "cycles", "ticks", "layer", "last", "flash_wait")}
    out["steps"] = None if results[0]["steps"] is None else [s for r in results for s in r["steps"]]
    out["sim_ticks"] = sum(r["sim_ticks"] for r in results)
    out["load_ticks"] = results[0]["load_ticks"]
    return out


def run(exe, weights_words, inputs_writes, output_addrs, step_addrs=None, vcd=None, *,
        weight_addrs=None, input_addrs=None, max_cycles=50_000_000, progress=None, jobs=1,
        workdir=None, flash_image=None):
    """Run a batch of inputs through a simulator from ``build``.

    ``weights_words``: the weight-load words (ints of the ``wload_data`` width, negative
    values taken two's complement), written to ``weight_addrs`` (default 0, 1, 2, ...)
    once after reset.  ``inputs_writes``: one entry per input, each a sequence of
    ``(host_addr, byte)`` pairs; or, with ``input_addrs`` (k addresses), an (N, k) array
    of bytes.  ``output_addrs``: host addresses read after each input's run.
    ``step_addrs``: run layer by layer and read these addresses after every layer.
    ``vcd``: write a VCD of reset, weight load and the first input (needs ``trace=True``
    at build).  ``max_cycles``: per start..done, beyond it the run fails (a hang).
    ``progress(done, total)`` is called a few times a second (from this thread).
    ``jobs``: simulator processes run in parallel on contiguous chunks of the inputs, each
    from reset with its own weight load (so only for designs whose result does not depend
    on earlier inputs).  ``workdir`` keeps the job and result files (default: a temporary
    directory, removed afterwards).  ``flash_image``: bytes of the flash (from address 0) for a
    design whose weights stream.

    Returns ``dict(outputs=(N, n_out) uint8, cycles=(N,) the cycles port at the final
    done, ticks=(N,) clock ticks from start to done, layer=(N,), last=(N,) bool,
    steps=None or per input dict(layer, last, cycles, mem=(n_layers, n_step) uint8),
    flash_wait=(N,) the flash_wait port at the final done (0 without one),
    sim_ticks (all processes), load_ticks (reset + weight load of one process), seconds
    (wall), ticks_per_second)``.  Raises :class:`SimulatorError` on a failure or a hang.
    """
    exe = Path(exe)
    ports = _ports_of(exe)
    own_tmp = workdir is None
    tmp = Path(tempfile.mkdtemp(prefix="c2f-sim-")) if own_tmp else Path(workdir)
    tmp.mkdir(parents=True, exist_ok=True)
    procs = []
    try:
        chunks = _split(inputs_writes, input_addrs, max(1, int(jobs)))
        if flash_image is not None:
            (tmp / "flash.bin").write_bytes(bytes(flash_image))
        sizes, first = [], 0
        for c, chunk in enumerate(chunks):
            job, res, err = tmp / f"job{c}.bin", tmp / f"result{c}.bin", tmp / f"stderr{c}.txt"
            n = write_job(job, weights_words, chunk, output_addrs, step_addrs,
                          weight_addrs=weight_addrs, input_addrs=input_addrs,
                          max_cycles=max_cycles, ports=ports)
            cmd = [str(exe), str(job), str(res), "--first", str(first)]
            if vcd is not None and c == 0:
                cmd += ["--vcd", str(vcd)]
            if flash_image is not None:
                cmd += ["--flash", str(tmp / "flash.bin")]
            sizes.append(n)
            first += n
            with open(err, "w") as ferr:
                procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=ferr, text=True))
        total = first
        t0 = time.monotonic()
        events = queue.Queue()

        def reader(c, proc):
            for line in proc.stdout:
                if line.startswith("@progress"):
                    events.put((c, int(line.split()[1])))
            events.put((c, None))

        threads = [threading.Thread(target=reader, args=(c, p), daemon=True) for c, p in enumerate(procs)]
        for t in threads:
            t.start()
        done, running = [0] * len(procs), len(procs)
        while running:
            c, count = events.get()
            if count is None:
                running -= 1
                rc = procs[c].wait()
                if rc != 0:
                    msg = (tmp / f"stderr{c}.txt").read_text(errors="replace").strip().splitlines()
                    raise SimulatorError(f"simulator failed (exit {rc}): " + ("; ".join(msg[-5:]) or "no message"))
                continue
            done[c] = count
            if progress is not None:
                progress(sum(done), total)
        seconds = time.monotonic() - t0
        results = [read_result(tmp / f"result{c}.bin") for c in range(len(procs))]
        assert [r["outputs"].shape[0] for r in results] == sizes
        out = _merge(results)
        out["seconds"] = seconds
        out["ticks_per_second"] = out["sim_ticks"] / seconds if seconds > 0 else float("inf")
        return out
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if own_tmp:
            shutil.rmtree(tmp, ignore_errors=True)
