"""Model representation -> accelerator program: layer descriptors, memory images, memory map.

The accelerator (docs/architecture.md) runs a chain of descriptors.  Each CONV descriptor
is a convolution, a depthwise convolution or a dense layer (a convolution whose kernel
covers its whole input) with an optional fused 2x2 max pool and an optional activation table; POOL and LOOKUP
descriptors run those ops on their own over a stored map.  Ops at the tail the hardware
does not run (SOFTMAX) are left to the host.

The compiler also does the arithmetic rewrite that keeps the array int8 x int8:
``sum((x - zp) * w) + b == sum(x * w) + (b - zp * sum(w))``, padding fed as ``zp``; and it
checks every bound the hardware relies on, stopping with one line naming the layer, the
memory or limit, what is needed and what there is.
"""

import functools
import hashlib
from dataclasses import dataclass, field, fields, replace

import numpy as np

from golden.config import SPRAM_BANK_BYTES
from golden.model import QParams, is_int8, type_name
from golden.ops import (Add, Concatenation, Conv2D, DepthwiseConv2D, FullyConnected, Lookup, Mean, Pad, Pool2D,
                        Quantize, Reshape, Softmax)
from golden.ops.add import LEFT_SHIFT as ADD_LEFT_SHIFT
from golden.ops.add import add_params
from golden.ops.mean import mean_multiplier
from golden.ops.quantize import requantize_int
from golden.nonlinear import lookup_table
from golden.quant import INT32_MAX, multiply_by_quantized_multiplier

CONV, POOL, LOOKUP, ADD = "CONV", "POOL", "LOOKUP", "ADD"


class CompileError(ValueError):
    """The model does not fit this hardware configuration; the message is one line."""


def bank_address(shape, base, y, x, c):
    """(bank, byte address) of element (y, x, c) of an (H, W, C) map stored at ``base`` in
    every bank: pixel (y, x) lives in bank 2*(y%2) + x%2, and each bank holds its pixels in
    raster order.  The one statement of the layout: the bank sizes, the hardware's pointer
    steps and the host's addresses are all read off it."""
    h, w, ch = shape
    return 2 * (y % 2) + (x % 2), base + ((y // 2) * ((w + 1) // 2) + x // 2) * ch + c


def bank_bytes(shape):
    """Bytes per parity bank of an (H, W, C) map: bank 0 (even rows, even columns) is the
    fullest, so one past the address of its last element."""
    h, w, c = shape
    return bank_address(shape, 0, (h - 1) // 2 * 2, (w - 1) // 2 * 2, c - 1)[1] + 1


@dataclass(frozen=True)
class LayerDesc:
    """One step of the program; every field is an integer or a short enum the sequencer reads."""
    name: str                 #: the model layer whose output this step produces
    kind: str                 #: CONV, POOL or LOOKUP
    in_shape: tuple           #: (H, W, C) as stored
    out_shape: tuple          #: (H, W, C) as stored (after a fused pool)
    in_base: int              #: byte offset of the input map in every bank
    out_base: int
    other_base: int = 0       #: ADD: the second input map
    other_shape: tuple = ()   #: ADD: its stored shape when it broadcasts over the first's pixels, (1, 1, C or 1)
    kernel: tuple = (1, 1)    #: CONV: kernel; POOL: filter
    stride: tuple = (1, 1)
    pads: tuple = (0, 0)      #: top, left
    conv_shape: tuple = ()    #: CONV: (H, W, C) before the fused pool
    pad_value: int = 0        #: CONV: the input zero point, fed for padded taps
    fused_pool: bool = False  #: CONV: 2x2 stride-2 max pool over each 2x2 pixel block
    block: int = 2            #: CONV: output pixels per pass are a block x block square
    weight_base: int = 0      #: CONV: first weight word (of the SPRAM's, or of the flash stream's)
    streamed: bool = False    #: CONV: the weights stream from the flash (``Program.stream``)
    #: CONV, when weights stream: words of per-channel parameters after each weight word's
    #: taps (bias, multiplier, shift of each of its channels), which travel with the weights
    param_words: int = 0
    param_base: int = 0       #: CONV: first per-channel parameter entry
    single_rounding: bool = False
    table: int = -1           #: table slot applied after requantisation, -1 for none
    pool_kind: str = "MAX"    #: POOL
    zero_point: int = 0       #: CONV: output zero point
    act_min: int = -128       #: CONV, POOL: clamp of the (fused) activation
    act_max: int = 127

    groups: int = 0           #: CONV: passes over the output channels, ``group_channels`` at a time
    depthwise: bool = False   #: CONV: group g reads input channel g only (one tap per kernel position)
    group_channels: int = 0   #: CONV: output channels a group computes (``cols``; depthwise: the multiplier)
    word_groups: int = 1      #: CONV: groups sharing one weight word, group g in lanes (g % it) * group_channels on
    out_stride: int = 0       #: channels of the stored output map when this step fills a slice of a
                              #: CONCATENATION (out_base points at the slice); 0: out_shape's own

    @property
    def taps(self):
        """Reduction length of one pass (CONV)."""
        return self.kernel[0] * self.kernel[1] * (1 if self.depthwise else self.in_shape[2])

    @property
    def unit_words(self):
        """CONV: words stored per weight word of the array: its taps, then its channels' parameters."""
        return self.taps + self.param_words

    @property
    def blocks(self):
        """CONV: passes per channel group."""
        return pass_blocks(self.conv_shape, self.out_shape, self.block, self.fused_pool)


def pass_blocks(conv_shape, out_shape, block, fused_pool):
    """Passes of a CONV step per channel group: its pixel blocks (2x2, or single pixels), a
    fused pool's windows being exactly these."""
    if fused_pool:
        return out_shape[0] * out_shape[1]
    return -(-conv_shape[0] // block) * -(-conv_shape[1] // block)


@dataclass(frozen=True)
class ChannelParams:
    """Per output channel: folded bias, multiplier, shift."""
    bias: np.ndarray
    multiplier: np.ndarray
    shift: np.ndarray


@dataclass(frozen=True)
class SpaceToDepth:
    """How the host stores a model input that a stride-2 convolution reads first: padded with
    ``fill`` (``pads`` rows/columns before it, the rest after, to ``padded``), then each 2x2
    block of pixels as one pixel of their channels in (row, column, channel) order.  The
    convolution becomes a stride-1 VALID one with a kernel of half the size over four times
    the channels, which fills the array's 2x2 pixel blocks where the stride-2 form runs
    one pixel a pass."""
    stored: tuple             #: (H, W, C) of the input as the model has it
    pads: tuple               #: (top, left)
    padded: tuple             #: (H', W'), both even
    fill: int                 #: the convolution's input zero point

    @property
    def shape(self):
        (hp, wp), c = self.padded, self.stored[2]
        return (hp // 2, wp // 2, 4 * c)

    def apply(self, x):
        """(N, *stored) int8 -> (N, *shape)."""
        (h, w, c), (top, left), (hp, wp) = self.stored, self.pads, self.padded
        x = np.asarray(x).reshape(-1, h, w, c)
        padded = np.full((len(x), hp, wp, c), self.fill, np.int8)
        rows, cols = min(h, hp - top), min(w, wp - left)
        padded[:, top:top + rows, left:left + cols] = x[:, :rows, :cols]
        return padded.reshape(len(x), hp // 2, 2, wp // 2, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(
            len(x), *self.shape)


def space_to_depth_weights(weights):
    """OHWI weights of a stride-2 convolution -> those of the stride-1 one on its input stored
    :class:`SpaceToDepth`: tap (ky, kx) of the new kernel holds old taps (2ky + py, 2kx + px)
    as channels (py, px, c), zero beyond the old kernel."""
    o, kh, kw, c = weights.shape
    half = (-(-kh // 2), -(-kw // 2))
    full = np.zeros((o, 2 * half[0], 2 * half[1], c), weights.dtype)
    full[:, :kh, :kw] = weights
    return full.reshape(o, half[0], 2, half[1], 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(o, *half, 4 * c)


@dataclass(frozen=True)
class Program:
    config: object
    model: object
    layers: tuple                        #: LayerDesc, in execution order
    weights: np.ndarray                  #: int8 (weight_words_used, cols)
    params: ChannelParams
    tables: np.ndarray                   #: int8 (slots_used, 256)
    host_head: tuple = ()                #: model layers the host runs first (golden): QUANTIZE of a uint8/float input
    host_tail: tuple = ()                #: model layers the host finishes (golden), e.g. SOFTMAX
    input_shape: tuple = ()              #: (H, W, C) of the stored model input, at byte 0 of every bank
    input_layout: object = None          #: SpaceToDepth the host applies to the input, or None
    output_name: str = ""                #: model layer whose output the hardware delivers
    memory_map: dict = field(default_factory=dict)
    #: int8 (words, cols): the streamed layers' weight words in the order the array takes them
    stream: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int8))

    @property
    def output_desc(self):
        return self.layers[-1]

    @property
    def pool_window(self):
        """Elements of the largest window the pool unit reduces (a LOOKUP step is a 1x1 window)."""
        return max([d.kernel[0] * d.kernel[1] for d in self.layers if d.kind == POOL] + [1])

    @property
    def program_id(self):
        """First four bytes (little-endian u32) of a SHA-256 over everything the device is
        built from (configuration, steps, weights, parameters, tables, input layout): the
        flash header and INFO carry it, so a device refuses an image compiled for another
        program and the host sees which program a board runs."""
        h = hashlib.sha256()
        # Not the target: the same program simulated with generic primitives is the same program.
        config = tuple((f.name, getattr(self.config, f.name)) for f in fields(self.config) if f.name != "target")
        for part in (config, self.layers, self.input_shape, self.input_layout, self.output_name):
            h.update(repr(part).encode())
        for array in (self.weights, self.params.bias, self.params.multiplier, self.params.shift, self.tables,
                      self.stream):
            a = np.ascontiguousarray(array)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
        return int.from_bytes(h.digest()[:4], "little")

    @property
    def weight_image(self):
        """The weight words as bytes, lowest lane first: what the load port, the flash and
        the WEIGHTS command carry."""
        return self.weights.astype(np.uint8).tobytes()

    @property
    def stream_image(self):
        """The streamed weight words as bytes, lowest lane first: what the flash holds for the
        prefetcher, read once an inference from its start."""
        return self.stream.astype(np.uint8).tobytes()

    @property
    def flash_image(self):
        """What the flash holds after the weight header: the resident weights (which the
        device copies into SPRAM at boot), then the stream (which it reads during inference);
        its CRC in the header covers both."""
        return self.weight_image + self.stream_image

    def layer_weights(self, d):
        """The (words * taps, cols) weight words of CONV step ``d``, wherever they are stored
        (without the parameters that travel with them when weights stream)."""
        source = self.stream if d.streamed else self.weights
        words = -(-d.groups // d.word_groups)
        units = source[d.weight_base:d.weight_base + words * d.unit_words]
        return units.reshape(words, d.unit_words, -1)[:, :d.taps].reshape(words * d.taps, -1)

    def start_on_host(self, x):
        """Model inputs (N, *input_shape) -> the int8 bytes the hardware takes, running the
        host head (uint8 is an offset, float a quantisation) in golden."""
        y = np.asarray(x)
        for layer in self.host_head:
            y = layer.run(y)
        y = y.astype(np.int8)
        return y if self.input_layout is None else self.input_layout.apply(y)

    def finish_on_host(self, hw):
        """Hardware output bytes (N, n) -> the model's output, running the host tail in golden."""
        n = len(hw)
        names = [layer.name for layer in self.model.layers]
        at = names.index(self.output_name)
        y = np.asarray(hw, np.int8).reshape((n,) + tuple(self.model.layers[at].output_shape))
        for layer in self.model.layers[at + 1:]:
            y = layer.run(y.reshape((n,) + tuple(layer.input_shape)))
        return y.reshape((n,) + tuple(self.model.output_shape))


def _hwc(shape):
    shape = tuple(shape)
    return shape if len(shape) == 3 else (1, 1, int(np.prod(shape)))


def _fail(msg):
    raise CompileError(msg)


class _Builder:
    """Emits the steps in model order.  Every stored tensor has a place (shape as stored, base
    in every bank); views alias their source.  A step's output goes to the lowest base where
    it overlaps no tensor still to be read (first fit over the tensors' lifetimes), so the
    residual inputs of an ADD stay where they are while the branch runs."""

    def __init__(self, model, config, last_use, input_name, shared):
        self.model, self.config, self.input_name = model, config, input_name
        self.shared = shared                                # steps whose depthwise groups share words (None: all)
        self.descs, self.weight_rows, self.params, self.tables = [], [], [], []
        self.input_shape = _hwc(model.input_shape)
        self.place = {input_name: (self.input_shape, 0)}
        self.root = {input_name: input_name}                # tensor -> the stored tensor it aliases
        self.last_use = last_use                            # stored tensor -> last step reading it
        self.pad_of = {}                                    # folded PAD -> (top, left) its readers add
        self.slice_of = {}                                  # concatenated tensor -> (CONCATENATION, first channel)
        self.high_water = bank_bytes(self.input_shape)
        self.input_layout = None
        self.acc_worst = 0                                  # largest |sum of products| any step can reach
        self.requant_worst = 0                              # largest |(acc + bias) << left| the requantiser takes

    def src(self, name):
        """(shape as stored, base) of a tensor an op reads."""
        return self.place[name]

    def _alloc(self, name, shape):
        """Base of a new stored tensor: the lowest gap among the tensors still to be read."""
        step, size, limit = len(self.descs), bank_bytes(shape), self.config.act_bank_bytes
        live = sorted((self.place[t][1], self.place[t][1] + bank_bytes(self.place[t][0]), t)
                      for t in self.place if self.root[t] == t and self.last_use.get(t, -1) >= step)
        base = 0
        for lo, hi, _ in live:
            if base + size <= lo:
                break
            base = max(base, hi)
        if base + size > limit:
            names = ", ".join(f"{t} {hi - lo} B" for lo, hi, t in live)
            return _fail(f"{name}: activation bank needs {base + size} B per bank (output {size} B after the "
                         f"live maps: {names}), config has {limit} B")
        self.high_water = max(self.high_water, base + size)
        self.place[name], self.root[name] = (shape, base), name
        return base

    def _out(self, name, shape):
        """(base, out_stride) of a step's output: its own place, or its slice of the
        CONCATENATION it fills (placed, whole, by its first producer)."""
        if name not in self.slice_of:
            return self._alloc(name, shape), 0
        cat, first = self.slice_of[name]
        if cat.name not in self.place:
            self._alloc(cat.name, _hwc(cat.output_shape))
        base = self.place[cat.name][1] + first
        self.place[name], self.root[name] = (shape, base), cat.name
        return base, cat.output_shape[2]

    def _space_to_depth(self, source, weights, kernel, pads, in_shape, conv_shape, fill):
        """A stride-2 convolution that alone reads the model input, as a stride-1 VALID one on
        the input stored :class:`SpaceToDepth`: output (y, x) reads padded rows 2y + ky, which
        are row y + ky // 2, phase ky % 2, of the stored form; taps beyond the kernel weigh 0,
        and the padding is the zero point, so the sums are the same."""
        (oh, ow, _) = conv_shape
        folded = space_to_depth_weights(weights)
        half = folded.shape[1:3]
        layout = SpaceToDepth(stored=in_shape, pads=tuple(pads), padded=(2 * (oh - 1 + half[0]), 2 * (ow - 1 + half[1])),
                              fill=fill)
        self.input_layout, self.input_shape = layout, layout.shape
        self.place[self.input_name] = self.place[source] = (layout.shape, 0)
        self.high_water = bank_bytes(layout.shape)
        return folded, half, (1, 1), (0, 0), layout.shape

    def _table_slot(self, lookup):
        table = _table(lookup)
        for i, t in enumerate(self.tables):
            if np.array_equal(t, table):
                return i
        if len(self.tables) >= self.config.table_slots:
            _fail(f"{lookup.name}: needs activation table {len(self.tables) + 1}, config has "
                  f"{self.config.table_slots} table slots")
        self.tables.append(table)
        return len(self.tables) - 1

    def conv(self, layer, pool, lookup):
        cfg = self.config
        in_shape, in_base = self.src(self.model.inputs_of(layer)[0])
        out_c = layer.out_channels
        depthwise = isinstance(layer, DepthwiseConv2D) and layer.input_shape[2] > 1
        if isinstance(layer, FullyConnected):
            h, w, c = in_shape
            weights = layer.weights.reshape(out_c, h, w, c)
            kernel, stride, pads, conv_shape = (h, w), (1, 1), (0, 0), (1, 1, out_c)
        else:
            weights, kernel, stride = layer.weights, layer.kernel, layer.stride
            extra = self.pad_of.get(self.model.inputs_of(layer)[0], (0, 0))
            pads = tuple(p + e for p, e in zip(layer.pads, extra))
            conv_shape = layer.output_shape
            if isinstance(layer, DepthwiseConv2D):
                # (1, KH, KW, C*M) -> one row of taps per output channel; with a single input
                # channel that is an ordinary convolution.
                weights = weights.transpose(3, 1, 2, 0)
            source = self.model.inputs_of(layer)[0]
            if (tuple(stride) == (2, 2) and not depthwise and not self.descs
                    and self.root[source] == self.input_name and self.last_use[self.input_name] == 0):
                weights, kernel, stride, pads, in_shape = self._space_to_depth(
                    source, weights, kernel, pads, in_shape, conv_shape, layer.input_q.zero_point)
        group_channels = cfg.cols
        if depthwise:
            if layer.depth_multiplier > cfg.cols:
                _fail(f"{layer.name}: depth multiplier {layer.depth_multiplier} exceeds the array's "
                      f"{cfg.cols} columns")
            group_channels = layer.depth_multiplier
        # 2x2 pixel blocks read four parity banks at once only at stride 1.
        block = 2 if tuple(stride) == (1, 1) else 1
        if pool is not None:
            out_shape = pool.output_shape
        else:
            out_shape = conv_shape
        taps = int(np.prod(weights.shape[1:]))
        flat = weights.reshape(out_c, taps).astype(np.int64)
        worst = np.abs(flat).sum(axis=1) * 128
        self.acc_worst = max(self.acc_worst, int(worst.max()))
        if worst.max() > cfg.acc_limit:
            _fail(f"{layer.name}: worst-case dot product {int(worst.max())} exceeds the "
                  f"{cfg.acc_width}-bit accumulator (limit {cfg.acc_limit})")
        zp = layer.input_q.zero_point
        bias = layer.bias.astype(np.int64) - zp * flat.sum(axis=1)
        mult, shift = layer.multipliers_shifts
        reach = (np.abs(bias) + worst) << np.maximum(shift, 0)
        if reach.max() > INT32_MAX:
            _fail(f"{layer.name}: accumulator plus folded bias reaches {int(reach.max())}, beyond int32")
        self._requantises(layer, int(reach.max()))
        lo, hi = layer.act_range
        if pool is not None:
            plo, phi = pool.act_range
            lo, hi = int(np.clip(lo, plo, phi)), int(np.clip(hi, plo, phi))
        groups = -(-out_c // group_channels)
        # Depthwise groups may share weight words (group g in lanes (g % word_groups) *
        # group_channels on), so that a channel's taps do not cost a whole word of cols
        # weights each.  A pass then drains the array's columns up to its group's, so each
        # group has words of its own unless the weight memory needs the sharing, or the
        # weights stream from SPRAM into the cache group by group (taps cycles a group) and
        # a group's taps outnumber 4 cycles saved on each of its passes (MEAN, average pools).
        blocks = pass_blocks(conv_shape, out_shape, block, pool is not None)
        step = (lookup or pool or layer).name
        share = depthwise and (self.shared is None or step in self.shared or (cfg.in_spram and taps > 4 * blocks))
        word_groups = cfg.cols // group_channels if share else 1
        words = -(-groups // word_groups)
        full = np.zeros((words * word_groups * group_channels, taps), np.int8)
        full[:out_c] = flat
        padded = np.zeros((words, cfg.cols, taps), np.int8)
        padded[:, :word_groups * group_channels] = full.reshape(words, word_groups * group_channels, taps)
        units = padded.transpose(0, 2, 1)
        param_words = 0
        if cfg.streams:
            units, param_words = _with_params(units, bias, mult, shift, word_groups * group_channels)
        weight_base = sum(len(r) for r in self.weight_rows)
        self.weight_rows.append(units.reshape(-1, cfg.cols))
        used = weight_base + words * taps
        if used > cfg.weight_words and not cfg.streams:
            _fail(f"{layer.name}: weight memory needs {used * cfg.cols} B, config has {cfg.weight_mem_bytes} B")
        param_base = self._param_base(layer, out_c)
        self.params.append((bias, mult, shift))
        last = lookup or pool or layer
        out_base, out_stride = self._out(last.name, _hwc(out_shape))
        self.descs.append(LayerDesc(
            name=last.name, kind=CONV, in_shape=in_shape, out_shape=_hwc(out_shape), out_stride=out_stride,
            in_base=in_base, out_base=out_base, kernel=tuple(kernel),
            stride=tuple(stride), pads=tuple(pads), conv_shape=_hwc(conv_shape), pad_value=zp,
            fused_pool=pool is not None, block=block, weight_base=weight_base, param_base=param_base,
            zero_point=layer.output_q.zero_point, act_min=lo, act_max=hi,
            single_rounding=layer.single_rounding, groups=groups, depthwise=depthwise,
            group_channels=group_channels, word_groups=word_groups, param_words=param_words,
            table=self._table_slot(lookup) if lookup is not None else -1))

    def pool(self, layer):
        lo, hi = layer.act_range
        area = layer.filter[0] * layer.filter[1]
        if area > self.config.pool_window:
            _fail(f"{layer.name}: {layer.filter[0]}x{layer.filter[1]} pooling window has {area} elements, "
                  f"the pool unit reduces at most {self.config.pool_window}")
        in_shape, in_base = self.src(self.model.inputs_of(layer)[0])
        out_base, out_stride = self._out(layer.name, _hwc(layer.output_shape))
        self.descs.append(LayerDesc(name=layer.name, kind=POOL, in_shape=in_shape, out_shape=layer.output_shape,
                             in_base=in_base, out_base=out_base, out_stride=out_stride,
                             kernel=layer.filter, stride=layer.stride, pads=layer.pads,
                             pool_kind=layer.kind, act_min=lo, act_max=hi))

    def view(self, layer, readers_of):
        """RESHAPE, EXPAND_DIMS, SQUEEZE move no data where the banked layout stays the same:
        on the model input before any step (the host stores the input in the new shape), when
        the stored (H, W, C) is unchanged, and when only FULLY_CONNECTED ops read the view
        (they read their input in NHWC order whatever its shape)."""
        source = self.model.inputs_of(layer)[0]
        shape, base = self.src(source)
        new = _hwc(layer.output_shape)
        readers = readers_of.get(layer.name, [])
        if source == self.input_name and not self.descs and readers_of[source] == [layer]:
            self.input_shape = new
            self.place[source] = (new, 0)
            self.high_water = bank_bytes(new)
        elif new != shape and not (readers and all(isinstance(r, FullyConnected) for r in readers)):
            other = next((r.op for r in readers if not isinstance(r, FullyConnected)), "the output")
            _fail(f"{layer.name}: {layer.op} from {shape} to {layer.output_shape} before {other} would move "
                  "data in the banks; the accelerator maps views only where the layout stays (yet)")
        self.place[layer.name] = self.place[source]
        self.root[layer.name] = self.root[source]

    def pad(self, layer):
        """A PAD whose readers are all convolutions is their padding (taps outside the map are
        fed as the zero point): the readers see the unpadded map with a larger leading pad."""
        source = self.model.inputs_of(layer)[0]
        (top, _), (left, _), _ = layer.paddings
        self.pad_of[layer.name] = (top, left)
        self.place[layer.name] = self.place[source]
        self.root[layer.name] = self.root[source]

    def lookup(self, layer):
        in_shape, in_base = self.src(self.model.inputs_of(layer)[0])
        out_base, out_stride = self._out(layer.name, in_shape)
        self.descs.append(LayerDesc(name=layer.name, kind=LOOKUP, in_shape=in_shape, out_shape=in_shape,
                             in_base=in_base, out_base=out_base, out_stride=out_stride,
                             table=self._table_slot(layer)))

    def add(self, layer):
        """ADD as two 256-entry tables, one per input: TFLite's per-input rescale of every int8
        value (``((x - zp) << 20) * multiplier >> shift``) is a function of the byte alone, so
        the hardware looks it up, adds the two and requantises the sum like an accumulator."""
        (a_shape, a_base), (b_shape, b_base) = (self.src(t) for t in self.model.inputs_of(layer))
        a_q, b_q = layer.input_q, layer.other_q
        if a_shape != b_shape and _channel_broadcast(a_shape, b_shape):
            # The broadcast input is the second one: its bytes repeat over the other's pixels.
            (a_shape, a_base, a_q), (b_shape, b_base, b_q) = (b_shape, b_base, b_q), (a_shape, a_base, a_q)
        if a_shape != b_shape and not _channel_broadcast(b_shape, a_shape):
            _fail(f"{layer.name}: ADD of {layer.input_shape} and {layer.other_shape} (stored as {a_shape} and "
                  f"{b_shape}) broadcasts other than one value or one vector of channels per pixel; the "
                  "accelerator adds those and maps of one shape")
        (m1, s1), (m2, s2), (mo, so) = add_params(a_q, b_q, layer.output_q)
        v = np.arange(-128, 128, dtype=np.int64)
        ta = multiply_by_quantized_multiplier((v - a_q.zero_point) << ADD_LEFT_SHIFT, m1, s1)
        tb = multiply_by_quantized_multiplier((v - b_q.zero_point) << ADD_LEFT_SHIFT, m2, s2)
        self._requantises(layer, (int(np.abs(ta).max()) + int(np.abs(tb).max())) << max(so, 0))
        if self.config.streams:
            _fail(f"{layer.name}: ADD takes its tables from the parameter memory, which a program whose "
                  "weights stream from flash does not have")
        param_base = self._param_base(layer, 512)
        self.params.append((np.concatenate([ta, tb]), np.full(512, mo, np.int64), np.full(512, so, np.int64)))
        lo, hi = layer.act_range
        self.descs.append(LayerDesc(name=layer.name, kind=ADD, in_shape=a_shape, out_shape=a_shape, in_base=a_base,
                             other_base=b_base, other_shape=b_shape if b_shape != a_shape else (),
                             out_base=self._alloc(layer.name, a_shape), param_base=param_base,
                             zero_point=layer.output_q.zero_point, act_min=lo, act_max=hi))

    def _requantises(self, layer, reach):
        """Record that ``layer`` hands the requantiser values up to ``reach`` in magnitude (after
        the left shift), which its ``requant_bits`` digits must hold."""
        self.requant_worst = max(self.requant_worst, reach)
        if reach.bit_length() + 1 > self.config.requant_bits:
            _fail(f"{layer.name}: requantiser input reaches {reach}, beyond its {self.config.requant_bits} bits")

    def _param_base(self, layer, entries):
        base = sum(len(p[0]) for p in self.params)
        # Streamed programs' parameters travel with the weights (``param_words``), not in the memory.
        if base + entries > self.config.param_depth and not self.config.streams:
            _fail(f"{layer.name}: parameter memory needs {base + entries} channels, "
                  f"config has {self.config.param_depth}")
        return base


def _with_params(units, bias, mult, shift, channels):
    """(words, taps, cols) weight units -> the same with each unit's channels' parameters after
    its taps, three words a channel: bias, multiplier and shift, each a little-endian 32-bit
    value across the word's four lanes (channels past the layer's are zero).  Returns the
    units and the parameter words of each."""
    words, _, cols = units.shape      # cols is 4: streaming needs maps in SPRAM, which needs it
    values = np.zeros((words * channels, 3), np.int64)
    n = len(bias)
    values[:n] = np.stack([bias, mult, shift], axis=1)
    lanes = values.astype("<i4").view(np.int8).reshape(words, 3 * channels, cols)
    return np.concatenate([units, lanes], axis=1), 3 * channels


def _most_saved(items, size, stall, room):
    """The items to keep resident: those whose stall cycles saved (``size * stall``) add up to
    the most within ``room`` words (0/1 knapsack by dynamic programming over the words; a
    step whose words cost no stall is worth keeping too, by a little, for the flash time it
    leaves to the steps after it)."""
    if room <= 0:
        return set()
    best = np.zeros(room + 1)
    took = np.zeros((len(items), room + 1), bool)
    for i, k in enumerate(items):
        n, worth = size[k], size[k] * (max(stall[k], 0) + 1e-3)
        if n > room:
            continue
        gain = best[:room + 1 - n] + worth
        took[i, n:] = gain > best[n:]
        best[n:] = np.maximum(best[n:], gain)
    chosen, left = set(), room
    for i in reversed(range(len(items))):
        if took[i, left]:
            chosen.add(items[i])
            left -= size[items[i]]
    return chosen


def _is_table(layer):
    """Ops that map each int8 byte to an int8 byte on their own: a 256-entry table runs them."""
    return isinstance(layer, Lookup) or (isinstance(layer, Quantize) and is_int8(layer.input_q)
                                         and is_int8(layer.output_q))


def _table(layer):
    """The 256 outputs of a table op, for inputs -128 .. 127."""
    if isinstance(layer, Lookup):
        return lookup_table(layer.kind, layer.input_q)
    return requantize_int(np.arange(-128, 128).astype(np.int8), layer.input_q, layer.output_q)


def _fusable_pool(conv, nxt):
    """A 2x2/2 VALID max pool after a stride-1 conv: its windows are the conv's 2x2 blocks."""
    return (isinstance(conv, (Conv2D, DepthwiseConv2D)) and conv.stride == (1, 1) and isinstance(nxt, Pool2D) and nxt.kind == "MAX"
            and nxt.filter == (2, 2) and nxt.stride == (2, 2) and nxt.padding == "VALID")


class _MeanAsDepthwise(DepthwiseConv2D):
    """A spatial MEAN as the depthwise convolution it is: a kernel of ones over the whole map
    sums each channel in the array, the folded bias subtracts ``zp_in * N``, and the
    requantiser applies QuantizedMeanOrSum's multiplier (1/N folded in, rounding twice)."""

    @property
    def multipliers_shifts(self):
        mult, shift = mean_multiplier(self.input_q, self.output_q, int(np.prod(self.kernel)))
        return np.full(self.out_channels, mult, np.int64), np.full(self.out_channels, shift, np.int64)


class _AveragePoolAsDepthwise(DepthwiseConv2D):
    """An AVERAGE pool whose windows all lie inside the map as a depthwise convolution: a
    kernel of ones sums the raw bytes (no zero point: TFLite averages the stored values), and
    a multiplier that reproduces TFLite's ``(sum +- count/2) / count`` for every sum the
    window can reach divides (:func:`_average_multiplier`)."""

    def __init__(self, pool, multiplier):
        h, w = pool.filter
        c = pool.input_shape[2]
        raw = QParams(pool.q.scale, 0)
        object.__setattr__(self, "_multiplier", multiplier)
        object.__setattr__(self, "_act_range", pool.act_range)
        super().__init__(name=pool.name, input_shape=pool.input_shape, weights=np.ones((1, h, w, c), np.int8),
                         bias=np.zeros(c, np.int32), weight_scales=np.ones(c, np.float32), input_q=raw,
                         output_q=raw, stride=pool.stride, padding=pool.padding)

    @property
    def multipliers_shifts(self):
        mult, shift = self._multiplier
        return np.full(self.out_channels, mult, np.int64), np.full(self.out_channels, shift, np.int64)

    @property
    def act_range(self):
        return self._act_range


@functools.cache
def _average_multiplier(count):
    """(multiplier, shift) with which the requantiser's MultiplyByQuantizedMultiplier gives
    TFLite's rounded average of ``count`` int8 values for every reachable sum, or None."""
    total = np.arange(-128 * count, 127 * count + 1, dtype=np.int64)
    num = np.where(total > 0, total + count // 2, total - count // 2)
    want = np.sign(num) * (np.abs(num) // count)
    for shift in range(0, -31, -1):
        ideal = 2.0 ** (31 - shift) / count
        if ideal >= 2 ** 31:
            continue
        for mult in sorted(range(max(1, int(ideal) - 64), min(2 ** 31, int(ideal) + 65)), key=lambda m: abs(m - ideal)):
            if np.array_equal(multiply_by_quantized_multiplier(total, mult, shift), want):
                return mult, shift
    return None


def _hardware_op(layer):
    """The op the hardware runs for ``layer``: a spatial MEAN, and an AVERAGE pool whose
    windows never cross the map's edge, become depthwise convolutions (no pool engine)."""
    if isinstance(layer, Pool2D) and layer.kind == "AVERAGE":
        (h, w, _), (fh, fw), (sh, sw) = layer.input_shape, layer.filter, layer.stride
        oh, ow, _ = layer.output_shape
        inside = (oh - 1) * sh + fh <= h and (ow - 1) * sw + fw <= w
        multiplier = _average_multiplier(fh * fw) if inside and fh * fw > 1 else None
        return layer if multiplier is None else _AveragePoolAsDepthwise(layer, multiplier)
    if not isinstance(layer, Mean):
        return layer
    if len(layer.input_shape) != 3 or layer.axes != (0, 1):
        _fail(f"{layer.name}: MEAN over axes {layer.axes} of a {layer.input_shape} tensor has no hardware "
              "mapping (the spatial axes (0, 1) of an HWC map do)")
    h, w, c = layer.input_shape
    op = _MeanAsDepthwise(name=layer.name, input_shape=(h, w, c), weights=np.ones((1, h, w, c), np.int8),
                          bias=np.zeros(c, np.int32), weight_scales=np.ones(c, np.float32),
                          input_q=layer.input_q, output_q=layer.output_q)
    shift = int(op.multipliers_shifts[1][0])
    if not -31 <= shift <= 30:
        _fail(f"{layer.name}: MEAN over {h * w} elements needs a requantiser shift of {shift}, "
              "outside the hardware's -31..30")
    return op


def _foldable_pad(model, pad, readers):
    """A spatial PAD (or PADV2 of the zero point) read only by convolutions, which then pad."""
    users = readers.get(pad.name, [])
    return (len(pad.input_shape) == 3 and pad.paddings[2] == (0, 0) and pad.name != model.output_name
            and users and all(type(r) in (Conv2D, DepthwiseConv2D) and pad.fill == r.input_q.zero_point
                              for r in users))


def _concat_slices(model, layers, readers):
    """Tensor -> (CONCATENATION, first channel) for every channel concatenation of HWC maps
    whose inputs are distinct outputs of convolution, pool or table steps that only it reads:
    those steps write their slices in place (a pixel stride of the whole map), so the
    concatenation moves nothing.  Others are refused with the reason."""
    made_by = {x.name: x for x in layers}
    slices = {}
    for cat in layers:
        if not isinstance(cat, Concatenation):
            continue
        ins = model.inputs_of(cat)
        why = None
        if len(cat.input_shape) != 3 or cat.axis != 2:
            why = f"axis {cat.axis} of {cat.input_shape} (the channel axis of HWC maps is mapped)"
        elif cat is layers[-1]:
            why = "the hardware's output (the host reads one map)"
        elif len(set(ins)) != len(ins):
            why = "an input twice"
        else:
            for t in ins:
                p = made_by.get(t)
                if p is None or readers.get(t) != [cat] or not (
                        isinstance(p, (Conv2D, DepthwiseConv2D, FullyConnected, Pool2D)) or _is_table(p)):
                    why = (f"input {t!r}: only outputs of convolution, pool or table steps that nothing else "
                           "reads are written in place")
                    break
        if why:
            _fail(f"{cat.name}: CONCATENATION of {why}")
        first = 0
        for t in ins:
            slices[t] = (cat, first)
            first += _hwc(made_by[t].output_shape)[2]
    return slices


def _channel_broadcast(small, big):
    """``small`` (as stored) repeats over ``big``'s pixels: one value or one per channel."""
    return small[:2] == (1, 1) and small[2] in (1, big[2]) and big != small


def _readers(model, layers):
    """Tensor name -> the ops among ``layers`` that read it, in order."""
    readers = {}
    for layer in layers:
        for t in model.inputs_of(layer):
            readers.setdefault(t, []).append(layer)
    return readers


def _plan(model, layers, readers, input_name):
    """Group the layers the hardware runs into steps (a convolution with the 2x2 max pool and
    the table that only it feeds); returns the actions in order, ("step", [layers]) or
    ("view", layer), and each stored tensor's last reading step."""
    def only_reader(layer, nxt):
        """``nxt`` is the one op reading ``layer``'s output, which is not the model's output."""
        return (nxt is not None and readers.get(layer.name) == [nxt] and model.inputs_of(nxt) == (layer.name,)
                and layer.name != model.output_name)

    actions, root, last_use, steps = [], {input_name: input_name}, {}, 0
    i = 0
    while i < len(layers):
        layer = layers[i]
        group = [layer]
        if isinstance(layer, (Conv2D, DepthwiseConv2D, FullyConnected)):
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if _fusable_pool(layer, nxt) and only_reader(layer, nxt):
                group.append(nxt)
            nxt = layers[i + len(group)] if i + len(group) < len(layers) else None
            if _is_table(nxt) and only_reader(group[-1], nxt):
                group.append(nxt)
        elif isinstance(layer, Pad) and _foldable_pad(model, layer, readers):
            actions.append(("pad", layer))
            root[layer.name] = root[model.inputs_of(layer)[0]]
            i += 1
            continue
        elif isinstance(layer, Concatenation):
            root[layer.name] = layer.name                   # stored whole; its producers filled it
            i += 1
            continue
        elif isinstance(layer, Reshape):
            actions.append(("view", layer))
            root[layer.name] = root[model.inputs_of(layer)[0]]
            i += 1
            continue
        elif isinstance(layer, Softmax):
            _fail(f"{layer.name}: SOFTMAX is only supported as the model's last op (run on the host)")
        elif isinstance(layer, Pad):
            _fail(f"{layer.name}: {layer.op} maps only onto the padding of the convolutions reading it (spatial "
                  f"padding with their input zero point); this one pads {layer.paddings} with {layer.fill} for "
                  f"{', '.join(r.op for r in readers.get(layer.name, [])) or 'the output'}")
        elif not (isinstance(layer, (Pool2D, Add)) or _is_table(layer)):
            _fail(f"{layer.name}: {layer.op} has no hardware mapping (yet)")
        for t in model.inputs_of(layer):
            last_use[root[t]] = steps
        root[group[-1].name] = group[-1].name
        actions.append(("step", group))
        steps += 1
        i += len(group)
    return actions, root, last_use, steps


def compile_model(model, config):
    """Compile a validated Model for ``config``; raises CompileError naming what does not fit.

    With ``act_memory="auto"`` the maps go to block RAM when they fit it, else to the SPRAMs
    next to the weights; the program's ``config`` says which.  Depthwise channels get weight
    words of their own (a pass drains one column) where the weights still fit.

    With ``weight_stream="auto"``: the program with every weight on chip if there is one,
    else the one whose weights beyond the SPRAMs stream from the flash; a model that fails
    both fails naming both reasons."""
    if config.weight_stream == "auto":
        try:
            return _compile_model(model, config.with_(weight_stream="off"))
        except CompileError as e:
            first = e
        try:
            return _compile_model(model, config.with_(weight_stream="on"))
        except CompileError as e:
            raise CompileError(f"{first}; with weights streamed from flash: {e}") from None
    return _compile_model(model, config)


def _compile_model(model, config):
    if config.streams:
        # Shared words: a depthwise channel's own word would cross the flash four times over.
        return _compile_for(model, config, None)
    try:
        return _compile_for(model, config, frozenset())
    except CompileError:
        program = _compile_for(model, config, None)
    # Own words for the steps that gain most per byte (passes per channel, over taps), as
    # long as the weights fit.
    cols = program.config.cols
    options = []
    for d in program.layers:
        if d.depthwise and d.word_groups > 1:
            extra = (d.groups - -(-d.groups // d.word_groups)) * d.unit_words * cols
            options.append((d.blocks / d.taps, extra, d.name))
    options.sort(key=lambda o: -o[0])
    room = program.config.weight_mem_bytes - program.memory_map["weights"]["bytes"]
    own = []
    for _, extra, name in options:
        if extra <= room:
            own.append(name)
            room -= extra
    while own:
        try:
            return _compile_for(model, config, frozenset(name for _, _, name in options if name not in own))
        except CompileError:
            own.pop()
    return program


def _compile_for(model, config, shared):
    if config.streams and config.act_memory == "auto":
        # Streamed weights reach the array through the weight cache, beside maps in SPRAM.
        need = _compile(model, config.spram_resolved(), shared).memory_map["activation_bank"]["bytes"]
        config = config.spram_resolved(need)
    if config.act_memory != "auto":
        program = _compile(model, config, shared)
    else:
        try:
            program = _compile(model, config.with_(act_memory="bram"), shared)
        except CompileError:
            need = _compile(model, config.spram_resolved(), shared).memory_map["activation_bank"]["bytes"]
            program = _compile(model, config.spram_resolved(need), shared)
    if config.narrow_acc:
        narrow = {"acc_width": max(17, program.memory_map["accumulator"]["bits"]),
                  "requant_bits": max(17, program.memory_map["requantiser"]["bits"])}
        narrow = {k: v for k, v in narrow.items() if v < getattr(program.config, k)}
        if narrow:
            program = _compile(model, program.config.with_(**narrow), shared)
    return program


def _shared_spram_plan(model, config, b, weight_words):
    """Where the weights start in each SPRAM (16-bit words, after the maps) and how deep the
    block-RAM weight cache is; fails in one line when either does not fit."""
    act_words = -(-b.high_water // 2)
    # Word w sits in SPRAM pair w % 2, so each SPRAM holds half of the words, 16 bits each.
    weight_share = -(-weight_words // 2)
    if act_words + weight_share > SPRAM_BANK_BYTES // 2:
        _fail(f"{model.name}: SPRAM needs {2 * (act_words + weight_share)} B per SPRAM ({2 * act_words} B of "
              f"maps, {2 * weight_share} B of weights), it has {SPRAM_BANK_BYTES} B")
    cache = max((d.unit_words for d in b.descs if d.kind == CONV), default=1)
    if cache > config.weight_cache_words:
        deepest = max((d for d in b.descs if d.kind == CONV), key=lambda d: d.unit_words)
        _fail(f"{deepest.name}: weight cache needs {cache} words of {config.cols} weights, config has "
              f"{config.weight_cache_words}")
    return {"weight_base": act_words, "weight_words_per_spram": weight_share, "cache_words": cache}


def _compile(model, config, shared):
    if config.rows != config.banks:
        _fail(f"config: the accelerator feeds 2x2 pixel blocks, so rows must be {config.banks}, got {config.rows}")
    layers = list(model.layers)
    # A uint8 or float input's QUANTIZE to int8 runs on the host (uint8 is an offset).
    head, input_name, q = [], model.input_name, model.input_q
    while (not is_int8(q) and len(head) < len(layers) and isinstance(layers[len(head)], Quantize)
           and model.inputs_of(layers[len(head)]) == (input_name,)):
        head.append(layers[len(head)])
        input_name, q = head[-1].name, head[-1].output_q
    if not is_int8(q):
        _fail(f"{model.name}: the accelerator takes int8 maps; the {type_name(model.input_q)} input is not "
              "quantised to int8 by the model's first ops")
    tail_start = len(layers)
    # Trailing SOFTMAX, views and QUANTIZE/DEQUANTIZE to the output's type run on the host (a
    # view that ends the graph moves nothing).
    while tail_start > len(head) and (isinstance(layers[tail_start - 1], (Softmax, Reshape)) or (
            isinstance(layers[tail_start - 1], Quantize) and not is_int8(layers[tail_start - 1].output_q))):
        tail_start -= 1
    body, tail = [_hardware_op(x) for x in layers[len(head):tail_start]], layers[tail_start:]
    before = ({model.input_name} | {h.name for h in head}) - {input_name}
    for layer in body:
        early = [t for t in model.inputs_of(layer) if t in before]
        if early:
            _fail(f"{layer.name}: {layer.op} reads '{early[0]}' before the host's QUANTIZE to int8")
    produced = body[-1].name if body else input_name
    for layer in tail:
        if model.inputs_of(layer) != (produced,):
            _fail(f"{layer.name}: {layer.op} runs on the host after the accelerator, so it must read "
                  f"'{produced}', not {', '.join(model.inputs_of(layer))}")
        produced = layer.name
    if produced != model.output_name:
        _fail(f"{model.name}: the output is '{model.output_name}', not the last op's; the accelerator runs "
              "graphs that end in the model output")
    readers = _readers(model, body)
    slices = _concat_slices(model, body, readers)
    actions, root, last_use, steps = _plan(model, body, readers, input_name)
    if body:
        last_use[root[body[-1].name]] = steps          # the hardware's output stays to the end
    b = _Builder(model, config, last_use, input_name, shared)
    b.slice_of = slices
    for kind, item in actions:
        if kind == "view":
            b.view(item, readers)
            continue
        if kind == "pad":
            b.pad(item)
            continue
        layer = item[0]
        if isinstance(layer, (Conv2D, DepthwiseConv2D, FullyConnected)):
            pool = next((x for x in item[1:] if isinstance(x, Pool2D)), None)
            lookup = next((x for x in item[1:] if _is_table(x)), None)
            b.conv(layer, pool, lookup)
        elif isinstance(layer, Pool2D):
            b.pool(layer)
        elif isinstance(layer, Add):
            b.add(layer)
        else:
            b.lookup(layer)
    if not b.descs:
        _fail(f"{model.name}: nothing for the accelerator to run (no CONV_2D, FULLY_CONNECTED, pool or table op)")
    if len(b.descs) > config.desc_depth:
        _fail(f"{model.name}: needs {len(b.descs)} layer descriptors, config has {config.desc_depth}")
    descs, rows, stream = b.descs, b.weight_rows, np.zeros((0, config.cols), np.int8)
    if config.streams:
        descs, rows, stream = _stream_split(config, b)
    weights = (np.concatenate(rows) if rows else np.zeros((0, config.cols), np.int8))
    cols = list(zip(*b.params)) if b.params else [[]] * 3
    params = ChannelParams(*[np.concatenate(c).astype(np.int64) if len(c) else np.zeros(0, np.int64)
                             for c in cols])
    tables = np.array(b.tables, np.int8).reshape(-1, 256)
    memory_map = {
        "weights": {"bytes": int(weights.size), "capacity": config.weight_mem_bytes},
        "activation_bank": {"bytes": int(b.high_water), "capacity": config.act_bank_bytes, "banks": config.banks},
        "params": {"channels": int(params.bias.size), "capacity": config.param_depth},
        "accumulator": {"bits": b.acc_worst.bit_length() + 1, "capacity": config.acc_width},
        "requantiser": {"bits": b.requant_worst.bit_length() + 1, "capacity": config.requant_bits},
        "tables": {"slots": int(len(tables)), "capacity": config.table_slots},
        "layers": [{"name": d.name, "kind": d.kind, "in_base": d.in_base, "other_base": d.other_base,
                    "out_base": d.out_base,
                    "weight_base": d.weight_base, "param_base": d.param_base, "streamed": d.streamed}
                   for d in descs],
    }
    need = bank_bytes(b.input_shape)
    if need > config.act_bank_bytes:
        _fail(f"{model.name}: input needs {need} B per activation bank, config has {config.act_bank_bytes} B")
    if config.in_spram:
        memory_map["spram"] = _shared_spram_plan(model, config, b, len(weights))
    if config.streams:
        fill = sum(config.stream_cycles_per_word * d.unit_words * -(-d.groups // d.word_groups)
                   for d in descs if d.streamed)
        memory_map["stream"] = {"bytes": int(stream.size), "layers": sum(d.streamed for d in descs),
                                "flash_cycles": fill, "flash_lines": config.flash_lines}
    return Program(config=config, model=model, layers=tuple(descs), weights=weights, params=params,
                   tables=tables, host_head=tuple(head), host_tail=tuple(tail),
                   input_shape=b.input_shape, input_layout=b.input_layout, output_name=descs[-1].name,
                   memory_map=memory_map, stream=stream)


def _stream_split(config, b):
    """Which CONV steps keep their weights in SPRAM and which stream them from the flash:
    (descriptors, resident word rows, stream words).

    A streamed group's words cross the flash at ``stream_cycles_per_word`` each while the
    array uses each weight word ``blocks`` times (``word_groups`` times that for shared
    depthwise words); with a prefetch buffer a step stalls for the difference only.  So the steps that
    would stall longest per word stay resident, as many as the SPRAMs hold after the maps;
    the rest stream in execution order, one sequential flash read an inference."""
    room = 2 * (SPRAM_BANK_BYTES // 2 - -(-b.high_water // 2))
    if config.weight_resident_bytes:
        room = min(room, config.weight_resident_bytes // config.cols)
    convs = [k for k, d in enumerate(b.descs) if d.kind == CONV]
    rows = dict(zip(convs, b.weight_rows))
    # Per stored word: its flash time, less the array's time on it (each weight word is used
    # once a pass, by every group sharing it; parameter words are not).
    stall = {k: config.stream_cycles_per_word - d.blocks * d.word_groups * d.taps / d.unit_words
             for k, d in ((k, b.descs[k]) for k in convs)}
    resident = _most_saved(convs, {k: len(rows[k]) for k in convs}, stall, room)
    descs, kept, streamed, at = [], [], [], [0, 0]
    for k, d in enumerate(b.descs):
        if k in rows:
            out = streamed if k not in resident else kept
            d = replace(d, weight_base=at[out is streamed], streamed=out is streamed)
            out.append(rows[k])
            at[out is streamed] += len(rows[k])
        descs.append(d)
    stream = np.concatenate(streamed) if streamed else np.zeros((0, config.cols), np.int8)
    return descs, kept, stream
