"""cocotb tests of the table and pool units' emitted Verilog (Icarus), and what their pytest
modules share: the runner, the sequencer's window order, the synthesis bench call.

pytest calls :func:`run`, which writes the component's Verilog and starts cocotb on it with
this module as the test module; the ``@cocotb.test`` coroutines then run inside Icarus and
compare against golden.  Not named ``test_*`` so pytest does not collect it itself.
"""

import json
import subprocess
import sys
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from cocotb_support import run_icarus
from golden.model import QParams
from golden.ops import Pool2D
from golden.nonlinear import lookup_table

POOL_LANES = 4
TABLE_LANES = 2
#: The table compiled into the ActivationTable bitstream; the test then reloads another.
TABLE_INIT = ("TANH", QParams(0.04, -5))
TABLE_RELOAD = ("LOGISTIC", QParams(0.07, 12))
REPO = Path(__file__).resolve().parent.parent


def run(component, name, testcase, build_dir):
    """Emit ``component`` as Verilog module ``name`` and run cocotb ``testcase`` on Icarus."""
    run_icarus(component, name, "cocotb_units", testcase, build_dir)


def synthesise(unit, build_dir):
    """bench/synth_units.py on one unit (fixed seed); its figures as a dict."""
    figures_json = build_dir / "figures.json"
    subprocess.run([sys.executable, str(REPO / "bench" / "synth_units.py"), "--unit", unit,
                    "--seed", "1", "--json", str(figures_json)], cwd=REPO, check=True)
    figures, = json.loads(figures_json.read_text())
    return figures


# ---------------------------------------------------------------- pooling windows


def window_positions(layer):
    """For each output pixel in raster order, the unpadded input (y, x) of its window."""
    (h, w, _), (fh, fw), (sh, sw) = layer.input_shape, layer.filter, layer.stride
    (ph, pw), (oh, ow, _) = layer.pads, layer.output_shape
    return [[(oy * sh - ph + ky, ox * sw - pw + kx)
             for ky in range(fh) for kx in range(fw)
             if 0 <= oy * sh - ph + ky < h and 0 <= ox * sw - pw + kx < w]
            for oy in range(oh) for ox in range(ow)]


def window_stream(x, layer):
    """What the sequencer sends for one HWC image: (channel vector, first, last) per element,
    output pixels in raster order, each window's unpadded elements in (ky, kx) order."""
    out = []
    for window in window_positions(layer):
        for k, (y, xx) in enumerate(window):
            out.append(([int(v) for v in x[y, xx]], k == 0, k == len(window) - 1))
    return out


# ---------------------------------------------------------------- cocotb side


def _pack(values):
    """int8 lanes -> the LSB-first bit vector Amaranth's Verilog uses for an ArrayLayout."""
    return sum((int(v) & 0xFF) << (8 * k) for k, v in enumerate(values))


def _unpack(bits, lanes):
    return [((bits >> (8 * k)) & 0xFF) - (((bits >> (8 * k)) & 0x80) << 1) for k in range(lanes)]


async def _start(dut):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


async def _stream(dut, inputs, n_out, lanes, rng, gap=0.3, stall=0.3):
    """Offers ``inputs`` (packed payloads) on i with random gaps while o stalls at random.

    Valid is held until its transfer happens, as a stream requires; returns ``n_out``
    output vectors.
    """
    outs, sent = [], 0
    valid = False
    while len(outs) < n_out:
        if not valid and sent < len(inputs) and rng.random() >= gap:
            valid = True
            dut.i__payload.value = inputs[sent]
        dut.i__valid.value = int(valid)
        ready = int(rng.random() >= stall)
        dut.o__ready.value = ready
        await ReadOnly()
        if valid and dut.i__ready.value:
            sent, valid = sent + 1, False
        if ready and dut.o__valid.value:
            outs.append(_unpack(int(dut.o__payload.value), lanes))
        await RisingEdge(dut.clk)
    return outs


@cocotb.test()
async def pool_matches_golden(dut):
    """Random maps, MAX and AVERAGE with SAME borders and a clamp, against golden Pool2D.run."""
    rng = np.random.default_rng(7)
    await _start(dut)
    cases = [("MAX", (3, 3), (2, 2), "SAME", "RELU6"),
             ("AVERAGE", (3, 3), (2, 2), "SAME", "RELU"),
             ("AVERAGE", (4, 4), (3, 3), "SAME", "NONE")]
    for kind, filt, stride, padding, act in cases:
        layer = Pool2D("pool", (7, 6, POOL_LANES), kind=kind, filter=filt, stride=stride,
                       padding=padding, activation=act, q=QParams(0.05, -20))
        x = rng.integers(-128, 128, size=layer.input_shape, dtype=np.int8)
        lo, hi = layer.act_range
        dut.mode.value = 0 if kind == "MAX" else 1
        dut.act_min.value = lo & 0xFF
        dut.act_max.value = hi & 0xFF
        inputs = [_pack(vec) | first << (8 * POOL_LANES) | last << (8 * POOL_LANES + 1)
                  for vec, first, last in window_stream(x, layer)]
        want = layer.run(x[None])[0].reshape(-1, POOL_LANES)
        got = await _stream(dut, inputs, len(want), POOL_LANES, rng)
        assert np.array_equal(np.array(got), want), f"{kind} {filt} {padding}: {got} != {want.tolist()}"


@cocotb.test()
async def table_matches_golden(dut):
    """The bitstream table, bypass, then a table reloaded through the write port."""
    rng = np.random.default_rng(8)
    await _start(dut)
    dut.write__en.value = 0
    x = rng.integers(-128, 128, size=(300, TABLE_LANES), dtype=np.int8)
    x[:2] = [[-128] * TABLE_LANES, [127] * TABLE_LANES]
    inputs = [_pack(row) for row in x]
    for bypass, (kind, q) in [(0, TABLE_INIT), (1, TABLE_INIT), (0, TABLE_RELOAD)]:
        table = lookup_table(kind, q)
        if (kind, q) == TABLE_RELOAD:
            for index, value in enumerate(table):
                dut.write__addr.value = index
                dut.write__data.value = int(value) & 0xFF
                dut.write__en.value = 1
                await RisingEdge(dut.clk)
            dut.write__en.value = 0
        dut.bypass.value = bypass
        got = np.array(await _stream(dut, inputs, len(x), TABLE_LANES, rng))
        want = x if bypass else table[x.astype(int) + 128]
        assert np.array_equal(got, want), f"{kind} bypass={bypass}: {np.argwhere(got != want)[:5]}"
