"""The N:M format and the hardware's integer arithmetic, bit-exact in NumPy.

This is the golden model's arithmetic (the oracle of every RTL test) and the format the software
stack packs weights into, so it sits at the root: ``sw`` and ``sim`` both import it. The program
executor built on it is :mod:`sparsa.sim.golden_accel`.

Conventions (the same ones the RTL implements):

* Operands are two's-complement integers of ``act_width`` / ``weight_width`` bits (int8 by default).
* Products and sums are accumulated in ``acc_width`` bits (int32 by default) and *wrap* on overflow
  (arithmetic modulo ``2**acc_width``), exactly as a hardware adder of that width does.
* The compressed N:M format stores, per group of ``m`` consecutive K indices and per output column,
  ``n`` values and ``n`` indices (``ceil(log2 m)`` bits each). Kept positions are listed in
  ascending index order; a group with fewer than ``n`` nonzeros is padded with zero values at the
  lowest unused indices, so every N:M matrix has exactly one compressed form.
* Dense layers run on N:M hardware in *phases* (:func:`pack_phase`): phase ``q`` of a dense tile
  holds the weights of lanes ``q*n .. q*n+n-1`` of every group of ``m`` with those fixed
  indices, so ``ceil(m / n)`` N:M tiles over the same activations sum to the dense product: M/N
  times the sparse cost, with no activation expanded.

N:M patterns are parsed and validated here only (:func:`parse_nm`, :func:`validate_nm`); the
configuration, the pruners and the importers call these.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CompressedNM",
    "NMPatternError",
    "OperandRangeError",
    "PatternSyntaxError",
    "check_nm",
    "check_range",
    "gemm_dense",
    "gemm_nm",
    "pack_nm",
    "pack_phase",
    "parse_nm",
    "pattern_fits",
    "phase_indices",
    "requantize",
    "unpack_nm",
    "validate_nm",
    "wrap",
]


class NMPatternError(ValueError):
    """A weight matrix violates its N:M pattern."""


class OperandRangeError(ValueError):
    """An operand does not fit the hardware's integer width."""


def wrap(values: np.ndarray, bits: int) -> np.ndarray:
    """Reduce integers to signed ``bits``-bit two's complement (what a ``bits``-wide register
    keeps), returned as int64."""
    values = np.asarray(values, dtype=np.int64)
    if bits >= 64:
        return values
    half = np.int64(1) << (bits - 1)
    mask = (np.int64(1) << bits) - 1
    return ((values + half) & mask) - half


def check_range(values: np.ndarray, bits: int, what: str) -> np.ndarray:
    """Return ``values`` as int64 after checking they are signed ``bits``-bit integers."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "iub":
        raise OperandRangeError(f"{what} must be an integer array, not dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    bad = np.argwhere((arr < lo) | (arr > hi))
    if bad.size:
        at = tuple(int(i) for i in bad[0])
        raise OperandRangeError(f"{what}{list(at)} = {int(arr[at])} does not fit {bits}-bit signed "
                                f"range [{lo}, {hi}]")
    return arr


class PatternSyntaxError(ValueError):
    """An N:M pattern is malformed (``"2/4"``) or invalid (``5:4``, ``3:6``)."""


def validate_nm(n: int, m: int) -> tuple[int, int]:
    """Return ``(n, m)`` after checking it is a pattern the hardware can hold: integers with
    ``1 <= n <= m`` and, when ``n < m``, ``m`` a power of two (a group is indexed with
    ``log2(m)`` bits; dense ``n == m`` groups need no index, so 3:3 is the dense baseline of
    3:4)."""
    if any(isinstance(v, bool) or not isinstance(v, int) for v in (n, m)):
        raise PatternSyntaxError(f"N:M pattern must be two integers, not {n!r}:{m!r}")
    if m < 1 or (m & (m - 1) and n != m):
        raise PatternSyntaxError(f"N:M pattern {n}:{m} is invalid: M must be a power of two "
                                 f"(a group is indexed with log2(M) bits), not {m}")
    if not 1 <= n <= m:
        raise PatternSyntaxError(f"N:M pattern {n}:{m} is invalid: N must satisfy 1 <= N <= M "
                                 f"(M = {m}), not {n}")
    return n, m


def pattern_fits(layer: tuple[int, int], hardware: tuple[int, int]) -> bool:
    """Whether weights pruned to ``layer`` = ``n':m'`` run sparse on ``hardware`` = ``n:m``:
    every group of ``m`` then holds at most ``n`` nonzeros, whatever the weights (1:4, 1:2 and
    2:8 fit 2:4 hardware; 2:4 does not fit 1:4). Dense hardware runs nothing sparse."""
    (ln, lm), (n, m) = layer, hardware
    if m % lm == 0:
        worst = ln * (m // lm)      # m/lm whole layer groups per hardware group
    elif lm % m == 0:
        worst = min(ln, m)          # one layer group's nonzeros can crowd one hardware group
    else:
        worst = m
    return n < m and worst <= n


def parse_nm(text: str) -> tuple[int, int]:
    """Parse and validate ``"2:4"`` -> ``(2, 4)``."""
    match = re.fullmatch(r"\s*([0-9]+)\s*:\s*([0-9]+)\s*", str(text))
    if not match:
        raise PatternSyntaxError(f"N:M pattern must look like '2:4', not {text!r}")
    return validate_nm(int(match[1]), int(match[2]))


def _grouped(w: np.ndarray, m: int) -> np.ndarray:
    """(K, C) -> (G, m, C) with K zero-padded to a multiple of m."""
    k, c = w.shape
    groups = -(-k // m)
    padded = np.zeros((groups * m, c), dtype=np.int64)
    padded[:k] = w
    return padded.reshape(groups, m, c)


def check_nm(w: np.ndarray, n: int, m: int) -> None:
    """Raise :class:`NMPatternError` naming the first group (in K order, then column) of the
    ``(K, C)`` matrix ``w`` that holds more than ``n`` nonzeros among ``m`` consecutive K."""
    validate_nm(n, m)
    w = np.asarray(w)
    if w.ndim != 2:
        raise ValueError(f"weight matrix must be 2-D (K x C), not shape {w.shape}")
    counts = np.count_nonzero(_grouped(w, m), axis=1)  # (G, C)
    bad = np.argwhere(counts > n)
    if bad.size:
        g, c = (int(i) for i in bad[0])
        rows = np.nonzero(_grouped(w, m)[g, :, c])[0] + g * m
        last = min(g * m + m, w.shape[0]) - 1
        raise NMPatternError(
            f"weight violates {n}:{m}: column {c}, group {g} (K rows {g * m}..{last}) "
            f"has {int(counts[g, c])} nonzeros at K = {rows.tolist()}, at most {n} allowed")


@dataclass(frozen=True)
class CompressedNM:
    """An N:M matrix in the hardware's compressed form.

    ``values`` and ``indices`` have shape ``(groups, n, cols)``: slot ``j`` of group ``g`` and
    column ``c`` holds weight ``W[g*m + indices[g, j, c], c] = values[g, j, c]``.
    """

    values: np.ndarray
    indices: np.ndarray
    n: int
    m: int
    k: int

    def __post_init__(self) -> None:
        validate_nm(self.n, self.m)
        values, indices = np.asarray(self.values), np.asarray(self.indices)
        if values.ndim != 3 or values.shape[1] != self.n or indices.shape != values.shape:
            raise NMPatternError(f"compressed {self.n}:{self.m} values and indices must both "
                                 f"have shape (groups, {self.n}, cols), not {values.shape} and "
                                 f"{indices.shape}")
        if values.shape[0] != -(-self.k // self.m):
            raise NMPatternError(f"K = {self.k} needs {-(-self.k // self.m)} groups of "
                                 f"{self.m}, not {values.shape[0]}")
        bad = np.argwhere((indices < 0) | (indices >= self.m))
        if bad.size:
            g, j, c = (int(i) for i in bad[0])
            raise NMPatternError(f"index {int(indices[g, j, c])} of group {g}, slot {j}, column "
                                 f"{c} is outside 0..{self.m - 1}")
        bad = np.argwhere(np.diff(indices, axis=1) <= 0)
        if bad.size:
            g, j, c = (int(i) for i in bad[0])
            raise NMPatternError(f"indices of group {g}, column {c} must be strictly ascending "
                                 f"(no duplicates), not {indices[g, :, c].tolist()}")

    @property
    def groups(self) -> int:
        return self.values.shape[0]

    @property
    def cols(self) -> int:
        return self.values.shape[2]


def pack_nm(w: np.ndarray, n: int, m: int) -> CompressedNM:
    """Compress a ``(K, C)`` integer matrix that satisfies N:M along K."""
    w = np.asarray(w)
    check_nm(w, n, m)
    if w.dtype.kind not in "iub":
        raise ValueError(f"weight matrix must be integer, not dtype {w.dtype}")
    grouped = _grouped(w, m)  # (G, m, C)
    # Rank slots: nonzeros first (in index order), then zeros (in index order); keep the first n,
    # then sort the kept ones by index. Stable sort on "is zero" gives exactly that.
    order = np.argsort(grouped == 0, axis=1, kind="stable")[:, :n, :]
    indices = np.sort(order, axis=1)
    values = np.take_along_axis(grouped, indices, axis=1)
    return CompressedNM(values=values, indices=indices.astype(np.int64), n=n, m=m, k=w.shape[0])


def unpack_nm(packed: CompressedNM) -> np.ndarray:
    """Expand the compressed form back to the dense ``(K, C)`` matrix."""
    g, _, c = packed.values.shape
    dense = np.zeros((g, packed.m, c), dtype=np.int64)
    np.put_along_axis(dense, packed.indices, packed.values, axis=1)
    return dense.reshape(g * packed.m, c)[: packed.k]


def gemm_nm(x: np.ndarray, packed: CompressedNM, psum_in: np.ndarray | None = None, *,
            act_width: int = 8, weight_width: int = 8, acc_width: int = 32) -> np.ndarray:
    """``psum_in + X . W`` the way the PEs compute it: each of the ``n`` slots selects one of the
    ``m`` activations of its group by index, multiplies, and everything accumulates in a wrapping
    ``acc_width``-bit adder. ``x`` is ``(P, K)``; the result is ``(P, C)`` int64 holding
    ``acc_width``-bit values."""
    x = check_range(x, act_width, "activation")
    check_range(packed.values, weight_width, "weight")
    if x.ndim != 2 or x.shape[1] != packed.k:
        raise ValueError(f"activations must be (P, {packed.k}), not shape {x.shape}")
    p = x.shape[0]
    g, n, c = packed.values.shape
    xg = np.zeros((p, g * packed.m), dtype=np.int64)
    xg[:, : packed.k] = x
    xg = xg.reshape(p, g, packed.m)
    acc = np.zeros((p, c), dtype=np.int64) if psum_in is None else wrap(psum_in, acc_width)
    if acc.shape != (p, c):
        raise ValueError(f"psum_in must be ({p}, {c}), not shape {acc.shape}")
    for slot in range(n):
        idx = packed.indices[:, slot, :]  # (G, C)
        sel = np.take_along_axis(xg[:, :, :, None], idx[None, :, None, :], axis=2)[:, :, 0, :]
        acc = acc + np.einsum("pgc,gc->pc", sel, packed.values[:, slot, :])
    return wrap(acc, acc_width)


def gemm_dense(x: np.ndarray, w: np.ndarray, psum_in: np.ndarray | None = None, *,
               acc_width: int = 32) -> np.ndarray:
    """Plain wrapping integer matmul, an independent reference for :func:`gemm_nm`."""
    acc = np.asarray(x, dtype=np.int64) @ np.asarray(w, dtype=np.int64)
    if psum_in is not None:
        acc = acc + np.asarray(psum_in, dtype=np.int64)
    return wrap(acc, acc_width)


def phase_indices(n: int, m: int, phase: int) -> list[int]:
    """The ``n`` fixed indices of dense phase ``phase`` (:func:`pack_phase`): lanes ``phase*n ..
    phase*n+n-1`` of the group, the slots past ``m`` taking the lowest other lanes, sorted."""
    lanes = list(range(phase * n, min(m, phase * n + n)))
    return sorted(lanes + [i for i in range(m) if i not in lanes][:n - len(lanes)])


def pack_phase(tile: np.ndarray, n: int, m: int, phase: int) -> CompressedNM:
    """Phase ``phase`` (of ``ceil(m/n)``) of a dense ``(K, C)`` tile (``K`` a multiple of ``m``)
    on N:M hardware: the weights of lanes ``phase*n .. phase*n+n-1`` of every group of ``m``,
    with those fixed indices (slots past ``m`` take the lowest other lanes, with zero values).
    The phases' products over the same activations sum to the dense product."""
    validate_nm(n, m)
    tile = np.asarray(tile)
    k, cols = tile.shape
    if k % m or not 0 <= phase < -(-m // n):
        raise ValueError(f"a phase tile needs K a multiple of {m} (not {k}) and a phase in "
                         f"0..{-(-m // n) - 1} (not {phase})")
    indices = phase_indices(n, m, phase)
    lanes = range(phase * n, min(m, phase * n + n))
    groups = tile.reshape(k // m, m, cols)
    values = np.where(np.isin(indices, lanes)[None, :, None], groups[:, indices, :], 0)
    idx = np.broadcast_to(np.array(indices)[None, :, None], values.shape).astype(np.int64)
    return CompressedNM(values=values, indices=idx.copy(), n=n, m=m, k=k)


def requantize(acc: np.ndarray, multiplier: int | np.ndarray, shift: int | np.ndarray, *,
               relu: bool = False, out_width: int = 8) -> np.ndarray:
    """Scale int32 accumulators back to ``out_width``-bit activations:
    ``clamp(round_half_up(acc * multiplier / 2**shift))``, optionally ReLU first-clamped at 0.

    ``multiplier`` is a non-negative integer (per tensor or per output column), ``shift >= 0``.
    Rounding adds ``2**(shift-1)`` before an arithmetic right shift (round half up), which is what
    a shifter with a rounding constant computes."""
    for name, value in (("acc", acc), ("multiplier", multiplier), ("shift", shift)):
        if np.asarray(value).dtype.kind not in "iu":
            raise ValueError(f"requantize {name} must be integer, not {value!r}")
    acc = np.asarray(acc, dtype=np.int64)
    multiplier = np.asarray(multiplier, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    if np.any(multiplier < 0) or np.any(shift < 0) or np.any(shift > 62):
        raise ValueError(f"requantize needs multiplier >= 0 and 0 <= shift <= 62, "
                         f"not {multiplier.tolist()!r}, {shift.tolist()!r}")
    prod = acc * multiplier
    rounding = np.where(shift > 0, np.left_shift(np.int64(1), np.maximum(shift - 1, 0)), 0)
    out = np.right_shift(prod + rounding, shift)
    lo, hi = -(1 << (out_width - 1)), (1 << (out_width - 1)) - 1
    if relu:
        lo = 0
    return np.clip(out, lo, hi)
