"""The tile cycle contract: closed-form cycle counts of the systolic array.

This is the array-level contract the cost model builds on and the RTL tests measure. It does not
import Amaranth: everything follows from :class:`~sparsa.config.ArrayConfig`.

Terms (all in clock cycles, with every stream always valid and the output always ready):

* ``load``: a weight tile is ``rows`` beats, one PE row per cycle.
* ``latency``: an input beat accepted in cycle ``t`` leaves the array in cycle ``t + latency``,
  ``latency = rows + cols - 1 + pipeline_depth`` (``rows - 1`` skew, one register per PE down a
  column, ``cols - 1`` more for the skew across columns that the deskew registers equalise, and
  the PE's internal pipeline registers once).
* ``swap_to_load``: after the beat that swaps banks enters (cycle ``s``), the old bank is still
  read by the beats in flight, so row ``r`` of the next tile may be written from cycle
  ``s + max(1, cols - 2) + r`` on. Loading the next tile's ``rows`` rows therefore ends, at the
  earliest, ``swap_to_load + rows - 1`` cycles after the swap.
* A beat with ``swap`` waits until the shadow bank is full.

Measured from the cycle the first weight beat is accepted to the cycle the last output beat is
transferred, inclusive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sparsa.config import ArrayConfig

__all__ = ["ArrayTiming", "array_timing", "tile_cycles", "tile_sequence_cycles",
           "tile_starts"]


@dataclass(frozen=True)
class ArrayTiming:
    load: int
    latency: int
    swap_to_load: int

    @property
    def tile_period(self) -> int:
        """Minimum cycles between two swaps when the next tile's load overlaps compute."""
        return self.swap_to_load + self.load


def array_timing(cfg: ArrayConfig) -> ArrayTiming:
    return ArrayTiming(load=cfg.rows, latency=cfg.rows + cfg.cols - 1 + cfg.pipeline_depth,
                       swap_to_load=max(1, cfg.cols - 2))


def _check_beats(beats: Sequence[int]) -> list[int]:
    beats = list(beats)
    if not beats:
        raise ValueError("a tile sequence needs at least one tile")
    for p in beats:
        if isinstance(p, bool) or not isinstance(p, int) or p < 1:
            raise ValueError(f"beats per tile must be positive integers, not {p!r}")
    return beats


def tile_starts(cfg: ArrayConfig, beats: Sequence[int]) -> list[int]:
    """Cycle in which each tile's first (swap) beat enters the array when every next tile's
    weights load (into the shadow bank) while the current tile streams."""
    beats = _check_beats(beats)
    t = array_timing(cfg)
    starts = [t.load]
    for p in beats[:-1]:
        starts.append(starts[-1] + max(p, t.tile_period))
    return starts


def tile_sequence_cycles(cfg: ArrayConfig, beats: Sequence[int]) -> int:
    """Cycles to run back-to-back tiles with ``beats[i]`` activation beats each, every weight
    load after the first overlapped with the previous tile's compute."""
    beats = _check_beats(beats)
    return tile_starts(cfg, beats)[-1] + beats[-1] + array_timing(cfg).latency


def tile_cycles(cfg: ArrayConfig, p: int) -> int:
    """One tile on its own, no overlapped load: ``rows`` weight beats, ``p`` activation beats,
    then the drain: ``rows + p + latency``."""
    return tile_sequence_cycles(cfg, [p])
