"""The hardware form of a compiled layer: a packed record the sequencer reads from ROM.

Everything the address generators would otherwise multiply at run time (row and column
strides of the banked maps, tracker start values) is precomputed here, read off the
compiler's layout (:func:`compiler.program.bank_address`), so the feeder and the drain only
ever add.  Field widths come from the configuration.
"""

from amaranth.hdl import Mux, Shape, Signal, signed
from amaranth.lib import data

from compiler.program import ADD, CONV, POOL, CompileError, bank_address, bank_bytes


def ptr_shape(config):
    """A tracker's bank pointer (``config.ptr_bits``, signed)."""
    return signed(config.ptr_bits)


def coord_shape(config):
    """A tracker's map coordinate (``config.dim_bits``, signed: negative in the padding)."""
    return signed(config.dim_bits)


def write_layout(config):
    """A byte's place in the activation memory: its bank and the address in it."""
    return data.StructLayout({"bank": range(config.banks), "addr": config.bank_addr_bits})


class Loop:
    """One loop of a descriptor's nest, counted down to its last iteration: the ``last``
    test is a register, not a comparison against a descriptor field (and so is the test
    for the iteration before it, which lets the next ``last`` be known a step ahead); the
    index parity is kept because the banked maps step their pointers every other index."""

    def __init__(self, name, width):
        self.left = Signal(width, name=f"{name}_left")
        self.last = Signal(name=f"{name}_last")
        self.penult = Signal(name=f"{name}_penult")     # the iteration before the last
        self.odd = Signal(name=f"{name}_odd")
        self.only = Signal(name=f"{name}_only")         # the loop has a single iteration

    def load(self, count):
        """Statements entering iteration 0 of a new loop of ``count`` (>= 1) iterations."""
        return [self.left.eq(count - 1), self.last.eq(count == 1), self.penult.eq(count == 2),
                self.odd.eq(0), self.only.eq(count == 1)]

    def restart(self, count):
        """Statements entering iteration 0 again (``count`` as when loaded)."""
        return [self.left.eq(count - 1), self.last.eq(self.only), self.penult.eq(count == 2), self.odd.eq(0)]

    def advance(self):
        """Statements entering the next iteration (not after the last)."""
        return [self.left.eq(self.left - 1), self.last.eq(self.penult), self.penult.eq(self.left == 2),
                self.odd.eq(~self.odd)]

    def next_last(self, steps):
        """``last`` after a cycle in which the loop ``steps`` (advances, or restarts after
        its last iteration) or not."""
        return Mux(steps, Mux(self.last, self.only, self.penult), self.last)


def desc_layout(config):
    addr, count, ptr, coord = config.bank_addr_bits, config.dim_bits, ptr_shape(config), coord_shape(config)
    # A program whose weights partly stream says which steps' do, and how many words a weight
    # word's taps and parameters take (fields no other program has).
    streamed = {"streamed": 1, "unit_words": config.taps_bits} if config.streams else {}
    return data.StructLayout({
        **streamed,
        "in_base": addr, "out_base": addr,
        # feeder: reduction loops and the input map
        "c": count, "kw": count, "kh": count, "h": coord, "w": coord,
        "red_c": count,                      # channels a tap position reduces: c, or 1 when depthwise
        "depthwise": 1,                      # group g reads input channel g
        "nbx": count, "nby": count, "groups": count, "taps": config.taps_bits,
        "block1": 1,                         # one pixel per pass (strided layers)
        "pad_value": signed(8),
        "row_stride": ptr,                   # ceil(W/2) * C: one step of iy >> 1
        "ystep": coord, "xstep": coord,      # input rows / cols between consecutive blocks
        "ystep_ptr": data.ArrayLayout(ptr, 2),  # pointer step per block for iy even / odd
        "xstep_ptr": data.ArrayLayout(ptr, 2),
        # CONV: the first block's row pair (iy0, iy0 + 1) and column pair; their pointers by
        # parity, in_base included in the rows'.  POOL: the window origin, twice.
        "iy0": data.ArrayLayout(coord, 2), "ix0": data.ArrayLayout(coord, 2),
        "rowptr0": data.ArrayLayout(ptr, 2), "colptr0": data.ArrayLayout(ptr, 2),
        "weight_base": config.weight_addr_bits,
        "oh": count, "ow": count,            # computed conv pixels (rows beyond are discarded)
        # drain: output map, requantisation and post-processing
        "fused_pool": 1, "out_c": count, "out_row_stride": ptr,
        "out_stride": count,                 # bytes between output pixels: out_c, or a CONCATENATION's channels
        "group_channels": count,             # output channels per group: cols, or the depth multiplier
        "word_groups": count,                # groups sharing a weight word, group g in lanes from (g % it) * group_channels
        "word_channels": count,              # their output channels: word_groups * group_channels
        "param_base": config.param_addr_bits, "zero_point": signed(8), "act_min": signed(8), "act_max": signed(8),
        "single_rounding": 1, "table": 1, "table_slot": config.table_slot_bits,
        "pool": 1, "pool_avg": 1,            # a POOL descriptor, run by the pool engine
        "add": 1, "other_base": addr,        # an ADD descriptor, run by the add engine: second input
        "add_bcast": 1, "other_c": count,    # it repeats over the first's pixels: its channels, 1 or c
        "add_len": config.bank_addr_bits + 1,  # bytes per bank the maps span
        "last": 1,
    })


def _row_ptr(shape, y):
    """A tracker's row pointer: the bank address of row ``y``'s first byte (map at 0)."""
    return bank_address(shape, 0, y, 0, 0)[1]


def _col_ptr(shape, x):
    """A tracker's column pointer: the bank address of column ``x``'s first byte in row 0."""
    return bank_address(shape, 0, 0, x, 0)[1]


def _step_ptr(ptr, shape, step):
    """Pointer step when a coordinate v advances by ``step``, for v even and v odd."""
    return [ptr(shape, parity + step) - ptr(shape, parity) for parity in (0, 1)]


def _by_parity(pair):
    """The two consecutive coordinates of ``pair`` as (even, odd)."""
    return pair if pair[0] % 2 == 0 else pair[::-1]


def _fits(shape, value):
    if isinstance(shape, data.ArrayLayout):
        return all(_fits(shape.elem_shape, v) for v in value)
    shape = Shape.cast(shape)
    lo, hi = (-(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1) if shape.signed else (0, (1 << shape.width) - 1)
    return lo <= int(value) <= hi


def _shape_name(shape):
    return shape if isinstance(shape, data.ArrayLayout) else Shape.cast(shape)


def encode(desc, config, is_last):
    """Field values of one LayerDesc for :func:`desc_layout` (a dict for ``Const``), each
    checked against its field: Amaranth would silently truncate a value that does not fit."""
    values = _encode(desc, config, is_last)
    for name, field in desc_layout(config):
        if name in values and not _fits(field.shape, values[name]):
            raise CompileError(f"{desc.name}: descriptor field {name} = {values[name]} does not fit its {_shape_name(field.shape)}")
    return values


def _encode(desc, config, is_last):
    shape = desc.in_shape
    h, w, c = shape
    (kh, kw), (sh, sw), (pt, pl) = desc.kernel, desc.stride, desc.pads
    out_h, out_w, out_c = desc.out_shape
    stored = (out_h, out_w, desc.out_stride or out_c)     # a CONCATENATION's slice steps by the whole map
    common = {
        "in_base": desc.in_base, "out_base": desc.out_base, "c": c, "kw": kw, "kh": kh, "h": h, "w": w,
        "row_stride": _row_ptr(shape, 2), "out_c": out_c, "out_stride": stored[2],
        "out_row_stride": _row_ptr(stored, 2),
        "act_min": desc.act_min, "act_max": desc.act_max, "table": int(desc.table >= 0),
        "table_slot": max(desc.table, 0), "last": int(is_last),
    }
    if desc.kind == ADD:
        return {**common, "add": 1, "other_base": desc.other_base, "add_len": bank_bytes(shape),
                "add_bcast": int(bool(desc.other_shape)), "other_c": desc.other_shape[2] if desc.other_shape else 1,
                "param_base": desc.param_base, "zero_point": desc.zero_point}
    if desc.kind != CONV:
        # POOL, and LOOKUP as a 1x1 MAX window: one output pixel per step, raster order.
        return {**common, "pool": 1, "pool_avg": int(desc.kind == POOL and desc.pool_kind == "AVERAGE"),
                "nbx": out_w, "nby": out_h, "ystep": sh, "xstep": sw,
                "ystep_ptr": _step_ptr(_row_ptr, shape, sh), "xstep_ptr": _step_ptr(_col_ptr, shape, sw),
                "iy0": [-pt, -pt], "ix0": [-pl, -pl],
                "rowptr0": [_row_ptr(shape, -pt)] * 2, "colptr0": [_col_ptr(shape, -pl)] * 2}
    blk = desc.block
    oh, ow = (2 * out_h, 2 * out_w) if desc.fused_pool else desc.conv_shape[:2]
    ystep, xstep = blk * sh, blk * sw
    iy0, ix0 = [-pt, 1 - pt], [-pl, 1 - pl]
    return {
        **common,
        "nbx": (ow + blk - 1) // blk, "nby": (oh + blk - 1) // blk, "groups": desc.groups, "taps": desc.taps,
        "block1": int(blk == 1), "pad_value": desc.pad_value,
        "red_c": 1 if desc.depthwise else c, "depthwise": int(desc.depthwise),
        "group_channels": desc.group_channels, "word_groups": desc.word_groups,
        "word_channels": desc.word_groups * desc.group_channels,
        "ystep": ystep, "xstep": xstep,
        "ystep_ptr": _step_ptr(_row_ptr, shape, ystep), "xstep_ptr": _step_ptr(_col_ptr, shape, xstep),
        "iy0": iy0, "ix0": ix0,
        "rowptr0": [desc.in_base + _row_ptr(shape, y) for y in _by_parity(iy0)],
        "colptr0": [_col_ptr(shape, x) for x in _by_parity(ix0)],
        # A streamed step's words land in the cache by their low bits only: its base in the
        # stream is taken modulo the weight memory's (power-of-two) words.
        "weight_base": desc.weight_base % config.weight_words if desc.streamed else desc.weight_base,
        **({"streamed": int(desc.streamed), "unit_words": desc.unit_words} if config.streams else {}),
        "oh": oh, "ow": ow,
        # With streamed weights the parameters travel with them into a store each layer fills
        # from its entry 0.
        "fused_pool": int(desc.fused_pool), "param_base": 0 if config.streams else desc.param_base,
        "zero_point": desc.zero_point,
        "single_rounding": int(desc.single_rounding),
    }
