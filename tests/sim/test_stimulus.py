"""Random N:M workloads and their cut into array tiles, checked against independent matmuls.

Seeds: the ``rng`` and ``seed`` fixtures of ``tests/conftest.py`` (one stream per test and seed
index, ``SPARSA_SEED`` draws others); a failure's report names the seed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sparsa.config import PRESETS, ArrayConfig
from sparsa.sim import stimulus

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

CONFIGS = {
    "tiny": PRESETS["tiny"],
    "dense-2x3": ArrayConfig(rows=2, cols=3, n=1, m=1),
    "3x2-1:4": ArrayConfig(rows=3, cols=2, n=1, m=4),
    "2x3-4:8": ArrayConfig(rows=2, cols=3, n=4, m=8),
    "1x4-3:4": ArrayConfig(rows=1, cols=4, n=3, m=4),
}


def to_signed(values, bits: int = 32) -> np.ndarray:
    values = np.asarray(values, dtype=np.int64)
    return np.mod(values + 2 ** (bits - 1), 2**bits) - 2 ** (bits - 1)


def group_counts(w: np.ndarray, m: int) -> np.ndarray:
    """Nonzeros per (group, column); the last group may be partial."""
    k, c = w.shape
    return np.array([[np.count_nonzero(w[g:g + m, col]) for col in range(c)]
                     for g in range(0, k, m)])


def dense_from_tile(values: np.ndarray, indices: np.ndarray, m: int) -> np.ndarray:
    """Rebuild the (groups*m, cols) weights of a tile by plain loops (not nm.unpack_nm)."""
    groups, n, cols = values.shape
    dense = np.zeros((groups * m, cols), dtype=np.int64)
    for g in range(groups):
        for j in range(n):
            for c in range(cols):
                if values[g, j, c]:
                    assert dense[g * m + indices[g, j, c], c] == 0
                dense[g * m + indices[g, j, c], c] += values[g, j, c]
    return dense


# --- random_nm_weights ----------------------------------------------------------------------


@pytest.mark.parametrize(("n", "m"), [(1, 1), (1, 2), (2, 4), (1, 4), (2, 8), (4, 8), (3, 4)])
def test_random_nm_weights_large_draw(rng, n, m):
    k, cols = 97 * m + (m - 1), 16  # K not a multiple of m when m > 1
    w = stimulus.random_nm_weights(rng, k, cols, n, m)
    assert w.shape == (k, cols)
    assert w.dtype.kind == "i"
    counts = group_counts(w, m)
    assert counts.max() <= n
    assert (counts == 0).any(), "no all-zero group in a large draw"
    assert (counts == n).any()
    assert w.min() == -128
    assert w.max() <= 127


@pytest.mark.parametrize("width", [4, 6])
def test_random_nm_weights_width(rng, width):
    w = stimulus.random_nm_weights(rng, 400, 8, 2, 4, width=width)
    assert w.min() == -(2 ** (width - 1))
    assert w.max() <= 2 ** (width - 1) - 1
    assert group_counts(w, 4).max() <= 2


def test_random_nm_weights_no_zero_groups_when_disabled(rng):
    w = stimulus.random_nm_weights(rng, 64, 8, 2, 4, zero_group_prob=0.0)
    assert group_counts(w, 4).min() >= 1


def test_random_nm_weights_reproducible(seed):
    a = stimulus.random_nm_weights(np.random.default_rng(seed), 37, 5, 2, 4)
    b = stimulus.random_nm_weights(np.random.default_rng(seed), 37, 5, 2, 4)
    np.testing.assert_array_equal(a, b)


def test_random_acts_range(rng):
    x = stimulus.random_acts(rng, 50, 40)
    assert x.shape == (50, 40)
    assert x.min() == -128
    assert x.max() <= 127


# --- gemm_tiles -----------------------------------------------------------------------------


def check_tiles(cfg: ArrayConfig, x, w, psum0, tiles) -> np.ndarray:
    """Every structural and numerical property of a tile chain; returns the unwrapped GEMM."""
    p, k = x.shape
    kp = cfg.rows * cfg.m
    passes = max(1, math.ceil(k / kp))
    assert len(tiles) == passes
    xp = np.zeros((p, passes * kp), dtype=np.int64)
    xp[:, :k] = x
    wp = np.zeros((passes * kp, cfg.cols), dtype=np.int64)
    wp[:k] = w
    first = np.zeros((p, cfg.cols), np.int64) if psum0 is None else to_signed(psum0)
    for j, tile in enumerate(tiles):
        assert tile.weights.values.shape == (cfg.rows, cfg.n, cfg.cols)
        assert tile.weights.indices.shape == (cfg.rows, cfg.n, cfg.cols)
        assert (tile.weights.n, tile.weights.m) == (cfg.n, cfg.m)
        assert tile.acts.shape == (p, kp)
        assert tile.beats == p
        assert tile.psum_in.shape == (p, cfg.cols)
        assert tile.expected.shape == (p, cfg.cols)
        sl = slice(j * kp, (j + 1) * kp)
        np.testing.assert_array_equal(tile.acts, xp[:, sl])
        dense = dense_from_tile(tile.weights.values, tile.weights.indices, cfg.m)
        np.testing.assert_array_equal(dense, wp[sl])
        np.testing.assert_array_equal(tile.psum_in, first if j == 0 else tiles[j - 1].expected)
        step = tile.psum_in.astype(np.int64) + tile.acts.astype(np.int64) @ dense
        np.testing.assert_array_equal(tile.expected, to_signed(step))
    full = np.asarray(x, np.int64) @ np.asarray(w, np.int64)
    if psum0 is not None:
        full = full + np.asarray(psum0, np.int64)
    np.testing.assert_array_equal(tiles[-1].expected, to_signed(full))
    return full


@pytest.mark.parametrize("cfg", CONFIGS.values(), ids=CONFIGS.keys())
def test_gemm_tiles_chain_is_the_full_gemm(rng, cfg):
    kp = cfg.rows * cfg.m
    for k in [kp, 3 * kp, 2 * kp + int(rng.integers(1, kp)) if kp > 1 else 5, 1]:
        p = int(rng.integers(1, 6))
        w = stimulus.random_nm_weights(rng, k, cfg.cols, cfg.n, cfg.m)
        x = stimulus.random_acts(rng, p, k)
        check_tiles(cfg, x, w, None, stimulus.gemm_tiles(cfg, x, w))
        psum0 = rng.integers(INT32_MIN, INT32_MAX + 1, size=(p, cfg.cols))
        check_tiles(cfg, x, w, psum0, stimulus.gemm_tiles(cfg, x, w, psum0))


@pytest.mark.parametrize("cfg", CONFIGS.values(), ids=CONFIGS.keys())
def test_gemm_tiles_wraps_across_passes(rng, cfg):
    kp = cfg.rows * cfg.m
    k, p = 3 * kp, 6
    w = stimulus.random_nm_weights(rng, k, cfg.cols, cfg.n, cfg.m, zero_group_prob=0.0)
    x = np.full((p, k), -128)
    x[::2] = 127  # even rows: opposite sign to odd rows
    d = x @ w
    psum0 = np.where(d > 0, INT32_MAX, INT32_MIN)  # every nonzero sum leaves int32
    full = check_tiles(cfg, x, w, psum0, stimulus.gemm_tiles(cfg, x, w, psum0))
    assert ((full > INT32_MAX) | (full < INT32_MIN)).any()


def test_gemm_tiles_psum_out_of_range_is_reduced(rng):
    cfg = PRESETS["tiny"]
    w = stimulus.random_nm_weights(rng, 20, cfg.cols, cfg.n, cfg.m)
    x = stimulus.random_acts(rng, 3, 20)
    psum0 = rng.integers(-(2**45), 2**45, size=(3, cfg.cols))
    tiles = stimulus.gemm_tiles(cfg, x, w, psum0)
    np.testing.assert_array_equal(tiles[0].psum_in, to_signed(psum0))
    check_tiles(cfg, x, w, psum0, tiles)


def test_gemm_tiles_rejects_wrong_weight_shape(rng):
    cfg = PRESETS["tiny"]
    x = stimulus.random_acts(rng, 2, 8)
    with pytest.raises(ValueError, match=r"weights must be \(8, 2\)"):
        stimulus.gemm_tiles(cfg, x, np.zeros((8, 3), dtype=np.int64))
    with pytest.raises(ValueError, match=r"weights must be \(8, 2\)"):
        stimulus.gemm_tiles(cfg, x, np.zeros((7, 2), dtype=np.int64))


@pytest.mark.parametrize("cfg", CONFIGS.values(), ids=CONFIGS.keys())
@pytest.mark.parametrize("passes", [1, 3])
def test_random_gemm(rng, cfg, passes):
    x, w, psum0, tiles = stimulus.random_gemm(cfg, rng, p=5, passes=passes)
    kp = cfg.rows * cfg.m
    k = x.shape[1]
    assert (passes - 1) * kp < k <= passes * kp
    assert w.shape == (k, cfg.cols)
    assert group_counts(w, cfg.m).max() <= cfg.n
    assert psum0.shape == (5, cfg.cols)
    assert psum0.min() >= INT32_MIN
    assert psum0.max() <= INT32_MAX
    check_tiles(cfg, x, w, psum0, tiles)
    _, _, none, tiles = stimulus.random_gemm(cfg, rng, p=2, passes=passes, random_psum=False)
    assert none is None
    assert not tiles[0].psum_in.any()


# --- random_conv_weights --------------------------------------------------------------------


@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 4), (1, 1)])
@pytest.mark.parametrize("groups", [1, 2, 6])
def test_random_conv_weights(rng, n, m, groups):
    """N:M along the channels of every kernel offset and output channel (checked by counting
    each group of m channels), zero across conv groups."""
    kh, kw, c, cout = 2, 3, 12, 6
    w = stimulus.random_conv_weights(rng, (kh, kw), c, cout, n, m, groups=groups)
    assert w.shape == (kh, kw, c, cout)
    for i in range(kh):
        for j in range(kw):
            assert group_counts(w[i, j], m).max() <= n
    for ch in range(c):
        for o in range(cout):
            if ch // (c // groups) != o // (cout // groups):
                assert not w[:, :, ch, o].any()
    dense = stimulus.random_conv_weights(rng, (kh, kw), c, cout, n, m, groups=groups, dense=True)
    if groups == 1 and n < m:
        assert group_counts(dense[0, 0], m).max() > n   # dense: not N:M
    with pytest.raises(ValueError, match="groups must divide channels 12 and out_channels 6"):
        stimulus.random_conv_weights(rng, (1, 1), c, cout, n, m, groups=4)
