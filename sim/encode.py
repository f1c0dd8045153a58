"""Packing tiles into stream beats (and unpacking results) with the hardware's own layouts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparsa.config import ArrayConfig
from sparsa.hw import layouts

from .stimulus import Tile

__all__ = ["TileBeats", "act_beat", "decode_psum", "psum_beat", "tile_beats", "weight_beats"]


@dataclass(frozen=True)
class TileBeats:
    """The integer payloads of one tile: ``rows`` weight beats and ``P`` act/psum_in beats
    (the first act beat has ``swap`` set)."""

    weight: list[int]
    act: list[int]
    psum_in: list[int]


def _bits(layout, value) -> int:
    return layout.const(value).as_value().value


def weight_beats(cfg: ArrayConfig, tile: Tile) -> list[int]:
    """Row ``r`` of the tile -> one beat: ``cols`` PEs of ``n`` values (+ ``n`` indices)."""
    layout = layouts.weight_row(cfg)
    vals, idx = tile.weights.values, tile.weights.indices
    if vals.shape != (cfg.rows, cfg.n, cfg.cols):
        raise ValueError(f"tile weights must be (rows, n, cols) = {(cfg.rows, cfg.n, cfg.cols)}, "
                         f"not {vals.shape}")
    beats = []
    for r in range(cfg.rows):
        row = []
        for c in range(cfg.cols):
            pe = {"values": [int(v) for v in vals[r, :, c]]}
            if cfg.index_width:
                pe["indices"] = [int(i) for i in idx[r, :, c]]
            row.append(pe)
        beats.append(_bits(layout, row))
    return beats


def act_beat(cfg: ArrayConfig, acts: np.ndarray, *, swap: bool) -> int:
    return _bits(layouts.act_beat(cfg), {"data": [int(a) for a in acts], "swap": int(swap)})


def psum_beat(cfg: ArrayConfig, psums: np.ndarray) -> int:
    return _bits(layouts.psum_row(cfg), [int(p) for p in psums])


def decode_psum(cfg: ArrayConfig, raw: int) -> np.ndarray:
    view = layouts.psum_row(cfg).from_bits(int(raw))
    return np.array([int(view[c]) for c in range(cfg.cols)], dtype=np.int64)


def tile_beats(cfg: ArrayConfig, tile: Tile) -> TileBeats:
    return TileBeats(
        weight=weight_beats(cfg, tile),
        act=[act_beat(cfg, a, swap=(i == 0)) for i, a in enumerate(tile.acts)],
        psum_in=[psum_beat(cfg, p) for p in tile.psum_in],
    )
