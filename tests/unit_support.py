"""Harness shared by the unit tests of the core's units (tests/test_feeder.py,
tests/test_drain.py, tests/test_pool_engine.py): small models compiled by
:func:`compiler.program.compile_model`, the state the emulator (:mod:`compiler.emulate`)
gives a layer, accumulators computed in NumPy from the model's own weights, and Python
models of the memories the units read (one cycle of latency, data held while the enable
is low, as :class:`hdl.core.accelerator.Accelerator` wires them).
"""

import dataclasses
import functools
from unittest import mock

import numpy as np
from amaranth.sim import Simulator

import compiler.emulate
from compiler.emulate import BankedMemory, run_program
from compiler.program import CONV, CompileError, bank_address, compile_model, space_to_depth_weights
from golden.config import AcceleratorConfig
from golden.generate import random_model
from golden.model import Model, QParams
from golden.ops import Conv2D, DepthwiseConv2D, FullyConnected, Lookup, Pool2D, Reshape
from hdl.core.layer_desc import encode

#: The default configuration: a 4 x 4 array, two requantisers with 4-bit digits, 2,560-byte banks.
CONFIG = AcceleratorConfig()
Q_IN = QParams(0.05, -3)


# ---------------------------------------------------------------- small models

def _weighted(rng, n):
    return dict(bias=rng.integers(-3000, 3000, n).astype(np.int32),
                weight_scales=rng.uniform(0.004, 0.02, n).astype(np.float32))


def conv_layer(rng, name, shape, oc, k, stride=(1, 1), padding="SAME", activation="RELU", q=Q_IN,
               out_q=QParams(0.3, 4), src="input"):
    kh, kw = (k, k) if isinstance(k, int) else k
    return Conv2D(name=name, input_shape=shape, inputs=(src,),
                  weights=rng.integers(-128, 128, (oc, kh, kw, shape[2])).astype(np.int8),
                  input_q=q, output_q=out_q, stride=stride, padding=padding, activation=activation,
                  **_weighted(rng, oc))


def conv_model(shape=(5, 7, 3), oc=6, k=3, stride=(1, 1), padding="SAME", seed=0, pool=False, table=None):
    """One convolution, optionally with a fusable 2x2 max pool and/or a LOGISTIC/TANH table."""
    rng = np.random.default_rng(seed)
    conv = conv_layer(rng, "conv", shape, oc, k, stride, padding, activation="NONE" if table else "RELU")
    layers = [conv]
    if pool:
        layers.append(Pool2D(name="pool", input_shape=conv.output_shape, inputs=("conv",), kind="MAX",
                             filter=(2, 2), stride=(2, 2), padding="VALID", q=conv.output_q))
    if table:
        layers.append(Lookup(name="table", input_shape=layers[-1].output_shape, inputs=(layers[-1].name,),
                             kind=table, input_q=conv.output_q))
    return Model(name="conv", input_shape=shape, input_q=Q_IN, layers=tuple(layers))


def depthwise_model(shape=(6, 5, 3), mult=3, stride=(1, 1), padding="SAME", seed=1, pool=False):
    rng = np.random.default_rng(seed)
    c = shape[2]
    dw = DepthwiseConv2D(name="dw", input_shape=shape, weights=rng.integers(-128, 128, (1, 3, 3, c * mult)).astype(np.int8),
                         input_q=Q_IN, output_q=QParams(0.3, 4), stride=stride, padding=padding, activation="RELU",
                         **_weighted(rng, c * mult))
    layers = [dw]
    if pool:
        layers.append(Pool2D(name="pool", input_shape=dw.output_shape, inputs=("dw",), kind="MAX", filter=(2, 2),
                             stride=(2, 2), padding="VALID", q=dw.output_q))
    return Model(name="dw", input_shape=shape, input_q=Q_IN, layers=tuple(layers))


def dense_model(shape=(4, 3, 2), conv_oc=5, units=6, seed=2):
    """A 1x1 convolution, a flatten and a dense layer: the dense layer's kernel covers its
    whole (H, W, C) input map, which is stored at a base above zero."""
    rng = np.random.default_rng(seed)
    h, w, _ = shape
    conv = conv_layer(rng, "conv", shape, conv_oc, 1, padding="VALID")
    n = h * w * conv_oc
    flat = Reshape(name="flat", input_shape=conv.output_shape, inputs=("conv",), new_shape=(n,), q=conv.output_q)
    fc = FullyConnected(name="fc", input_shape=(n,), inputs=("flat",),
                        weights=rng.integers(-128, 128, (units, n)).astype(np.int8),
                        input_q=conv.output_q, output_q=QParams(0.5, -2), **_weighted(rng, units))
    return Model(name="dense", input_shape=shape, input_q=Q_IN, layers=(conv, flat, fc))


def pool_model(shape, kind, filt, stride, padding, activation="NONE", q=QParams(0.05, -7), conv_first=False,
               seed=3):
    """A POOL step alone (input at bank base 0) or after a 1x1 convolution (so the map it
    pools is stored at a base above zero)."""
    rng = np.random.default_rng(seed)
    layers, src = [], "input"
    if conv_first:
        layers.append(conv_layer(rng, "conv", shape, shape[2], 1, padding="VALID", activation="NONE", out_q=q))
        src = "conv"
    layers.append(Pool2D(name="pool", input_shape=shape, inputs=(src,), kind=kind, filter=filt, stride=stride,
                         padding=padding, activation=activation, q=q))
    return Model(name="pool", input_shape=shape, input_q=layers[0].input_q, layers=tuple(layers))


# ---------------------------------------------------------------- the emulator's view

def emulate_upto(program, x, k):
    """The emulator's output of step ``k`` for one stored input, with the pre-requantisation values
    its CONV steps handed to ``golden.quant.requantize`` (accumulator plus folded bias; for a
    fused pool after the 2x2 max), one array per CONV step up to ``k``."""
    captured = []
    real = compiler.emulate.requantize

    def spy(acc, *args, **kwargs):
        captured.append(np.array(acc, np.int64))
        return real(acc, *args, **kwargs)

    head = dataclasses.replace(program, layers=program.layers[:k + 1])
    with mock.patch.object(compiler.emulate, "requantize", spy):
        out = run_program(head, np.asarray(x)[None])[0]
    return out, captured


def layer_input(program, x, k):
    """The map step ``k`` reads (a chain: step ``k - 1``'s output, or the model input)."""
    if k == 0:
        return np.asarray(x).reshape(program.input_shape)
    return emulate_upto(program, x, k - 1)[0].reshape(program.layers[k].in_shape)


def preload_banks(config, shape, base, tensor, rng):
    """The four banks as NumPy arrays over the whole address range of a bank port: random
    bytes everywhere (also past ``act_bank_bytes``, where the hardware's banks alias), then
    ``tensor`` stored at ``base`` by :class:`compiler.emulate.BankedMemory`."""
    banks = rng.integers(-128, 128, (config.banks, 1 << config.bank_addr_bits)).astype(np.int8)
    mem = BankedMemory(config)
    mem.banks[:] = banks[:, :config.act_bank_bytes]
    mem.store(shape, base, tensor)
    banks[:, :config.act_bank_bytes] = mem.banks
    return banks


def out_positions(d):
    """(bank, address) of every element (y, x, c) of step ``d``'s output map, in NHWC order."""
    h, w, c = d.out_shape
    y, xx, ch = np.meshgrid(np.arange(h), np.arange(w), np.arange(c), indexing="ij")
    bank, addr = bank_address(d.out_shape, d.out_base, y, xx, ch)
    return [(int(b), int(a)) for b, a in zip(bank.reshape(-1), addr.reshape(-1))]


# ---------------------------------------------------------------- CONV passes in NumPy

def block_grid(d):
    """(rows, cols) of output pixels the passes of CONV step ``d`` cover: whole blocks over
    the computed pixels (for a fused pool the 2x2 windows the pool keeps)."""
    oh, ow = (2 * d.out_shape[0], 2 * d.out_shape[1]) if d.fused_pool else d.conv_shape[:2]
    blk = d.block
    return -(-oh // blk) * blk, -(-ow // blk) * blk


def word_groups(d):
    """Channel groups sharing one weight word (depthwise groups narrower than the array:
    group g in the columns from ``group_lane(d, g)``)."""
    return d.word_groups


def group_lane(d, g):
    """The first array column of channel group ``g``'s outputs."""
    return (g % word_groups(d)) * d.group_channels


def lane_weights(layer, d, config):
    """(groups, cols, KH, KW, Cin) kernel in each array column during group ``g``'s passes,
    from the model layer's own weights: the word of group g holds, in column c, output
    channel (g // word_groups) * word_groups * group_channels + c (zero past the layer's
    channels and past the word's groups).  Depthwise: Cin = 1, each column's own kernel,
    which the array applies to the group's input channel."""
    cols, gch, share = config.cols, d.group_channels, word_groups(d)
    kh, kw = d.kernel
    if isinstance(layer, FullyConnected):
        w = layer.weights.reshape((layer.out_channels,) + tuple(d.in_shape))
    elif isinstance(layer, DepthwiseConv2D):
        w = layer.weights.transpose(3, 1, 2, 0)          # (C*M, KH, KW, 1): output channel o reads o // M
    else:
        w = layer.weights
    if not isinstance(layer, FullyConnected) and w.shape[1:3] != (kh, kw):
        w = space_to_depth_weights(w)                     # a stride-2 first convolution
    w = w.astype(np.int64)
    out = np.zeros((d.groups, cols, kh, kw, 1 if d.depthwise else d.in_shape[2]), np.int64)
    for g in range(d.groups):
        for c in range(min(share * gch, cols)):
            o = g // share * share * gch + c
            if o < layer.out_channels:
                out[g, c] = w[o]
    return out


def lane_accumulators(layer, d, in_map, config):
    """Accumulators of every pass lane over the block grid: (groups, grid_h, grid_w, cols),
    sum of x * w over the kernel window with padded taps fed as the zero point
    (``d.pad_value``), computed from the model layer's weights."""
    h, w, c = d.in_shape
    (kh, kw), (sh, sw), (pt, pl) = d.kernel, d.stride, d.pads
    gh, gw = block_grid(d)
    big = np.full((max(pt + h, (gh - 1) * sh + kh), max(pl + w, (gw - 1) * sw + kw), c), d.pad_value, np.int64)
    big[pt:pt + h, pl:pl + w] = np.asarray(in_map, np.int64).reshape(h, w, c)
    wts = lane_weights(layer, d, config)
    acc = np.zeros((d.groups, gh, gw, config.cols), np.int64)
    for oy in range(gh):
        for ox in range(gw):
            win = big[oy * sh:oy * sh + kh, ox * sw:ox * sw + kw]          # (KH, KW, C)
            for g in range(d.groups):
                x = win[..., g:g + 1] if d.depthwise else win
                acc[g, oy, ox] = (wts[g] * x[None]).sum(axis=(1, 2, 3))
    return acc


def pass_pixels(d):
    """The passes of CONV step ``d`` in the feeder's order (channel group, block row, block
    column): (group, [(oy, ox) of each array row]).  A 2x2 block's row r is pixel
    (2 by + r // 2, 2 bx + r % 2); a one-pixel pass gives every row the same pixel."""
    gh, gw = block_grid(d)
    blk = d.block
    passes = []
    for g in range(d.groups):
        for by in range(gh // blk):
            for bx in range(gw // blk):
                if blk == 2:
                    pixels = [(2 * by + r // 2, 2 * bx + r % 2) for r in range(4)]
                else:
                    pixels = [(by, bx)] * 4
                passes.append((g, pixels))
    return passes


def pass_accumulators(d, acc):
    """(passes, rows, cols) accumulators the array leaves after each pass."""
    return np.array([[acc[g, oy, ox] for oy, ox in pixels] for g, pixels in pass_pixels(d)], np.int64)


@dataclasses.dataclass
class ConvCase:
    program: object
    index: int            #: the step under test
    d: object             #: its LayerDesc
    fields: dict          #: hdl.core.layer_desc.encode of it
    layer: object         #: the model layer whose accumulators the passes compute
    x: np.ndarray         #: the model input
    in_map: np.ndarray    #: the map the step reads (the emulator's, for a later step)
    acc: np.ndarray       #: lane_accumulators
    out: np.ndarray       #: the emulator's output of the step (H, W, C)


def weighted_layer(model, d):
    """The CONV_2D, DEPTHWISE_CONV_2D or FULLY_CONNECTED layer of CONV step ``d`` (which is
    named after the last op fused into it)."""
    names = [layer.name for layer in model.layers]
    return next(layer for layer in reversed(model.layers[:names.index(d.name) + 1])
                if isinstance(layer, (Conv2D, DepthwiseConv2D, FullyConnected)))


def conv_case(model, config=CONFIG, seed=0, index=None, program=None):
    """Compile ``model`` and take its CONV step ``index`` (the first by default); the NumPy
    accumulators are checked against the emulator's before any hardware runs."""
    program = compile_model(model, config) if program is None else program
    if index is None:
        index = next(i for i, d in enumerate(program.layers) if d.kind == CONV)
    d = program.layers[index]
    assert d.kind == CONV
    layer = weighted_layer(model, d)
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, program.input_shape).astype(np.int8)
    in_map = layer_input(program, x, index)
    acc = lane_accumulators(layer, d, in_map, config)
    out, captured = emulate_upto(program, x, index)
    # The emulator's pre-requantisation values are these accumulators plus the folded bias.
    oh, ow, oc = d.conv_shape
    real = np.concatenate([acc[g, :, :, group_lane(d, g):group_lane(d, g) + d.group_channels]
                           for g in range(d.groups)], axis=-1)[:, :, :oc]
    if d.fused_pool:
        ph, pw = d.out_shape[:2]
        real = real[:2 * ph, :2 * pw].reshape(ph, 2, pw, 2, oc).max(axis=(1, 3))
    else:
        real = real[:oh, :ow]
    bias = program.params.bias[d.param_base:d.param_base + oc]
    np.testing.assert_array_equal(captured[-1].reshape(real.shape), real + bias,
                                  err_msg="NumPy accumulators differ from the emulator's")
    fields = encode(d, config, index == len(program.layers) - 1)
    return ConvCase(program, index, d, fields, layer, x, in_map, acc, out.reshape(d.out_shape))


#: The CONV steps the feeder and drain tests both run (the drain's tests add more).
CONV_CASES = {
    # 5x7x3 -> 6 channels, 3x3 SAME: padding on every side, odd map sides (the last block's
    # second row and column reach past the map, their results are cut), two channel groups,
    # the second half empty.
    "conv-stride1": lambda: conv_case(conv_model()),
    # 7x6x3, 3x3 stride 2 SAME: one pixel per pass (block1), padding at the bottom/right, the
    # output bank and address stepping every other pixel.
    "conv-stride2": lambda: conv_case(conv_model(shape=(7, 6, 3), stride=(2, 2), seed=4)),
    # 6x5x3 depthwise 3x3 SAME, multiplier 3: group g reads input channel g only, three
    # columns per group, parameters stepped by three.
    "depthwise": lambda: conv_case(depthwise_model()),
    # 6x5x5 depthwise, multiplier 1: one-column groups, four sharing a weight word
    # (``word_groups``): the group's column moves along the word, the others are discarded.
    "depthwise-mult1": lambda: conv_case(depthwise_model(shape=(6, 5, 5), mult=1, seed=8)),
    # A dense layer (single rounding) whose 4x3 kernel covers its 4x3x5 input map (stored
    # above bank base 0), output at bank base 0.
    "dense": lambda: conv_case(dense_model(), index=1),
    # 7x7x2 3x3 SAME with a fused 2x2 max pool: the max of each column's four rows; row and
    # column 6 are never computed.
    "conv-fused-pool": lambda: conv_case(conv_model(shape=(7, 7, 2), oc=5, pool=True, seed=5)),
}


# ---------------------------------------------------------------- simulation

def read_port(port, read):
    """A background testbench answering a read port of :mod:`hdl.core.ports` (``addr``, ``en``,
    ``data``): ``data`` takes ``read(addr)`` one cycle after ``addr`` when ``en`` was high,
    and holds otherwise."""
    async def process(ctx):
        async for _, _, enabled, address in ctx.tick().sample(port.en, port.addr):
            if enabled:
                ctx.set(port.data, read(address))
    return process


def bank_ports(ports, banks):
    """Background testbenches answering a unit's activation bank read ports from
    ``banks()``, a (banks, depth) array (called at each read, so a test may swap it)."""
    return [read_port(port, lambda addr, b=b: int(banks()[b, int(addr)])) for b, port in enumerate(ports)]


def simulate(dut, main, background=()):
    """Run ``main`` (which bounds its own cycles) with ``background`` testbenches beside it."""
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for process in background:
        sim.add_testbench(process, background=True)
    sim.add_testbench(main)
    sim.run()


async def kick(ctx, dut, fields):
    """As the sequencer does: the descriptor first, a one-cycle ``start`` a cycle later."""
    ctx.set(dut.desc, fields)
    await ctx.tick()
    ctx.set(dut.start, 1)
    await ctx.tick()
    ctx.set(dut.start, 0)


def lossy_ready(rng, stall):
    """A consumer's ``ready`` for the next cycle: low with probability ``stall``."""
    return int(rng.random() >= stall)


class StreamTaker:
    """The consumer of a unit's output stream: keeps what it takes and checks the stream's
    rule, that an item refused by ``ready`` is offered again, unchanged, the next cycle."""

    def __init__(self, what):
        self.what, self.taken, self.held = what, [], None

    def step(self, cycle, valid, ready, item):
        """One cycle's ``valid``/``ready`` and payload; True when the item was refused."""
        if self.held is not None:
            assert valid and item == self.held, f"cycle {cycle}: a refused {self.what} changed or vanished"
        self.held = item if valid and not ready else None
        if valid and ready:
            self.taken.append(item)
        return self.held is not None


# ---------------------------------------------------------------- random models

@functools.cache
def random_steps(kinds, count, max_work, config=CONFIG, seeds=range(200)):
    """The first ``count`` seeds of :func:`golden.generate.random_model` whose program
    compiles for ``config``, has steps of ``kinds`` (a tuple) and at most ``max_work`` terms
    (CONV: passes x taps) or window elements (POOL, LOOKUP) in them:
    [(seed, model, program, step indices)]."""
    found = []
    for seed in seeds:
        model = random_model(np.random.default_rng(seed))
        try:
            program = compile_model(model, config)
        except CompileError:
            continue
        steps = [i for i, d in enumerate(program.layers) if d.kind in kinds]
        work = sum(d.groups * d.blocks * d.taps if d.kind == CONV else int(np.prod(d.out_shape)) * int(np.prod(d.kernel))
                   for d in (program.layers[i] for i in steps))
        if steps and work <= max_work:
            found.append((seed, model, program, steps))
            if len(found) == count:
                break
    return found
