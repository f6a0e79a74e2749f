"""Functional model of the accelerator executing a Program, and its cycle count.

It does what the hardware does — banked activation memory, 2x2 pixel blocks, raw
int8 x int8 dot products plus the folded bias, max before requantisation for a fused
pool, padding fed as the zero point — so a compiler bug shows up against golden before
any RTL runs, and the RTL can be checked against it memory for memory.
"""

import numpy as np

from golden.quant import requantize

from .program import ADD, CONV, LOOKUP, POOL, bank_address


class BankedMemory:
    """The four activation banks as byte arrays."""

    def __init__(self, config):
        self.banks = np.zeros((config.banks, config.act_bank_bytes), np.int8)

    def _index(self, shape, base, stride=0):
        """Bank and address of every element; ``stride``: the stored map's channels when the
        tensor is a slice of a wider one (a CONCATENATION's input), else its own."""
        h, w, c = shape
        y, x, ch = np.meshgrid(np.arange(h), np.arange(w), np.arange(c), indexing="ij")
        return bank_address((h, w, stride or c), base, y, x, ch)

    def store(self, shape, base, tensor, stride=0):
        bank, addr = self._index(shape, base, stride)
        self.banks[bank, addr] = tensor.reshape(shape)

    def load(self, shape, base):
        bank, addr = self._index(shape, base)
        return self.banks[bank, addr]


def _conv(mem, d, program):
    x = mem.load(d.in_shape, d.in_base).astype(np.int64)
    cfg = program.config
    (kh, kw), (sh, sw), (pt, pl) = d.kernel, d.stride, d.pads
    oh, ow, oc = d.conv_shape
    h, w, c = d.in_shape
    if d.fused_pool:
        oh, ow = 2 * d.out_shape[0], 2 * d.out_shape[1]   # pixels a VALID pool drops are never computed
    big = np.full((max(pt + h, oh * sh + kh), max(pl + w, ow * sw + kw), c), d.pad_value, np.int64)
    big[pt:pt + h, pl:pl + w] = x
    cols = np.stack([big[ky:ky + (oh - 1) * sh + 1:sh, kx:kx + (ow - 1) * sw + 1:sw]
                     for ky in range(kh) for kx in range(kw)], axis=2)      # (oh, ow, kh*kw, c)
    groups, gch, share = d.groups, d.group_channels, d.word_groups
    words = -(-groups // share)
    wts = program.layer_weights(d).astype(np.int64)
    wts = wts.reshape(words, d.taps, cfg.cols).transpose(0, 2, 1)[:, :share * gch].reshape(-1, d.taps)[:oc]
    if d.depthwise:
        acc = np.einsum("hwtc,ct->hwc", cols[..., np.arange(oc) // gch], wts)
    else:
        acc = cols.reshape(oh, ow, -1) @ wts.T
    if d.fused_pool:
        acc = acc.reshape(oh // 2, 2, ow // 2, 2, oc).max(axis=(1, 3))
    p = program.params
    sl = slice(d.param_base, d.param_base + oc)
    y = requantize(acc + p.bias[sl], p.multiplier[sl], p.shift[sl], d.zero_point, d.act_min, d.act_max,
                   single_rounding=d.single_rounding)
    if d.table >= 0:
        y = program.tables[d.table][y.astype(np.int16) + 128]
    mem.store(d.out_shape, d.out_base, y, d.out_stride)


def _add(mem, d, program):
    """The two inputs' table entries summed, requantised with the output's multiplier."""
    a = mem.load(d.in_shape, d.in_base).astype(np.int64)
    b = np.broadcast_to(mem.load(d.other_shape or d.in_shape, d.other_base), d.in_shape).astype(np.int64)
    p, at = program.params, d.param_base
    acc = p.bias[at + 128 + a] + p.bias[at + 384 + b]
    y = requantize(acc, p.multiplier[at + 256], p.shift[at + 256], d.zero_point, d.act_min, d.act_max)
    mem.store(d.out_shape, d.out_base, y)


def _by_name(program, name):
    return next(layer for layer in program.model.layers if layer.name == name)


def run_program(program, x):
    """Outputs of the hardware part for a batch of what it takes (:meth:`Program.start_on_host`
    of model inputs) -> (N, *out_shape) int8."""
    outs = []
    for row in np.asarray(x):
        mem = BankedMemory(program.config)
        mem.store(program.input_shape, 0, row)
        for d in program.layers:
            if d.kind == CONV:
                _conv(mem, d, program)
            elif d.kind == ADD:
                _add(mem, d, program)
            elif d.kind in (POOL, LOOKUP):
                layer = _by_name(program, d.name)
                y = layer.run(mem.load(d.in_shape, d.in_base)[None])[0]
                mem.store(d.out_shape, d.out_base, y, d.out_stride)
        outs.append(mem.load(program.output_desc.out_shape, program.output_desc.out_base))
    return np.array(outs)


def pass_count(d):
    """Passes of the array over one CONV descriptor: channel groups x 2x2 pixel blocks."""
    return d.groups * d.blocks


def cycles(program, fill=0):
    """Cycles per inference if the array never waits: one cycle a tap per pass, plus ``fill``
    cycles of pipeline fill and drain per descriptor; POOL and LOOKUP read one byte a cycle."""
    per_layer = {}
    for d in program.layers:
        if d.kind == CONV:
            per_layer[d.name] = pass_count(d) * d.taps + fill
        else:
            per_layer[d.name] = int(np.prod(d.out_shape)) * (np.prod(d.kernel) if d.kind == POOL else 1) + fill
    return per_layer
