"""What several op modules share: kernel windows, the weighted-op base, option codes, and the
seeded random choices the graph generator's op entries draw from."""

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..model import (ACTIVATIONS, PADDINGS, Layer, ModelError, QParams, check, conv_output_size, conv_padding,
                     int_array, pair)
from ..quant import activation_range, quantize_multiplier, requantize

#: TFLite's ActivationFunctionType and Padding enum values (schema.fbs).
ACTIVATION_CODES = {"NONE": 0, "RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3}
PADDING_CODES = {"SAME": 0, "VALID": 1}


def activation_name(code):
    names = {v: k for k, v in ACTIVATION_CODES.items()}
    other = {4: "TANH", 5: "SIGN_BIT", 6: "SIGMOID"}
    if code not in names:
        raise ModelError(f"fused activation {other.get(code, code)} is unsupported")
    return names[code]


def padding_name(code):
    names = {v: k for k, v in PADDING_CODES.items()}
    if code not in names:
        raise ModelError(f"unknown padding {code}")
    return names[code]


def check_activation(layer):
    check(layer.activation in ACTIVATIONS, f"{layer.name}: unsupported fused activation {layer.activation}")


def check_no_dilation(opts):
    if (opts["DilationHFactor"], opts["DilationWFactor"]) != (1, 1):
        raise ModelError(f"dilation {opts['DilationHFactor']}x{opts['DilationWFactor']} is unsupported (only 1x1)")


def windows(x, kernel, stride, pads, out, fill):
    """(N, OH, OW, KH, KW, C) view of every kernel window; padding takes the value ``fill``."""
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = kernel, stride, pads, out
    n, h, w, c = x.shape
    big = np.full((n, max(ph + h, (oh - 1) * sh + kh), max(pw + w, (ow - 1) * sw + kw), c),
                  fill, dtype=x.dtype)
    big[:, ph:ph + h, pw:pw + w] = x
    win = sliding_window_view(big, (kh, kw), axis=(1, 2))[:, ::sh, ::sw][:, :oh, :ow]
    return win.transpose(0, 1, 2, 4, 5, 3)


def weight_scales(a, n, name):
    a = np.asarray(a, dtype=np.float32).reshape(-1).copy()
    check(a.size in (1, n), f"{name}: {a.size} weight scales for {n} output channels")
    check(bool(np.all(np.isfinite(a) & (a > 0))), f"{name}: weight scales must be positive and finite")
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Weighted(Layer):
    """CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED: int8 weights, int32 bias, per-channel requant."""
    weights: np.ndarray = None
    bias: np.ndarray = None
    weight_scales: np.ndarray = None
    input_q: QParams = None
    output_q: QParams = None
    activation: str = "NONE"

    #: LiteRT's int8 FULLY_CONNECTED rounds the rescale once, the convolutions twice (found
    #: against BUILTIN_REF; see golden.quant.multiply_by_quantized_multiplier_single).
    single_rounding = False

    def _validate_weighted(self, n):
        """``n``: output channels (the weights' axis holding them differs per op)."""
        object.__setattr__(self, "weights", int_array(self.weights, np.int8, self.name, "weights"))
        bias = np.zeros(n, np.int32) if self.bias is None else self.bias
        object.__setattr__(self, "bias", int_array(bias, np.int32, self.name, "bias"))
        check(self.bias.shape == (n,), f"{self.name}: bias shape {self.bias.shape}, expected ({n},)")
        object.__setattr__(self, "weight_scales", weight_scales(self.weight_scales, n, self.name))
        check_activation(self)
        check(isinstance(self.input_q, QParams) and isinstance(self.output_q, QParams),
              f"{self.name}: missing quantisation parameters")
        check(self.input_q.dtype == "int8" and self.output_q.dtype == "int8",
              f"{self.name}: {self.op} needs int8 input and output, got {self.input_q.dtype} and {self.output_q.dtype}")
        try:
            self.act_range
        except ValueError as e:
            raise ModelError(f"{self.name}: fused {self.activation}: {e}") from None

    @property
    def per_channel(self):
        return self.weight_scales.size > 1

    @property
    def constant_bytes(self):
        return int(self.weights.size + 4 * self.bias.size)

    @property
    def multipliers_shifts(self):
        """Per output channel (multiplier, shift) as TFLite computes them at prepare time."""
        s = np.broadcast_to(self.weight_scales, (self.out_channels,))
        pairs = [quantize_multiplier(float(self.input_q.scale) * float(w) / float(self.output_q.scale)) for w in s]
        return (np.array([p[0] for p in pairs], np.int64), np.array([p[1] for p in pairs], np.int64))

    @property
    def act_range(self):
        return activation_range(self.activation, self.output_q.scale, self.output_q.zero_point)

    def requantize(self, acc):
        """int64 accumulators (..., out_channels) -> int8 outputs."""
        mult, shift = self.multipliers_shifts
        lo, hi = self.act_range
        return requantize(acc + self.bias.astype(np.int64), mult, shift, self.output_q.zero_point, lo, hi,
                          single_rounding=self.single_rounding)

    def features(self):
        left = bool((self.multipliers_shifts[1] > 0).any())
        return {self.op, (self.op, "per-channel" if self.per_channel else "per-tensor"),
                ("activation", self.activation)} | ({("left shift", True)} if left else set())

    def export_weights(self, w, weights, qdim=0):
        """Weights and bias tensors; the bias is always written (LiteRT's int8 convolutions need one)."""
        wt = w.const(f"{self.name}/weights", weights, "int8", scales=self.weight_scales, qdim=qdim)
        bias = w.const(f"{self.name}/bias", self.bias, "int32",
                       scales=np.float32(self.input_q.scale) * self.weight_scales)
        return wt, bias


@dataclass(frozen=True, eq=False)
class Convolution(Weighted):
    """CONV_2D and DEPTHWISE_CONV_2D: a (1 or O, KH, KW, I) kernel slid over an HWC map."""
    stride: tuple = (1, 1)
    padding: str = "VALID"

    def _validate_spatial(self):
        object.__setattr__(self, "stride", pair(self.stride, "stride", self.name))
        check(self.padding in PADDINGS, f"{self.name}: unsupported padding {self.padding}")
        check(len(self.input_shape) == 3, f"{self.name}: {self.op} input must be HWC, got {self.input_shape}")
        h, w = self.output_shape[:2]
        check(h >= 1 and w >= 1, f"{self.name}: kernel larger than the {self.input_shape} input")

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

    def features(self):
        return super().features() | {(self.op, self.padding),
                                     (self.op, "strided" if max(self.stride) > 1 else "unit stride")}


class KeepsQuantisation:
    """Ops whose output is quantised like their input (field ``q``): pools, views, PAD, CONCATENATION."""

    @property
    def input_q(self):
        return self.q

    @property
    def output_q(self):
        return self.q


# ---------------------------------------------------------------- random choices


def rand_scale(rng, lo=1e-3, hi=1.0):
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def rand_zero_point(rng, dtype="int8"):
    lo, hi = (-128, 127) if dtype == "int8" else (0, 255)
    r = rng.random()
    if r < 0.15:
        return lo
    if r < 0.25:
        return hi
    return int(rng.integers(lo, hi + 1))


def rand_q(rng, lo=1e-3, hi=0.5, dtype="int8"):
    return QParams(rand_scale(rng, lo, hi), rand_zero_point(rng, dtype), dtype)


def rand_weights(rng, shape):
    w = rng.integers(-127, 128, size=shape, dtype=np.int64)
    if rng.random() < 0.3:
        w.flat[rng.integers(0, w.size, size=max(1, w.size // 10))] = -128
    return w.astype(np.int8)


def rand_activation(rng):
    return str(rng.choice(ACTIVATIONS))


def rand_weighted(rng, name, weights, n, depth, in_q, per_channel):
    """Weight scales, output qparams and bias giving outputs that span the int8 range."""
    wscales = np.array([rand_scale(rng, 1e-4, 1e-1) for _ in range(n if per_channel else 1)], np.float32)
    spread = in_q.scale * float(np.max(wscales)) * 128 * np.sqrt(depth) * 40
    # Mostly shrinking multipliers; now and then one above 1 (a left shift in TFLite).
    out_scale = spread * (rand_scale(rng, 1e-3, 1.0) if rng.random() < 0.85 else rand_scale(rng, 1e-6, 1e-4))
    out_q = QParams(out_scale, rand_zero_point(rng))
    activation = rand_activation(rng)
    if activation in ("RELU6", "RELU_N1_TO_1") and 6 / out_scale >= 2 ** 31:
        activation = "RELU"         # TFLite refuses a clamp bound beyond int32
    bias_span = int(min(2 ** 20, 128 * 128 * depth))
    bias = rng.integers(-bias_span, bias_span + 1, size=n).astype(np.int32)
    return dict(name=name, weights=weights, bias=bias, weight_scales=wscales, input_q=in_q,
                output_q=out_q, activation=activation)


def same_q(q, out_q, op):
    """Ops that move bytes without rescaling need one quantisation in and out."""
    if out_q != q:
        def text(p):
            return "float32" if p is None else f"scale {p.scale:.9g}, zero point {p.zero_point}"
        raise ModelError(f"output quantisation ({text(out_q)}) differs from the input's ({text(q)}); "
                         f"{op} needs them equal")
