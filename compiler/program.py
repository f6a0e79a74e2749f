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

from dataclasses import dataclass, field

import numpy as np

from golden.model import is_int8, type_name
from golden.ops import Conv2D, DepthwiseConv2D, FullyConnected, Lookup, Pool2D, Reshape, Softmax
from golden.nonlinear import lookup_table
from golden.quant import INT32_MAX

CONV, POOL, LOOKUP = "CONV", "POOL", "LOOKUP"


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
    kernel: tuple = (1, 1)    #: CONV: kernel; POOL: filter
    stride: tuple = (1, 1)
    pads: tuple = (0, 0)      #: top, left
    conv_shape: tuple = ()    #: CONV: (H, W, C) before the fused pool
    pad_value: int = 0        #: CONV: the input zero point, fed for padded taps
    fused_pool: bool = False  #: CONV: 2x2 stride-2 max pool over each 2x2 pixel block
    block: int = 2            #: CONV: output pixels per pass are a block x block square
    weight_base: int = 0      #: CONV: first weight word
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

    @property
    def taps(self):
        """Reduction length of one pass (CONV)."""
        return self.kernel[0] * self.kernel[1] * (1 if self.depthwise else self.in_shape[2])

    @property
    def blocks(self):
        """CONV: 2x2 pixel blocks per channel group (a fused pool's windows are exactly these)."""
        if self.fused_pool:
            return self.out_shape[0] * self.out_shape[1]
        return -(-self.conv_shape[0] // self.block) * -(-self.conv_shape[1] // self.block)


@dataclass(frozen=True)
class ChannelParams:
    """Per output channel: folded bias, multiplier, shift."""
    bias: np.ndarray
    multiplier: np.ndarray
    shift: np.ndarray


@dataclass(frozen=True)
class Program:
    config: object
    model: object
    layers: tuple                        #: LayerDesc, in execution order
    weights: np.ndarray                  #: int8 (weight_words_used, cols)
    params: ChannelParams
    tables: np.ndarray                   #: int8 (slots_used, 256)
    host_tail: tuple = ()                #: model layers the host finishes (golden), e.g. SOFTMAX
    input_shape: tuple = ()              #: (H, W, C) of the stored model input, at byte 0 of every bank
    output_name: str = ""                #: model layer whose output the hardware delivers
    memory_map: dict = field(default_factory=dict)

    @property
    def output_desc(self):
        return self.layers[-1]

    @property
    def pool_window(self):
        """Elements of the largest window the pool unit reduces (a LOOKUP step is a 1x1 window)."""
        return max([d.kernel[0] * d.kernel[1] for d in self.layers if d.kind == POOL] + [1])

    @property
    def weight_image(self):
        """The weight words as bytes, lowest lane first: what the load port, the flash and
        the WEIGHTS command carry."""
        return self.weights.astype(np.uint8).tobytes()

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
    def __init__(self, model, config):
        self.model, self.config = model, config
        self.descs, self.weight_rows, self.params, self.tables = [], [], [], []
        self.shape = self.input_shape = _hwc(model.input_shape)
        self.base = 0
        self.high_water = bank_bytes(self.shape)

    def _out_base(self, out_shape):
        """Ping-pong inside every bank: output at the other end from the input."""
        need_in, need_out = bank_bytes(self.shape), bank_bytes(out_shape)
        limit = self.config.act_bank_bytes
        if need_in + need_out > limit:
            return _fail(f"{self.layer.name}: activation bank needs {need_in + need_out} B "
                         f"(input {need_in} + output {need_out} per bank), config has {limit} B")
        self.high_water = max(self.high_water, need_in + need_out)
        return 0 if self.base else limit - need_out

    def _table_slot(self, lookup):
        table = lookup_table(lookup.kind, lookup.input_q)
        for i, t in enumerate(self.tables):
            if np.array_equal(t, table):
                return i
        if len(self.tables) >= self.config.table_slots:
            _fail(f"{lookup.name}: needs activation table {len(self.tables) + 1}, config has "
                  f"{self.config.table_slots} table slots")
        self.tables.append(table)
        return len(self.tables) - 1

    def _emit(self, desc):
        self.descs.append(desc)
        self.shape, self.base = desc.out_shape, desc.out_base

    def conv(self, layer, pool, lookup):
        cfg = self.config
        out_c = layer.out_channels
        depthwise = isinstance(layer, DepthwiseConv2D) and layer.input_shape[2] > 1
        if isinstance(layer, FullyConnected):
            h, w, c = self.shape
            weights = layer.weights.reshape(out_c, h, w, c)
            kernel, stride, pads, conv_shape = (h, w), (1, 1), (0, 0), (1, 1, out_c)
        else:
            weights, kernel, stride, pads = layer.weights, layer.kernel, layer.stride, layer.pads
            conv_shape = layer.output_shape
            if isinstance(layer, DepthwiseConv2D):
                # (1, KH, KW, C*M) -> one row of taps per output channel; with a single input
                # channel that is an ordinary convolution.
                weights = weights.transpose(3, 1, 2, 0)
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
        if worst.max() > cfg.acc_limit:
            _fail(f"{layer.name}: worst-case dot product {int(worst.max())} exceeds the "
                  f"{cfg.acc_width}-bit accumulator (limit {cfg.acc_limit})")
        zp = layer.input_q.zero_point
        bias = layer.bias.astype(np.int64) - zp * flat.sum(axis=1)
        mult, shift = layer.multipliers_shifts
        reach = (np.abs(bias) + worst) << np.maximum(shift, 0)
        if reach.max() > INT32_MAX:
            _fail(f"{layer.name}: accumulator plus folded bias reaches {int(reach.max())}, beyond int32")
        lo, hi = layer.act_range
        if pool is not None:
            plo, phi = pool.act_range
            lo, hi = int(np.clip(lo, plo, phi)), int(np.clip(hi, plo, phi))
        groups = -(-out_c // group_channels)
        # Group g's weights: one word per tap, lane j for output channel g * group_channels + j.
        full = np.zeros((groups * group_channels, taps), np.int8)
        full[:out_c] = flat
        padded = np.zeros((groups, cfg.cols, taps), np.int8)
        padded[:, :group_channels] = full.reshape(groups, group_channels, taps)
        weight_base = sum(len(r) for r in self.weight_rows)
        self.weight_rows.append(padded.transpose(0, 2, 1).reshape(-1, cfg.cols))
        used = weight_base + groups * taps
        if used > cfg.weight_words:
            _fail(f"{layer.name}: weight memory needs {used * cfg.cols} B, config has {cfg.weight_mem_bytes} B")
        param_base = sum(len(p[0]) for p in self.params)
        if param_base + out_c > cfg.param_depth:
            _fail(f"{layer.name}: parameter memory needs {param_base + out_c} channels, "
                  f"config has {cfg.param_depth}")
        self.params.append((bias, mult, shift))
        last = lookup or pool or layer
        self._emit(LayerDesc(
            name=last.name, kind=CONV, in_shape=self.shape, out_shape=_hwc(out_shape),
            in_base=self.base, out_base=self._out_base(_hwc(out_shape)), kernel=tuple(kernel),
            stride=tuple(stride), pads=tuple(pads), conv_shape=_hwc(conv_shape), pad_value=zp,
            fused_pool=pool is not None, block=block, weight_base=weight_base, param_base=param_base,
            zero_point=layer.output_q.zero_point, act_min=lo, act_max=hi,
            single_rounding=layer.single_rounding, groups=groups, depthwise=depthwise,
            group_channels=group_channels, table=self._table_slot(lookup) if lookup is not None else -1))

    def pool(self, layer):
        lo, hi = layer.act_range
        area = layer.filter[0] * layer.filter[1]
        if area > self.config.pool_window:
            _fail(f"{layer.name}: {layer.filter[0]}x{layer.filter[1]} pooling window has {area} elements, "
                  f"the pool unit reduces at most {self.config.pool_window}")
        self._emit(LayerDesc(name=layer.name, kind=POOL, in_shape=self.shape, out_shape=layer.output_shape,
                             in_base=self.base, out_base=self._out_base(layer.output_shape),
                             kernel=layer.filter, stride=layer.stride, pads=layer.pads,
                             pool_kind=layer.kind, act_min=lo, act_max=hi))

    def view(self, layer, following):
        """RESHAPE, EXPAND_DIMS, SQUEEZE move no data where the banked layout stays the same:
        before any step (the host stores the input in the new shape), when the stored (H, W,
        C) is unchanged, and before FULLY_CONNECTED (which reads its input in NHWC order
        whatever the shape)."""
        shape = _hwc(layer.output_shape)
        if not self.descs:
            self.shape = self.input_shape = shape
            self.high_water = bank_bytes(shape)
        elif shape != self.shape and not isinstance(following, FullyConnected):
            _fail(f"{layer.name}: {layer.op} from {self.shape} to {layer.output_shape} before "
                  f"{following.op if following is not None else 'the output'} would move data in the banks; "
                  "the accelerator maps views only where the layout stays (yet)")

    def lookup(self, layer):
        self._emit(LayerDesc(name=layer.name, kind=LOOKUP, in_shape=self.shape, out_shape=self.shape,
                             in_base=self.base, out_base=self._out_base(self.shape),
                             table=self._table_slot(layer)))


def _fusable_pool(conv, nxt):
    """A 2x2/2 VALID max pool after a stride-1 conv: its windows are the conv's 2x2 blocks."""
    return (isinstance(conv, (Conv2D, DepthwiseConv2D)) and conv.stride == (1, 1) and isinstance(nxt, Pool2D) and nxt.kind == "MAX"
            and nxt.filter == (2, 2) and nxt.stride == (2, 2) and nxt.padding == "VALID")


def compile_model(model, config):
    """Compile a validated Model for ``config``; raises CompileError naming what does not fit."""
    if config.rows != config.banks:
        _fail(f"config: the accelerator feeds 2x2 pixel blocks, so rows must be {config.banks}, got {config.rows}")
    if not model.is_chain:
        branch = next((layer for layer in model.layers if model.inputs_of(layer) != (model.predecessor(layer),)),
                      None)
        if branch is None:
            _fail(f"{model.name}: the output is '{model.output_name}', not the last op's; the accelerator runs "
                  "chains that end in the model output")
        _fail(f"{branch.name}: {branch.op} reads {', '.join(model.inputs_of(branch))}; the accelerator runs "
              "chains of ops, not branching graphs (yet)")
    if not (is_int8(model.input_q) and is_int8(model.output_q)):
        _fail(f"{model.name}: the accelerator takes int8 input and output, the model has "
              f"{type_name(model.input_q)} and {type_name(model.output_q)}")
    b = _Builder(model, config)
    layers = list(model.layers)
    tail_start = len(layers)
    # Trailing SOFTMAX and views run on the host (a view that ends the graph moves nothing).
    while tail_start > 0 and isinstance(layers[tail_start - 1], (Softmax, Reshape)):
        tail_start -= 1
    i = 0
    while i < tail_start:
        layer = layers[i]
        b.layer = layer
        nxt = layers[i + 1] if i + 1 < tail_start else None
        if isinstance(layer, (Conv2D, DepthwiseConv2D, FullyConnected)):
            pool = nxt if _fusable_pool(layer, nxt) else None
            after = layers[i + 2] if pool is not None and i + 2 < tail_start else nxt
            lookup = after if isinstance(after, Lookup) else None
            b.conv(layer, pool, lookup)
            i += 1 + (pool is not None) + (lookup is not None)
            continue
        if isinstance(layer, Pool2D):
            b.pool(layer)
        elif isinstance(layer, Lookup):
            b.lookup(layer)
        elif isinstance(layer, Reshape):
            b.view(layer, layers[i + 1] if i + 1 < tail_start else None)
        elif isinstance(layer, Softmax):
            _fail(f"{layer.name}: SOFTMAX is only supported as the model's last op (run on the host)")
        else:
            _fail(f"{layer.name}: {layer.op} has no hardware mapping (yet)")
        i += 1
    if not b.descs:
        _fail(f"{model.name}: nothing for the accelerator to run (no CONV_2D, FULLY_CONNECTED, pool or table op)")
    if len(b.descs) > config.desc_depth:
        _fail(f"{model.name}: needs {len(b.descs)} layer descriptors, config has {config.desc_depth}")
    weights = (np.concatenate(b.weight_rows) if b.weight_rows else np.zeros((0, config.cols), np.int8))
    cols = list(zip(*b.params)) if b.params else [[]] * 3
    params = ChannelParams(*[np.concatenate(c).astype(np.int64) if len(c) else np.zeros(0, np.int64)
                             for c in cols])
    tables = np.array(b.tables, np.int8).reshape(-1, 256)
    memory_map = {
        "weights": {"bytes": int(weights.size), "capacity": config.weight_mem_bytes},
        "activation_bank": {"bytes": int(b.high_water), "capacity": config.act_bank_bytes, "banks": config.banks},
        "params": {"channels": int(params.bias.size), "capacity": config.param_depth},
        "tables": {"slots": int(len(tables)), "capacity": config.table_slots},
        "layers": [{"name": d.name, "kind": d.kind, "in_base": d.in_base, "out_base": d.out_base,
                    "weight_base": d.weight_base, "param_base": d.param_base} for d in b.descs],
    }
    need = bank_bytes(b.input_shape)
    if need > config.act_bank_bytes:
        _fail(f"{model.name}: input needs {need} B per activation bank, config has {config.act_bank_bytes} B")
    return Program(config=config, model=model, layers=tuple(b.descs), weights=weights, params=params,
                   tables=tables, host_tail=tuple(layers[tail_start:]),
                   input_shape=b.input_shape, output_name=b.descs[-1].name, memory_map=memory_map)
