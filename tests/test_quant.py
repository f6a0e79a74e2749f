"""Requantisation against an independent arbitrary-precision formulation (Fractions)."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from golden.quant import (INT32_MAX, INT32_MIN, activation_range, multiply_by_quantized_multiplier,
                          multiply_by_quantized_multiplier_single,
                          quantize_multiplier, rounding_divide_by_pot, saturating_rounding_doubling_high_mul,
                          tflite_round)

int32 = st.integers(INT32_MIN, INT32_MAX)
multiplier = st.integers(1 << 30, INT32_MAX) | st.sampled_from([0, 1 << 30, INT32_MAX])


def ref_high_mul(a, b):
    """round(a*b / 2**31), ties toward +inf; the lone overflow saturates."""
    if a == b == INT32_MIN:
        return INT32_MAX
    return math.floor(Fraction(a * b, 1 << 31) + Fraction(1, 2))


def ref_div_pot(x, e):
    """round(x / 2**e), ties away from zero."""
    v = Fraction(x, 1 << e)
    return int(math.copysign(math.floor(abs(v) + Fraction(1, 2)), v)) if v else 0


def ref_mbqm(x, m, shift):
    if shift > 0:
        x = (x * (1 << shift) - INT32_MIN) % (1 << 32) + INT32_MIN
    return ref_div_pot(ref_high_mul(x, m), max(-shift, 0))


@settings(max_examples=2000, deadline=None)
@given(int32, int32)
def test_high_mul(a, b):
    assert int(saturating_rounding_doubling_high_mul(a, b)) == ref_high_mul(a, b)


@settings(max_examples=2000, deadline=None)
@given(int32, st.integers(0, 31))
def test_rounding_divide_by_pot(x, e):
    assert int(rounding_divide_by_pot(x, e)) == ref_div_pot(x, e)


@settings(max_examples=3000, deadline=None)
@given(int32, multiplier, st.integers(-31, 8))
def test_multiply_by_quantized_multiplier(x, m, shift):
    assert int(multiply_by_quantized_multiplier(x, m, shift)) == ref_mbqm(x, m, shift)


def test_vectorised_matches_scalar():
    rng = np.random.default_rng(1)
    x = rng.integers(INT32_MIN, INT32_MAX, size=5000, endpoint=True)
    m = rng.integers(1 << 30, INT32_MAX, size=5000, endpoint=True)
    s = rng.integers(-31, 4, size=5000, endpoint=True)
    x[:4] = [INT32_MIN, INT32_MAX, 0, -1]
    got = multiply_by_quantized_multiplier(x, m, s)
    assert [int(g) for g in got] == [ref_mbqm(int(a), int(b), int(c)) for a, b, c in zip(x, m, s)]


@settings(max_examples=3000, deadline=None)
@given(int32, multiplier, st.integers(-31, 8))
def test_single_rounding(x, m, shift):
    """One rounding of the exact product, ties toward +inf."""
    want = math.floor(Fraction(x * m, 1 << 31) * Fraction(2) ** shift + Fraction(1, 2))
    assert int(multiply_by_quantized_multiplier_single(x, m, shift)) == want


@settings(max_examples=1000, deadline=None)
@given(st.floats(1e-12, 1e4, allow_nan=False, allow_infinity=False))
def test_quantize_multiplier(real):
    q, shift = quantize_multiplier(real)
    if q == 0:
        assert real < 2.0 ** -31
        return
    assert (1 << 30) <= q <= INT32_MAX
    assert abs(Fraction(q, 1 << 31) * Fraction(2) ** shift - Fraction(real)) <= Fraction(2) ** (shift - 32)


@pytest.mark.parametrize("real, shift", [(2.0 ** 29, 30), (2.0 ** 29 * 1.5, 30)])
def test_quantize_multiplier_left_shift_limit(real, shift):
    assert quantize_multiplier(real)[1] == shift
    with pytest.raises(ValueError, match="left shift of 31, more than the 30"):
        quantize_multiplier(real * 2)
    with pytest.raises(ValueError, match="left shift of 127"):
        quantize_multiplier(1e38)


def test_tflite_round_is_half_away_from_zero():
    assert list(tflite_round([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5])) == [-3, -2, -1, 1, 2, 3]


@pytest.mark.parametrize("act,scale,zp,want", [
    ("NONE", 0.1, 3, (-128, 127)),
    ("RELU", 0.1, -128, (-128, 127)),
    ("RELU", 0.1, 5, (5, 127)),
    ("RELU6", 0.05, -128, (-128, -8)),
    ("RELU6", 0.01, 0, (0, 127)),
    ("RELU_N1_TO_1", 0.01, 0, (-100, 100)),
])
def test_activation_range(act, scale, zp, want):
    assert activation_range(act, scale, zp) == want
