"""The project's own model representation: a validated chain of int8 layers.

Everything downstream (golden model, exporter, compiler, tests) reads this, never the
flatbuffer.  Layers hold what the file holds (int8 weights, int32 biases, float32
scales, zero points, options); the integer parameters TFLite derives from them at
prepare time (per-channel multipliers and shifts, activation bounds) are computed here
once, with TFLite's own formulas, so nobody re-derives them differently.

Shapes are NHWC without the batch dimension.  Weights use TFLite's layouts: conv
OHWI, fully connected (out, in).
"""

from dataclasses import dataclass, field

import numpy as np

from .nonlinear import softmax_params
from .quant import activation_range, f32, quantize_multiplier

ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")
PADDINGS = ("VALID", "SAME")


class ModelError(ValueError):
    """A model outside the supported set; the message is one line for the user."""


def _check(cond, msg):
    if not cond:
        raise ModelError(msg)


@dataclass(frozen=True)
class QParams:
    """Affine int8 quantisation: real = scale * (q - zero_point); scale is a float32 value."""
    scale: float
    zero_point: int

    def __post_init__(self):
        object.__setattr__(self, "scale", f32(self.scale))
        object.__setattr__(self, "zero_point", int(self.zero_point))
        _check(np.isfinite(self.scale) and self.scale > 0,
               f"quantisation scale must be positive and finite, got {self.scale}")
        _check(-128 <= self.zero_point <= 127,
               f"int8 zero point must be in [-128, 127], got {self.zero_point}")


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


def _pair(v, what, name):
    v = tuple(int(x) for x in v)
    _check(len(v) == 2 and all(x >= 1 for x in v), f"{name}: {what} must be two positive ints, got {v}")
    return v


def _shape(v, name):
    v = tuple(int(x) for x in v)
    _check(len(v) >= 1 and all(x >= 1 for x in v), f"{name}: bad shape {v}")
    return v


def _int_array(a, dtype, name, what):
    a = np.asarray(a)
    _check(a.dtype == dtype, f"{name}: {what} must be {np.dtype(dtype).name}, got {a.dtype}")
    a = a.copy()
    a.setflags(write=False)
    return a


def _scales(a, n, name):
    a = np.asarray(a, dtype=np.float32).reshape(-1).copy()
    _check(a.size in (1, n), f"{name}: {a.size} weight scales for {n} output channels")
    _check(bool(np.all(np.isfinite(a) & (a > 0))), f"{name}: weight scales must be positive and finite")
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Layer:
    name: str
    input_shape: tuple

    @property
    def output_shape(self):
        return self.input_shape

    @property
    def macs(self):
        return 0


@dataclass(frozen=True, eq=False)
class _Weighted(Layer):
    """Shared by Conv2D and FullyConnected: int8 weights, int32 bias, per-channel requant."""
    weights: np.ndarray = None
    bias: np.ndarray = None
    weight_scales: np.ndarray = None
    input_q: QParams = None
    output_q: QParams = None
    activation: str = "NONE"

    def _validate_weighted(self):
        object.__setattr__(self, "weights", _int_array(self.weights, np.int8, self.name, "weights"))
        n = self.weights.shape[0]
        bias = np.zeros(n, np.int32) if self.bias is None else self.bias
        object.__setattr__(self, "bias", _int_array(bias, np.int32, self.name, "bias"))
        _check(self.bias.shape == (n,), f"{self.name}: bias shape {self.bias.shape}, expected ({n},)")
        object.__setattr__(self, "weight_scales", _scales(self.weight_scales, n, self.name))
        _check(self.activation in ACTIVATIONS, f"{self.name}: unsupported fused activation {self.activation}")
        _check(isinstance(self.input_q, QParams) and isinstance(self.output_q, QParams),
               f"{self.name}: missing quantisation parameters")

    @property
    def out_channels(self):
        return self.weights.shape[0]

    @property
    def per_channel(self):
        return self.weight_scales.size > 1

    def _effective_scales(self):
        s = np.broadcast_to(self.weight_scales, (self.out_channels,))
        return [float(self.input_q.scale) * float(w) / float(self.output_q.scale) for w in s]

    @property
    def multipliers_shifts(self):
        """Per output channel (multiplier, shift) as TFLite computes them at prepare time."""
        pairs = [quantize_multiplier(m) for m in self._effective_scales()]
        return (np.array([p[0] for p in pairs], np.int64), np.array([p[1] for p in pairs], np.int64))

    @property
    def act_range(self):
        return activation_range(self.activation, self.output_q.scale, self.output_q.zero_point)

    #: LiteRT's int8 FULLY_CONNECTED rounds the rescale once, CONV_2D twice (found against
    #: BUILTIN_REF; see golden.quant.multiply_by_quantized_multiplier_single).
    single_rounding = False


@dataclass(frozen=True, eq=False)
class Conv2D(_Weighted):
    stride: tuple = (1, 1)
    padding: str = "VALID"

    def __post_init__(self):
        object.__setattr__(self, "input_shape", _shape(self.input_shape, self.name))
        self._validate_weighted()
        object.__setattr__(self, "stride", _pair(self.stride, "stride", self.name))
        _check(self.padding in PADDINGS, f"{self.name}: unsupported padding {self.padding}")
        _check(self.weights.ndim == 4, f"{self.name}: conv weights must be OHWI, got shape {self.weights.shape}")
        _check(len(self.input_shape) == 3, f"{self.name}: conv input must be HWC, got {self.input_shape}")
        _check(self.weights.shape[3] == self.input_shape[2],
               f"{self.name}: weights have {self.weights.shape[3]} input channels, input has {self.input_shape[2]}")
        h, w = self.output_shape[:2]
        _check(h >= 1 and w >= 1, f"{self.name}: kernel larger than the {self.input_shape} input")

    @property
    def kernel(self):
        return self.weights.shape[1:3]

    @property
    def output_shape(self):
        (h, w, _), (kh, kw), (sh, sw) = self.input_shape, self.kernel, self.stride
        return (conv_output_size(h, kh, sh, self.padding), conv_output_size(w, kw, sw, self.padding),
                self.out_channels)

    @property
    def pads(self):
        (h, w, _), (kh, kw), (sh, sw) = self.input_shape, self.kernel, self.stride
        return conv_padding(h, kh, sh, self.padding), conv_padding(w, kw, sw, self.padding)

    @property
    def macs(self):
        oh, ow, oc = self.output_shape
        return oh * ow * oc * int(np.prod(self.weights.shape[1:]))


@dataclass(frozen=True, eq=False)
class FullyConnected(_Weighted):
    single_rounding = True

    def __post_init__(self):
        object.__setattr__(self, "input_shape", _shape(self.input_shape, self.name))
        self._validate_weighted()
        _check(self.weights.ndim == 2, f"{self.name}: fully connected weights must be (out, in), got {self.weights.shape}")
        _check(self.weights.shape[1] == int(np.prod(self.input_shape)),
               f"{self.name}: weights take {self.weights.shape[1]} inputs, input has {int(np.prod(self.input_shape))}")

    @property
    def output_shape(self):
        return (self.out_channels,)

    @property
    def macs(self):
        return int(self.weights.size)


@dataclass(frozen=True, eq=False)
class Pool2D(Layer):
    """MAX or AVERAGE pooling; TFLite requires the same quantisation in and out."""
    kind: str = "MAX"
    filter: tuple = (2, 2)
    stride: tuple = (2, 2)
    padding: str = "VALID"
    activation: str = "NONE"
    q: QParams = None

    def __post_init__(self):
        object.__setattr__(self, "input_shape", _shape(self.input_shape, self.name))
        _check(self.kind in ("MAX", "AVERAGE"), f"{self.name}: unknown pooling {self.kind}")
        object.__setattr__(self, "filter", _pair(self.filter, "filter", self.name))
        object.__setattr__(self, "stride", _pair(self.stride, "stride", self.name))
        _check(self.padding in PADDINGS, f"{self.name}: unsupported padding {self.padding}")
        _check(self.activation in ACTIVATIONS, f"{self.name}: unsupported fused activation {self.activation}")
        _check(isinstance(self.q, QParams), f"{self.name}: missing quantisation parameters")
        _check(len(self.input_shape) == 3, f"{self.name}: pooling input must be HWC, got {self.input_shape}")
        h, w = self.output_shape[:2]
        _check(h >= 1 and w >= 1, f"{self.name}: filter larger than the {self.input_shape} input")

    @property
    def input_q(self):
        return self.q

    @property
    def output_q(self):
        return self.q

    @property
    def output_shape(self):
        (h, w, c), (fh, fw), (sh, sw) = self.input_shape, self.filter, self.stride
        return (conv_output_size(h, fh, sh, self.padding), conv_output_size(w, fw, sw, self.padding), c)

    @property
    def pads(self):
        (h, w, _), (fh, fw), (sh, sw) = self.input_shape, self.filter, self.stride
        return conv_padding(h, fh, sh, self.padding), conv_padding(w, fw, sw, self.padding)

    @property
    def act_range(self):
        return activation_range(self.activation, self.q.scale, self.q.zero_point)


@dataclass(frozen=True, eq=False)
class Reshape(Layer):
    """Pure relabelling of an NHWC buffer (Flatten); the bytes do not move."""
    new_shape: tuple = ()
    q: QParams = None

    def __post_init__(self):
        object.__setattr__(self, "input_shape", _shape(self.input_shape, self.name))
        object.__setattr__(self, "new_shape", _shape(self.new_shape, self.name))
        _check(int(np.prod(self.new_shape)) == int(np.prod(self.input_shape)),
               f"{self.name}: cannot reshape {self.input_shape} to {self.new_shape}")

    @property
    def input_q(self):
        return self.q

    @property
    def output_q(self):
        return self.q

    @property
    def output_shape(self):
        return self.new_shape


@dataclass(frozen=True, eq=False)
class Lookup(Layer):
    """Elementwise LOGISTIC or TANH; TFLite fixes the output quantisation for int8."""
    kind: str = "LOGISTIC"
    input_q: QParams = None
    output_q: QParams = None

    def __post_init__(self):
        object.__setattr__(self, "input_shape", _shape(self.input_shape, self.name))
        _check(self.kind in ("LOGISTIC", "TANH"), f"{self.name}: unknown table op {self.kind}")
        _check(isinstance(self.input_q, QParams), f"{self.name}: missing quantisation parameters")
        want = QParams(1 / 256, -128) if self.kind == "LOGISTIC" else QParams(1 / 128, 0)
        if self.output_q is None:
            object.__setattr__(self, "output_q", want)
        _check(self.output_q == want,
               f"{self.name}: int8 {self.kind} output must have scale {want.scale} and zero point "
               f"{want.zero_point}, got {self.output_q.scale} and {self.output_q.zero_point}")


@dataclass(frozen=True, eq=False)
class Softmax(Layer):
    beta: float = 1.0
    input_q: QParams = None
    output_q: QParams = None

    def __post_init__(self):
        object.__setattr__(self, "input_shape", _shape(self.input_shape, self.name))
        object.__setattr__(self, "beta", f32(self.beta))
        _check(isinstance(self.input_q, QParams), f"{self.name}: missing quantisation parameters")
        want = QParams(1 / 256, -128)
        if self.output_q is None:
            object.__setattr__(self, "output_q", want)
        _check(self.output_q == want,
               f"{self.name}: int8 SOFTMAX output must have scale 1/256 and zero point -128")
        try:
            softmax_params(self.input_q.scale, self.beta)
        except ValueError as e:
            raise ModelError(f"{self.name}: {e}") from None
        # TFLite's Q12.19 sum of exponentials overflows once 512 of them reach 1.
        _check(self.input_shape[-1] < 512,
               f"{self.name}: SOFTMAX over {self.input_shape[-1]} values; TFLite's int8 kernel supports at most 511")


@dataclass(frozen=True, eq=False)
class Model:
    """A chain of layers from one int8 input tensor to one int8 output tensor."""
    name: str
    input_shape: tuple
    input_q: QParams
    layers: tuple = field(default_factory=tuple)

    def __post_init__(self):
        object.__setattr__(self, "input_shape", _shape(self.input_shape, "model input"))
        object.__setattr__(self, "layers", tuple(self.layers))
        _check(len(self.layers) >= 1, f"{self.name}: model has no layers")
        shape, q = self.input_shape, self.input_q
        names = set()
        for layer in self.layers:
            _check(isinstance(layer, Layer), f"{self.name}: {layer!r} is not a layer")
            _check(layer.name not in names, f"{self.name}: duplicate layer name {layer.name}")
            names.add(layer.name)
            _check(tuple(layer.input_shape) == tuple(shape),
                   f"{layer.name}: input shape {layer.input_shape} does not follow {shape}")
            _check(layer.input_q == q,
                   f"{layer.name}: input quantisation {layer.input_q} does not match the previous "
                   f"output {q}")
            shape, q = layer.output_shape, layer.output_q

    @property
    def output_shape(self):
        return self.layers[-1].output_shape

    @property
    def output_q(self):
        return self.layers[-1].output_q

    @property
    def macs(self):
        return sum(layer.macs for layer in self.layers)

    def summary(self):
        lines = [f"{self.name}: input {self.input_shape} scale {self.input_q.scale:.6g} zp {self.input_q.zero_point}"]
        for layer in self.layers:
            kind = getattr(layer, "kind", type(layer).__name__)
            lines.append(f"  {layer.name:<24} {kind:<14} -> {layer.output_shape}  MACs {layer.macs}")
        lines.append(f"  total MACs {self.macs}")
        return "\n".join(lines)
