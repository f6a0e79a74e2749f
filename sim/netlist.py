"""The gate-level check of an iCE40 build: the netlist yosys wrote for the bitstream
(``work/top.json``: SB_LUT4, SB_CARRY, the flip-flops, SB_RAM40_4K with its contents,
SB_MAC16, SB_SPRAM256KA) simulated with yosys' own iCE40 cell models in Verilator, behind
the virtual board's harness (``sim/board.py``), so that what synthesis made of the design
is held to golden, not only the RTL it was given.

Only the pads and the PLL are replaced (``sim/ice40_pads_map.v``): pads become wires and the
PLL passes the harness's clock through, locked at once; the design's power-on reset counter
runs as on the board.  A small wrapper gives the netlist the Soc's pin names and undoes the
board's inverted pins (flash select, LEDs).
"""

import re
import shutil
import time
from pathlib import Path

import numpy as np

from golden.generate import random_inputs
from golden.ops import run_model
from hdl.toolchain import ToolError, yosys
from host import wire
from host.client import Client

from .board import BOARD_PORTS, TOP, BoardDesign, VerilatorBoard, build_board

PADS_MAP = Path(__file__).with_name("ice40_pads_map.v")
#: Cycles from the harness's start until the design leaves reset: the power-on counter of
#: hdl/board/pll.py (256 cycles after lock) and a margin.
POR_CYCLES = 300


class NetlistError(Exception):
    """The netlist cannot be prepared for simulation; the message is one line."""


def _pins(board):
    """(Soc pin, netlist port, direction, inverted) for each pin the board top connects."""
    platform = board.make_platform()
    ready_led, error_led = board.leds
    wanted = [("clk", board.osc, 0, None), ("uart_rx", board.uart, 0, "rx"), ("uart_tx", board.uart, 0, "tx"),
              ("flash_cs", board.flash, 0, "cs"), ("flash_copi", board.flash, 0, "copi"),
              ("flash_cipo", board.flash, 0, "cipo"), ("flash_sck", board.flash, 0, "clk"),
              ("led_ready", ready_led, 0, None), ("led_error", error_led, 1 if ready_led == error_led else 0, None)]
    pins = []
    for soc_pin, name, number, sub in wanted:
        ios = platform.lookup(name, number).ios
        if sub is not None:
            ios = next(io for io in ios if io.name == sub).ios
        (io,) = ios
        port = f"{name}_{number}__{sub}__io" if sub else f"{name}_{number}__io"
        pins.append((soc_pin, port, {"i": "input", "o": "output"}[io.dir], bool(io.invert)))
    return pins


def _wrapper(pins):
    """Module ``cnn_soc`` with the harness's ports around the netlist's ``top``."""
    lines = [f"module {TOP}("] + [f"  {d} {name}," for name, d in BOARD_PORTS.items()]
    lines[-1] = lines[-1].rstrip(",") + ");"
    conns = []
    for soc_pin, port, direction, inverted in pins:
        if direction == "input":
            conns.append(f".{port}({'~' if inverted else ''}{soc_pin})")
        else:
            lines.append(f"  wire pad_{soc_pin};")
            lines.append(f"  assign {soc_pin} = {'~' if inverted else ''}pad_{soc_pin};")
            conns.append(f".{port}(pad_{soc_pin})")
    lines.append(f"  top board_top({', '.join(conns)});")
    lines.append("endmodule")
    return "\n".join(lines) + "\n"


def netlist_design(workdir, board, soc, clock_hz, tools):
    """The build's synthesised netlist in ``workdir`` (``top.json``) as a
    :class:`~sim.board.BoardDesign` for the board harness; ``soc`` is the Soc it was made
    from (its UART divisor, boot time and flash offset)."""
    if board.family != "ice40":
        raise NetlistError(f"the gate-level check simulates iCE40 netlists; {board.name} is {board.family}")
    workdir = Path(workdir)
    if not (workdir / "top.json").exists():
        raise NetlistError(f"{workdir / 'top.json'}: no synthesised netlist")
    shutil.copyfile(PADS_MAP, workdir / PADS_MAP.name)
    script = workdir / "netlist.ys"
    script.write_text(f"read_json top.json\ntechmap -map {PADS_MAP.name} t:SB_IO t:SB_PLL40_PAD\nopt_clean\n"
                      "write_verilog -noattr netlist.v\n")
    try:
        yosys(tools, workdir, [script.name], logname="netlist.log", listing="netlist.rpt")
    except ToolError as e:
        raise NetlistError(f"cannot write the netlist's Verilog: {e}") from None
    text = (workdir / "netlist.v").read_text()
    pins = _pins(board)
    for _, port, direction, _ in pins:
        # The pads are gone, so each pin has one direction again.
        text, n = re.subn(rf"^(\s*)(inout|{direction}) {re.escape(port)};", rf"\1{direction} {port};", text,
                          flags=re.M)
        if n != 1:
            raise NetlistError(f"netlist.v: no port {port} on the top module")
    return BoardDesign(text + _wrapper(pins), "ice40", soc.divisor, soc.weights_offset,
                       soc.boot_cycles + POR_CYCLES, clock_hz)


def check(design, program, n, log, seed=0):
    """Run ``n`` seeded inputs (golden.generate.random_inputs: the range's ends first)
    through ``design`` on the virtual board, booting from the weights in flash, and compare
    the finished outputs with golden.  Returns the figures for the build report; the caller
    decides what a mismatch means."""
    t0 = time.monotonic()
    log("      compiling the netlist simulator (Verilator, minutes for a whole design)")
    exe = build_board(design)
    t_build = time.monotonic() - t0
    x = random_inputs(np.random.default_rng(seed), program.model, n)
    want = run_model(program.model, x)
    region = wire.flash_weights_region(program.flash_image, program.program_id)
    differ, cycles, per_input = [], [], []
    with VerilatorBoard.at_clock(design, region, exe=exe) as dev:
        client = Client(dev)
        info = client.info()
        if not info.weights_loaded or info.program_id != program.program_id:
            return {"inputs": n, "bit_exact": False, "problem": f"booted without its weights ({info})",
                    "simulator_build_seconds": round(t_build, 1), "seconds": round(time.monotonic() - t0, 1)}
        for k in range(n):
            t = time.monotonic()
            r = client.infer(program.start_on_host(x[k:k + 1])[0])
            cycles.append(int(r.cycles))
            per_input.append(time.monotonic() - t)
            exact = np.array_equal(program.finish_on_host(np.asarray(r.output)[None])[0], want[k])
            if not exact:
                differ.append(k)
            log(f"      input {k + 1}/{n}: {'bit-exact' if exact else 'DIFFERS from golden'}, {cycles[-1]:,} cycles "
                f"({per_input[-1]:.0f} s)")
    return {"inputs": n, "bit_exact": not differ, "differing_inputs": differ, "cycles": sorted(set(cycles)),
            "simulator_build_seconds": round(t_build, 1),
            "seconds_per_input": round(sum(per_input) / n, 1), "seconds": round(time.monotonic() - t0, 1)}
