"""Random N:M GEMM workloads cut into array tiles, with golden expectations.

Backend-neutral (NumPy only): the cocotb testbenches, the Amaranth-simulator tests and the
pyverilator driver all feed the same :class:`Tile` objects to the array and compare its outputs
with ``Tile.expected``, which comes from :mod:`sparsa.sim.golden`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparsa import nm
from sparsa.config import ArrayConfig

__all__ = ["Tile", "gemm_tiles", "random_acts", "random_conv_weights", "random_gemm",
           "random_nm_weights"]


@dataclass(frozen=True)
class Tile:
    """One pass of the array: ``rows`` groups of K for ``cols`` output columns, ``P`` beats.

    ``weights`` holds exactly ``rows`` groups (``values``/``indices`` of shape
    ``(rows, n, cols)``), ``acts`` is ``(P, rows*m)``, ``psum_in`` and ``expected`` ``(P, cols)``.
    """

    weights: nm.CompressedNM
    acts: np.ndarray
    psum_in: np.ndarray
    expected: np.ndarray

    @property
    def beats(self) -> int:
        return self.acts.shape[0]


def random_nm_weights(rng: np.random.Generator, k: int, cols: int, n: int, m: int, *,
                      width: int = 8, zero_group_prob: float = 0.15) -> np.ndarray:
    """A random ``(K, cols)`` matrix satisfying N:M: each group keeps 0..n nonzeros at random
    positions (all-zero groups with probability ``zero_group_prob``), values over the full signed
    range including the most negative one."""
    groups = -(-k // m)
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    w = np.zeros((groups, m, cols), dtype=np.int64)
    for g in range(groups):
        for c in range(cols):
            if rng.random() < zero_group_prob:
                continue
            keep = int(rng.integers(1, n + 1)) if rng.random() < 0.3 else n
            pos = rng.choice(m, size=keep, replace=False)
            vals = rng.integers(lo, hi + 1, size=keep)
            vals[vals == 0] = lo  # nonzero, and -128 shows up often
            w[g, pos, c] = vals
    return w.reshape(groups * m, cols)[:k]


def random_acts(rng: np.random.Generator, p: int, k: int, *, width: int = 8) -> np.ndarray:
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    x = rng.integers(lo, hi + 1, size=(p, k))
    x[rng.random((p, k)) < 0.05] = lo
    return x


def gemm_tiles(cfg: ArrayConfig, x: np.ndarray, w: np.ndarray,
               psum0: np.ndarray | None = None) -> list[Tile]:
    """Cut ``psum0 + X . W`` (``W`` N:M along K, exactly ``cfg.cols`` columns) into passes of
    ``rows * m`` along K. Pass ``j`` receives the golden result of pass ``j-1`` as ``psum_in``,
    so the last pass's expectation is the whole GEMM."""
    p, k = x.shape
    if w.shape != (k, cfg.cols):
        raise ValueError(f"weights must be ({k}, {cfg.cols}), not {w.shape}")
    kp = cfg.k_per_pass
    passes = max(1, -(-k // kp))
    xp = np.zeros((p, passes * kp), dtype=np.int64)
    xp[:, :k] = x
    wp = np.zeros((passes * kp, cfg.cols), dtype=np.int64)
    wp[:k] = w
    psum = np.zeros((p, cfg.cols), dtype=np.int64) if psum0 is None else nm.wrap(
        psum0, cfg.acc_width)
    tiles = []
    for j in range(passes):
        sl = slice(j * kp, (j + 1) * kp)
        packed = nm.pack_nm(wp[sl], cfg.n, cfg.m)
        out = nm.gemm_nm(xp[:, sl], packed, psum, act_width=cfg.act_width,
                             weight_width=cfg.weight_width, acc_width=cfg.acc_width)
        tiles.append(Tile(weights=packed, acts=xp[:, sl], psum_in=psum, expected=out))
        psum = out
    return tiles


def random_gemm(cfg: ArrayConfig, rng: np.random.Generator, *, p: int, passes: int,
                random_psum: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                   list[Tile]]:
    """A random GEMM spanning ``passes`` array passes (the last one partly filled), with a random
    initial ``psum_in`` near the accumulator limits so wrap-around is exercised."""
    k = cfg.k_per_pass * passes - (int(rng.integers(0, cfg.m)) if passes > 1 else 0)
    w = random_nm_weights(rng, k, cfg.cols, cfg.n, cfg.m, width=cfg.weight_width)
    x = random_acts(rng, p, k, width=cfg.act_width)
    psum0 = None
    if random_psum:
        top = (1 << (cfg.acc_width - 1)) - 1
        psum0 = rng.integers(-top - 1, top + 1, size=(p, cfg.cols))
        psum0[rng.random(psum0.shape) < 0.2] = top  # right at the edge: the next MACs may wrap
    return x, w, psum0, gemm_tiles(cfg, x, w, psum0)


def random_conv_weights(rng: np.random.Generator, kernel: tuple[int, int], channels: int,
                        out_channels: int, n: int, m: int, *, groups: int = 1,
                        dense: bool = False, width: int = 8) -> np.ndarray:
    """Random conv weights ``(kh, kw, channels, out_channels)``: N:M along the channels of each
    kernel offset (groups of ``m`` consecutive channels from channel 0, the K order of
    :mod:`sparsa.im2col`), or ``dense`` (any values, about 10% zeros). With ``groups``, output
    channel ``o`` only sees the input channels of its group (``o // (out_channels/groups)``):
    zero elsewhere, block-diagonal per offset (still N:M: zeroing keeps the pattern)."""
    if groups < 1 or channels % groups or out_channels % groups:
        raise ValueError(f"groups must divide channels {channels} and out_channels "
                         f"{out_channels}, not {groups!r}")
    kh, kw = kernel
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    if dense:
        w = rng.integers(lo, hi + 1, size=(kh, kw, channels, out_channels))
        w[rng.random(w.shape) < 0.1] = 0
    else:
        w = np.stack([random_nm_weights(rng, channels, out_channels, n, m, width=width)
                      for _ in range(kh * kw)]).reshape(kh, kw, channels, out_channels)
    same = (np.arange(channels)[:, None] // (channels // groups)) == \
        (np.arange(out_channels)[None, :] // (out_channels // groups))
    return np.where(same[None, None], w, 0)
