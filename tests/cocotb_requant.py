"""cocotb checks of the requantiser's emitted Verilog (run under Icarus by
tests/test_requant.py), plus the vectors, golden expectations and stream driver that the
Amaranth-simulator tests share with them.

The configuration arrives in environment variables (``REQ_CONFIG``: AcceleratorConfig
fields as JSON, ``REQ_DIGIT_BITS``, ``REQ_SEED``), because cocotb runs this module in the
simulator's own Python process.
"""

import json
import os
import random

import cocotb
import numpy as np
from amaranth.hdl import Const
from amaranth.lib import data
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, Timer

from cocotb_support import run_icarus
from golden.config import AcceleratorConfig
from golden.quant import INT32_MAX, INT32_MIN, requantize, wrap_int32
from hdl.units.requant import Requantizer, output_layout, payload_layout

INT8_MIN, INT8_MAX = -128, 127
Q30, Q31_MAX = 1 << 30, INT32_MAX       # the ends of QuantizeMultiplier's range


# ---------------------------------------------------------------- vectors and expectations


def channel(x, multiplier, shift, acc=0):
    """A lane whose acc + bias wraps to ``x`` (int32), as the payload dict."""
    return {"acc": int(acc), "bias": int(wrap_int32(int(x) - int(acc))),
            "multiplier": int(multiplier), "shift": int(shift)}


def tensor(zero_point, act_min=INT8_MIN, act_max=INT8_MAX, single_rounding=0):
    return {"zero_point": int(zero_point), "act_min": int(act_min), "act_max": int(act_max),
            "single_rounding": int(single_rounding)}


def no_wrap_range(shift):
    """The x = wrap32(acc + bias) whose left shift stays in int32: the domain of the single
    rounding (whose golden form also needs shift <= 30)."""
    left = max(shift, 0)
    return INT32_MIN >> left, INT32_MAX >> left


def single_ok(lane):
    """Whether ``lane`` lies in the single rounding's domain (the compiler's guarantee)."""
    x = int(wrap_int32(lane["acc"] + lane["bias"]))
    low, high = no_wrap_range(lane["shift"])
    return lane["shift"] <= 30 and low <= x <= high


def transfers(config, lanes, tensors):
    """Group lane dicts into transfers of ``config.requant_lanes``, cycling through
    ``tensors`` (padding the last transfer with its first lanes)."""
    n = config.requant_lanes
    lanes = list(lanes)
    lanes += lanes[:(-len(lanes)) % n]
    return [{"lanes": lanes[i:i + n], **tensors[(i // n) % len(tensors)]}
            for i in range(0, len(lanes), n)]


def expected(transfer):
    """golden.quant.requantize of every lane of a transfer, in the transfer's rounding mode."""
    return [int(requantize(wrap_int32(lane["acc"] + lane["bias"]), lane["multiplier"], lane["shift"],
                           transfer["zero_point"], transfer["act_min"], transfer["act_max"],
                           single_rounding=bool(transfer["single_rounding"])))
            for lane in transfer["lanes"]]


def random_tensor(rng):
    """Zero point and activation bounds as TFLite makes them (the bounds contain the zero
    point), and either rounding mode."""
    zp = int(rng.integers(INT8_MIN, INT8_MAX + 1))
    single = int(rng.integers(2))
    kind = rng.integers(4)
    if kind == 0:
        return tensor(zp, single_rounding=single)                    # NONE
    if kind == 1:
        return tensor(zp, zp, single_rounding=single)                # RELU
    return tensor(zp, int(rng.integers(INT8_MIN, zp + 1)), int(rng.integers(zp, INT8_MAX + 1)), single)


def random_lane(rng, config, single=False):
    """Random operands over the whole domain (for the single rounding: the part where the
    left shift does not wrap).  Half of them aim x at a result near the int8 range (with
    ties likely), because uniform int32 inputs nearly always saturate."""
    limit = 1 << (config.acc_width - 1)
    acc = int(rng.integers(-limit, limit))
    multiplier = random_multiplier(rng)
    if config.requant_bits < 32:
        shift = int(rng.integers(-31, config.requant_bits - 1))
        low, high = narrow_range(config.requant_bits, shift)
    else:
        shift = int(rng.integers(-31, 31 if single else 32))
        low, high = no_wrap_range(shift) if single else (INT32_MIN, INT32_MAX)
    if rng.random() < 0.5 or multiplier == 0:
        x = int(rng.integers(low, high + 1))
    else:
        # result ~ x * m * 2**shift / 2**31, so aim x at a target of a few hundred (or at
        # an exact half for the ties); left shifts then wrap only rarely
        target = int(rng.integers(-400, 401)) + 0.5 * int(rng.integers(2))
        x = round(target * 2.0 ** (31 - shift) / multiplier) + int(rng.integers(-2, 3))
        x = min(max(x, low), high)
    return channel(x, multiplier, shift, acc)


def random_multiplier(rng):
    """0, the ends of QuantizeMultiplier's range, or anything 31 bits hold."""
    kind = rng.integers(10)
    return (0 if kind == 0 else Q30 if kind == 1 else Q31_MAX if kind == 2
            else int(rng.integers(0, 1 << 31)) if kind < 5 else int(rng.integers(Q30, 1 << 31)))


def narrow_range(bits, shift):
    """The x = wrap32(acc + bias) whose x' = x << left fits ``bits`` signed bits: the domain of
    a requantiser narrowed to ``requant_bits``."""
    left = max(shift, 0)
    return -((1 << (bits - 1)) >> left), ((1 << (bits - 1)) - 1) >> left


def in_domain(config, transfer):
    """Whether every lane of ``transfer`` lies in the requantiser's domain (all of it at 32
    bits, else :func:`narrow_range`)."""
    if config.requant_bits == 32:
        return True
    return all(narrow_range(config.requant_bits, lane["shift"])[0] <= wrap_int32(lane["acc"] + lane["bias"])
               <= narrow_range(config.requant_bits, lane["shift"])[1] for lane in transfer["lanes"])


def domain_edge_transfers(config):
    """:func:`edge_transfers`, or for a narrowed requantiser the corners of its domain: x' at
    both ends of ``requant_bits`` for right shifts, no shift and the largest left shift,
    against multiplier 0 and the ends of its range, in both rounding modes; then the
    whole-domain edges that fall inside it."""
    bits = config.requant_bits
    if bits == 32:
        return edge_transfers(config)
    lanes = []
    for shift in (-31, -8, -1, 0, 1, bits - 2):
        low, high = narrow_range(bits, shift)
        for x in sorted({low, low + 1, -1, 0, 1, high - 1, high}):
            for multiplier in (0, Q30, Q31_MAX):
                lanes.append(channel(x, multiplier, shift))
    corners = [item for mode in (0, 1)
               for item in transfers(config, lanes, [tensor(0, single_rounding=mode), tensor(-128, single_rounding=mode),
                                                     tensor(5, 5, single_rounding=mode)])]
    return corners + [item for item in edge_transfers(config) if in_domain(config, item)]


def random_transfers(rng, config, count):
    """Transfers in a random mix of both rounding modes."""
    items = []
    for _ in range(count):
        t = random_tensor(rng)
        items.append({"lanes": [random_lane(rng, config, t["single_rounding"])
                                for _ in range(config.requant_lanes)], **t})
    return items


def edge_transfers(config):
    """The double rounding's corners (:func:`double_edge_lanes`, whole domain) interleaved
    transfer by transfer with the single rounding's (:func:`single_edge_lanes`), so the
    stream switches mode at every transfer until the double rounding's surplus."""
    tensors = [tensor(0), tensor(-128), tensor(127), tensor(-128, -128, 127), tensor(127, -128, 127),
               tensor(5, 5), tensor(-3, -3, 20), tensor(10, -20, 10), tensor(0, 0, 0), tensor(-7, -7, -7)]
    double = transfers(config, double_edge_lanes(config), tensors)
    single = transfers(config, single_edge_lanes(config), [{**t, "single_rounding": 1} for t in tensors[::-1]])
    mixed = [item for pair in zip(double, single) for item in pair]
    return mixed + double[len(single):] + single[len(double):]


def single_edge_lanes(config):
    """The single rounding's corners, all without wrap: x' = x << left at both int32 ends,
    shifts -31 and +30, multiplier 0 and the ends of its range, acc + bias wrapping (it is
    the shifted value that must not), ties at every kind of shift (where the double
    rounding differs one x either side), saturation."""
    limit = 1 << (config.acc_width - 1)
    lanes = []
    for shift in (-31, -16, -1, 0, 1, 16, 30):
        low, high = no_wrap_range(shift)
        for x in sorted({low, low + 1, -1, 0, 1, high - 1, high}):
            for multiplier in (0, Q30, Q31_MAX):
                lanes.append(channel(x, multiplier, shift))
    for acc in (-limit, limit - 1):
        for bias in (INT32_MIN, INT32_MAX, -acc):
            lanes.append({"acc": acc, "bias": int(wrap_int32(bias)), "multiplier": Q31_MAX, "shift": -20})
    # ties x * m / 2**(31 - shift) = odd / 2 and one x either side: right shifts (with the
    # double rounding's own ties among them, see double_edge_lanes) ...
    for r in (1, 2, 5, 15, 22, 30):
        for q in (0, 1, 127):
            for sign in (1, -1):
                tie = sign * (2 * q + 1) << r
                lanes += [channel(x, Q30, -r) for x in (tie - 1, tie, tie + 1)
                          if INT32_MIN <= x <= INT32_MAX]
    # ... and left shifts, with m = odd * 2**(30 - shift) so that x * m * 2**shift is odd * 2**30
    for shift in (1, 2, 5, 29):
        for odd in (1, 3, (1 << (shift + 1)) - 1):
            for x in (1, -1, 3, -255):
                if no_wrap_range(shift)[0] <= x <= no_wrap_range(shift)[1]:
                    lanes.append(channel(x, odd << (30 - shift), shift))
    for x in (255, 256, 257, 100000):
        for sign in (1, -1):
            lanes.append(channel(sign * x, Q30, 0))
    return lanes


def double_edge_lanes(config):
    """Every corner of the double rounding: acc + bias at the int32 ends (and wrapping), x =
    INT32_MIN with the largest multiplier, multiplier 0, shifts -31 and +30/+31 with wrap,
    ties of both roundings (and the double rounding between them), saturation at both
    bounds, zero points -128 and 127."""
    limit = 1 << (config.acc_width - 1)
    lanes = []
    for x in (INT32_MIN, INT32_MIN + 1, -1, 0, 1, INT32_MAX - 1, INT32_MAX, Q30, -Q30):
        for multiplier in (0, 1, Q30, Q30 + 1, Q31_MAX):
            for shift in (-31, -30, -16, -1, 0, 1, 30, 31):
                lanes.append(channel(x, multiplier, shift))
    # acc at its own ends against biases that push acc + bias past the int32 ends
    for acc in (-limit, limit - 1):
        for bias in (INT32_MIN, INT32_MAX, -acc, INT32_MIN - acc if acc < 0 else INT32_MAX - acc):
            lanes.append({"acc": acc, "bias": int(wrap_int32(bias)), "multiplier": Q31_MAX, "shift": -20})
    # left shifts that wrap: 0x40000000 << 1, 3 << 30, odd << 31
    for x, shift in ((Q30, 1), (3, 30), (-3, 30), (5, 31), (0x12345678, 4), (-0x12345678, 7)):
        for multiplier in (Q30, Q31_MAX):
            lanes.append(channel(x, multiplier, shift))
    # SaturatingRoundingDoublingHighMul ties: x * 2**30 / 2**31 = x / 2 for odd x
    for x in (1, 3, 5, 255, 257, 511):
        for sign in (1, -1):
            lanes.append(channel(sign * x, Q30, 0))
    # RoundingDivideByPOT ties (high = odd * 2**(r-1)) and their double-rounding neighbours
    # (x one off, so the first rounding creates or breaks the tie)
    for r in (1, 2, 5, 15, 22):
        for q in (0, 1, 2, 50):
            for sign in (1, -1):
                high = sign * (2 * q + 1) << (r - 1)
                for x in (2 * high - 1, 2 * high, 2 * high + 1):
                    if INT32_MIN <= x <= INT32_MAX:
                        lanes.append(channel(x, Q30, -r))
    # saturation just past both ends, per zero point below
    for x in (129, 130, 255, 256, 257, 383, 384, 385, 100000):
        for sign in (1, -1):
            lanes.append(channel(sign * 2 * x, Q30, 0))
    return lanes


# ---------------------------------------------------------------- stream driver


class Stimulus:
    """Cycle-by-cycle producer and consumer for the requantiser's streams.

    The producer leaves random gaps (valid low, garbage payload), the consumer applies
    random back-pressure; both obey the stream rules, and the consumer checks that the
    unit does too (a stalled result stays valid and unchanged), so any lost, duplicated,
    reordered or altered result shows up.  Transfer and result cycles are recorded.
    ``tensor``: fields the payload holds in every cycle, gaps included (``held_tensor``).
    """

    def __init__(self, config, items, *, seed, gap=0.0, stall=0.0, tensor=None):
        self.config = config
        self.tensor = tensor or {}
        self.items = items
        self.rng = random.Random(seed)
        self.gap, self.stall = gap, stall
        self.results, self.in_cycles, self.out_cycles = [], [], []
        self.valid, self.ready = False, False
        self.payload = self._garbage()
        self.held = None            # a result offered but not taken in the last cycle
        self.cycle = 0

    @property
    def done(self):
        return len(self.results) == len(self.items)

    def _garbage(self):
        r = self.rng.randint
        return {"lanes": [{"acc": r(-2 ** 24, 2 ** 24 - 1), "bias": r(INT32_MIN, INT32_MAX),
                           "multiplier": r(0, 2 ** 31 - 1), "shift": r(-32, 31)}
                          for _ in range(self.config.requant_lanes)],
                "zero_point": r(INT8_MIN, INT8_MAX), "act_min": r(INT8_MIN, INT8_MAX),
                "act_max": r(INT8_MIN, INT8_MAX), "single_rounding": r(0, 1), **self.tensor}

    def advance(self, taken, out_valid, out_payload):
        """Record what the clock edge just passed did and pick the next cycle's ``valid``,
        ``payload`` and ``ready``."""
        if self.held is not None:
            assert out_valid and out_payload == self.held, "a stalled result changed or vanished"
        self.held = out_payload if out_valid and not self.ready else None
        if out_valid and self.ready:
            self.results.append(out_payload)
            self.out_cycles.append(self.cycle)
        if taken:
            self.in_cycles.append(self.cycle)
            self.valid = False
        if not self.valid:
            sent = len(self.in_cycles)
            self.valid = sent < len(self.items) and self.rng.random() >= self.gap
            self.payload = self.items[sent] if self.valid else self._garbage()
        self.ready = self.rng.random() >= self.stall
        self.cycle += 1

    def packed_payload(self):
        return Const.cast(payload_layout(self.config).const(self.payload)).value


def unpack_results(config, bits):
    """The lanes of an ``o.payload`` read from Verilog as an unsigned integer."""
    view = data.Const(output_layout(config), bits)
    return [view[lane] for lane in range(config.requant_lanes)]


def run(component, name, testcases, build_dir, *, config, digit_bits, seed):
    """Emit ``component`` as Verilog module ``name`` and run the cocotb ``testcases`` of this
    module on Icarus."""
    run_icarus(component, name, "cocotb_requant", testcases, build_dir, extra_env={
        "REQ_CONFIG": json.dumps(config.__dict__),
        "REQ_DIGIT_BITS": str(digit_bits), "REQ_SEED": str(seed)})


# ---------------------------------------------------------------- cocotb side


def _env():
    config = AcceleratorConfig(**json.loads(os.environ["REQ_CONFIG"]))
    return config, Requantizer(config, int(os.environ["REQ_DIGIT_BITS"])), int(os.environ["REQ_SEED"])


async def _start(dut):
    """Clock and reset; afterwards inputs change on falling edges and are judged 1 ns later,
    long before the rising edge that acts on them, so reads never race the clock."""
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    for _ in range(2):
        await FallingEdge(dut.clk)
    dut.rst.value = 0


async def _settle():
    await Timer(1, unit="ns")


async def _drive(dut, config, stim, budget):
    for _ in range(budget):
        dut.i__valid.value = stim.valid
        dut.i__payload.value = stim.packed_payload()
        dut.o__ready.value = stim.ready
        await _settle()
        taken = bool(dut.i__valid.value) and bool(dut.i__ready.value)
        out_valid = bool(dut.o__valid.value)
        out = unpack_results(config, dut.o__payload.value.to_unsigned()) if out_valid else None
        await FallingEdge(dut.clk)
        stim.advance(taken, out_valid, out)
        if stim.done:
            return
    raise AssertionError(f"no progress: {len(stim.results)} of {len(stim.items)} results after {budget} cycles")


@cocotb.test()
async def requant_vectors(dut):
    """Edge and random transfers of both rounding modes, mixed, with input gaps and output
    back-pressure, match golden.quant."""
    config, unit, seed = _env()
    items = domain_edge_transfers(config) + random_transfers(np.random.default_rng(seed), config, 300)
    assert {item["single_rounding"] for item in items} == {0, 1}
    stim = Stimulus(config, items, seed=seed, gap=0.3, stall=0.3)
    await _start(dut)
    stim.advance(False, False, None)
    await _drive(dut, config, stim, 4 * unit.interval * len(items) + 10 * unit.latency)
    assert stim.results == [expected(item) for item in items]


@cocotb.test()
async def requant_timing(dut):
    """Back to back: a transfer every ``interval`` cycles, each result ``latency`` cycles later."""
    config, unit, seed = _env()
    items = random_transfers(np.random.default_rng(seed + 1), config, 20)
    stim = Stimulus(config, items, seed=seed)
    await _start(dut)
    stim.advance(False, False, None)
    await _drive(dut, config, stim, unit.interval * len(items) + unit.latency + 10)
    assert stim.results == [expected(item) for item in items]
    assert np.diff(stim.in_cycles).tolist() == [unit.interval] * (len(items) - 1)
    assert (np.array(stim.out_cycles) - stim.in_cycles).tolist() == [unit.latency] * len(items)
