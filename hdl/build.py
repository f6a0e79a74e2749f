"""From a .tflite model to a board-ready image in one step.

    python -m hdl.build --board icebreaker [--model M.tflite] [--clock-mhz F] [--out DIR]
    python -m hdl.build --board icebreaker --verilog FILE.v
    python -m hdl.build --list-boards

Writes to DIR (default ``build/<board>``): ``top.bin`` (the bitstream), ``flash.bin`` (the
bitstream and the weight image at the board's weight offset, docs/protocol.md),
``weights.bin``, ``soc.v`` (the board design the bitstream was made from, with its
primitives, for ``python -m hdl.run --sim DIR``), ``report.json`` and ``report.md`` (resources used of available, nextpnr
Fmax against the clock, cycles per inference from a cycle-accurate simulation of the
generated core, inferences per second at the achieved clock, the memory map).  The
outputs appear only when the build succeeded; the tools' files stay in ``DIR/work``.

``--verify-netlist N`` (iCE40) also simulates the netlist yosys synthesised, with yosys'
cell models (sim/netlist.py), on N inputs before writing anything: outputs equal to golden
and cycles equal to the RTL's, or the build fails.

Exit status: 0 built; 1 the design does not fit or misses timing (the report says by how
much); 2 bad input (model, options, missing tools), with one line on stderr.
"""

import hashlib
import io
import json
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from boards import BOARDS, BoardError, compile_for, get_board
from compiler.program import CompileError, compile_model
from golden.files import OneLineParser, OutputError, check_output_dir, one_line, write_atomic
from golden.model import ModelError
from golden.run import DEFAULT_MODEL
from golden.tflite_io import load_tflite
from host import wire
from sim.board import SOC_VERILOG, TOP

from .board.pll import PllError, pll_settings
from .toolchain import (
    BITSTREAM,
    PLACED,
    PLAN_FILES,
    ToolError,
    find_tools,
    fmax_mhz,
    pack,
    place_and_route,
    yosys,
)

REPO = Path(__file__).resolve().parent.parent


class BuildError(Exception):
    """Bad input: exit 2 with the one-line message (as for a missing or failing tool, ToolError)."""


class BuildFailed(Exception):
    """The design does not fit or misses timing: exit 1, report written."""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def load_program(model_path, config):
    path = Path(model_path)
    if not path.is_file():
        raise BuildError(f"{path}: model file not found")
    try:
        model = load_tflite(str(path))
        program = compile_for(model, config)
    except (ModelError, CompileError) as e:
        raise BuildError(str(e)) from None
    return program, path.read_bytes()


def make_soc(program, tflite_bytes, f_clk_hz, baud, weights_offset=wire.WEIGHTS_OFFSET):
    from .board.soc import Soc
    from .board.uart import divisor_for
    try:
        divisor = divisor_for(f_clk_hz, baud)
    except ValueError as e:
        raise BuildError(str(e)) from None
    return Soc(program, model_id=wire.model_id(tflite_bytes), divisor=divisor,
               timeout_cycles=round(wire.FRAME_TIMEOUT_S * f_clk_hz),
               sck_half=max(1, -(-int(f_clk_hz) // 40_000_000)),      # SCK <= 20 MHz
               wake_cycles=-(-int(f_clk_hz * 3e-6) // 1) + 8, weights_offset=weights_offset)


def write_verilog(program, tflite_bytes, path, board, clock_mhz, baud):
    """The board's SoC with portable primitives (inferred multipliers and memories, no PLL):
    one self-contained Verilog file, memory contents inline."""
    from sim.tools import amaranth_verilog
    soc = make_soc(program, tflite_bytes, clock_mhz * 1e6, baud, board.weights_offset)
    text = amaranth_verilog(soc, TOP)
    write_atomic(path, text)
    return soc


def write_virtual_board(out, soc, clock_hz):
    """``out/soc.v``: the Soc the bitstream was made from, with its primitives, for
    ``python -m hdl.run --sim`` (sim.board.BoardDesign); returns the report's section that
    describes it."""
    from sim.tools import amaranth_verilog
    write_atomic(Path(out) / SOC_VERILOG, amaranth_verilog(soc, TOP))
    return {"verilog": SOC_VERILOG, "target": soc.program.config.target, "clock_hz": clock_hz,
            "divisor": soc.divisor, "timeout_cycles": soc.timeout_cycles, "boot_cycles": soc.boot_cycles,
            "weights_offset": soc.weights_offset}


def verify_netlist(workdir, board, soc, program, clock_hz, tools, n, cycles):
    """The gate-level check (sim/netlist.py): the netlist synthesised in ``workdir`` on the
    virtual board, ``n`` inputs against golden, and its cycles against the RTL's
    (``cycles``, when measured).  Returns (figures for the report, the problem or None)."""
    from sim.netlist import NetlistError, check, netlist_design
    from sim.verilator import SimulatorError
    log(f"      gate-level check: the synthesised netlist with yosys' iCE40 cell models, {n} inputs")
    try:
        result = check(netlist_design(workdir, board, soc, clock_hz, tools), program, n, log)
    except SimulatorError as e:
        raise BuildError(f"--verify-netlist: {one_line(e)}") from None
    except NetlistError as e:
        return {"inputs": n, "bit_exact": False, "problem": str(e)}, f"gate-level check: {e}"
    log(f"      gate-level check took {result['seconds']:.0f} s (simulator build {result['simulator_build_seconds']:.0f} s,"
        f" {result.get('seconds_per_input', 0):.0f} s an input)")
    if not result["bit_exact"]:
        what = result.get("problem") or f"outputs differ from golden on inputs {result['differing_inputs']}"
        return result, f"the synthesised netlist fails the gate-level check: {what}"
    if cycles is not None and result["cycles"] != [cycles]:
        return result, (f"the synthesised netlist takes {result['cycles']} cycles, the RTL {cycles}: "
                        "gate-level check failed")
    return result, None


def synthesise(workdir, board, tools, seed, clock_mhz):
    """yosys, then nextpnr for the board's device in ``workdir``; nextpnr's report as a dict."""
    t = time.monotonic()
    log("[3/5] synthesis (yosys)")
    yosys(tools, workdir, ["top.ys"])
    log(f"      done ({time.monotonic() - t:.0f} s)")
    return place(workdir, board, tools, seed, clock_mhz)


def place(workdir, board, tools, seed, clock_mhz):
    """nextpnr on the synthesised netlist in ``workdir``; its report as a dict."""
    t = time.monotonic()
    log(f"[4/5] place and route (nextpnr, seed {seed})")
    # --freq times the PLL's output: the platform's constraint names a net yosys renames.
    report = place_and_route(tools, board, workdir, seed, clock_mhz, options=PLAN_FILES[board.family],
                             outputs=["--log", "top.tim"], log=log)
    log(f"      done ({time.monotonic() - t:.0f} s)")
    return report


def flash_image(bitstream, weights, board, program_id):
    """The bitstream at 0 and the weight header (with the program's id and the image's
    CRC-32) and image at the board's weight offset, gaps 0xFF like erased flash."""
    if len(bitstream) > board.weights_offset:
        raise BuildError(f"bitstream ({len(bitstream)} B) overlaps the weight region at {board.weights_offset:#x}")
    region = wire.flash_weights_region(weights, program_id)
    if board.weights_offset + len(region) > board.flash_bytes:
        raise BuildError(f"weights ({len(weights)} B) do not fit the {board.flash_bytes >> 20} MiB flash")
    return bitstream + b"\xff" * (board.weights_offset - len(bitstream)) + region


def measure_cycles(program, log=log):
    """Cycles per inference of the generated core, and per layer, from one cycle-accurate
    inference (they do not depend on the data); checked bit-exact against golden on the way."""
    from golden.generate import random_inputs
    from golden.ops import run_model
    from sim.run import open_engine, sim_config
    sim_program = compile_model(program.model, sim_config(program.config))
    x = random_inputs(np.random.default_rng(0), program.model, 1)
    hw = sim_program.start_on_host(x)
    eng = open_engine(sim_program, jobs=1, log=lambda msg, **_: log(f"      {msg}"))
    r = eng.run(hw)
    y = sim_program.finish_on_host(r["outputs"])
    exact = bool(np.array_equal(y, run_model(program.model, x)))
    perf = {"cycles_per_inference": int(r["cycles"][0]), "cycles_per_layer": eng.layer_cycles(hw[0]),
            "bit_exact_vs_golden": exact, "engine": eng.engine}
    if program.config.streams:
        perf["cycles_waiting_for_flash"] = int(r["flash_wait"][0])
    return perf


def layer_plot(perf, title):
    """PNG bytes of a bar chart of the cycles each layer takes, or None without matplotlib
    (an optional extra: pip install -e '.[plot]')."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        from matplotlib import pyplot as plt
    except ImportError:
        return None
    layers = perf["cycles_per_layer"]
    names, counts = list(layers)[::-1], list(layers.values())[::-1]
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.35 * len(names)))
    bars = ax.barh([n if len(n) <= 40 else "..." + n[-37:] for n in names], counts, color="#4477aa")
    total = sum(counts)
    for bar, c in zip(bars, counts):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {c:,} ({100 * c / total:.1f} %)",
                va="center", fontsize=8)
    ax.set_xlabel("cycles per inference")
    ax.set_xlim(0, max(counts) * 1.35)
    ax.set_title(f"{title}: {perf['cycles_per_inference']:,} cycles", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def render_md(r):
    lines = [f"# {r['board']['title']}: {r['model']['file']}", "",
             f"Status: **{r['status']}**{(' - ' + r['problem']) if r.get('problem') else ''}", "",
             "| resource | used | available |", "|---|---|---|"]
    for name, u in r["utilisation"].items():
        lines.append(f"| {name} | {u['used']} | {u['available']} |")
    t = r["timing"]
    lines += ["", f"Clock: requested {t['requested_mhz']} MHz, PLL {t['clock_mhz']} MHz; nextpnr Fmax "
              f"{t['fmax_mhz']} MHz (seed {t['seed']}).", ""]
    if len(t["attempts"]) > 1:
        tried = "; ".join(f"{a['clock_mhz']} MHz seed {a['seed']} -> Fmax {a['fmax_mhz']} MHz" for a in t["attempts"])
        lines += [f"The build chose the clock and seed: place and route at {tried}.", ""]
    p = r["performance"]
    if p.get("cycles_per_inference"):
        lines += [f"Cycles per inference: {p['cycles_per_inference']:,} (cycle-accurate simulation, {p['engine']}, "
                  f"bit-exact vs golden: {p['bit_exact_vs_golden']}); "
                  f"{p['inferences_per_second']} inferences/s at {t['clock_mhz']} MHz, compute only.", ""]
        if p.get("cycles_per_layer"):
            lines += ["| layer (hardware step) | cycles |", "|---|---|"]
            lines += [f"| {name} | {c:,} |" for name, c in p["cycles_per_layer"].items()] + [""]
    nl = r.get("netlist_check")
    if nl:
        verdict = "bit-exact with golden" if nl["bit_exact"] else f"**failed**: {nl.get('problem') or nl.get('differing_inputs')}"
        cycles = f", {', '.join(f'{c:,}' for c in nl['cycles'])} cycles" if nl.get("cycles") else ""
        lines += [f"Gate-level check (the synthesised netlist, yosys' iCE40 cell models, Verilator): {nl['inputs']} "
                  f"inputs, {verdict}{cycles}; {nl.get('seconds', '?')} s.", ""]
    lines += ["Memory map:", "", "```", json.dumps(r["memory_map"], indent=1), "```", "",
              f"Flash: bitstream at 0, weights at {r['flash']['weights_offset']} ({r['flash']['weight_bytes']} B)."
              f" UART {r['uart']['baud']} baud.", ""]
    return "\n".join(lines)


#: Clocks the build tries before it gives up (no --clock-mhz): the board's default, then
#: the highest PLL setting each miss's Fmax allows, less :data:`CLOCK_MARGIN`.
CLOCK_ATTEMPTS = 3
#: A new placement for a lower clock reaches a different Fmax: KWS on the iCEBreaker gave
#: 39.26, 38.47, 38.39, 35.08 and 37.29 MHz in five, so the next clock leaves 4 %.
CLOCK_MARGIN = 0.96
#: Seeds tried after the first (1) misses the first clock, when --seed is not given: the
#: same netlist placed again, one a round, beside the lower clock's build.
SEED_ATTEMPTS = (2, 3)


def missed(pnr, fmax, pll):
    """Placed and routed, but below the clock."""
    return "error" not in pnr and fmax is not None and fmax < pll.f_out_mhz


def parallel(*jobs):
    """Run the callables at once (each mostly waits on a yosys or nextpnr process): their results."""
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        return [f.result() for f in [pool.submit(job) for job in jobs]]


def place_again(workdir, board, tools, pll, seed):
    """Place the netlist in ``workdir`` with ``seed``, keeping the previous placement as
    ``best.*`` for :func:`keep_better`: (report, Fmax)."""
    placed = workdir / PLACED[board.family]
    shutil.copyfile(placed, workdir / f"best.{placed.name}")
    again = place(workdir, board, tools, seed, pll.f_out_mhz)
    return again, fmax_mhz(again)


def keep_better(workdir, board, better):
    """Leave the new placement in ``workdir`` if ``better``, else the one before it."""
    placed = workdir / PLACED[board.family]
    best = workdir / f"best.{placed.name}"
    if not better:
        shutil.copyfile(best, placed)
    best.unlink()


def implement(program, tflite_bytes, board, pll, args, tools, workdir, seed):
    """Generate the design for ``pll``'s clock, synthesise, place and route: (soc, nextpnr report)."""
    log(f"[2/5] generating the design (PLL {pll.f_out_mhz:.3f} MHz from {board.osc_hz / 1e6:g} MHz)")
    from .board.board_top import BoardTop
    soc = make_soc(program, tflite_bytes, pll.f_out_hz, args.baud, board.weights_offset)
    platform = board.make_platform()
    # Never ``-dsp`` on iCE40: it rewrites the hand-instantiated SB_MAC16s (bench/synth.py).
    plan = platform.prepare(BoardTop(board, soc, pll), name="top", synth_opts="-abc9")
    plan.extract(workdir)
    return soc, synthesise(workdir, board, tools, seed, pll.f_out_mhz)


def build(args):
    t0 = time.monotonic()
    board = get_board(args.board)
    out = Path(args.out or REPO / "build" / board.name)
    clock_mhz = board.default_clock_mhz if args.clock_mhz is None else args.clock_mhz
    if not args.baud > 0:
        raise BuildError(f"--baud must be a positive number of bits per second, got {args.baud}")
    if args.verify_netlist < 0:
        raise BuildError(f"--verify-netlist takes a number of inputs >= 1, got {args.verify_netlist}")
    if args.verify_netlist and (args.verilog is not None or board.family != "ice40"):
        raise BuildError("--verify-netlist checks an iCE40 bitstream build: " + (
            "not with --verilog" if args.verilog is not None else f"{board.name} is {board.family}"))
    try:
        pll = pll_settings(board.family, board.osc_hz, clock_mhz * 1e6)
    except PllError as e:
        raise BuildError(f"--clock-mhz {clock_mhz:g}: {e}") from None
    if args.verilog is not None:
        path = Path(args.verilog)
        if path.is_dir():
            raise BuildError(f"--verilog {path}: is a directory; give a file name")
        if not path.parent.is_dir():
            raise BuildError(f"--verilog {path}: directory {path.parent} does not exist")
    else:
        try:
            check_output_dir(out, "--out")
        except OutputError as e:
            raise BuildError(str(e)) from None
    log(f"[1/5] compiling {args.model} for {board.title}")
    # Portable Verilog gets inferred multipliers and memories instead of iCE40 primitives.
    config = board.config.with_(target="generic") if args.verilog else board.config
    program, tflite_bytes = load_program(args.model, config)
    if program.config.streams and not board.flash_quad:
        raise BuildError(f"{args.model}: {program.stream.size} B of weights must stream from the flash, and the "
                         f"{board.name} profile has no four-line flash pins for it")
    if program.config.streams and args.verify_netlist:
        raise BuildError("--verify-netlist: not for designs whose weights stream from flash yet (the gate-level "
                         "wrapper has the single-line flash pins only)")
    m = program.memory_map
    if program.config.streams:
        st = m["stream"]
        log(f"      {st['bytes']:,} B of weights and parameters ({st['layers']} steps) stream from the flash on "
            f"{st['flash_lines']} lines, {m['weights']['bytes']:,} B stay in the SPRAMs beside the maps "
            f"({m['activation_bank']['bytes']:,} B per bank); a weight cache of {m['spram']['cache_words']} words")
    elif program.config.in_spram:
        log(f"      maps in the SPRAMs beside the weights: {m['activation_bank']['bytes']:,} B per bank, more than "
            f"the {config.act_bank_bytes:,}-byte block-RAM banks; a weight cache of {m['spram']['cache_words']} words")

    if args.verilog:
        try:
            write_verilog(program, tflite_bytes, path, board, clock_mhz, args.baud)
        except OSError as e:
            raise BuildError(f"--verilog {path}: cannot write ({e.strerror or e})") from None
        log(f"wrote {path} (module {TOP}; clock {clock_mhz} MHz assumed for the UART divisor, "
            "active-high synchronous rst)")
        return 0

    tools = find_tools(board.family, args.system_tools)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BuildError(f"--out {out}: cannot create the directory ({e.strerror or e})") from None
    workdir = out / "work"
    workdir.mkdir(exist_ok=True)

    # With no --clock-mhz the build picks the clock: the board's default; after a miss, at
    # once (two processes), the same netlist placed with the next seed (without --seed) and
    # a new design at the highest PLL setting 4 % below the Fmax (the UART divisor and timeouts
    # follow the clock), in its own directory; the first that meets its clock wins, the
    # faster clock first.  An explicit clock that misses is a failure.
    seed = 1 if args.seed is None else args.seed
    soc, pnr = implement(program, tflite_bytes, board, pll, args, tools, workdir, seed)
    fmax = fmax_mhz(pnr)
    attempts = [{"clock_mhz": round(pll.f_out_mhz, 3), "fmax_mhz": fmax, "seed": seed}]
    seeds, clocks = list(SEED_ATTEMPTS) if args.seed is None else [], 1
    while missed(pnr, fmax, pll):
        lower = None
        if args.clock_mhz is None and clocks < CLOCK_ATTEMPTS:
            try:
                lower = pll_settings(board.family, board.osc_hz, fmax * CLOCK_MARGIN * 1e6)
            except PllError:
                lower = None
            if lower is not None and lower.f_out_mhz >= pll.f_out_mhz:
                lower = None
        other = seeds.pop(0) if seeds else None
        if other is None and lower is None:
            break
        tries = ([f"seed {other} at {pll.f_out_mhz:.3f} MHz"] if other else []) + (
            [f"seed {seed} at {lower.f_out_mhz:.3f} MHz (the highest PLL setting 4 % below Fmax)"] if lower else [])
        log(f"      timing missed: Fmax {fmax} MHz < {pll.f_out_mhz:.3f} MHz; trying {' and '.join(tries)}")
        lower_dir, lower_seed = (out / f"work_{lower.f_out_mhz:.3f}MHz" if lower else None), seed
        jobs = []
        if other:
            jobs.append(lambda: place_again(workdir, board, tools, pll, other))
        if lower:
            lower_dir.mkdir(exist_ok=True)
            jobs.append(lambda: implement(program, tflite_bytes, board, lower, args, tools, lower_dir, lower_seed))
        results = parallel(*jobs)
        if other:
            again, f = results.pop(0)
            attempts.append({"clock_mhz": round(pll.f_out_mhz, 3), "fmax_mhz": f, "seed": other})
            better = "error" not in again and f is not None and f > fmax
            keep_better(workdir, board, better)
            if better:
                pnr, fmax, seed = again, f, other
        if lower:
            lower_soc, lower_pnr = results.pop(0)
            f = fmax_mhz(lower_pnr)
            attempts.append({"clock_mhz": round(lower.f_out_mhz, 3), "fmax_mhz": f, "seed": lower_seed})
            if fmax < pll.f_out_mhz:
                soc, pnr, fmax, pll, workdir, seed = lower_soc, lower_pnr, f, lower, lower_dir, lower_seed
                clocks += 1
    util = {k: {"used": v.get("used"), "available": v.get("available")} for k, v in pnr.get("utilization", {}).items()
            if k in board.resources}
    problem = None
    if "error" in pnr:
        over = [f"{k} {u['used']}/{u['available']}" for k, u in util.items()
                if u["used"] is not None and u["used"] > u["available"]]
        problem = f"does not fit ({', '.join(over)})" if over else f"nextpnr failed: {pnr['error']}"
    elif fmax is None or fmax < pll.f_out_mhz:
        tried = f" after {len(attempts)} placements" if len(attempts) > 1 else ""
        problem = (f"misses timing{tried}: Fmax {fmax} MHz < clock {pll.f_out_mhz:.3f} MHz (seed {seed}); "
                   f"rebuild with --clock-mhz {int(fmax or 0)} or another --seed")

    log("[5/5] packing, cycle count, reports")
    perf = measure_cycles(program) if not args.no_sim else {"cycles_per_inference": None, "note": "--no-sim"}
    if perf.get("cycles_per_inference"):
        perf["inferences_per_second"] = round(pll.f_out_hz / perf["cycles_per_inference"], 1)
    netlist = None
    if args.verify_netlist and not problem:
        netlist, problem = verify_netlist(workdir, board, soc, program, pll.f_out_hz, tools, args.verify_netlist,
                                          perf.get("cycles_per_inference"))
    weights = program.flash_image
    report = {
        "status": "failed" if problem else "built", "problem": problem,
        "board": {"name": board.name, "title": board.title},
        "model": {"file": str(args.model), "path": str(Path(args.model).resolve()), "model_id": f"{wire.model_id(tflite_bytes):#010x}",
                  "program_id": f"{program.program_id:#010x}", "weights_crc32": f"{wire.crc32(weights):#010x}",
                  "sha256": hashlib.sha256(tflite_bytes).hexdigest()},
        "config": {k: getattr(program.config, k) for k in ("rows", "cols", "acc_width", "requant_bits", "requant_lanes",
                                                             "act_memory", "act_bank_bytes", "weight_stream")},
        "utilisation": util,
        "timing": {"requested_mhz": clock_mhz, "clock_mhz": round(pll.f_out_mhz, 3), "pll": pll.params,
                   "fmax_mhz": fmax, "seed": seed, "met": bool(fmax and fmax >= pll.f_out_mhz),
                   "clock_chosen_by": "--clock-mhz" if args.clock_mhz is not None else "the build",
                   "attempts": attempts},
        "performance": perf,
        "memory_map": program.memory_map,
        "flash": {"weights_offset": f"{board.weights_offset:#x}", "weight_bytes": len(weights),
                  **({"streamed_bytes": int(program.stream.size), "stream_base": f"{soc.stream_base:#x}",
                      "flash_lines": program.config.flash_lines, "sck": "clock / 2"} if program.config.streams else {})},
        "uart": {"baud": args.baud, "divisor": soc.divisor},
        "netlist_check": netlist,
        "build_seconds": None,
    }
    if not problem:
        bitstream = pack(workdir, board, tools)
        image = flash_image(bitstream, weights, board, program.program_id)
        write_atomic(out / BITSTREAM[board.family], bitstream)
        write_atomic(out / "flash.bin", image)
        write_atomic(out / "weights.bin", weights)
        report["virtual_board"] = write_virtual_board(out, soc, pll.f_out_hz)
    else:
        # The outputs are a set: an earlier build's images must not sit beside this report.
        for name in (BITSTREAM[board.family], "flash.bin", "weights.bin", "cycles_per_layer.png", SOC_VERILOG):
            (out / name).unlink(missing_ok=True)
    if perf.get("cycles_per_layer"):
        png = layer_plot(perf, f"{program.model.name} on {board.name}")
        if png is None:
            log("      no per-layer plot: pip install -e '.[plot]' (matplotlib) for cycles_per_layer.png")
        else:
            write_atomic(out / "cycles_per_layer.png", png)
    report["build_seconds"] = round(time.monotonic() - t0, 1)
    write_atomic(out / "report.json", json.dumps(report, indent=2) + "\n")
    write_atomic(out / "report.md", render_md(report))
    u = ", ".join(f"{k} {v['used']}/{v['available']}" for k, v in util.items())
    log(f"{board.name}: {u}; Fmax {fmax} MHz for {pll.f_out_mhz:.3f} MHz (seed {seed})")
    if perf.get("cycles_per_inference"):
        log(f"{perf['cycles_per_inference']:,} cycles/inference -> {perf['inferences_per_second']} inferences/s")
    if problem:
        raise BuildFailed(f"{board.name}: {problem}; report in {out / 'report.md'}")
    log(f"built in {report['build_seconds']} s -> {out / BITSTREAM[board.family]}, {out / 'flash.bin'}")
    return 0


def main(argv=None):
    parser = OneLineParser(prog="python -m hdl.build", description=__doc__.splitlines()[0])
    parser.add_argument("--board", default="icebreaker", help="board profile (--list-boards)")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="int8 .tflite (default: shipped MNIST CNN)")
    parser.add_argument("--clock-mhz", type=float, help="requested clock (default: the board's)")
    parser.add_argument("--out", type=Path, help="output directory (default build/<board>)")
    parser.add_argument("--seed", type=int, default=None,
                        help="nextpnr placement seed (default 1, then 2 and 3 if timing is missed)")
    parser.add_argument("--baud", type=int, default=wire.DEFAULT_BAUD)
    parser.add_argument("--verilog", type=Path, metavar="FILE", help="only write portable Verilog; no tools needed")
    parser.add_argument("--list-boards", action="store_true")
    parser.add_argument("--system-tools", action="store_true", help="use yosys/nextpnr from PATH, not YoWASP")
    parser.add_argument("--no-sim", action="store_true", help="skip the cycle-accurate cycle count")
    parser.add_argument("--verify-netlist", type=int, default=0, metavar="N",
                        help="iCE40: simulate the synthesised netlist (yosys' cell models, Verilator) on N inputs "
                             "and require equality with golden before writing the images (minutes per input)")
    args = parser.parse_args(argv)
    if args.list_boards:
        for b in BOARDS.values():
            c = b.config
            print(f"{b.name:12s} {b.title}: {c.rows}x{c.cols} MAC array, default {b.default_clock_mhz:g} MHz, "
                  f"weights at flash {b.weights_offset:#x}. {b.notes}")
        return 0
    try:
        return build(args)
    except (BuildError, BoardError, ToolError) as e:
        print(f"hdl.build: {e}", file=sys.stderr)
        return 2
    except BuildFailed as e:
        print(f"hdl.build: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
