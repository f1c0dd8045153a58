"""Cycle and action-count model of a scheduled layer, in closed form and by enumeration.

Cycles (all in array clock cycles):

* ``compute``: the layer's tiles run back to back as one tile sequence of the tile cycle contract
  (:func:`sparsa.sw.timing.tile_sequence_cycles`): the first weight load, then every tile ``i``
  occupies ``max(beats_i, tile_period)`` cycles, the last one ``beats + latency``.
* ``fill``: the data moves before the first tile (its weights and activations) wait for DRAM:
  ``ceil(bytes / dram_bytes_per_cycle)``.
* ``stall``: the data moves issued while tile ``i`` runs (the next tile's weights and activations,
  finished outputs) take ``ceil(bytes / dram_bytes_per_cycle)``; when that exceeds the tile's
  interval the array waits for the difference.

``total = compute + fill + stall``. :func:`layer_cost` evaluates this in closed form over the loop
nest's few distinct tile classes; :func:`program_cost` enumerates a program operation by
operation; the two agree exactly (tested).

Action counts (:class:`Actions`) are per layer, byte counts in the array's layouts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

from sparsa.config import ArrayConfig

from . import timing
from .program import Compute, LoadActs, LoadWeights, Op, Store
from .schedule import LayerSchedule, Tiling

__all__ = ["Actions", "Cycles", "LayerCost", "layer_actions", "layer_cost", "layer_cycles",
           "program_actions", "program_cost"]


def _add(a, b):
    if type(a) is not type(b):
        return NotImplemented
    return type(a)(**{f.name: getattr(a, f.name) + getattr(b, f.name)
                      for f in dataclasses.fields(a)})


@dataclass(frozen=True)
class Cycles:
    compute: int = 0
    fill: int = 0
    stall: int = 0

    @property
    def total(self) -> int:
        return self.compute + self.fill + self.stall

    __add__ = _add


@dataclass(frozen=True)
class Actions:
    """Counts of the energy-relevant events of a layer."""

    macs_issued: int = 0            # multiplier slots active (rows*cols*n per beat)
    macs_required: int = 0          # multiplies the layer needs (nonzero weights x P)
    pe_register_write_bits: int = 0  # weight/index shadow registers + per-beat pipeline registers
    act_buffer_read_bytes: int = 0
    act_buffer_write_bytes: int = 0
    weight_buffer_read_bytes: int = 0
    weight_buffer_write_bytes: int = 0
    metadata_buffer_read_bytes: int = 0
    metadata_buffer_write_bytes: int = 0
    acc_buffer_read_bytes: int = 0
    acc_buffer_write_bytes: int = 0
    dram_act_bytes: int = 0
    dram_weight_bytes: int = 0
    dram_metadata_bytes: int = 0
    dram_out_bytes: int = 0

    @property
    def dram_bytes(self) -> int:
        return (self.dram_act_bytes + self.dram_weight_bytes + self.dram_metadata_bytes
                + self.dram_out_bytes)

    __add__ = _add


@dataclass(frozen=True)
class LayerCost:
    cycles: Cycles
    actions: Actions
    tiles: int = 0
    beats: int = 0

    __add__ = _add


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _required_macs(t: Tiling, cfg: ArrayConfig) -> int:
    g = t.gemm
    k = _ceil_div(g.k, cfg.m) * cfg.n if t.sparse else g.k
    return g.groups * g.p * g.cols * min(k, g.k)


def _per_beat_register_bits(cfg: ArrayConfig) -> int:
    # every PE latches its m-wide activation vector and its partial sum each beat
    return cfg.rows * cfg.cols * (cfg.m * cfg.act_width + cfg.acc_width)


def _per_tile_register_bits(cfg: ArrayConfig) -> int:
    return cfg.rows * cfg.cols * cfg.n * (cfg.weight_width + cfg.index_width)


def layer_actions(t: Tiling, cfg: ArrayConfig) -> Actions:
    """Action counts in closed form."""
    accb = _ceil_div(cfg.acc_width, 8)
    acc_row = cfg.cols * accb
    stored_rows = t.gemm.groups * t.col_tiles * t.gemm.p
    return Actions(
        macs_issued=t.beats * cfg.multipliers,
        macs_required=_required_macs(t, cfg),
        pe_register_write_bits=(t.tiles * _per_tile_register_bits(cfg)
                                + t.beats * _per_beat_register_bits(cfg)),
        act_buffer_read_bytes=t.beats * t.act_beat_bytes,
        act_buffer_write_bytes=t.dram_act_bytes,
        weight_buffer_read_bytes=t.tiles * t.weight_tile_bytes,
        weight_buffer_write_bytes=t.dram_weight_bytes,
        metadata_buffer_read_bytes=t.tiles * t.metadata_tile_bytes,
        metadata_buffer_write_bytes=t.dram_metadata_bytes,
        # psum_in reads on accumulate beats plus the reads of the stores
        acc_buffer_read_bytes=(t.beats - stored_rows) * acc_row + stored_rows * acc_row,
        acc_buffer_write_bytes=t.beats * acc_row,
        dram_act_bytes=t.dram_act_bytes,
        dram_weight_bytes=t.dram_weight_bytes,
        dram_metadata_bytes=t.dram_metadata_bytes,
        dram_out_bytes=t.dram_out_bytes,
    )


def layer_cycles(t: Tiling, cfg: ArrayConfig) -> Cycles:
    """Cycles in closed form over the tile classes of each (column block, P block)."""
    at = timing.array_timing(cfg)
    bw = cfg.dram_bytes_per_cycle
    period, latency = at.tile_period, at.latency

    def stall(nbytes: int, length: int) -> int:
        return max(0, _ceil_div(nbytes, bw) - length)

    def acts(cb: int, beats: int, k: int) -> int:
        return beats * t.act_bytes_per_beat(k) if (cb == 0 or not t.acts_resident) else 0

    def weights(pb: int) -> int:
        return (t.weight_tile_bytes + t.metadata_tile_bytes
                if (pb == 0 or not t.weights_resident) else 0)

    blocks = [(cb, pb) for cb in range(t.col_blocks) for pb in range(t.p_blocks)]
    first_dma = acts(0, t.block_beats(0), 0) + weights(0)

    def group_sum(last_group: bool) -> tuple[int, int]:
        """(sum of max(beats, period) over all tiles but a final one, stall cycles)."""
        intervals = stalls = 0
        for i, (cb, pb) in enumerate(blocks):
            b = t.block_beats(pb)
            nc, ps = t.block_cols(cb), t.passes
            w, store = weights(pb), b * t.out_row_bytes
            a_full, a_last = acts(cb, b, 0), acts(cb, b, ps - 1)
            length = max(b, period)
            if i + 1 < len(blocks):
                ncb, npb = blocks[i + 1]
                nxt = acts(ncb, t.block_beats(npb), 0) + weights(npb)
            else:
                nxt = first_dma
            final = last_group and i + 1 == len(blocks)
            stalls += (ps - 1) * (nc - 1) * stall(w, length) + (nc - 1) * stall(store + w, length)
            if ps >= 2:  # moving on to K pass k+1 loads its activations
                stalls += (ps - 2) * stall(a_full + w, length) + stall(a_last + w, length)
            if final:
                stalls += stall(store, b + latency)
            else:
                stalls += stall(store + nxt, length)
                intervals += length
            intervals += (ps * nc - 1) * length
        return intervals, stalls

    groups = t.gemm.groups
    mid_intervals, mid_stalls = group_sum(last_group=False) if groups > 1 else (0, 0)
    last_intervals, last_stalls = group_sum(last_group=True)
    last_beats = t.block_beats(t.p_blocks - 1)
    compute = at.load + (groups - 1) * mid_intervals + last_intervals + last_beats + latency
    return Cycles(compute=compute, fill=_ceil_div(first_dma, bw),
                  stall=(groups - 1) * mid_stalls + last_stalls)


def layer_cost(schedule: LayerSchedule) -> LayerCost:
    t, cfg = schedule.tiling, schedule.cfg
    return LayerCost(cycles=layer_cycles(t, cfg), actions=layer_actions(t, cfg), tiles=t.tiles,
                     beats=t.beats)


# Enumeration: the same quantities, operation by operation.

def program_cost(ops: Iterable[Op], cfg: ArrayConfig, *, sparse_macs_required: int = 0
                 ) -> LayerCost:
    """Walk a program: each ``Compute`` is one tile; data moves count in the interval of the
    ``Compute`` before them (or the fill, before the first)."""
    ops = list(ops)
    at = timing.array_timing(cfg)
    bw = cfg.dram_bytes_per_cycle
    fill_bytes = 0
    beats: list[int] = []
    interval_bytes: list[int] = []
    for op in ops:
        if isinstance(op, Compute):
            beats.append(op.beats)
            interval_bytes.append(0)
        elif op.dram_bytes:
            if beats:
                interval_bytes[-1] += op.dram_bytes
            else:
                fill_bytes += op.dram_bytes
    stall = 0
    for i, (b, nbytes) in enumerate(zip(beats, interval_bytes, strict=True)):
        length = b + at.latency if i == len(beats) - 1 else max(b, at.tile_period)
        stall += max(0, _ceil_div(nbytes, bw) - length)
    cycles = Cycles(compute=timing.tile_sequence_cycles(cfg, beats),
                    fill=_ceil_div(fill_bytes, bw), stall=stall)
    return LayerCost(cycles=cycles, actions=program_actions(ops, cfg, sparse_macs_required),
                     tiles=len(beats), beats=sum(beats))


def program_actions(ops: Iterable[Op], cfg: ArrayConfig, macs_required: int = 0) -> Actions:
    accb = _ceil_div(cfg.acc_width, 8)
    ab, wb = _ceil_div(cfg.act_width, 8), _ceil_div(cfg.weight_width, 8)
    counts = dict.fromkeys((f.name for f in dataclasses.fields(Actions)), 0)
    counts["macs_required"] = macs_required
    for op in ops:
        if isinstance(op, LoadActs):
            counts["dram_act_bytes"] += op.dram_bytes
            counts["act_buffer_write_bytes"] += op.dram_bytes
        elif isinstance(op, LoadWeights):
            counts["dram_weight_bytes"] += op.weight_bytes
            counts["dram_metadata_bytes"] += op.metadata_bytes
            counts["weight_buffer_write_bytes"] += op.weight_bytes
            counts["metadata_buffer_write_bytes"] += op.metadata_bytes
        elif isinstance(op, Compute):
            pes = cfg.rows * cfg.cols
            # the tile's preload: every PE reads n values + n indices and writes its shadow bank
            counts["weight_buffer_read_bytes"] += pes * cfg.n * wb
            counts["metadata_buffer_read_bytes"] += _ceil_div(pes * cfg.n * cfg.index_width, 8)
            counts["pe_register_write_bits"] += pes * cfg.n * (cfg.weight_width
                                                               + cfg.index_width)
            for _ in range(op.beats):
                counts["macs_issued"] += pes * cfg.n
                counts["act_buffer_read_bytes"] += cfg.rows * cfg.m * ab
                counts["pe_register_write_bits"] += pes * (cfg.m * cfg.act_width
                                                           + cfg.acc_width)
                counts["acc_buffer_write_bytes"] += cfg.cols * accb
                if op.accumulate:
                    counts["acc_buffer_read_bytes"] += cfg.cols * accb
        elif isinstance(op, Store):
            counts["dram_out_bytes"] += op.dram_bytes
            counts["acc_buffer_read_bytes"] += op.beats * cfg.cols * accb
    return Actions(**counts)
