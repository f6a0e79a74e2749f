"""cocotb checks of the emitted Verilog (run under Icarus by tests/test_mac_array.py), plus the
stimulus and scoreboard that the Amaranth-simulator tests share with them.

The configuration arrives in environment variables (``MAC_CONFIG``: AcceleratorConfig fields
as JSON, ``MAC_LATENCY``, ``MAC_SEED``), because cocotb runs this module in the simulator's
own Python process.
"""

import json
import os
import random

import cocotb
import numpy as np
from amaranth.hdl import Const
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, Timer

from cocotb_support import run_icarus
from golden.config import AcceleratorConfig
from hdl.units.dsp import ICE40_SIM_DEFINES, ice40_sim_model
from hdl.units.mac_array import chain_order, term_layout

INT8_MIN, INT8_MAX = -128, 127


def random_reductions(rng, config, count, max_terms=40):
    """``count`` (acts[n, rows], weights[n, cols]) pairs of random lengths 1..max_terms."""
    reductions = []
    for _ in range(count):
        n = int(rng.integers(1, max_terms + 1))
        reductions.append((rng.integers(INT8_MIN, INT8_MAX + 1, (n, config.rows)),
                           rng.integers(INT8_MIN, INT8_MAX + 1, (n, config.cols))))
    return reductions


def expected_results(reductions):
    """The NumPy oracle: lane r*cols + c of each result is acts[:, r] . weights[:, c]."""
    return [(acts.T.astype(np.int64) @ weights.astype(np.int64)).reshape(-1).tolist()
            for acts, weights in reductions]


def reduction_terms(acts, weights):
    """The input payloads (as dicts for ``term_layout``) of one reduction."""
    n = len(acts)
    return [{"act": acts[t].tolist(), "weight": weights[t].tolist(),
             "first": t == 0, "last": t == n - 1} for t in range(n)]


class Stimulus:
    """Cycle-by-cycle producer and consumer for the array's streams.

    The producer leaves random gaps (valid low, with garbage payload, including a stray
    ``last``), the consumer applies random back-pressure; both obey the stream rules, so any
    lost, duplicated or reordered result shows up in :attr:`results`.  The array's
    one-accumulator transfers are put back into lane order, ``lanes`` at a time.
    """

    def __init__(self, config, reductions, *, seed, gap=0.0, stall=0.0):
        self.config = config
        self.terms = [term for acts, weights in reductions for term in reduction_terms(acts, weights)]
        self.count = len(reductions)
        self.rng = random.Random(seed)
        self.gap, self.stall = gap, stall
        self.sent = 0
        self.results = []
        self._values = []
        self.valid, self.ready = False, False
        self.payload = self._garbage()

    @property
    def done(self):
        return len(self.results) == self.count

    def _garbage(self):
        r = self.rng.randint
        return {"act": [r(INT8_MIN, INT8_MAX) for _ in range(self.config.rows)],
                "weight": [r(INT8_MIN, INT8_MAX) for _ in range(self.config.cols)],
                "first": r(0, 1), "last": r(0, 1)}

    def advance(self, taken, value):
        """Record the transfers at the clock edge just passed (``value``: the accumulator
        taken from the array, or None) and pick the next cycle's ``valid``, ``payload`` and
        ``ready``."""
        if taken:
            self.sent += 1
            self.valid = False
        if value is not None:
            self._values.append(value)
            if len(self._values) == self.config.lanes:
                result = [0] * self.config.lanes
                for lane, v in zip(chain_order(self.config), self._values):
                    result[lane] = v
                self.results.append(result)
                self._values = []
        if not self.valid:
            self.valid = self.sent < len(self.terms) and self.rng.random() >= self.gap
            self.payload = self.terms[self.sent] if self.valid else self._garbage()
        self.ready = self.rng.random() >= self.stall

    def packed_payload(self):
        return Const.cast(term_layout(self.config).const(self.payload)).value


def unpack_result(config, bits):
    """An ``o.payload`` read from Verilog as an unsigned integer, as the signed accumulator."""
    return bits - (1 << config.acc_width) if bits >> (config.acc_width - 1) else bits


def run(component, name, testcase, build_dir, *, config, latency, seed):
    """Emit ``component`` as Verilog module ``name`` and run cocotb ``testcase`` on Icarus;
    an ``ice40`` design is simulated against yosys' own SB_MAC16 model."""
    sources, defines = [], {}
    if config.target == "ice40":
        sources.append(ice40_sim_model())
        defines = ICE40_SIM_DEFINES
    run_icarus(component, name, "cocotb_mac_array", testcase, build_dir,
               sources=sources, defines=defines, extra_env={
                   "MAC_CONFIG": json.dumps(config.__dict__),
                   "MAC_LATENCY": str(latency), "MAC_SEED": str(seed)})


# ---------------------------------------------------------------- cocotb side


def _env():
    config = AcceleratorConfig(**json.loads(os.environ["MAC_CONFIG"]))
    return config, int(os.environ["MAC_LATENCY"]), int(os.environ["MAC_SEED"])


async def _start(dut):
    """Clock and reset; afterwards inputs change on falling edges and are judged 1 ns later,
    long before the rising edge that acts on them, so reads never race the clock."""
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    for _ in range(2):
        await FallingEdge(dut.clk)
    dut.rst.value = 0


async def _settle():
    await Timer(1, unit="ns")


@cocotb.test()
async def mac_array_random(dut):
    """Random reductions with input gaps and output back-pressure match NumPy."""
    config, latency, seed = _env()
    rng = np.random.default_rng(seed)
    reductions = random_reductions(rng, config, 40)
    stim = Stimulus(config, reductions, seed=seed, gap=0.3, stall=0.3)
    await _start(dut)
    stim.advance(False, None)
    for _ in range(20 * sum(len(a) for a, _ in reductions) + 50 * latency):
        dut.i__valid.value = stim.valid
        dut.i__payload.value = stim.packed_payload()
        dut.o__ready.value = stim.ready
        await _settle()
        taken = bool(dut.i__valid.value) and bool(dut.i__ready.value)
        value = (unpack_result(config, dut.o__payload.value.to_unsigned())
                 if dut.o__valid.value and stim.ready else None)
        await FallingEdge(dut.clk)
        stim.advance(taken, value)
        if stim.done:
            break
    assert stim.results == expected_results(reductions)


@cocotb.test()
async def mac_array_latency(dut):
    """A one-term reduction starts to come out exactly ``latency`` cycles after its transfer,
    then leaves one accumulator a cycle."""
    config, latency, _ = _env()
    await _start(dut)
    dut.o__ready.value = 1
    dut.i__valid.value = 1
    term = {"act": [INT8_MIN] * config.rows, "weight": [INT8_MIN] * config.cols,
            "first": 1, "last": 1}
    dut.i__payload.value = Const.cast(term_layout(config).const(term)).value
    await _settle()
    assert dut.i__ready.value
    await FallingEdge(dut.clk)
    dut.i__valid.value = 0
    for cycle in range(1, latency + config.lanes + 1):
        await _settle()
        assert bool(dut.o__valid.value) == (latency <= cycle < latency + config.lanes), f"cycle {cycle}"
        if dut.o__valid.value:
            assert unpack_result(config, dut.o__payload.value.to_unsigned()) == 128 * 128
        await FallingEdge(dut.clk)


@cocotb.test()
async def dual_mul_exhaustive(dut):
    """Every signed 8x8 operand pair in each lane of DualMul8, with random CE stalls."""
    _, latency, seed = _env()
    rng = random.Random(seed)
    await _start(dut)

    def operands(k):
        # lane 1 walks the pairs in order, lane 0 in an odd-stride permutation of them
        hi, lo = k, (k * 40503 + 12345) & 0xFFFF
        return [((lo >> 8) ^ 0x80) - 0x80, ((hi >> 8) ^ 0x80) - 0x80], \
               [((lo & 0xFF) ^ 0x80) - 0x80, ((hi & 0xFF) ^ 0x80) - 0x80]

    pipeline = [None] * latency         # operands in flight, oldest last
    k = 0
    while k < 1 << 16 or any(pipeline):
        a, b = operands(k) if k < 1 << 16 else ([0, 0], [0, 0])
        ce = rng.random() >= 0.1
        dut.a.value = (a[0] & 0xFF) | (a[1] & 0xFF) << 8
        dut.b.value = (b[0] & 0xFF) | (b[1] & 0xFF) << 8
        dut.ce.value = ce
        await _settle()
        if pipeline[-1] is not None:
            p = dut.p.value.to_unsigned()
            got = [((p >> 16 * lane) & 0xFFFF ^ 0x8000) - 0x8000 for lane in range(2)]
            pa, pb = pipeline[-1]
            assert got == [pa[0] * pb[0], pa[1] * pb[1]], f"{pa} x {pb} gave {got}"
        await FallingEdge(dut.clk)
        if ce:
            pipeline = [(a, b) if k < 1 << 16 else None] + pipeline[:-1]
            k += 1
