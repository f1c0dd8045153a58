"""Scheduler: lower layers to GEMMs, tile them onto an :class:`ArrayConfig`, emit the program.

Lowering: ``conv2d`` via im2col (``P = H_out * W_out``, ``K = C_in/groups * kh * kw``), depthwise
and grouped convolutions as ``groups`` independent GEMMs, ``linear`` directly, ``matmul``
(activation x activation) always dense. A layer runs *sparse* when its weights satisfy the
hardware's N:M pattern (K costs ``K`` slots); otherwise *dense* as M/N virtual groups (K costs
``ceil(K / n) * m`` slots, see :func:`sparsa.sim.golden.expand_dense_weights`).

Tiling: one pass of the array covers ``rows * m`` slots of K and ``cols`` output columns; P rows
stream as beats. The loop nest of one group is::

    for col_block:                 # col_block tiles of `cols` columns each
        for p_block:               # p_block beats (accumulators hold p_block x col_block*cols)
            for k_pass:
                for col_tile in col_block:
                    tile(col_tile, k_pass, p_block)   # load, preload, compute (accumulate k>0)
            store the block

``col_block = 1`` with a single P block is the weight-stationary order (every weight tile loaded
once, all P rows streamed through it); ``col_block = 1`` with several P blocks is P-blocking;
larger column blocks reuse each activation slice over several column tiles. Every candidate that
fits the scratchpads (half of each: the other half holds the prefetch) and whose P blocks are at
least the tile period (so weight loads stay hidden, when P allows) is costed in DRAM bytes and the
cheapest wins (ties: fewer tiles, then the smaller column block).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sparsa.config import ArrayConfig
from sparsa.models.graph import Gemm, Layer, LayerGraph
from sparsa.nm import pattern_fits

from . import timing
from .ops import Compute, LoadActs, LoadWeights, Op, PreloadWeights, Store

__all__ = ["Block", "LayerSchedule", "ScheduleError", "Tiling",
           "candidate_tilings", "iter_block_ops", "iter_blocks",
           "layer_runs_sparse", "schedule_gemm", "schedule_graph", "schedule_layer"]



class ScheduleError(ValueError):
    """A layer cannot be mapped onto the configuration (a buffer is too small)."""


def _bytes(bits: int) -> int:
    return -(-bits // 8)


@dataclass(frozen=True)
class Tiling:
    """How one GEMM (all its groups) maps onto the array, and the loop order chosen."""

    gemm: Gemm
    sparse: bool
    k_slots: int
    passes: int
    col_tiles: int
    col_block: int
    p_block: int
    p_blocks: int
    acts_resident: bool
    weights_resident: bool
    # Byte sizes (array layouts).
    act_beat_bytes: int         # one beat as the array reads it: rows * m activations
    act_pass_bytes: int         # real activations per beat in a full K pass (DRAM layout)
    act_last_pass_bytes: int    # ... in the last K pass
    weight_tile_bytes: int
    metadata_tile_bytes: int
    out_row_bytes: int

    @property
    def order(self) -> str:
        if self.col_block == 1:
            return "ws" if self.p_blocks == 1 else "p-block"
        return "col-block"

    @property
    def col_blocks(self) -> int:
        return -(-self.col_tiles // self.col_block)

    def block_cols(self, cb: int) -> int:
        """Column tiles in column block ``cb``."""
        return min(self.col_block, self.col_tiles - cb * self.col_block)

    def block_beats(self, pb: int) -> int:
        """Beats (P rows) of P block ``pb``: balanced blocks, the last one takes the rest."""
        return self.p_block if pb < self.p_blocks - 1 else (
            self.gemm.p - (self.p_blocks - 1) * self.p_block)

    @property
    def tiles(self) -> int:
        return self.gemm.groups * self.p_blocks * self.col_tiles * self.passes

    @property
    def beats(self) -> int:
        return self.gemm.groups * self.col_tiles * self.passes * self.gemm.p

    def act_bytes_per_beat(self, k: int) -> int:
        """Off-chip activation bytes per beat of K pass ``k``: only real activations travel
        (no padding slots, no empty slots of dense virtual groups)."""
        return self.act_last_pass_bytes if k == self.passes - 1 else self.act_pass_bytes

    @property
    def dram_act_bytes(self) -> int:
        x = self.gemm.p * ((self.passes - 1) * self.act_pass_bytes + self.act_last_pass_bytes)
        return self.gemm.groups * x * (1 if self.acts_resident else self.col_blocks)

    @property
    def _weight_loads(self) -> int:
        return self.gemm.groups * self.col_tiles * self.passes * (
            1 if self.weights_resident else self.p_blocks)

    @property
    def dram_weight_bytes(self) -> int:
        return self._weight_loads * self.weight_tile_bytes

    @property
    def dram_metadata_bytes(self) -> int:
        return self._weight_loads * self.metadata_tile_bytes

    @property
    def dram_out_bytes(self) -> int:
        return self.gemm.groups * self.gemm.p * self.col_tiles * self.out_row_bytes

    @property
    def dram_bytes(self) -> int:
        return (self.dram_act_bytes + self.dram_weight_bytes + self.dram_metadata_bytes
                + self.dram_out_bytes)


def candidate_tilings(gemm: Gemm, cfg: ArrayConfig, *, sparse: bool,
                      name: str = "gemm") -> list[Tiling]:
    """Every loop order (column block x P block) that fits the scratchpads."""
    ab, wb, accb = _bytes(cfg.act_width), _bytes(cfg.weight_width), _bytes(cfg.acc_width)
    k_slots = gemm.k if sparse else -(-gemm.k // cfg.n) * cfg.m
    kp = cfg.k_per_pass
    passes = -(-k_slots // kp)
    col_tiles = -(-gemm.cols // cfg.cols)
    act_beat = kp * ab
    real_per_pass = kp if sparse else kp // cfg.m * cfg.n
    real_last = gemm.k - (passes - 1) * real_per_pass
    w_tile = cfg.rows * cfg.cols * cfg.n * wb
    meta_tile = _bytes(cfg.rows * cfg.cols * cfg.n * cfg.index_width)
    out_row = cfg.cols * ab
    act_half, w_half, acc_half = (cfg.act_buffer_kib * 512, cfg.weight_buffer_kib * 512,
                                  cfg.acc_buffer_kib * 512)
    if w_tile + meta_tile > w_half:
        raise ScheduleError(
            f"layer {name!r}: one weight tile ({w_tile + meta_tile} bytes with metadata) does not "
            f"fit half the weight buffer ({w_half} bytes of weight_buffer_kib="
            f"{cfg.weight_buffer_kib}); expected a larger buffer or a smaller array")
    if act_beat > act_half:
        raise ScheduleError(f"layer {name!r}: one activation beat ({act_beat} bytes) does not fit "
                            f"half the activation buffer (act_buffer_kib={cfg.act_buffer_kib})")
    if cfg.cols * accb > acc_half:
        raise ScheduleError(f"layer {name!r}: one accumulator row ({cfg.cols * accb} bytes) does "
                            f"not fit half the accumulator buffer "
                            f"(acc_buffer_kib={cfg.acc_buffer_kib})")
    blocks = sorted({min(2 ** i, col_tiles) for i in range(col_tiles.bit_length() + 1)}
                    | {col_tiles})
    out = []
    for cb in blocks:
        p_max = min(gemm.p, acc_half // (cb * cfg.cols * accb), act_half // act_beat)
        if p_max < 1:
            continue
        p_blocks = -(-gemm.p // p_max)
        p_block = -(-gemm.p // p_blocks)
        out.append(Tiling(
            gemm=gemm, sparse=sparse, k_slots=k_slots, passes=passes, col_tiles=col_tiles,
            col_block=cb, p_block=p_block, p_blocks=p_blocks,
            # In the scratchpad activations sit in the array's layout: a beat per P row and K
            # pass (dense layers take M/N times the slots of their real K).
            acts_resident=gemm.p * passes * act_beat <= act_half,
            weights_resident=cb * passes * (w_tile + meta_tile) <= w_half,
            act_beat_bytes=act_beat, act_pass_bytes=real_per_pass * ab,
            act_last_pass_bytes=real_last * ab, weight_tile_bytes=w_tile,
            metadata_tile_bytes=meta_tile, out_row_bytes=out_row))
    return out


def schedule_gemm(gemm: Gemm, cfg: ArrayConfig, *, sparse: bool, name: str = "gemm") -> Tiling:
    """The tiling with the least off-chip traffic among those whose P blocks are long enough to
    hide the next tile's weight load (``tile_period`` beats, when P allows it)."""
    cands = candidate_tilings(gemm, cfg, sparse=sparse, name=name)
    period = timing.array_timing(cfg).tile_period
    hidden = [t for t in cands if t.block_beats(t.p_blocks - 1) >= min(gemm.p, period)]
    return min(hidden or cands, key=lambda t: (t.dram_bytes, t.tiles, t.col_block))


def layer_runs_sparse(layer: Layer, cfg: ArrayConfig) -> bool:
    """Whether ``layer.nm`` fits the hardware pattern (``n':m'`` with ``m'`` dividing ``m`` and
    at most ``n`` nonzeros per group of ``m``). Layers without static weights never do."""
    if not layer.has_static_weight or layer.nm is None:
        return False
    return pattern_fits(layer.nm, (cfg.n, cfg.m))


@dataclass(frozen=True)
class LayerSchedule:
    name: str
    kind: str
    pattern: str            # "2:4" when the layer runs sparse, "dense" otherwise
    tiling: Tiling
    cfg: ArrayConfig


def schedule_layer(layer: Layer, cfg: ArrayConfig) -> LayerSchedule | None:
    """Schedule one layer (``None`` for layers that are not GEMMs)."""
    gemm = layer.gemm
    if gemm is None:
        return None
    sparse = layer_runs_sparse(layer, cfg)
    return LayerSchedule(name=layer.name, kind=layer.kind,
                         pattern=cfg.nm if sparse else "dense",
                         tiling=schedule_gemm(gemm, cfg, sparse=sparse, name=layer.name), cfg=cfg)


def schedule_graph(graph: LayerGraph, cfg: ArrayConfig) -> list[LayerSchedule]:
    return [s for layer in graph if (s := schedule_layer(layer, cfg)) is not None]


@dataclass(frozen=True)
class Block:
    """One (group, column block, P block) of the loop nest, with the numbers of activation and
    weight loads before it (the assembler alternates scratchpad slots by them)."""

    group: int
    col_block: int
    p_block: int
    act_loads: int
    weight_loads: int
    index: int          # blocks before this one


def iter_blocks(tiling: Tiling) -> Iterator[Block]:
    t = tiling
    act_loads = weight_loads = index = 0
    for g in range(t.gemm.groups):
        for cb in range(t.col_blocks):
            for pb in range(t.p_blocks):
                yield Block(g, cb, pb, act_loads, weight_loads, index)
                index += 1
                if cb == 0 or not t.acts_resident:
                    act_loads += t.passes
                if pb == 0 or not t.weights_resident:
                    weight_loads += t.passes * t.block_cols(cb)


def iter_block_ops(tiling: Tiling, block: Block) -> Iterator[Op]:
    """The operations of one block: every K pass of every column tile of the column block over
    the block's P rows, then the stores."""
    t, g, cb, pb = tiling, block.group, block.col_block, block.p_block
    cols = range(cb * t.col_block, cb * t.col_block + t.block_cols(cb))
    beats = t.block_beats(pb)
    for k in range(t.passes):
        for c in cols:
            if c == cols[0] and (cb == 0 or not t.acts_resident):
                yield LoadActs(group=g, p_block=pb, k_pass=k, beats=beats,
                               dram_bytes=beats * t.act_bytes_per_beat(k))
            if pb == 0 or not t.weights_resident:
                yield LoadWeights(group=g, col_tile=c, k_pass=k,
                                  weight_bytes=t.weight_tile_bytes,
                                  metadata_bytes=t.metadata_tile_bytes)
            yield PreloadWeights(group=g, col_tile=c, k_pass=k)
            yield Compute(group=g, p_block=pb, col_tile=c, k_pass=k, beats=beats,
                          accumulate=k > 0)
            if k == t.passes - 1:
                yield Store(group=g, p_block=pb, col_tile=c, beats=beats,
                            dram_bytes=beats * t.out_row_bytes)
