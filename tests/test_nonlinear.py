"""int8 LOGISTIC, TANH and SOFTMAX golden kernels vs LiteRT's BUILTIN_REF, bit for bit.

Each case is a one-layer model exported with golden.tflite_io and run by LiteRT's reference
kernels.  LOGISTIC and TANH are checked on all 256 int8 inputs, so the whole table.
"""

import numpy as np
import pytest

from golden.litert import run_litert
from golden.model import Model, QParams
from golden.ops import Lookup, Softmax
from golden.nonlinear import (LOOKUP_OUTPUT, exp_on_negative_values_q5, lookup_table,
                              one_over_one_plus_x_for_x_in_0_1, softmax, softmax_params)
from golden.tflite_io import to_tflite_bytes

ALL_INT8 = np.arange(-128, 128, dtype=np.int8)


def _log_uniform_scales(rng, n, lo, hi):
    return [float(np.float32(s)) for s in 10.0 ** rng.uniform(lo, hi, n)]


#: Tables where doing the float math in float64, or with NumPy's own float32 exp/tanh, or
#: with a correctly rounded tanhf, gets an entry wrong; LiteRT uses float32 and libm.
SENSITIVE = {
    "LOGISTIC": [(0.11625171452760696, -10), (0.2609092891216278, -49), (0.007634819019585848, 30),
                 (0.0015025973552837968, 64), (0.04038377106189728, -62), (0.033471543341875076, -98),
                 (0.0029298097360879183, 31), (0.0016509569250047207, -88),
                 (0.010306786745786667, -106), (0.004588760901242495, -110)],
    "TANH": [(0.0012179665500298142, -96), (0.022930070757865906, 6), (0.12223418056964874, 37),
             (1.823828101158142, -26), (0.010466686449944973, -31), (0.05669423192739487, -58),
             (0.011263673193752766, -30), (0.00902243796736002, 96), (0.006727416999638081, -120),
             (0.010627441108226776, -98)],
}


def _lookup_cases(kind):
    rng = np.random.default_rng(1234 + len(kind))
    # 200 random log-uniform scales over 1e-3 .. 50 with random zero points ...
    cases = [(s, int(rng.integers(-128, 128))) for s in _log_uniform_scales(rng, 200, -3, 1.7)]
    # ... and the round and extreme ones: powers of two, 1/256 steps, tiny and huge.
    special = [2.0 ** k for k in range(-12, 7, 3)] + [1 / 256, 1 / 128, 0.1, 0.3, 1.0, 1e-5, 300.0]
    cases += [(float(np.float32(s)), zp) for s in special for zp in (-128, 0, 127)]
    return cases + SENSITIVE[kind]


def _run_lookup(kind, scale, zp):
    q = QParams(scale, zp)
    model = Model(f"{kind.lower()}_table", (256,), q, [Lookup("act", (256,), kind=kind, input_q=q)])
    return np.asarray(run_litert(to_tflite_bytes(model), ALL_INT8.reshape(1, 256))).reshape(256)


@pytest.mark.parametrize("kind", ["LOGISTIC", "TANH"])
def test_lookup_table_matches_litert_on_all_inputs(kind):
    cases = _lookup_cases(kind)
    assert len(cases) >= 80
    for scale, zp in cases:
        want = _run_lookup(kind, scale, zp)
        got = lookup_table(kind, QParams(scale, zp))
        if not np.array_equal(got, want):
            bad = np.flatnonzero(got != want)
            pytest.fail(f"{kind} scale {scale!r} zp {zp}: {bad.size} entries differ, first at input "
                        f"{int(ALL_INT8[bad[0]])}: golden {got[bad[0]]} vs LiteRT {want[bad[0]]}")


@pytest.mark.parametrize("kind", ["LOGISTIC", "TANH"])
def test_lookup_table_shape_and_monotone(kind):
    table = lookup_table(kind, QParams(0.05, 7))
    assert table.dtype == np.int8 and table.shape == (256,) and not table.flags.writeable
    assert np.all(np.diff(table.astype(int)) >= 0)
    out_scale, out_zp = LOOKUP_OUTPUT[kind]
    x = 0.05 * (ALL_INT8.astype(float) - 7)
    f = 1 / (1 + np.exp(-x)) if kind == "LOGISTIC" else np.tanh(x)
    f = np.clip(f, (-128 - out_zp) * out_scale, (127 - out_zp) * out_scale)
    assert np.max(np.abs((table.astype(float) - out_zp) * out_scale - f)) <= out_scale / 2 + 1e-6
    with pytest.raises(ValueError):
        lookup_table("RELU", QParams(0.05, 7))


def _softmax_rows(rng, rows, depth):
    """A mix of uniform, extreme, clustered, all-equal and one-hot rows."""
    x = rng.integers(-128, 128, (rows, depth))
    k = rows // 6
    x[:k] = rng.choice([-128, 127], (k, depth))
    centre = rng.integers(-128, 128, (k, 1))
    x[k:2 * k] = np.clip(centre + rng.integers(-4, 5, (k, depth)), -128, 127)
    x[2 * k:3 * k] = rng.integers(-128, 128, (k, 1))
    x[3 * k:4 * k] = -128
    x[3 * k:4 * k, 0] = 127
    x[4 * k] = 127
    x[4 * k + 1] = -128
    return x.astype(np.int8)


def _softmax_cases():
    rng = np.random.default_rng(99)
    cases = []
    for _ in range(400):
        depth = int(rng.integers(1, 21))
        scale = _log_uniform_scales(rng, 1, -3, 1.7)[0]
        beta = 1.0 if rng.random() < 0.3 else float(np.float32(rng.uniform(0.5, 2.0)))
        cases.append((depth, scale, int(rng.integers(-128, 128)), beta))
    # Multiplier capped at 2**31 - 1 (beta * scale > 32), huge left shifts, a long row
    # whose sum of exponentials stays just below TFLite's limit of 512.
    cases += [(5, 40.0, 0, 1.0), (7, 100.0, -3, 2.0), (10, 3e-7, 0, 0.5), (3, 1e-4, 10, 1.7),
              (300, 0.02, 0, 1.0), (511, 0.1, 0, 1.0)]
    return cases


def _run_softmax(x, scale, zp, beta):
    q = QParams(scale, zp)
    depth = x.shape[-1]
    model = Model("softmax", (depth,), q, [Softmax("softmax", (depth,), beta=beta, input_q=q)])
    return np.asarray(run_litert(to_tflite_bytes(model), x)).reshape(x.shape)


def test_softmax_matches_litert():
    rng = np.random.default_rng(7)
    cases = _softmax_cases()
    for depth, scale, zp, beta in cases:
        x = _softmax_rows(rng, 48, depth)
        want = _run_softmax(x, scale, zp, beta)
        got = softmax(x, QParams(scale, zp), beta)
        assert got.dtype == np.int8 and got.shape == x.shape
        if not np.array_equal(got, want):
            r = np.flatnonzero((got != want).any(axis=1))[0]
            pytest.fail(f"depth {depth} scale {scale!r} zp {zp} beta {beta!r} "
                        f"params {softmax_params(scale, beta)}: row {x[r].tolist()} gives golden "
                        f"{got[r].tolist()} vs LiteRT {want[r].tolist()}")


def test_softmax_batch_shapes_and_accuracy():
    rng = np.random.default_rng(3)
    q = QParams(0.08, -5)
    x = rng.integers(-128, 128, (4, 3, 5, 10)).astype(np.int8)
    got = softmax(x, q, 1.0)
    np.testing.assert_array_equal(got.reshape(-1, 10), softmax(x.reshape(-1, 10), q, 1.0))
    z = 0.08 * x.astype(float)
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    assert np.max(np.abs((got.astype(float) + 128) / 256 - p)) <= 1.5 / 256


def test_softmax_rejects_what_tflite_aborts_on():
    with pytest.raises(ValueError):          # QuantizeMultiplierGreaterThanOne check
        softmax(np.zeros((1, 4), np.int8), QParams(1e-8, 0), 1.0)
    with pytest.raises(ValueError):          # exponent check: sum of exps reaches 512
        softmax(np.zeros((1, 512), np.int8), QParams(0.1, 0), 1.0)
    with pytest.raises(ValueError):
        softmax(np.zeros((1, 4), np.int16), QParams(0.1, 0), 1.0)


def test_fixed_point_helpers_are_accurate():
    a = -np.arange(0, 32 << 26, 9973, dtype=np.int64)           # Q5.26 over [-32, 0]
    err = exp_on_negative_values_q5(a) - np.exp(a / 2.0 ** 26) * 2.0 ** 31
    assert np.max(np.abs(err)) < 1024                           # about 5e-7
    x = np.arange(0, 1 << 31, 49999, dtype=np.int64)             # Q0.31 over [0, 1)
    err = one_over_one_plus_x_for_x_in_0_1(x) - 2.0 ** 31 / (1 + x / 2.0 ** 31)
    assert np.max(np.abs(err)) < 16
