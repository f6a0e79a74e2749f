"""cocotb check of the SPRAM and weight memory Verilog (run under Icarus by tests/test_spram.py).

The design under test holds the generic and the ice40 variant side by side on the same
inputs (``raddr``, ``ren``, ``waddr``, ``wdata``, ``we``; outputs ``generic`` and ``ice40``),
the ice40 one simulated with yosys' own SB_SPRAM256KA model.  The memory's geometry arrives
in environment variables (``MEM_DEPTH``, ``MEM_WIDTH``, ``MEM_LATENCY``, ``MEM_SEED``),
because cocotb runs this module in the simulator's own Python process.
"""

import os
import random
from collections import deque

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, Timer

from cocotb_support import run_icarus
from hdl.units.dsp import ICE40_SIM_DEFINES, ice40_sim_model
from hdl.core.spram import SPRAM_DEPTH


def run(component, name, build_dir, *, depth, width, latency, seed):
    """Emit the twin ``component`` and run :func:`random_ops` on it under Icarus, with yosys'
    cells_sim.v providing SB_SPRAM256KA."""
    run_icarus(component, name, "cocotb_spram", "random_ops", build_dir,
               sources=[ice40_sim_model()], defines=ICE40_SIM_DEFINES,
               extra_env={"MEM_DEPTH": str(depth), "MEM_WIDTH": str(width),
                          "MEM_LATENCY": str(latency), "MEM_SEED": str(seed)})


def hot_addresses(depth):
    """Both ends of the memory and of every SPRAM bank boundary inside it."""
    edges = [0, depth - 1] + [a for k in range(SPRAM_DEPTH, depth, SPRAM_DEPTH) for a in (k - 1, k)]
    return sorted({a + d for a in edges for d in (-1, 0, 1) if 0 <= a + d < depth})


# ---------------------------------------------------------------- cocotb side


@cocotb.test()
async def random_ops(dut):
    """Writes (of single bytes, where the design has a byte mask), reads, stalls and
    read-during-write cycles in random order: whenever yosys' model gives a defined word
    both variants agree, and every read returns the last word
    written there ``latency`` cycles later and holds it through stalls."""
    depth, width = int(os.environ["MEM_DEPTH"]), int(os.environ["MEM_WIDTH"])
    latency, rng = int(os.environ["MEM_LATENCY"]), random.Random(int(os.environ["MEM_SEED"]))
    hot = hot_addresses(depth)
    byte_mask = hasattr(dut, "wmask")   # SPRAM: byte writes
    written = {}
    expected = None                     # the word rdata must show; None while undefined
    effects = deque([("hold", None)] * (latency - 1))   # each cycle's effect on rdata, in flight
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    checked = 0

    def address():
        return rng.choice(hot) if rng.random() < 0.5 else rng.randrange(depth)

    for cycle in range(3000):
        we = rng.random() < (0.6 if cycle < 300 else 0.15)
        ren = rng.random() < 0.7
        raddr = rng.choice(list(written)) if written and rng.random() < 0.9 else address()
        waddr, wdata = address(), rng.getrandbits(width)
        dut.raddr.value, dut.ren.value = raddr, ren
        dut.waddr.value, dut.wdata.value, dut.we.value = waddr, wdata, we
        if byte_mask:                   # a byte of a word written before, or the whole word
            mask = rng.choice((1, 2, 3)) if waddr in written else 3
            dut.wmask.value = mask
            keep = sum(0xFF << 8 * k for k in range(2) if not mask >> k & 1)
            wdata = written.get(waddr, 0) & keep | wdata & ~keep
        if we:                          # the write wins; the output is undefined afterwards
            written[waddr] = wdata
            effects.append(("undefined", None))
        elif ren:
            effects.append(("read", written.get(raddr)))
        else:
            effects.append(("hold", None))
        await FallingEdge(dut.clk)
        await Timer(1, unit="ns")
        kind, word = effects.popleft()
        if kind != "hold":
            expected = word
        generic, ice40 = dut.generic.value, dut.ice40.value
        if ice40.is_resolvable:
            assert generic.to_unsigned() == ice40.to_unsigned(), f"cycle {cycle}: variants differ"
        if expected is not None:
            assert ice40.is_resolvable, f"cycle {cycle}: ice40 output is {ice40}"
            got = ice40.to_unsigned()
            assert got == expected, f"cycle {cycle}: read {got:#x}, wrote {expected:#x}"
            checked += 1
    assert checked > 1000
