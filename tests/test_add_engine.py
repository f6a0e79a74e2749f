# amaranth: UnusedElaboratable=no
"""The add engine alone in the Amaranth simulator: one ADD descriptor of a compiled model,
the four activation banks answered from NumPy (both input maps stored at their bases, random
bytes everywhere else, one cycle of latency, data held while ``en`` is low), the parameter
memory answered from ``program.params`` the same way, every element taken from ``o`` under
random back-pressure while ``param_free`` (the drain's X and P stages empty) drops at random.

Each element the engine emits covers one byte offset of one bank (real elements and the
layout's padding bytes alike) and must carry the first input's table entry as ``acc``
(``param_base + 128 + a``), the second input's entry as ``param`` (``param_base + 384 + b``)
and its own bank and output address; requantised as the drain does (``acc`` plus the entry's
bias, the entry's multiplier and shift, the descriptor's zero point and clamp) the real
elements must equal the emulator's ADD output (:func:`compiler.emulate._add`).

A second input that broadcasts (``LayerDesc.other_shape``, one value or one per channel,
stored as one pixel in bank 0) is tested where the compiler has it: its byte for offset ``o``
of every bank is bank 0's ``other_base + o mod C``.
"""

import dataclasses
from unittest import mock

import numpy as np
import pytest

import compiler.emulate
from compiler.emulate import BankedMemory, run_program
from compiler.program import ADD, bank_bytes, compile_model
from golden.model import Model, QParams
from golden.ops import Add, Mean
from golden.quant import requantize
from hdl.core.add_engine import AddEngine
from hdl.core.layer_desc import encode
from model_builders import residual_model
from unit_support import (CONFIG, Q_IN, StreamTaker, bank_ports, conv_layer, kick, lossy_ready, out_positions,
                          preload_banks, read_port, simulate)

#: Two ADD steps need 2 x 512 table entries besides the convolutions' channels: more than
#: the default 1,024-entry parameter memory (and an 11-bit parameter address).
BIG_PARAMS = CONFIG.with_(param_depth=2048)

#: The compiler maps broadcasting ADDs (a second input of one pixel) onto the engine.
# ---------------------------------------------------------------- small ADD models

def parallel_model(shape=(7, 5, 3), oc=3, activation="NONE", out_q=QParams(0.15, 3), seed=11):
    """Two convolutions of the input with different output scales and zero points (a 3x3
    without activation, a 1x1 with RELU), added: odd map sides, so the banks of odd rows and
    columns hold fewer pixels than bank 0 and the engine walks their padding bytes too."""
    rng = np.random.default_rng(seed)
    qa, qb = QParams(0.25, 5), QParams(0.08, -20)
    a = conv_layer(rng, "a", shape, oc, 3, activation="NONE", out_q=qa)
    b = conv_layer(rng, "b", shape, oc, 1, activation="RELU", out_q=qb)
    add = Add(name="add", input_shape=a.output_shape, inputs=("a", "b"), other_shape=b.output_shape,
              input_q=qa, other_q=qb, output_q=out_q, activation=activation)
    return Model(name="parallel", input_shape=shape, input_q=Q_IN, layers=(a, b, add))


def skip_model(shape, conv_first, activation="NONE", out_q=QParams(0.1, -10), seed=12):
    """ADD of the model input (stored at bank base 0) and a convolution of it (stored above
    the input); ``conv_first``: the convolution is the first input, so ``in_base`` is above
    ``other_base``."""
    rng = np.random.default_rng(seed)
    qc = QParams(0.09, -40)
    conv = conv_layer(rng, "c", shape, shape[2], 3, activation="NONE", out_q=qc)
    ins, qs = (("c", "input"), (qc, Q_IN)) if conv_first else (("input", "c"), (Q_IN, qc))
    add = Add(name="add", input_shape=shape, inputs=ins, other_shape=shape, input_q=qs[0], other_q=qs[1],
              output_q=out_q, activation=activation)
    return Model(name="skip", input_shape=shape, input_q=Q_IN, layers=(conv, add))


def two_add_model(shape=(5, 6, 3), oc=4, seed=13):
    """Two residual blocks: a, b on a, s = ADD(a, b) with RELU, c on s, t = ADD(c, s): two
    ADD steps (their tables at param_base 8 and 524), the second reading the first's output
    and its tables reaching past entry 1,023.  Needs :data:`BIG_PARAMS`."""
    rng = np.random.default_rng(seed)
    qa, qb, qs, qc, qt = QParams(0.05, -128), QParams(0.08, 3), QParams(0.1, -7), QParams(0.03, 11), QParams(0.12, 0)
    a = conv_layer(rng, "a", shape, oc, 3, activation="RELU", out_q=qa)
    b = conv_layer(rng, "b", a.output_shape, oc, 1, activation="NONE", q=qa, out_q=qb, src="a")
    s = Add(name="s", input_shape=a.output_shape, inputs=("a", "b"), other_shape=b.output_shape,
            input_q=qa, other_q=qb, output_q=qs, activation="RELU")
    c = conv_layer(rng, "c", s.output_shape, oc, 3, activation="NONE", q=qs, out_q=qc, src="s")
    t = Add(name="t", input_shape=c.output_shape, inputs=("c", "s"), other_shape=s.output_shape,
            input_q=qc, other_q=qs, output_q=qt)
    return Model(name="two_adds", input_shape=shape, input_q=Q_IN, layers=(a, b, s, c, t))


def broadcast_model(small_first, scalar, shape=(5, 7, 3), oc=4, seed=16):
    """ADD of a convolution's 5x7x4 output (odd sides) and its spatial MEAN, one value per
    channel (1, 1, 4), or with ``scalar`` the MEAN of a one-channel convolution of it, one
    value (1, 1, 1); ``small_first``: the small input is the ADD's first (the compiler swaps
    the two, as the engine repeats its second input)."""
    rng = np.random.default_rng(seed)
    qa = QParams(0.2, -6)
    a = conv_layer(rng, "a", shape, oc, 3, activation="NONE", out_q=qa)
    layers, src = [a], "a"
    if scalar:
        layers.append(conv_layer(rng, "one", a.output_shape, 1, 1, activation="NONE", q=qa, out_q=QParams(0.3, 9),
                                 src="a"))
        src = "one"
    mean = Mean(name="mean", input_shape=layers[-1].output_shape, inputs=(src,), axes=(0, 1), keep_dims=True,
                input_q=layers[-1].output_q, output_q=QParams(0.04, 7))
    big, small = (a.name, a.output_shape, qa), (mean.name, mean.output_shape, mean.output_q)
    first, second = (small, big) if small_first else (big, small)
    add = Add(name="add", input_shape=first[1], inputs=(first[0], second[0]), other_shape=second[1],
              input_q=first[2], other_q=second[2], output_q=QParams(0.15, -4), activation="RELU")
    return Model(name="bcast", input_shape=shape, input_q=Q_IN, layers=(*layers, mean, add))


BROADCAST_MODELS = {
    "channels-second": lambda: broadcast_model(small_first=False, scalar=False),
    "channels-first": lambda: broadcast_model(small_first=True, scalar=False),
    "scalar-second": lambda: broadcast_model(small_first=False, scalar=True),
    "scalar-first": lambda: broadcast_model(small_first=True, scalar=True),
}


MODELS = {
    # model_builders.residual_model: conv a, conv b on a, ADD(a, b) with RELU (different
    # scales, a's zero point -128), then a dense layer: the ADD's tables at param_base 8.
    "residual-relu": lambda: residual_model(),
    # Two conv outputs of different scales, 7x5x3 (odd height and width), no activation.
    "parallel-odd-7x5x3": lambda: parallel_model(),
    # The same with RELU6 and an output scale that makes both clamps bite.
    "parallel-relu6": lambda: parallel_model(shape=(5, 7, 2), oc=2, activation="RELU6",
                                             out_q=QParams(0.03, -100), seed=14),
    # ADD(input at base 0, conv) on a 3x1x5 map: one column, so banks 1 and 3 hold only padding.
    "skip-input-first-3x1x5": lambda: skip_model((3, 1, 5), conv_first=False, activation="RELU"),
    # ADD(conv, input) on 5x3x1: the first input stored above the second (in_base > other_base).
    "skip-conv-first-5x3x1": lambda: skip_model((5, 3, 1), conv_first=True, out_q=QParams(0.1, 30), seed=15),
}


# ---------------------------------------------------------------- the emulator's view

@dataclasses.dataclass
class AddCase:
    program: object
    index: int            #: the ADD step under test
    d: object             #: its LayerDesc
    fields: dict          #: hdl.core.layer_desc.encode of it
    a: np.ndarray         #: the first input map as the emulator's banks hold it when the step runs
    b: np.ndarray         #: the second input map (one pixel when it broadcasts)
    out: np.ndarray       #: the emulator's output of the step (H, W, C)


def other_shape(d):
    """The second input's shape as stored: its own when it broadcasts, else the first's."""
    return tuple(d.other_shape or d.in_shape)


def emulate_adds(program, x):
    """{ADD step name: (a, b, out)} from one emulator run of ``program`` on ``x``: the input
    maps read, and the output written, by :func:`compiler.emulate._add` itself."""
    seen = {}
    real = compiler.emulate._add

    def spy(mem, d, prog):
        a, b = mem.load(d.in_shape, d.in_base).copy(), mem.load(other_shape(d), d.other_base).copy()
        real(mem, d, prog)
        seen[d.name] = (a, b, mem.load(d.out_shape, d.out_base).copy())

    with mock.patch.object(compiler.emulate, "_add", spy):
        run_program(program, program.start_on_host(np.asarray(x)[None]))
    return seen


def add_cases(model, config=CONFIG, seed=0):
    """Every ADD step of ``model`` compiled for ``config``, for one random input."""
    program = compile_model(model, config)
    x = np.random.default_rng(seed).integers(-128, 128, program.input_shape).astype(np.int8)
    seen = emulate_adds(program, x)
    cases = []
    for k, d in enumerate(program.layers):
        if d.kind == ADD:
            a, b, out = seen[d.name]
            cases.append(AddCase(program, k, d, encode(d, config, k == len(program.layers) - 1), a, b, out))
    assert cases, "no ADD step"
    return cases


def add_case(model, config=CONFIG, seed=0):
    [case] = add_cases(model, config, seed)
    return case


def preload_inputs(case, rng, config):
    """The banks over a bank port's whole address range: random bytes, the first input map
    at ``in_base`` and the second at ``other_base`` (:class:`compiler.emulate.BankedMemory`)."""
    d = case.d
    banks = preload_banks(config, d.in_shape, d.in_base, case.a, rng)
    mem = BankedMemory(config)
    mem.banks[:] = banks[:, :config.act_bank_bytes]
    mem.store(other_shape(d), d.other_base, case.b)
    banks[:, :config.act_bank_bytes] = mem.banks
    return banks


def expected_elements(case, banks, config):
    """{(bank, address): (acc, param)} of every element the descriptor covers: each byte
    offset below ``add_len`` of each bank, padding bytes of the layout included; the tables
    looked up in ``program.params`` with the bytes the banks hold (a broadcast second input:
    bank 0's byte of the offset's channel, for all four banks)."""
    d, bias = case.d, case.program.params.bias
    small = other_shape(d)
    want = {}
    for offset in range(bank_bytes(d.in_shape)):
        for k in range(config.banks):
            a = int(banks[k, d.in_base + offset])
            if small == tuple(d.in_shape):
                b = int(banks[k, d.other_base + offset])
            else:
                b = int(banks[0, d.other_base + offset % small[2]])
            want[k, d.out_base + offset] = (int(bias[d.param_base + 128 + a]), d.param_base + 384 + b)
    return want


def drain_value(case, acc, param):
    """The byte the drain writes for an element: ``acc`` plus the bias of entry ``param``,
    requantised with that entry's multiplier and shift and the descriptor's output zero point
    and clamp (double rounding, as the ADD descriptor's ``single_rounding`` is 0)."""
    d, p = case.d, case.program.params
    return int(requantize(np.int64(acc) + p.bias[param], p.multiplier[param], p.shift[param], d.zero_point,
                          d.act_min, d.act_max))


def check_elements(case, banks, taken, config):
    """Every element once, carrying the table entries of its bytes; the real ones requantise
    to the emulator's output."""
    d = case.d
    want = expected_elements(case, banks, config)
    got, twice = {}, []
    for acc, param, bank, addr in taken:
        if (bank, addr) in got:
            twice.append((bank, addr))
        got[bank, addr] = (acc, param)
    assert not twice, f"{len(twice)} elements emitted more than once, first {twice[:5]}"
    stray = sorted(set(got) - set(want))
    assert not stray, f"{len(stray)} elements outside the output's bytes, first {stray[:5]}"
    missing = sorted(set(want) - set(got))
    assert not missing, f"{len(missing)} of {len(want)} elements never emitted, first {missing[:5]}"
    bad = [(pos, got[pos], want[pos]) for pos in sorted(want) if got[pos] != want[pos]]
    assert not bad, (f"{len(bad)} elements with wrong (acc, param), first at (bank, addr) {bad[0][0]}: "
                     f"{bad[0][1]} instead of {bad[0][2]}")
    positions = out_positions(d)
    values = np.array([drain_value(case, *got[pos]) for pos in positions]).reshape(d.out_shape)
    np.testing.assert_array_equal(values, case.out, err_msg="requantised elements differ from the emulator's ADD")


# ---------------------------------------------------------------- simulation

def run_engine(cases, stall, busy, seed=0, config=CONFIG, shared=False):
    """Simulate one engine over each case's descriptor in turn (the banks reloaded while it
    is idle), ``o.ready`` low a ``stall`` fraction of cycles and ``param_free`` low a ``busy``
    fraction; returns per case the elements taken ((acc, param, bank, addr) in order) and the
    cycles from ``start`` to ``done``.  Checks the protocols on the way: the parameter memory
    is read only while ``param_free`` is high, a refused element stays unchanged, ``done``
    rises only after the last element has left and nothing is read or offered after it.
    ``shared``: on cycles the engine does not read the parameter memory, another reader (the
    drain) reads junk through it half the time, so its output changes under a waiting element."""
    rng = np.random.default_rng(seed)
    dut = AddEngine(config)
    state = {}

    def read_params(addr):
        a, p = int(addr), state["params"]
        if a >= len(p.bias):
            return {"bias": 0x1234567, "multiplier": 0x7654321, "shift": -5}
        return {"bias": int(p.bias[a]), "multiplier": int(p.multiplier[a]), "shift": int(p.shift[a])}

    results = []
    reads = [dut.param.en, *(port.en for port in dut.banks)]

    async def run_one(ctx, case):
        d = case.d
        state["banks"] = banks = preload_inputs(case, rng, config)
        state["params"] = case.program.params
        offsets = bank_bytes(d.in_shape)
        elements = offsets * config.banks
        # Two cycles an element, three a byte offset, each element waiting for both
        # ``o.ready`` and ``param_free``; twice that and a margin.
        bound = int((2 * elements + 3 * offsets) / ((1 - stall) * (1 - busy))) * 2 + 100
        stream = StreamTaker("element")
        taken = stream.taken
        await kick(ctx, dut, case.fields)
        for cycle in range(bound):
            ready, free = lossy_ready(rng, stall), lossy_ready(rng, busy)
            ctx.set(dut.o.ready, ready)
            ctx.set(dut.param_free, free)
            _, _, valid, p, done, param_en = await ctx.tick().sample(dut.o.valid, dut.o.payload, dut.done,
                                                                      dut.param.en)
            assert free or not param_en, f"cycle {cycle}: parameter memory read while param_free is low"
            stream.step(cycle, valid, ready, (p.acc, p.param, p.bank, p.addr))
            if done:
                assert not valid, f"cycle {cycle}: done with an element on o"
                assert len(taken) == elements, f"cycle {cycle}: done after {len(taken)} of {elements} elements"
                break
        else:
            raise AssertionError(f"add engine not done within {bound} cycles ({len(taken)} of {elements} elements)")
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.param_free, 1)
        for _ in range(6):
            _, _, valid, done, *enables = await ctx.tick().sample(dut.o.valid, dut.done, *reads)
            assert done and not valid and not any(enables), "an element or a memory read after done"
        results.append((taken, cycle + 1, banks))

    async def main(ctx):
        for case in cases:
            await run_one(ctx, case)

    async def drain_reads(ctx):
        async for _, _, enabled in ctx.tick().sample(dut.param.en):
            if not enabled and rng.random() < 0.5:
                ctx.set(dut.param.data, read_params(10_000_000))

    background = [*bank_ports(dut.banks, lambda: state["banks"]), read_port(dut.param, read_params)]
    simulate(dut, main, background + ([drain_reads] if shared else []))
    return results


def run_with_drain(case, rq_stall, seed=0, config=CONFIG):
    """The engine wired as :class:`hdl.core.accelerator.Accelerator` wires it to the drain,
    the drain's side modelled in the testbench: ``o.ready`` is the drain's X stage empty,
    ``param_free`` its X and P stages empty, the element moves from X to P when P frees, and
    P to a requantiser (ready with probability ``1 - rq_stall``).  One parameter memory
    serves both: the engine's read when its ``en`` is high, else the drain's (``en`` while
    P is free, at the X element's entry), so the data the engine addressed is overwritten
    by the drain's reads whenever the engine does not read.  Returns the elements taken,
    the cycles from ``start`` to ``done`` and the banks."""
    rng = np.random.default_rng(seed)
    dut = AddEngine(config)
    p = case.program.params
    d = case.d
    banks = preload_inputs(case, rng, config)
    offsets = bank_bytes(d.in_shape)
    elements = offsets * config.banks
    bound = int(6 * elements / (1 - rq_stall)) + 3 * offsets + 100
    out = {}

    def entry(addr):
        a = int(addr)
        return {"bias": int(p.bias[a]), "multiplier": int(p.multiplier[a]), "shift": int(p.shift[a])}

    async def main(ctx):
        x_valid, x_param, p_valid = False, 0, False
        taken = []
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.param_free, 1)
        await kick(ctx, dut, case.fields)
        for cycle in range(bound):
            free = not x_valid and not p_valid
            ctx.set(dut.o.ready, not x_valid)
            ctx.set(dut.param_free, free)
            _, _, valid, pl, done, en, addr = await ctx.tick().sample(dut.o.valid, dut.o.payload, dut.done,
                                                                     dut.param.en, dut.param.addr)
            assert free or not en, f"cycle {cycle}: parameter memory read while the drain's stages are busy"
            p_take = p_valid and rng.random() >= rq_stall
            p_free = not p_valid or p_take
            x_move = x_valid and p_free
            if en:
                ctx.set(dut.param.data, entry(addr))
            elif p_free:
                ctx.set(dut.param.data, entry(x_param))       # the drain's read of its X element
            take = valid and not x_valid
            assert take or not valid, f"cycle {cycle}: an element offered while the drain's X stage is full"
            if take:
                taken.append((pl.acc, pl.param, pl.bank, pl.addr))
            if p_free:
                p_valid = x_move
            x_valid = (x_valid and not x_move) or take
            if take:
                x_param = pl.param
            if done:
                assert len(taken) == elements, f"cycle {cycle}: done after {len(taken)} of {elements} elements"
                break
        else:
            raise AssertionError(f"add engine not done within {bound} cycles ({len(taken)} of {elements} elements)")
        out["result"] = (taken, cycle + 1, banks)

    simulate(dut, main, bank_ports(dut.banks, lambda: banks))
    return out["result"]


def cycles_per_offset(config=CONFIG):
    """The engine's schedule with ``o.ready`` and ``param_free`` high: per byte offset the
    two bank reads and the latch of the second (three cycles), then a parameter look-up and
    an issue cycle for each of the ``banks`` elements."""
    return 3 + 2 * config.banks


# ---------------------------------------------------------------- tests

@pytest.mark.parametrize("name", MODELS)
def test_elements_under_backpressure_equal_emulator(name):
    """Every element's (acc, param, bank, address) from the tables and the banks' bytes, and
    the real ones requantised equal to the emulator's ADD, with ``o.ready`` low 40 % and
    ``param_free`` low 30 % of cycles."""
    case = add_case(MODELS[name]())
    [(taken, _, banks)] = run_engine([case], stall=0.4, busy=0.3, seed=1)
    check_elements(case, banks, taken, CONFIG)


def test_descriptors_back_to_back_on_one_engine():
    """The sequencer reuses the engine: both ADD steps of a two-block model (the second
    reading the first's output, parameter entries above 1,024) and the ADDs of two other
    models, one after the other on one instance."""
    cases = add_cases(two_add_model(), BIG_PARAMS, seed=5)
    assert len(cases) == 2
    assert cases[1].d.param_base + 512 > 1024, "the second ADD's tables should reach past entry 1,023"
    cases += [add_case(MODELS[name](), BIG_PARAMS, seed=5) for name in ("parallel-odd-7x5x3", "skip-conv-first-5x3x1")]
    for case, (taken, _, banks) in zip(cases, run_engine(cases, stall=0.3, busy=0.3, seed=5, config=BIG_PARAMS)):
        check_elements(case, banks, taken, BIG_PARAMS)


@pytest.mark.parametrize("name", BROADCAST_MODELS)
def test_broadcast_second_input(name):
    """A second input of one pixel repeated over the first's: one value per channel or one
    value, given first or second in the model; the rest of bank 0 and the other banks at
    ``other_base`` hold random bytes.  ``o.ready`` low 40 %, ``param_free`` low 30 %."""
    case = add_case(BROADCAST_MODELS[name](), seed=7)
    assert other_shape(case.d)[:2] == (1, 1) and case.b.size in (1, case.d.in_shape[2])
    [(taken, _, banks)] = run_engine([case], stall=0.4, busy=0.3, seed=7)
    check_elements(case, banks, taken, CONFIG)


@pytest.mark.parametrize("name", ["residual-relu", "skip-input-first-3x1x5"])
def test_shared_parameter_port_with_drain_model(name):
    """As in the accelerator: ``o.ready`` and ``param_free`` from a model of the drain's X
    and P stages, the drain reading the shared parameter memory whenever the engine does not
    (so held data is not the engine's), its requantisers refusing 30 % of cycles."""
    case = add_case(MODELS[name](), seed=6)
    taken, _, banks = run_with_drain(case, rq_stall=0.3, seed=6)
    check_elements(case, banks, taken, CONFIG)


@pytest.mark.parametrize("name", MODELS)
def test_rate_when_always_ready(name):
    """With ``o.ready`` and ``param_free`` high throughout, ``start`` to ``done`` takes at
    most the schedule the engine's docstring describes (per byte offset: read the four bytes
    of each input, three cycles, then issue four elements, a look-up and an issue cycle each)
    and two cycles more; ``-s`` prints the cycles per element."""
    case = add_case(MODELS[name](), seed=2)
    [(taken, cycles, banks)] = run_engine([case], stall=0.0, busy=0.0, seed=2)
    check_elements(case, banks, taken, CONFIG)
    offsets, real = bank_bytes(case.d.in_shape), int(np.prod(case.d.out_shape))
    print(f"{name}: {cycles} cycles, {len(taken)} elements ({cycles / len(taken):.3f} cycles/element), "
          f"{real} of them real ({cycles / real:.3f} cycles/real element)")
    assert cycles <= offsets * cycles_per_offset() + 2, f"{cycles} cycles for {offsets} offsets"


def test_waiting_element_keeps_its_entry_when_the_drain_reads_the_memory():
    """The drain shares the parameter memory: while an element waits on ``o`` the memory's
    output may change, and the element must still carry the entry it looked up."""
    case = add_case(parallel_model(), seed=9)
    [(taken, _, banks)] = run_engine([case], stall=0.5, busy=0.3, seed=9, shared=True)
    check_elements(case, banks, taken, CONFIG)
