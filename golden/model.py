"""The project's own model representation: a validated graph of quantised tensors and ops.

A :class:`Model` is a DAG in TFLite's execution order: every op (a :class:`Layer`) reads
one or more named tensors and writes one tensor named after itself; a tensor may feed
several ops (residual branches).  Built as a plain list of layers with no ``inputs``
given, each layer reads the previous one's output: the Keras-style chain stays the
simple case.  Everything downstream (golden model, exporter, compiler, tests) reads
this, never the flatbuffer.

The op classes live in :mod:`golden.ops`, one module each (IR class, validation, golden
kernel, TFLite import/export, random-generator entry); this module holds what they
share.  Shapes exclude the batch dimension.  A tensor's type is its :class:`QParams`
(int8 or uint8 affine quantisation), or ``None`` for float32 at a model's edges.
"""

from dataclasses import dataclass, field

import numpy as np

from .quant import f32

ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")
PADDINGS = ("VALID", "SAME")
#: Integer ranges of the quantised tensor types the models may use.
DTYPE_RANGES = {"int8": (-128, 127), "uint8": (0, 255)}


class ModelError(ValueError):
    """A model outside the supported set; the message is one line for the user."""


def check(cond, msg):
    if not cond:
        raise ModelError(msg)


@dataclass(frozen=True)
class QParams:
    """Affine quantisation: real = scale * (q - zero_point); scale is a float32 value."""
    scale: float
    zero_point: int
    dtype: str = "int8"

    def __post_init__(self):
        object.__setattr__(self, "scale", f32(self.scale))
        object.__setattr__(self, "zero_point", int(self.zero_point))
        check(self.dtype in DTYPE_RANGES, f"unsupported quantised type {self.dtype}")
        check(np.isfinite(self.scale) and self.scale > 0,
              f"quantisation scale must be positive and finite, got {self.scale}")
        lo, hi = DTYPE_RANGES[self.dtype]
        check(lo <= self.zero_point <= hi, f"{self.dtype} zero point must be in [{lo}, {hi}], got {self.zero_point}")

    @property
    def range(self):
        return DTYPE_RANGES[self.dtype]


def dtype_of(q):
    """NumPy dtype of a tensor of type ``q`` (None: float32)."""
    return np.dtype(np.float32 if q is None else q.dtype)


def type_name(q):
    return "float32" if q is None else q.dtype


def conv_output_size(size, kernel, stride, padding):
    """TFLite's ComputeOutSize (no dilation)."""
    if padding == "SAME":
        return (size + stride - 1) // stride
    return (size - kernel + stride) // stride


def conv_padding(size, kernel, stride, padding):
    """Padding before the first element (TFLite puts the odd extra one at the end)."""
    out = conv_output_size(size, kernel, stride, padding)
    total = max(0, (out - 1) * stride + kernel - size)
    return total // 2


def pair(v, what, name):
    v = tuple(int(x) for x in v)
    check(len(v) == 2 and all(x >= 1 for x in v), f"{name}: {what} must be two positive ints, got {v}")
    return v


def shape_of(v, name):
    v = tuple(int(x) for x in v)
    check(len(v) >= 1 and all(x >= 1 for x in v), f"{name}: bad shape {v}")
    return v


def int_array(a, dtype, name, what):
    a = np.asarray(a)
    check(a.dtype == dtype, f"{name}: {what} must be {np.dtype(dtype).name}, got {a.dtype}")
    a = a.copy()
    a.setflags(write=False)
    return a


def is_int8(q):
    return isinstance(q, QParams) and q.dtype == "int8"


@dataclass(frozen=True, eq=False)
class Layer:
    """One op.  ``name`` names both the op and the tensor it writes; ``inputs`` names the
    tensors it reads (empty: the previous layer's output, as in a chain)."""
    name: str
    input_shape: tuple
    inputs: tuple = ()

    @property
    def input_specs(self):
        """(shape, QParams or None) each input tensor must have, in order."""
        return ((self.input_shape, self.input_q),)

    @property
    def output_shape(self):
        return self.input_shape

    @property
    def macs(self):
        return 0

    @property
    def constant_bytes(self):
        """Bytes of constants the op holds (int8 weights, int32 biases)."""
        return 0

    #: The TFLite operator (a field where one class covers several).
    op = "?"

    def features(self):
        """Op and option names this layer exercises, for the generator's coverage test."""
        return {self.op}


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple
    q: object            #: QParams, or None for float32


@dataclass(frozen=True, eq=False)
class Model:
    """A DAG of layers from one input tensor to one output tensor, in execution order."""
    name: str
    input_shape: tuple
    input_q: object                       #: QParams, or None for a float32 input
    layers: tuple = field(default_factory=tuple)
    input_name: str = "input"
    output_name: str = ""                 #: the tensor the model returns; default the last layer's

    def __post_init__(self):
        object.__setattr__(self, "input_shape", shape_of(self.input_shape, "model input"))
        object.__setattr__(self, "layers", tuple(self.layers))
        check(len(self.layers) >= 1, f"{self.name}: model has no layers")
        check(self.input_q is None or isinstance(self.input_q, QParams), f"{self.name}: bad input quantisation")
        tensors = {self.input_name: Tensor(self.input_name, self.input_shape, self.input_q)}
        edges = {}
        prev = self.input_name
        for layer in self.layers:
            check(isinstance(layer, Layer), f"{self.name}: {layer!r} is not a layer")
            check(layer.name not in tensors, f"{self.name}: duplicate tensor name {layer.name}")
            reads = tuple(layer.inputs) or (prev,)
            check(len(reads) == len(layer.input_specs),
                  f"{layer.name}: reads {len(reads)} tensors, a {layer.op} takes {len(layer.input_specs)}")
            for src, (shape, q) in zip(reads, layer.input_specs):
                check(src in tensors, f"{layer.name}: reads tensor '{src}', which no earlier op writes")
                t = tensors[src]
                check(tuple(shape) == t.shape, f"{layer.name}: input shape {tuple(shape)} does not follow {t.shape}")
                check(q == t.q, f"{layer.name}: input quantisation {q} does not match the previous output {t.q}")
            edges[layer.name] = reads
            tensors[layer.name] = Tensor(layer.name, tuple(layer.output_shape), layer.output_q)
            prev = layer.name
        if not self.output_name:
            object.__setattr__(self, "output_name", prev)
        check(self.output_name in tensors, f"{self.name}: output tensor '{self.output_name}' is not in the graph")
        object.__setattr__(self, "tensors", tensors)
        object.__setattr__(self, "edges", edges)

    def inputs_of(self, layer):
        """Names of the tensors ``layer`` reads."""
        return self.edges[layer.name]

    @property
    def output_shape(self):
        return self.tensors[self.output_name].shape

    @property
    def output_q(self):
        return self.tensors[self.output_name].q

    @property
    def is_chain(self):
        """Each layer reads only its predecessor's output and the last one is the model output."""
        prev = self.input_name
        for layer in self.layers:
            if self.edges[layer.name] != (prev,):
                return False
            prev = layer.name
        return self.output_name == prev

    def lifetimes(self):
        """Tensor name -> (index of the op writing it, -1 for the input; index of its last reader,
        len(layers) for the model output).  A tensor must be kept from the first to the second."""
        life = {name: [-1 if name == self.input_name else None, None] for name in self.tensors}
        for i, layer in enumerate(self.layers):
            life[layer.name][0] = i
            for src in self.edges[layer.name]:
                life[src][1] = i
        life[self.output_name][1] = len(self.layers)
        return {k: (a, a if b is None else b) for k, (a, b) in life.items()}

    @property
    def macs(self):
        return sum(layer.macs for layer in self.layers)

    @property
    def constant_bytes(self):
        return sum(layer.constant_bytes for layer in self.layers)

    def summary(self):
        lines = [f"{self.name}: input {self.input_shape} {type_name(self.input_q)}"
                 + (f" scale {self.input_q.scale:.6g} zp {self.input_q.zero_point}" if self.input_q else "")]
        for layer in self.layers:
            reads = self.edges[layer.name]
            src = "" if len(self.layers) and reads == (self.predecessor(layer),) else f" <- {', '.join(reads)}"
            lines.append(f"  {layer.name:<24} {layer.op:<18} -> {layer.output_shape}  MACs {layer.macs}{src}")
        lines.append(f"  total MACs {self.macs}, constants {self.constant_bytes} B, output '{self.output_name}'")
        return "\n".join(lines)

    def predecessor(self, layer):
        """Name of the tensor written just before ``layer`` in execution order."""
        i = self.layers.index(layer)
        return self.layers[i - 1].name if i else self.input_name
