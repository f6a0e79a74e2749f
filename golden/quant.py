"""TFLite's integer requantisation, vectorised, in the one place every other module uses.

These are the arithmetic primitives of TFLite's reference kernels
(``MultiplyByQuantizedMultiplier`` and its parts, ``QuantizeMultiplier``,
``CalculateActivationRangeQuantized``).  The hardware requantiser is proven against
:func:`multiply_by_quantized_multiplier`, so every rounding and saturation step is
spelled out here rather than left to NumPy's defaults.
"""

import math

import numpy as np

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def _as_i64(x):
    return np.asarray(x, dtype=np.int64)


def wrap_int32(x):
    """Two's-complement wrap to int32: what C++ does to the left-shifted accumulator."""
    x = _as_i64(x)
    return ((x - INT32_MIN) & 0xFFFFFFFF) + INT32_MIN


def saturating_rounding_doubling_high_mul(a, b):
    """gemmlowp's SaturatingRoundingDoublingHighMul on int32 operands.

    (a*b + nudge) / 2**31 with C's truncating division; the only overflow case,
    INT32_MIN * INT32_MIN, saturates to INT32_MAX.
    """
    a, b = _as_i64(a), _as_i64(b)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    s = ab + nudge
    high = np.where(s >= 0, s >> 31, -((-s) >> 31))
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    return np.where(overflow, INT32_MAX, high)


def rounding_divide_by_pot(x, exponent):
    """gemmlowp's RoundingDivideByPOT: arithmetic shift right, rounding half away from zero."""
    x, exponent = _as_i64(x), _as_i64(exponent)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def multiply_by_quantized_multiplier(x, multiplier, shift):
    """TFLite's MultiplyByQuantizedMultiplier (double rounding), broadcasting over arrays.

    ``shift`` > 0 is a left shift applied before the multiply (wrapping like the C++
    int32 arithmetic), ``shift`` < 0 a rounding right shift after it.
    """
    x, multiplier, shift = _as_i64(x), _as_i64(multiplier), _as_i64(shift)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    return rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(wrap_int32(x << left), multiplier), right)


def multiply_by_quantized_multiplier_single(x, multiplier, shift):
    """The single-rounding form LiteRT's int8 FULLY_CONNECTED uses: round(x * m / 2**(31 - shift)).

    One rounding, half toward +inf: (x * m + 2**(30 - shift)) >> (31 - shift) on the exact
    64-bit product; ``shift`` is at most 30.
    """
    x, multiplier, shift = _as_i64(x), _as_i64(multiplier), _as_i64(shift)
    total = 31 - shift
    return (x * multiplier + (np.int64(1) << (total - 1))) >> total


def tflite_round(x):
    """std::round: half away from zero (NumPy's round is half to even)."""
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


#: The largest left shift of a requantisation multiplier (LiteRT's single-rounding kernels
#: clamp to it; the double-rounding ones shift an int32 by it).
MAX_LEFT_SHIFT = 30


def quantize_multiplier(real_multiplier, max_left_shift=MAX_LEFT_SHIFT):
    """TFLite's QuantizeMultiplier: a double as (int32 multiplier in [2**30, 2**31), shift).
    ValueError past ``max_left_shift`` (SOFTMAX's input scaling allows 31)."""
    real_multiplier = float(real_multiplier)
    if real_multiplier == 0.0:
        return 0, 0
    q, shift = math.frexp(real_multiplier)
    q_fixed = int(tflite_round(q * (1 << 31)))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if q_fixed > INT32_MAX:
        raise ValueError(f"multiplier {real_multiplier} does not fit int32")
    if shift > max_left_shift:
        # The kernels shift an int32 left by this much: from 31 on that is undefined in C,
        # and LiteRT's result is not something a model can rely on.
        raise ValueError(f"requantisation multiplier {real_multiplier:.3g} needs a left shift of {shift}, more than "
                         f"the {max_left_shift} TFLite's int32 kernels compute (output scale far too small?)")
    return q_fixed, shift


def requantize(acc, multiplier, shift, output_zero_point, act_min, act_max, single_rounding=False):
    """Accumulator -> int8 exactly as TFLite's integer kernels finish every output.

    CONV_2D rounds twice (gemmlowp), FULLY_CONNECTED once; the scaled accumulator plus
    zero point is clamped to the activation range (inside [-128, 127]), so nothing wraps.
    """
    scale = multiply_by_quantized_multiplier_single if single_rounding else multiply_by_quantized_multiplier
    y = scale(acc, multiplier, shift) + output_zero_point
    return np.clip(y, act_min, act_max).astype(np.int8)


def f32(x):
    """Round a Python float to the float32 it was stored as, back as a Python float."""
    return float(np.float32(x))


def quantize_value(value, scale, zero_point):
    """TFLite's Quantize(f): zero_point + round(f / scale), the division in float32."""
    q = tflite_round(np.float32(value) / np.float32(scale))
    if not -2.0 ** 31 <= q <= 2.0 ** 31 - 1:
        raise ValueError(f"{value} / scale {scale:.3g} overflows int32 (TFLite refuses the model)")
    return int(zero_point) + int(q)


def activation_range(activation, scale, zero_point, qmin=-128, qmax=127):
    """CalculateActivationRangeQuantized for int8: the clamp bounds of a fused activation."""
    if activation == "NONE":
        return qmin, qmax
    if activation == "RELU":
        return max(qmin, quantize_value(0.0, scale, zero_point)), qmax
    if activation == "RELU6":
        return (max(qmin, quantize_value(0.0, scale, zero_point)),
                min(qmax, quantize_value(6.0, scale, zero_point)))
    if activation == "RELU_N1_TO_1":
        return (max(qmin, quantize_value(-1.0, scale, zero_point)),
                min(qmax, quantize_value(1.0, scale, zero_point)))
    raise ValueError(f"unsupported fused activation {activation}")
