"""int8 LOGISTIC, TANH and SOFTMAX exactly as LiteRT's reference kernels compute them.

What the BUILTIN_REF resolver (``kReference`` kernels of ``tflite/kernels/activations.cc``)
runs for int8 tensors:

* LOGISTIC and TANH: ``SigmoidPrepare`` / ``TanhPrepare`` fill a 256-entry table with
  ``LUTPopulate<int8_t>`` (``tflite/kernels/internal/common.h``, ``LUTPopulateInt8``) and
  ``SigmoidEval`` / ``TanhEval`` only index it.  Every table entry is float32 arithmetic:
  ``dequantized = input_scale * (x - zp)``, ``transformed = 1.0f / (1.0f + expf(-d))``
  or ``tanhf(d)``, ``round(transformed * (1 / output_scale)) + output_zp`` clamped to
  int8.  The fixed-point ``reference_integer_ops::Logistic`` / ``Tanh`` are only used for
  int16 here.

  ``expf`` and ``tanhf`` are the C library's (LiteRT's shared objects import them from
  libm), and they are not always correctly rounded: glibc 2.36's ``tanhf`` is off by up to
  about an ulp, which flips a table entry now and then (TANH, scale 0.0106274, zero point
  -98, input 31 gives 113, not the correctly rounded 112).  So the table calls the very
  same libm functions through ctypes, and falls back to correctly rounded float32 values
  only where no C math library can be loaded.
* SOFTMAX: ``SoftmaxPrepare<kReference>`` calls ``PreprocessSoftmaxScaling`` (beta *
  input_scale * 2**26 in double, capped at 2**31 - 1, quantised with
  ``QuantizeMultiplierGreaterThanOne``) and ``CalculateInputRadius(5, left_shift)`` for
  ``diff_min``; ``reference_ops::Softmax`` (``internal/reference/softmax.h``) then runs
  the gemmlowp fixed-point algorithm: Q5.26 scaled differences, ``exp_on_negative_values``,
  a Q12.19 sum, ``GetReciprocal`` via ``one_over_one_plus_x_for_x_in_0_1`` and a rounding
  shift to 1/256 units.  The float ``SoftmaxParams::table`` path belongs to the optimized
  kernels only.

Everything is vectorised NumPy on int64 holding int32 values; the gemmlowp primitives
that also serve requantisation come from :mod:`golden.quant`.
"""

import ctypes
import ctypes.util
import math
from functools import lru_cache

import numpy as np

from .quant import (INT32_MAX, INT32_MIN, multiply_by_quantized_multiplier, quantize_multiplier,
                    rounding_divide_by_pot, saturating_rounding_doubling_high_mul as _mul,
                    tflite_round, wrap_int32)

#: Fixed int8 output quantisation (scale, zero point) TFLite requires for each table op.
LOOKUP_OUTPUT = {"LOGISTIC": (1 / 256, -128), "TANH": (1 / 128, 0)}

# ---------------------------------------------------------------- LOGISTIC / TANH


def _correctly_rounded(fn):
    def f32(v):
        with np.errstate(over="ignore"):
            try:
                return np.float32(fn(float(v)))
            except OverflowError:
                return np.float32(np.inf)
    return f32


@lru_cache(maxsize=None)
def _libm_f32():
    """(expf, tanhf) from the C math library LiteRT links, or correctly rounded stand-ins."""
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
        fns = []
        for name in ("expf", "tanhf"):
            f = getattr(lib, name)
            f.restype, f.argtypes = ctypes.c_float, [ctypes.c_float]
            fns.append(lambda v, f=f: np.float32(f(float(v))))
        return tuple(fns)
    except (OSError, AttributeError):
        return _correctly_rounded(math.exp), _correctly_rounded(math.tanh)


def _logistic_f32(v):
    """1.0f / (1.0f + expf(-v)), all in float32."""
    e = _libm_f32()[0](-v)
    with np.errstate(over="ignore", divide="ignore"):
        return np.float32(1.0) / (np.float32(1.0) + e)


def _tanh_f32(v):
    return _libm_f32()[1](v)


@lru_cache(maxsize=None)
def _table(kind, input_scale, input_zero_point):
    out_scale, out_zp = LOOKUP_OUTPUT[kind]
    fn = _logistic_f32 if kind == "LOGISTIC" else _tanh_f32
    scale = np.float32(input_scale)
    inverse_scale = np.float32(1) / np.float32(out_scale)
    table = np.empty(256, np.int8)
    for x in range(-128, 128):
        dequantized = scale * np.float32(x - input_zero_point)      # float32 product
        transformed = fn(dequantized)
        rescaled = np.float32(tflite_round(np.float32(transformed * inverse_scale)))
        quantized = int(np.float32(rescaled + np.float32(out_zp)))
        table[x + 128] = min(max(quantized, -128), 127)
    table.setflags(write=False)
    return table


def lookup_table(kind, input_q):
    """TFLite's int8 LOGISTIC or TANH table for input quantisation ``input_q``.

    A read-only int8 array of 256 entries; entry ``x + 128`` is the op's output for the
    int8 input ``x``.  The output quantisation is the fixed one in :data:`LOOKUP_OUTPUT`.
    """
    if kind not in LOOKUP_OUTPUT:
        raise ValueError(f"unknown table op {kind}")
    return _table(kind, float(np.float32(input_q.scale)), int(input_q.zero_point))


# ---------------------------------------------------------------- SOFTMAX

_SCALED_DIFF_INTEGER_BITS = 5       # exp() input is Q5.26
_ACCUMULATION_INTEGER_BITS = 12     # sum of exps is Q12.19


def _add(a, b):
    """int32 addition as the C++ does it (gemmlowp's Add does not saturate)."""
    return wrap_int32(np.asarray(a, np.int64) + b)


def _saturating_shl(x, exponent):
    """gemmlowp SaturatingRoundingMultiplyByPOT for a positive exponent."""
    threshold = (1 << (31 - exponent)) - 1
    r = wrap_int32(x << exponent)
    r = np.where(x > threshold, INT32_MAX, r)
    return np.where(x < -threshold, INT32_MIN, r)


def _rounding_half_sum(a, b):
    """gemmlowp RoundingHalfSum on int32: (a + b + sign) / 2, C division."""
    s = np.asarray(a, np.int64) + b
    t = s + np.where(s >= 0, 1, -1)
    return np.where(t >= 0, t // 2, -((-t) // 2))


def _exp_on_interval_between_negative_one_quarter_and_0_excl(a):
    """gemmlowp: exp(a) for a Q0.31 in [-1/4, 0), Taylor series around -1/8."""
    constant_term = 1895147668          # exp(-1/8)
    constant_1_over_3 = 715827883
    x = _add(a, 1 << 28)
    x2 = _mul(x, x)
    x3 = _mul(x2, x)
    x4 = _mul(x2, x2)
    x4_over_4 = rounding_divide_by_pot(x4, 2)
    poly = rounding_divide_by_pot(_add(_mul(_add(x4_over_4, x3), constant_1_over_3), x2), 1)
    return _add(constant_term, _mul(constant_term, _add(x, poly)))


#: gemmlowp's barrel shifter: (exponent, Q0.31 exp(-2**exponent)).
_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
               (2, 39332535), (3, 720401), (4, 242))


def exp_on_negative_values_q5(a):
    """gemmlowp ``exp_on_negative_values`` for Q5.26 inputs a <= 0; result Q0.31."""
    frac_bits = 31 - _SCALED_DIFF_INTEGER_BITS
    a = np.asarray(a, np.int64)
    one_quarter = 1 << (frac_bits - 2)
    a_mod_quarter_minus_one_quarter = (a & (one_quarter - 1)) - one_quarter
    result = _exp_on_interval_between_negative_one_quarter_and_0_excl(
        _saturating_shl(a_mod_quarter_minus_one_quarter, _SCALED_DIFF_INTEGER_BITS))
    remainder = wrap_int32(a_mod_quarter_minus_one_quarter - a)
    for exponent, multiplier in _EXP_BARREL:
        if _SCALED_DIFF_INTEGER_BITS > exponent:
            bit = (remainder >> (frac_bits + exponent)) & 1
            result = np.where(bit != 0, _mul(result, multiplier), result)
    # kIntegerBits == 5: no clamp below -32 in gemmlowp.
    return np.where(a == 0, INT32_MAX, result)


def one_over_one_plus_x_for_x_in_0_1(a):
    """gemmlowp: 1 / (1 + a) for a Q0.31 in [0, 1), three Newton-Raphson steps; Q0.31."""
    half_denominator = _rounding_half_sum(a, INT32_MAX)
    x = _add(1515870810, _mul(half_denominator, -1010580540))        # Q2.29: 48/17 - 32/17 d
    for _ in range(3):
        half_denominator_times_x = _mul(half_denominator, x)
        one_minus = _add(1 << 29, -half_denominator_times_x)
        x = _add(x, _saturating_shl(_mul(x, one_minus), 2))
    return _saturating_shl(x, 1)


def _bit_length(x):
    """Bit length of positive integers below 2**53."""
    return np.frexp(np.asarray(x, np.float64))[1].astype(np.int64)


def softmax_params(input_scale, beta):
    """(input_multiplier, input_left_shift, diff_min) as SoftmaxPrepare<kReference> sets them."""
    real = min(float(np.float32(beta)) * float(np.float32(input_scale))
               * (1 << (31 - _SCALED_DIFF_INTEGER_BITS)), (1 << 31) - 1.0)
    if not real > 1.0:
        raise ValueError(f"softmax beta * input scale {real / (1 << 26):.3g} is too small "
                         "for TFLite's QuantizeMultiplierGreaterThanOne")
    # QuantizeMultiplierGreaterThanOne: the real is capped below 2**31, so the shift may be 31.
    multiplier, shift = quantize_multiplier(real, max_left_shift=31)
    # CalculateInputRadius(5, shift, 31), in double then floored.
    radius = math.floor(1.0 * ((1 << _SCALED_DIFF_INTEGER_BITS) - 1)
                        * (1 << (31 - _SCALED_DIFF_INTEGER_BITS)) / (1 << shift))
    return multiplier, shift, -radius


def softmax(x, input_q, beta=1.0):
    """int8 SOFTMAX over the last axis, output scale 1/256 and zero point -128."""
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise ValueError(f"softmax input must be int8, got {x.dtype}")
    multiplier, shift, diff_min = softmax_params(input_q.scale, beta)
    xi = x.astype(np.int64)
    diff = xi - xi.max(axis=-1, keepdims=True)
    valid = diff >= diff_min
    scaled_diff = np.where(valid, multiply_by_quantized_multiplier(diff, multiplier, shift), 0)
    exp_q0 = exp_on_negative_values_q5(scaled_diff)
    terms = rounding_divide_by_pot(exp_q0, _ACCUMULATION_INTEGER_BITS)   # Rescale<12>: Q0.31 -> Q12.19
    sum_of_exps = wrap_int32(np.where(valid, terms, 0).sum(axis=-1, keepdims=True))
    # GetReciprocal(sum_of_exps, 12): the max element alone contributes 1.0, so sum > 0.
    headroom_plus_one = 32 - _bit_length(sum_of_exps)
    num_bits_over_unit = _ACCUMULATION_INTEGER_BITS - headroom_plus_one
    shifted_sum_minus_one = wrap_int32(((sum_of_exps << headroom_plus_one) & 0xFFFFFFFF) - (1 << 31))
    shifted_scale = one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one)
    exponent = num_bits_over_unit + 31 - 8
    if exponent.size and int(exponent.max()) > 31:
        # TFLITE_CHECK(0 <= exponent && exponent <= 31) aborts the interpreter here.
        raise ValueError("softmax: a row's sum of exponentials reaches 512, which TFLite's "
                         "int8 reference kernel rejects (depth too large)")
    unsat = rounding_divide_by_pot(_mul(shifted_scale, exp_q0), exponent)
    out = np.clip(unsat - 128, -128, 127)
    return np.where(valid, out, -128).astype(np.int8)
