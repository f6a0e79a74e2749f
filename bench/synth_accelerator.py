"""Synthesise the whole accelerator (flagship MNIST program, iCEBreaker config) for the UP5K.

Reports logic cells, DSPs, block RAMs, SPRAMs and Fmax, and where the logic cells go.

The :class:`~hdl.core.accelerator.Accelerator` sits between two pins: a shift register clocked
in from ``sin`` drives every input port (all registered, none constant, so yosys can
remove nothing), and a registered 4-ary XOR tree folds every output bit into ``sout``.
``clk`` is the board's 12 MHz pin (35); there is no PLL, nextpnr is simply asked to time
the clock at ``--freq`` MHz.  The flow is plain ``synth_ice40 -abc9`` (never ``-dsp``: it
rewrites the hand-instantiated SB_MAC16s) and ``nextpnr-ice40 --up5k --package sg48`` with
a fixed seed per run.

yosys 0.70's ``synth_ice40`` maps with abc9 by default; ``-abc9`` is kept for clarity.

Where the logic goes: ``modules`` splits the flat netlist by scope (Amaranth submodule or
memory), assigning each yosys cell and each logic cell nextpnr packs (``--pack-only``,
which works even when the design is too big to place) by its name, which yosys derives
from a wire the cell drives.  A heuristic, but every cell lands somewhere and the logic
cells sum to the total.  (A ``-noflatten`` run is no alternative: it trips an assertion
in yosys 0.70's abc9 on the MAC array.)

Usage: ``python bench/synth_accelerator.py [--seed 1 [--seed 2 ...]] [--freq 40]
[--json build/synth_accelerator.json]``.
"""

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

from amaranth.back import rtlil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from boards import ICEBREAKER  # noqa: E402
from compiler.program import compile_model  # noqa: E402
from golden.run import DEFAULT_MODEL  # noqa: E402
from golden.tflite_io import load_tflite  # noqa: E402
from hdl.core.accelerator import Accelerator  # noqa: E402
from synth import (BELS, BOARD, DEVICE, UP5K, BenchTop, check_dsp_modes, is_wrapper, make_workdir,  # noqa: E402
                   netlist_cells, nextpnr, run_nextpnr, run_yosys, tools, write_report)

FREQ_MHZ = 40
#: iCEBreaker pins: the 12 MHz oscillator (a global-buffer pin); the rest is left to nextpnr.
PCF = "set_io clk 35\n"


def flagship_program(model=DEFAULT_MODEL, config=ICEBREAKER):
    return compile_model(load_tflite(str(model)), config)


def scopes(cells):
    """Hierarchy scopes of the flat netlist: Amaranth's submodules (yosys keeps a
    ``$scopeinfo`` cell for each) and every memory (its block RAMs are named
    ``<memory>.<row>.<column>``), plus ``""`` for the bench's own top level."""
    found = {""}
    for name, cell in cells.items():
        if cell["type"] == "$scopeinfo":
            found.add(name)
        elif cell["type"] == "SB_RAM40_4K":
            found.add(name.rsplit(".", 2)[0])
    return found


def scope_of(name, cell, known):
    """The deepest scope of ``known`` that prefixes a flat cell name.  yosys names every
    cell after a wire it drives (``accel.drain.requant.l0_p2_SB_LUT4_O``), so logic counts
    where its output goes: a heuristic, but every cell lands somewhere.  The bench's own
    registers (named after the accelerator inputs they drive) are told apart by the
    source location yosys keeps on them."""
    if is_wrapper(cell):
        return ""
    if name.startswith("$"):
        return "(nextpnr)"       # carry-chain feed-throughs, constants
    parts = name.split(".")
    for k in range(len(parts) - 1, 0, -1):
        if ".".join(parts[:k]) in known:
            return ".".join(parts[:k])
    return ""


def breakdown(cells, packed):
    """Per scope: nextpnr's packed logic cells, and yosys' LUT4s, flip-flops, carries and
    hard blocks, each scope on its own (``""`` is the shift-in/XOR wrapper)."""
    known = scopes(cells)
    rows = {}

    def row(scope):
        return rows.setdefault(scope, Counter(lc=0, lut4=0, ff=0, carry=0, bram=0, dsp=0, spram=0))

    kinds = {"SB_LUT4": "lut4", "SB_CARRY": "carry", "SB_RAM40_4K": "bram", "SB_MAC16": "dsp",
             "SB_SPRAM256KA": "spram"}
    for name, cell in cells.items():
        kind = "ff" if cell["type"].startswith("SB_DFF") else kinds.get(cell["type"])
        if kind:
            row(scope_of(name, cell, known))[kind] += 1
    for name, cell in packed.items():
        if cell["type"] == "ICESTORM_LC":
            row(scope_of(name, cell, known))["lc"] += 1
    return {scope or "(bench wrapper)": dict(counts)
            for scope, counts in sorted(rows.items(), key=lambda item: -item[1]["lc"])}


def synthesise(seeds=(1,), freq=FREQ_MHZ, workdir=None, model=DEFAULT_MODEL):
    """Run yosys once and nextpnr once per seed on the accelerator in a shift-in
    :class:`~synth.BenchTop`; the figures."""
    workdir = make_workdir(workdir, "synth_accelerator")
    t0 = time.monotonic()
    il_text = rtlil.convert(BenchTop("accel", Accelerator(flagship_program(model))), name="top")
    (workdir / "top.pcf").write_text(PCF)

    t = time.monotonic()
    cells = run_yosys(il_text, workdir)
    timing = {"yosys_s": round(time.monotonic() - t, 1)}
    # Packing alone (seed-independent) gives the logic cells of each scope even when the
    # design is too big to place.
    nextpnr(workdir, "nextpnr_pack.log", "--pcf", "top.pcf", "--pack-only", "--write", "packed.json")

    runs = []
    for seed in seeds:
        t = time.monotonic()
        run = run_nextpnr(workdir, seed, freq, "--pcf", "top.pcf", suffix=f"_seed{seed}", check=False)
        runs.append({"seed": seed, **run, "nextpnr_s": round(time.monotonic() - t, 1)})

    modules = breakdown(cells, netlist_cells(workdir / "packed.json"))
    first = runs[0]
    bench_lcs = modules.get("(bench wrapper)", {}).get("lc", 0)
    return {
        "design": f"Accelerator(compile_model({Path(model).name}, ICEBREAKER))",
        "flow": (f"{tools()['yosys']} synth_ice40 -abc9 (no -dsp); "
                 f"{tools()['nextpnr']} {' '.join(BOARD.nextpnr_device)}"),
        "device": DEVICE, "target_mhz": freq, "capacity": UP5K,
        "lc": first["lc"], "dsp": first["dsp"], "bram": first["bram"], "spram": first["spram"],
        "lc_bench": bench_lcs, "lc_accelerator": first["lc"] - bench_lcs,
        "fits": all(first[key] <= UP5K[bel] for key, bel in BELS.items()),
        "fmax_mhz": {str(r["seed"]): r["fmax_mhz"] for r in runs},
        "runs": runs,
        "yosys_cells": dict(sorted(Counter(cell["type"] for cell in cells.values()).items())),
        "dsp_mode_8x8": check_dsp_modes(cells),
        "modules": modules,
        "runtime_s": {**timing, "total": round(time.monotonic() - t0, 1)},
        "workdir": str(workdir),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, action="append", help="nextpnr seed (repeatable; default 1)")
    parser.add_argument("--freq", type=float, default=FREQ_MHZ, help="clock nextpnr times (MHz)")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--json", type=Path, default=REPO / "build" / "synth_accelerator.json")
    args = parser.parse_args()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    f = synthesise(args.seed or [1], args.freq, args.json.parent / "synth_accelerator",
                   model=args.model)
    write_report(args.json, f)

    cap = f["capacity"]
    print(f"Accelerator on UP5K ({'fits' if f['fits'] else 'DOES NOT FIT'}): "
          f"{f['lc']}/{cap['ICESTORM_LC']} LCs ({f['lc_accelerator']} accelerator + {f['lc_bench']} "
          f"shift/XOR wrapper), {f['dsp']}/{cap['ICESTORM_DSP']} DSPs"
          f"{'' if f['dsp_mode_8x8'] else ' (BROKEN: not in 8x8 mode)'}, "
          f"{f['bram']}/{cap['ICESTORM_RAM']} BRAMs, {f['spram']}/{cap['ICESTORM_SPRAM']} SPRAMs")
    for r in f["runs"]:
        result = (f"Fmax {r['fmax_mhz']} MHz (target {f['target_mhz']})" if r["routed"]
                  else f"nextpnr failed: {r['error']}")
        print(f"  seed {r['seed']}: {result}, {r['lc']} LCs, nextpnr {r['nextpnr_s']} s")
    print("  per scope (logic named after what it drives; LCs packed by nextpnr, the rest yosys cells):")
    for name, row in f["modules"].items():
        print(f"    {name:32s} LC {row['lc']:5d}  LUT4 {row['lut4']:5d}  FF {row['ff']:5d}  "
              f"carry {row['carry']:4d}  BRAM {row['bram']:2d}  DSP {row['dsp']}  SPRAM {row['spram']}")
    print(f"  runtime {f['runtime_s']} -> {args.json}")


if __name__ == "__main__":
    sys.exit(main())
