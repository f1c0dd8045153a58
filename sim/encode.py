"""Stimulus encoding: array tiles packed into stream beats (and results unpacked) with
:mod:`sparsa.isa`'s row packers, the same bits as the hardware's layouts
(``tests/hw/test_layouts.py`` checks it)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparsa import isa
from sparsa.config import ArrayConfig

from .stimulus import Tile

__all__ = ["TileBeats", "act_beat", "decode_psum", "psum_beat", "tile_beats", "weight_beats"]


@dataclass(frozen=True)
class TileBeats:
    """The integer payloads of one tile: ``rows`` weight beats and ``P`` act/psum_in beats
    (the first act beat has ``swap`` set)."""

    weight: list[int]
    act: list[int]
    psum_in: list[int]


def weight_beats(cfg: ArrayConfig, tile: Tile) -> list[int]:
    """Row ``r`` of the tile -> one beat: ``cols`` PEs of ``n`` values (+ ``n`` indices)."""
    vals, idx = tile.weights.values, tile.weights.indices
    if vals.shape != (cfg.rows, cfg.n, cfg.cols):
        raise ValueError(f"tile weights must be (rows, n, cols) = {(cfg.rows, cfg.n, cfg.cols)}, "
                         f"not {vals.shape}")
    return [isa.pack_weight_row(cfg, vals[r], idx[r]) for r in range(cfg.rows)]


def act_beat(cfg: ArrayConfig, acts: np.ndarray, *, swap: bool) -> int:
    """``rows * m`` activations, then the ``swap`` bit (``hw.layouts.act_beat``)."""
    return isa.pack_act_row(cfg, acts) | (int(swap) << (cfg.act_vector_width * cfg.act_width))


def psum_beat(cfg: ArrayConfig, psums: np.ndarray) -> int:
    return isa.pack_psum_row(cfg, psums)


def decode_psum(cfg: ArrayConfig, raw: int) -> np.ndarray:
    return np.array(isa.unpack_psum_row(cfg, raw), dtype=np.int64)


def tile_beats(cfg: ArrayConfig, tile: Tile) -> TileBeats:
    return TileBeats(
        weight=weight_beats(cfg, tile),
        act=[act_beat(cfg, a, swap=(i == 0)) for i, a in enumerate(tile.acts)],
        psum_in=[psum_beat(cfg, p) for p in tile.psum_in],
    )
