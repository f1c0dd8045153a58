"""The N:M format and integer arithmetic (the golden model's core) against independent
computations written here (property-style, seeded).

Every random test takes the ``rng`` fixture (several seeds per test, see ``tests/conftest.py``):
a failure's report names its seed and the command that reruns it.
"""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pytest

from sparsa import nm
from sparsa.config import ArrayConfig, ConfigError
from sparsa.nm import NMPatternError, OperandRangeError

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

PATTERNS = [(1, 1), (1, 2), (2, 4), (1, 4), (2, 8), (4, 8), (4, 4), (3, 4)]
PATTERN_IDS = [f"{n}:{m}" for n, m in PATTERNS]


# --- independent references (no sparsa code) -----------------------------------------------


def to_signed(values, bits: int = 32) -> np.ndarray:
    """Reduce int64 values modulo 2**bits into the signed range (floor modulo, not nm.wrap)."""
    values = np.asarray(values, dtype=np.int64)
    return np.mod(values + 2 ** (bits - 1), 2**bits) - 2 ** (bits - 1)


def reference_gemm(x, w, psum=None) -> np.ndarray:
    """Unwrapped ``psum + X . W`` in int64."""
    acc = np.asarray(x, dtype=np.int64) @ np.asarray(w, dtype=np.int64)
    if psum is not None:
        acc = acc + np.asarray(psum, dtype=np.int64)
    return acc


def random_nm(rng, k: int, cols: int, n: int, m: int, lo: int = -128, hi: int = 127,
              *, full: bool = False) -> np.ndarray:
    """A random (k, cols) N:M matrix: each group keeps a random 0..n (or exactly n) positions."""
    groups = -(-k // m)
    counts = (np.full((groups, cols), n) if full
              else rng.integers(0, n + 1, size=(groups, cols)))
    ranks = np.argsort(np.argsort(rng.random((groups, m, cols)), axis=1), axis=1)
    keep = ranks < counts[:, None, :]
    vals = rng.integers(lo, hi + 1, size=(groups, m, cols))
    return (vals * keep).reshape(groups * m, cols)[:k]


def group_nonzeros(w: np.ndarray, m: int) -> np.ndarray:
    """Nonzero count per (group, column), independent of nm._grouped."""
    k, c = w.shape
    groups = -(-k // m)
    return np.array([[np.count_nonzero(w[g * m:(g + 1) * m, col]) for col in range(c)]
                     for g in range(groups)]).reshape(groups, c)


def k_values(rng, m: int) -> list[int]:
    """One K that is a multiple of m and one that is not (when m > 1)."""
    ks = [m * int(rng.integers(2, 6))]
    if m > 1:
        ks.append(m * int(rng.integers(2, 6)) + int(rng.integers(1, m)))
    else:
        ks.append(int(rng.integers(3, 20)))
    return ks


# --- pack / unpack --------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "m"), PATTERNS, ids=PATTERN_IDS)
def test_pack_unpack_round_trip(rng, n, m):
    for k in k_values(rng, m):
        cols = int(rng.integers(1, 7))
        w = random_nm(rng, k, cols, n, m)
        packed = nm.pack_nm(w, n, m)
        groups = math.ceil(k / m)
        assert packed.values.shape == (groups, n, cols)
        assert packed.indices.shape == (groups, n, cols)
        assert (packed.n, packed.m, packed.k) == (n, m, k)
        assert (packed.groups, packed.cols) == (groups, cols)
        assert packed.indices.min() >= 0
        assert packed.indices.max() < m
        np.testing.assert_array_equal(nm.unpack_nm(packed), w)


@pytest.mark.parametrize(("n", "m"), PATTERNS, ids=PATTERN_IDS)
def test_pack_round_trip_narrow_dtypes(rng, n, m):
    w = random_nm(rng, 3 * m + (m > 1), 4, n, m)
    for dtype in (np.int8, np.int16, np.int32):
        np.testing.assert_array_equal(nm.unpack_nm(nm.pack_nm(w.astype(dtype), n, m)), w)


@pytest.mark.parametrize(("n", "m"), PATTERNS, ids=PATTERN_IDS)
def test_pack_canonical_form(rng, n, m):
    for k in k_values(rng, m):
        cols = int(rng.integers(1, 6))
        w = random_nm(rng, k, cols, n, m)
        packed = nm.pack_nm(w, n, m)
        padded = np.zeros((packed.groups * m, cols), dtype=np.int64)
        padded[:k] = w
        for g in range(packed.groups):
            for c in range(cols):
                idx = packed.indices[g, :, c].tolist()
                vals = packed.values[g, :, c].tolist()
                assert all(a < b for a, b in itertools.pairwise(idx)), (g, c, idx)
                column = padded[g * m:(g + 1) * m, c].tolist()
                nonzero = [i for i in range(m) if column[i] != 0]
                zero = [i for i in range(m) if column[i] == 0]
                # Nonzeros kept, padding at the lowest unused indices, all in ascending order.
                assert idx == sorted(nonzero + zero[: n - len(nonzero)]), (g, c)
                for i, v in zip(idx, vals, strict=True):
                    assert v == column[i]
                    if i not in nonzero:
                        assert v == 0


@pytest.mark.parametrize(("n", "m"), PATTERNS, ids=PATTERN_IDS)
def test_pack_is_unique(rng, n, m):
    """Same matrix, different dtype/layout in memory -> identical compressed form."""
    w = random_nm(rng, 4 * m, 5, n, m)
    a = nm.pack_nm(w, n, m)
    b = nm.pack_nm(np.asfortranarray(w.astype(np.int16)), n, m)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.values, b.values)


def test_pack_all_zero_matrix():
    packed = nm.pack_nm(np.zeros((10, 3), dtype=np.int8), 2, 4)
    assert np.all(packed.values == 0)
    # Every group pads at the lowest indices: 0, 1.
    np.testing.assert_array_equal(packed.indices, np.broadcast_to([[0], [1]], (3, 2, 3)))


def test_pack_rejects_float_and_violations():
    with pytest.raises(ValueError, match=r"integer"):
        nm.pack_nm(np.zeros((4, 2)), 2, 4)
    w = np.zeros((8, 2), dtype=np.int64)
    w[4:7, 1] = 5
    with pytest.raises(NMPatternError):
        nm.pack_nm(w, 2, 4)


# --- check_nm -------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "m"), [p for p in PATTERNS if p[0] < p[1]],
                         ids=[i for p, i in zip(PATTERNS, PATTERN_IDS, strict=True)
                              if p[0] < p[1]])
def test_check_nm_names_first_violation(rng, n, m):
    groups, cols = 5, 4
    w = random_nm(rng, groups * m, cols, n, m)
    nm.check_nm(w, n, m)  # valid before the violations are planted
    # Violations at (group 3, col 0), (group 1, col 3) and (group 1, col 2): the first in K
    # order, then column, is group 1, column 2.
    planted = {}
    for g, c in [(3, 0), (1, 3), (1, 2)]:
        rows = sorted(rng.choice(m, size=n + 1, replace=False).tolist())
        w[g * m:(g + 1) * m, c] = 0
        w[[g * m + r for r in rows], c] = rng.choice([-128, -7, 1, 99, 127], size=n + 1)
        planted[(g, c)] = [g * m + r for r in rows]
    with pytest.raises(NMPatternError) as info:
        nm.check_nm(w, n, m)
    msg = str(info.value)
    print(msg)
    assert f"{n}:{m}" in msg
    assert re.search(r"\bcolumn 2\b", msg)
    assert re.search(r"\bgroup 1\b", msg)
    assert f"K rows {m}..{2 * m - 1}" in msg
    assert f"{n + 1} nonzeros" in msg
    assert str(planted[(1, 2)]) in msg
    assert "column 3" not in msg
    assert "group 3" not in msg


def test_check_nm_lower_group_wins_over_lower_column():
    w = np.zeros((12, 3), dtype=np.int64)
    w[[8, 9], 0] = 1  # group 2, column 0
    w[[4, 6], 2] = -128  # group 1, column 2 (first in K order)
    with pytest.raises(NMPatternError, match=r"column 2, group 1 \(K rows 4\.\.7\)") as info:
        nm.check_nm(w, 1, 4)
    assert "[4, 6]" in str(info.value)


def test_check_nm_partial_last_group():
    w = np.zeros((6, 1), dtype=np.int64)
    w[[4, 5], 0] = 3  # K = 6, group 1 holds only K rows 4 and 5
    with pytest.raises(NMPatternError, match=r"group 1") as info:
        nm.check_nm(w, 1, 4)
    assert "[4, 5]" in str(info.value)
    nm.check_nm(w, 2, 4)


@pytest.mark.parametrize(("n", "m"), PATTERNS, ids=PATTERN_IDS)
def test_check_nm_accepts_random_valid(rng, n, m):
    for k in k_values(rng, m):
        w = random_nm(rng, k, 6, n, m, full=True)
        assert group_nonzeros(w, m).max() <= n
        nm.check_nm(w, n, m)


@pytest.mark.parametrize(("n", "m"), [(3, 6), (0, 4), (5, 4), (1, 0), (True, 4), (2.0, 4)])
def test_check_nm_bad_pattern(n, m):
    with pytest.raises(ValueError, match=r"N:M"):
        nm.check_nm(np.zeros((4, 1), dtype=np.int64), n, m)


def test_check_nm_needs_2d():
    with pytest.raises(ValueError, match=r"2-D"):
        nm.check_nm(np.zeros(8, dtype=np.int64), 2, 4)


# --- wrap / check_range ---------------------------------------------------------------------


@pytest.mark.parametrize("bits", [4, 8, 16, 20, 32])
def test_wrap_is_modular(rng, bits):
    v = rng.integers(-(2**40), 2**40, size=200)
    v[:4] = [2 ** (bits - 1), -(2 ** (bits - 1)) - 1, 2 ** (bits - 1) - 1, -(2 ** (bits - 1))]
    np.testing.assert_array_equal(nm.wrap(v, bits), to_signed(v, bits))


@pytest.mark.parametrize("bad", [128, -129, 1000, -(2**31)])
def test_check_range_names_value(rng, bad):
    x = rng.integers(-128, 128, size=(4, 9))
    x[2, 5] = bad
    x[3, 1] = bad  # later in row-major order: not the one reported
    with pytest.raises(OperandRangeError, match=re.escape(f"activation[2, 5] = {bad} ")) as info:
        nm.check_range(x, 8, "activation")
    assert "[-128, 127]" in str(info.value)


def test_check_range_accepts_edges_and_rejects_floats():
    x = np.array([[-128, 127, 0]], dtype=np.int8)
    out = nm.check_range(x, 8, "activation")
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, x)
    with pytest.raises(OperandRangeError, match=r"integer"):
        nm.check_range(np.array([1.0]), 8, "activation")
    with pytest.raises(OperandRangeError, match=r"= 200 "):
        nm.check_range(np.array([200], dtype=np.uint8), 8, "activation")


def test_gemm_nm_rejects_out_of_range_operands():
    w = np.zeros((4, 1), dtype=np.int64)
    w[0, 0] = 1
    packed = nm.pack_nm(w, 2, 4)
    with pytest.raises(OperandRangeError, match=r"activation\[0, 3\] = 128 "):
        nm.gemm_nm(np.array([[0, 0, 0, 128]]), packed)
    with pytest.raises(OperandRangeError, match=r"= -9 "):
        nm.gemm_nm(np.array([[0, 0, 0, -9]]), packed, act_width=4, weight_width=8)
    big = nm.pack_nm(np.array([[200], [0], [0], [0]]), 2, 4)
    with pytest.raises(OperandRangeError, match=r"weight.*= 200 "):
        nm.gemm_nm(np.zeros((1, 4), dtype=np.int64), big)


def test_gemm_nm_shape_errors():
    packed = nm.pack_nm(np.ones((4, 2), dtype=np.int64) * np.array([[1], [1], [0], [0]]),
                            2, 4)
    with pytest.raises(ValueError, match=r"\(P, 4\)"):
        nm.gemm_nm(np.zeros((3, 5), dtype=np.int64), packed)
    with pytest.raises(ValueError, match=r"psum_in"):
        nm.gemm_nm(np.zeros((3, 4), dtype=np.int64), packed, np.zeros((3, 3), np.int64))


# --- gemm -----------------------------------------------------------------------------------


def edge_psum(rng, d: np.ndarray) -> np.ndarray:
    """psum_in within 2**10 of an int32 limit; the element with the largest |X.W| sits right at
    the limit its sign points to, so the sum is certain to wrap."""
    slack = rng.integers(0, 2**10, size=d.shape)
    psum = np.where(rng.random(d.shape) < 0.5, INT32_MAX - slack, INT32_MIN + slack)
    at = np.unravel_index(np.argmax(np.abs(d)), d.shape)
    psum[at] = INT32_MAX if d[at] > 0 else INT32_MIN
    return psum


@pytest.mark.parametrize(("n", "m"), PATTERNS, ids=PATTERN_IDS)
def test_gemm_nm_matches_independent_with_wrap(rng, n, m):
    for k in k_values(rng, m):
        p, cols = int(rng.integers(4, 10)), int(rng.integers(3, 7))
        w = random_nm(rng, k, cols, n, m)
        w[:m, 0] = 0
        w[0, 0] = 77  # at least one nonzero weight whatever the draw
        x = rng.integers(-128, 128, size=(p, k))
        x[rng.random(x.shape) < 0.1] = -128
        d = reference_gemm(x, w)
        assert np.any(d != 0)
        psum = edge_psum(rng, d)
        unwrapped = reference_gemm(x, w, psum)
        wrapped = (unwrapped < INT32_MIN) | (unwrapped > INT32_MAX)
        assert wrapped.any(), "no accumulation left the int32 range"
        out = nm.gemm_nm(x, nm.pack_nm(w, n, m), psum)
        np.testing.assert_array_equal(out, to_signed(unwrapped))
        np.testing.assert_array_equal(nm.gemm_dense(x, w, psum), to_signed(unwrapped))


@pytest.mark.parametrize(("n", "m"), PATTERNS, ids=PATTERN_IDS)
def test_gemm_nm_without_psum(rng, n, m):
    for k in k_values(rng, m):
        w = random_nm(rng, k, 4, n, m)
        x = rng.integers(-128, 128, size=(5, k))
        expected = reference_gemm(x, w)
        assert np.all(np.abs(expected) <= INT32_MAX)  # small K: no wrap, exact sums
        np.testing.assert_array_equal(nm.gemm_nm(x, nm.pack_nm(w, n, m)), expected)


def test_gemm_nm_psum_out_of_int32_is_reduced(rng):
    w = random_nm(rng, 16, 3, 2, 4)
    x = rng.integers(-128, 128, size=(4, 16))
    psum = rng.integers(-(2**40), 2**40, size=(4, 3))
    out = nm.gemm_nm(x, nm.pack_nm(w, 2, 4), psum)
    np.testing.assert_array_equal(out, to_signed(reference_gemm(x, w, psum)))


@pytest.mark.parametrize(("act", "wgt", "acc"), [(4, 4, 8), (4, 6, 12), (8, 8, 20), (6, 8, 16)])
def test_gemm_nm_other_widths(rng, act, wgt, acc):
    n, m, k = 2, 4, 23
    w = random_nm(rng, k, 5, n, m, lo=-(2 ** (wgt - 1)), hi=2 ** (wgt - 1) - 1)
    x = rng.integers(-(2 ** (act - 1)), 2 ** (act - 1), size=(6, k))
    psum = rng.integers(-(2 ** (acc - 1)), 2 ** (acc - 1), size=(6, 5))
    unwrapped = reference_gemm(x, w, psum)
    out = nm.gemm_nm(x, nm.pack_nm(w, n, m), psum, act_width=act, weight_width=wgt,
                         acc_width=acc)
    np.testing.assert_array_equal(out, to_signed(unwrapped, acc))
    assert out.min() >= -(2 ** (acc - 1))
    assert out.max() < 2 ** (acc - 1)


@pytest.mark.parametrize(("n", "m"), PATTERNS, ids=PATTERN_IDS)
def test_most_negative_operands(n, m):
    """-128 x -128 = 16384 in every kept slot: exact when small, wrapping from the edge."""
    k, cols = 3 * m, 2
    w = np.zeros((k, cols), dtype=np.int64)
    for g in range(3):
        w[g * m:g * m + n, :] = -128
    x = np.full((2, k), -128)
    packed = nm.pack_nm(w, n, m)
    exact = 3 * n * 16384
    np.testing.assert_array_equal(nm.gemm_nm(x, packed), np.full((2, cols), exact))
    psum = np.array([[INT32_MAX, INT32_MIN], [INT32_MAX - exact + 1, INT32_MAX - exact]])
    expected = np.array([[INT32_MIN + exact - 1, INT32_MIN + exact],
                         [INT32_MIN, INT32_MAX]])
    np.testing.assert_array_equal(nm.gemm_nm(x, packed, psum), expected)
    np.testing.assert_array_equal(expected, to_signed(reference_gemm(x, w, psum)))


@pytest.mark.parametrize(("n", "m"), [(1, 1), (2, 4)])
def test_most_negative_long_reduction_wraps_without_psum(n, m):
    groups = 2**31 // (16384 * n) + 3  # sum of 16384s exceeds INT32_MAX on its own
    k = groups * m
    w = np.zeros((k, 1), dtype=np.int8)
    w.reshape(groups, m)[:, :n] = -128
    x = np.full((1, k), -128, dtype=np.int8)
    total = groups * n * 16384
    assert total > INT32_MAX
    out = nm.gemm_nm(x, nm.pack_nm(w, n, m))
    assert int(out[0, 0]) == total - 2**32


# --- dense layers on N:M hardware ------------------------------------------------------------


@pytest.mark.parametrize(("n", "m"), PATTERNS, ids=PATTERN_IDS)
def test_dense_phases_sum_to_the_dense_product(rng, n, m):
    """The ceil(m/n) phase tiles of a dense tile are valid N:M tiles whose products over the
    same activations add up to the dense matmul (wrapped), extreme values included."""
    k, p, cols = m * int(rng.integers(1, 5)), 5, int(rng.integers(1, 6))
    w = rng.integers(-128, 128, size=(k, cols))
    w[rng.random(w.shape) < 0.1] = -128
    x = rng.integers(-128, 128, size=(p, k))
    d = reference_gemm(x, w)
    psum = edge_psum(rng, d)
    out = psum
    for q in range(math.ceil(m / n)):
        phase = nm.pack_phase(w, n, m, q)
        assert phase.values.shape == (k // m, n, cols)
        nm.check_nm(nm.unpack_nm(phase), n, m)
        out = nm.gemm_nm(x, phase, out)
    np.testing.assert_array_equal(out, to_signed(reference_gemm(x, w, psum)))


def test_pack_phase_rejects_bad_shapes_and_patterns():
    w = np.ones((8, 2), dtype=np.int64)
    with pytest.raises(ValueError, match=r"3:6"):
        nm.pack_phase(w, 3, 6, 0)
    with pytest.raises(ValueError, match=r"multiple of 4 \(not 6\)"):
        nm.pack_phase(w[:6], 2, 4, 0)
    with pytest.raises(ValueError, match=r"0\.\.1 \(not 2\)"):
        nm.pack_phase(w, 2, 4, 2)


# --- requantize -----------------------------------------------------------------------------


def reference_requantize(acc, mult, shift, relu=False, out_width=8) -> np.ndarray:
    """floor(acc * mult / 2**shift + 0.5) in float64 (exact for these magnitudes), clamped."""
    acc = np.asarray(acc, dtype=np.int64)
    scaled = acc.astype(np.float64) * np.asarray(mult, dtype=np.float64)
    scaled = scaled / np.exp2(np.asarray(shift, dtype=np.float64))
    rounded = np.floor(scaled + 0.5)
    lo, hi = -(2 ** (out_width - 1)), 2 ** (out_width - 1) - 1
    if relu:
        rounded = np.maximum(rounded, 0)
    return np.clip(rounded, lo, hi).astype(np.int64)


@pytest.mark.parametrize("relu", [False, True], ids=["linear", "relu"])
def test_requantize_scalar(rng, relu):
    for _ in range(20):
        mult = int(rng.integers(0, 2**16))
        shift = int(rng.integers(0, 41))
        acc = rng.integers(INT32_MIN, INT32_MAX + 1, size=64)
        # Accumulators that land near [-128, 127] too, so rounding matters.
        target = rng.uniform(-300, 300, size=32)
        near = np.rint(target * 2.0**shift / max(mult, 1))
        acc[:32] = np.clip(near, INT32_MIN, INT32_MAX).astype(np.int64)
        acc[32:36] = [INT32_MIN, INT32_MAX, 0, -1]
        out = nm.requantize(acc, mult, shift, relu=relu)
        np.testing.assert_array_equal(out, reference_requantize(acc, mult, shift, relu))
        assert out.min() >= (0 if relu else -128)
        assert out.max() <= 127


@pytest.mark.parametrize("relu", [False, True], ids=["linear", "relu"])
def test_requantize_per_column(rng, relu):
    acc = rng.integers(-(2**20), 2**20, size=(7, 5))
    mult = rng.integers(0, 2**15, size=5)
    shift = rng.integers(10, 30, size=5)
    out = nm.requantize(acc, mult, shift, relu=relu)
    np.testing.assert_array_equal(out, reference_requantize(acc, mult, shift, relu))


def test_requantize_ties_round_up():
    # acc * mult / 2**shift lands exactly on k + 0.5: always rounds towards +inf.
    acc = np.array([5, -5, 3, -3, 1, -1, 7, -7])
    out = nm.requantize(acc, 1, 1)
    np.testing.assert_array_equal(out, [3, -2, 2, -1, 1, 0, 4, -3])
    np.testing.assert_array_equal(out, reference_requantize(acc, 1, 1))


@pytest.mark.parametrize("out_width", [4, 8, 12])
def test_requantize_clamps_to_out_width(rng, out_width):
    acc = rng.integers(-(2**16), 2**16, size=100)
    out = nm.requantize(acc, 3, 4, out_width=out_width)
    np.testing.assert_array_equal(out, reference_requantize(acc, 3, 4, out_width=out_width))
    assert out.min() == -(2 ** (out_width - 1))
    assert out.max() == 2 ** (out_width - 1) - 1


def test_requantize_relu_zeroes_negatives():
    out = nm.requantize(np.array([-1000, -1, 0, 1, 1000]), 1, 0, relu=True)
    np.testing.assert_array_equal(out, [0, 0, 0, 1, 127])


@pytest.mark.parametrize(("mult", "shift"), [(-1, 0), (1, -1), (1, 63), (1, 100),
                                             (np.array([1, -2]), 3), (1, np.array([4, -1]))])
def test_requantize_bad_parameters(mult, shift):
    with pytest.raises(ValueError, match=r"multiplier >= 0 and 0 <= shift <= 62"):
        nm.requantize(np.zeros(2, dtype=np.int64), mult, shift)


@pytest.mark.parametrize(("mult", "shift"), [(0.75, 0), (2, 1.5)])
def test_requantize_rejects_non_integer_parameters(mult, shift):
    with pytest.raises((ValueError, TypeError)):
        nm.requantize(np.array([100, 3]), mult, shift)


# --- parse_nm / validate_nm: the one place N:M patterns are checked ------------------------


@pytest.mark.parametrize(("text", "pattern"), [("2:4", (2, 4)), ("1:1", (1, 1)),
                                               ("16:32", (16, 32)), (" 1 : 8 ", (1, 8)),
                                               ("3:4", (3, 4))])
def test_parse_nm(text, pattern):
    assert nm.parse_nm(text) == pattern


@pytest.mark.parametrize(("text", "why"), [("3:6", "power of two"), ("5:4", "1 <= N <= M"),
                                           ("2:1", "1 <= N <= M"), ("2:6", "power of two")])
def test_parse_nm_validates_and_config_agrees(text, why):
    with pytest.raises(nm.PatternSyntaxError, match=re.escape(why)):
        nm.parse_nm(text)
    n, m = (int(v) for v in text.split(":"))
    with pytest.raises(ConfigError, match=re.escape(why)):
        ArrayConfig(n=n, m=m)


@pytest.mark.parametrize("text", ["2/4", "2:4:8", "", ":", "2:", ":4", "a:b", "-1:4", "2.0:4",
                                  "2 4", "0x2:4", "\u00b2:4"])
def test_parse_nm_errors_name_text(text):
    with pytest.raises(nm.PatternSyntaxError, match=re.escape(repr(text))):
        nm.parse_nm(text)


def _compressed(indices, n=2, m=4):
    idx = np.array(indices, dtype=np.int64).reshape(1, n, 1)
    return nm.CompressedNM(values=np.ones_like(idx), indices=idx, n=n, m=m, k=m)


@pytest.mark.parametrize(("indices", "why"), [([1, 1], "strictly ascending"),
                                              ([3, 0], "strictly ascending"),
                                              ([0, 4], "outside 0..3"),
                                              ([-1, 2], "outside 0..3")])
def test_compressed_form_rejects_bad_indices(indices, why):
    with pytest.raises(NMPatternError, match=re.escape(why)):
        _compressed(indices)


def test_compressed_form_rejects_wrong_shapes():
    with pytest.raises(NMPatternError, match=r"shape \(groups, 2, cols\)"):
        nm.CompressedNM(values=np.ones((1, 3, 1)), indices=np.zeros((1, 3, 1), np.int64),
                        n=2, m=4, k=4)
    with pytest.raises(NMPatternError, match="needs 2 groups"):
        nm.CompressedNM(values=np.ones((1, 2, 1)), indices=np.array([[[0], [1]]]), n=2, m=4,
                        k=8)


def test_canonical_form_passes_its_own_check(rng):
    slots = np.tile(np.array([1, 1, 0, 0])[:, None], (4, 5))   # slots 0 and 1 of each group
    w = rng.integers(-3, 4, (16, 5)) * slots
    packed = nm.pack_nm(w, 2, 4)
    np.testing.assert_array_equal(nm.unpack_nm(packed), w)


@pytest.mark.parametrize(("layer", "hardware", "fits"), [
    ((2, 4), (2, 4), True), ((1, 4), (2, 4), True), ((1, 2), (2, 4), True),
    ((2, 4), (1, 4), False), ((2, 8), (2, 4), True), ((4, 8), (2, 4), False),
    ((1, 8), (1, 2), True), ((2, 4), (4, 4), False), ((2, 4), (4, 8), True),
    ((3, 4), (3, 4), True), ((2, 2), (1, 2), False)])
def test_pattern_fits(layer, hardware, fits):
    """A layer pattern fits when every group of the hardware's M holds at most its N nonzeros;
    checked here by counting the nonzeros of a worst-case matrix of the layer's pattern."""
    (ln, lm), (n, m) = layer, hardware
    assert nm.pattern_fits(layer, hardware) == fits
    k = 2 * max(lm, m)
    w = np.zeros((k, 1), dtype=np.int64)
    for g in range(k // lm):
        w[g * lm: g * lm + ln] = 1   # the first ln slots of each layer group: the worst case
    holds = n < m and all(np.count_nonzero(w[g * m:(g + 1) * m]) <= n for g in range(k // m))
    assert holds == fits


def test_dense_groups_need_no_power_of_two():
    assert nm.validate_nm(3, 3) == (3, 3)
    assert ArrayConfig(n=3, m=3).is_dense
    with pytest.raises(nm.PatternSyntaxError, match="power of two"):
        nm.validate_nm(1, 3)
