"""ADD and MEAN arithmetic against independent arbitrary-precision formulations (Fractions).

Two checks each: the int32 steps TFLite's kernels take, redone in Python integers with
the Fraction-based MultiplyByQuantizedMultiplier of ``test_quant``, must agree exactly;
and the result must be within one step of the exact real-valued answer.
"""

import math
from fractions import Fraction

import numpy as np
from hypothesis import assume, given, settings, strategies as st

from golden.model import ModelError, QParams
from golden.ops.add import LEFT_SHIFT, add_int8, add_params
from golden.ops.mean import mean_int8, mean_multiplier
from golden.quant import quantize_multiplier
from test_quant import ref_mbqm

int8 = st.integers(-128, 127)
scale = st.floats(1e-4, 10.0, allow_nan=False).map(lambda s: float(np.float32(s)))
qparams = st.builds(QParams, scale, int8)


def round_half_away(v):
    return int(math.copysign(math.floor(abs(v) + Fraction(1, 2)), v)) if v else 0


def ref_add(x1, x2, q1, q2, qo):
    """TFLite's int8 Add, step by step on Python ints; multipliers from the shared QuantizeMultiplier
    of the exact Fraction ratios."""
    s1, s2, so = (Fraction(q.scale) for q in (q1, q2, qo))
    twice = 2 * max(s1, s2)
    mults = [quantize_multiplier(float(r)) for r in (s1 / twice, s2 / twice, twice / ((1 << LEFT_SHIFT) * so))]
    a = ref_mbqm((x1 - q1.zero_point) << LEFT_SHIFT, *mults[0])
    b = ref_mbqm((x2 - q2.zero_point) << LEFT_SHIFT, *mults[1])
    return max(-128, min(127, ref_mbqm(a + b, *mults[2]) + qo.zero_point))


@settings(max_examples=3000, deadline=None)
@given(int8, int8, qparams, qparams, qparams)
def test_add_matches_integer_reference_and_real_sum(x1, x2, q1, q2, qo):
    try:
        add_params(q1, q2, qo)
    except ModelError:
        assume(False)
    got = int(add_int8(np.int8(x1), np.int8(x2), q1, q2, qo, -128, 127))
    assert got == ref_add(x1, x2, q1, q2, qo)
    real = (Fraction(q1.scale) * (x1 - q1.zero_point) + Fraction(q2.scale) * (x2 - q2.zero_point)) / Fraction(qo.scale)
    exact = round_half_away(real) + qo.zero_point
    if -128 <= exact <= 127:
        assert abs(got - exact) <= 1


def test_add_refuses_what_tflite_aborts_on():
    q = QParams(1.0, 0)
    try:
        add_params(q, q, QParams(2.0 ** -20, 0))
    except ModelError as e:
        assert "too small" in str(e)
    else:
        raise AssertionError("an output multiplier >= 1 must be refused")


def ref_mean(values, qi, qo):
    """QuantizedMeanOrSum on Python ints: 1/N folded into the multiplier as TFLite does it."""
    n = len(values)
    m, shift = quantize_multiplier(float(Fraction(qi.scale) / Fraction(qo.scale)))
    s = min(n.bit_length() - 1, 32, 31 + shift)
    folded = (m << s) // n
    return max(-128, min(127, ref_mbqm(sum(values) - qi.zero_point * n, folded, shift - s) + qo.zero_point))


@settings(max_examples=2000, deadline=None)
@given(st.lists(int8, min_size=1, max_size=300), qparams, qparams)
def test_mean_matches_integer_reference_and_real_mean(values, qi, qo):
    m, shift = quantize_multiplier(float(qi.scale) / float(qo.scale))
    assume(shift <= 30)
    got = int(mean_int8(np.int64(sum(values)), len(values), qi, qo))
    assert got == ref_mean(values, qi, qo)
    real = Fraction(qi.scale) / Fraction(qo.scale) * (Fraction(sum(values), len(values)) - qi.zero_point)
    exact = round_half_away(real) + qo.zero_point
    if -128 <= exact <= 127:
        # Folding 1/N into a 31-bit multiplier loses up to N / 2**31 relative precision, then two roundings.
        assert abs(got - exact) <= 1 + abs(real) * len(values) / 2 ** 30


def test_mean_of_equal_scales_over_a_window_is_the_rounded_average():
    q = QParams(0.05, -3)
    x = np.array([[1, 2, 2, 2]], np.int64)
    assert mean_multiplier(q, q, 4) == ((1 << 30) * 4 // 4, 1 - 2)
    assert int(mean_int8(x.sum(), 4, q, q)[()]) == 2
