"""Scheduler: choose a :class:`~sparsa.sw.tiling.Tiling` for a lowered layer
(:mod:`sparsa.sw.lower`) on an :class:`ArrayConfig`, and emit the program's operations
(:mod:`sparsa.sw.ops`) block by block.

**Choice.** For each column block size (powers of two and all column tiles) and activation mode
(:mod:`sparsa.sw.tiling`), the largest P block that fits the accumulators and the activation
scratchpad (whole output rows when one fits, else a divisor of a row); a single region only where
it saves weight loads. Among the tilings whose P blocks are at least the tile period (so weight
loads stay hidden, when P allows), those within :data:`BYTE_SLACK` of the fewest DRAM bytes
(:func:`~sparsa.sw.tiling.tiling_bytes`, exactly what the program's instructions move); of these
the fewest estimated cycles (:func:`estimated_cycles`), then bytes, tiles and the smaller column
block.

**Operations.** Each block: per tile its weight load (when needed), a chunk of the next block's
activations (whole pixels, sized to leave the tile room for its weight load), the preload and
the compute; each column tile's store after its last K pass. The next block's loads go after
the weight loads of the block's tiles but the first, so the single LOAD engine never delays a
weight load the next tile needs; a single region's, after the block's last COMPUTE.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import itertools
from collections.abc import Iterator
from dataclasses import dataclass

from sparsa import isa
from sparsa.config import ArrayConfig
from sparsa.im2col import ConvGeometry, footprint
from sparsa.isa import Opcode
from sparsa.models.graph import Gemm, Layer, LayerGraph

from . import timing
from .lower import (
    Lowering,
    ScheduleError,
    layer_runs_sparse,
    linear_lowering,
    lower_layer,
    program_key,
)
from .ops import Compute, Configure, LoadActs, LoadWeights, Op, PreloadWeights, Store
from .tiling import Tiling, tiling_bytes

__all__ = [
    "BYTE_SLACK",
    "Block",
    "BlockWalk",
    "LayerSchedule",
    "ScheduleError",
    "Tiling",
    "candidate_tilings",
    "estimated_cycles",
    "iter_block_ops",
    "iter_blocks",
    "layer_runs_sparse",
    "load_plan",
    "ring_need",
    "schedule_gemm",
    "schedule_graph",
    "schedule_layer",
    "schedule_lowering",
    "tiling_bytes",
    "widest_footprint",
]


def _check_fits(cfg: ArrayConfig, name: str) -> None:
    depth = cfg.scratchpad_rows
    if 2 * cfg.rows > depth["weight"]:
        raise ScheduleError(
            f"layer {name!r}: two weight tiles ({cfg.rows} rows of "
            f"{isa.data_in_bytes(cfg, Opcode.LOAD_WEIGHT)} bytes each, with metadata) do not "
            f"fit the weight buffer ({depth['weight']} rows of weight_buffer_kib="
            f"{cfg.weight_buffer_kib}); expected a larger buffer or a smaller array")
    if depth["acc"] < 2:
        raise ScheduleError(f"layer {name!r}: two accumulator rows ({cfg.cols} columns) do not "
                            f"fit the accumulator buffer (acc_buffer_kib={cfg.acc_buffer_kib})")


@functools.lru_cache(maxsize=1 << 12)
def _footprints(geom: ConvGeometry, size: int, p: int) -> tuple[tuple[int, int], ...]:
    """The footprint of every P block of ``size`` of the first ``p`` output pixels (one stacked
    GEMM's: the others' are the same, shifted)."""
    return tuple(footprint(geom, f, min(size, p - f)) for f in range(0, p, size))


def _max_footprint(low: Lowering, size: int) -> int:
    return widest_footprint(low.geom, size, low.stack_p)


@functools.lru_cache(maxsize=1 << 12)
def widest_footprint(geom: ConvGeometry, size: int, p: int) -> int:
    """Input pixels of the largest footprint among P blocks of ``size`` of the first ``p``
    output pixels (blocks that read their own pixels: the first, the last has the rest)."""
    if geom.reads_own_pixels:
        return min(size, p)
    return max(hi - lo for lo, hi in _footprints(geom, size, p))


def _ring_need(low: Lowering, size: int, wrap: bool) -> int:
    return ring_need(low.geom, size, low.stack_p, wrap)


@functools.lru_cache(maxsize=1 << 12)
def ring_need(geom: ConvGeometry, size: int, p: int, wrap: bool) -> int:
    """Ring pixels P blocks of ``size`` of the first ``p`` output pixels need: a block's
    footprint and the next block's new pixels, loaded while it computes (``wrap``: the next
    column block starts over). Blocks that read their own pixels are adjacent, ``size`` wide
    but the last (the rest): counted, not walked."""
    if geom.reads_own_pixels:
        n = -(-p // size)
        first, last = min(size, p), p - (n - 1) * size
        need = max(first, size + min(size, p - size)) if n > 1 else first
        return max(need, last + first) if wrap else need
    fps = _footprints(geom, size, p)
    need = max([hi - lo for lo, hi in fps] + [b[1] - a[0] for a, b in itertools.pairwise(fps)])
    if wrap:
        need = max(need, fps[-1][1] - fps[-1][0] + fps[0][1] - fps[0][0])
    return need


def _p_block(low: Lowering, limit: int, fits) -> int | None:
    """The P block size: at most ``limit`` output pixels with ``fits(size)``, balanced. A
    conv's blocks are whole output rows when one fits, else a divisor of the row (a block
    across two output rows would read their input rows too). None when not even one pixel
    fits."""
    g = low.geom

    def largest(lo: int, hi: int, size) -> int | None:
        """The largest ``n`` in ``lo .. hi`` with ``fits(size(n))`` (footprints grow with n)."""
        if hi < lo or not fits(size(lo)):
            return None
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fits(size(mid)) else (lo, mid - 1)
        return lo

    p = low.stack_p
    limit = min(p, limit)
    if g.pixels is not None:     # a linear layer: the footprint is the block
        size = largest(1, limit, lambda n: n)
        if size is None:
            return None
        balanced = -(-p // -(-p // size))
        return balanced if fits(balanced) else size
    wo = g.out_size[1]
    rows = largest(1, limit // wo, lambda r: r * wo)
    if rows is None:
        divisor = max(d for d in range(1, min(wo, limit) + 1) if wo % d == 0)
        return divisor if fits(divisor) else None
    total = g.p // wo
    balanced = -(-total // -(-total // rows))
    return (balanced if fits(balanced * wo) else rows) * wo


def _modes(cfg: ArrayConfig, low: Lowering) -> list[str]:
    """The activation modes to try: resident when the whole input fits; else a ring when the
    scratchpad's depth is a power of two that whole pixels divide (the walk wraps there), or
    two regions; and a single region (bigger blocks, no overlap)."""
    depth, cb = cfg.scratchpad_rows["act"], low.c_blocks(cfg)
    lo, hi = footprint(low.geom, 0, low.geom.p)
    if (hi - lo) * cb <= depth:
        return ["resident"]
    ring = depth & (depth - 1) == 0 and depth % cb == 0 and low.stack == 1
    sliced = ["sliced"] if low.geom.pixels is not None and cb > 1 and low.groups == 1 else []
    return ["ring" if ring else "double", "single", *sliced]


def _fits(cfg: ArrayConfig, low: Lowering, mode: str, wrap: bool):
    depth, cb = cfg.scratchpad_rows["act"], low.c_blocks(cfg)
    if mode == "resident":
        return lambda size: True
    if mode == "ring":
        return lambda size: _ring_need(low, size, wrap) * cb <= depth
    if mode == "sliced":        # two regions of one row per pixel
        return lambda size: 2 * size <= depth
    region = depth // 2 if mode == "double" else depth
    return lambda size: _max_footprint(low, size) * cb <= region


def _tiling(cfg: ArrayConfig, low: Lowering, gemm: Gemm, mode: str, col_block: int,
            size: int) -> Tiling:
    depth, cb = cfg.scratchpad_rows, low.c_blocks(cfg)
    t = Tiling(cfg=cfg, low=low, gemm=gemm, col_block=col_block, p_block=size,
               p_blocks=-(-low.stack_p // size), acts=mode, weights_resident=False,
               region=_max_footprint(low, size) * cb if mode == "double" else depth["act"])
    most = max(t.block_tile_count(c) for c in range(t.col_blocks))
    return dataclasses.replace(t, weights_resident=most * cfg.rows <= depth["weight"])


def candidate_tilings(low: Lowering, cfg: ArrayConfig, *, gemm: Gemm | None = None,
                      name: str = "gemm") -> list[Tiling]:
    """Every loop order (column block x P block x activation mode) that fits the scratchpads;
    a single region only where it saves weight loads (its blocks are bigger than the others'
    and their weights are not resident)."""
    _check_fits(cfg, name)
    depth = cfg.scratchpad_rows
    g = low.geom
    gemm = gemm or Gemm(p=g.p, k=g.channels // low.groups * low.offsets, cols=low.cols)
    col_tiles = -(-low.cols // cfg.cols)
    out: list[Tiling] = []
    for cbk in sorted({min(2 ** i, col_tiles) for i in range(col_tiles.bit_length() + 1)}
                      | {col_tiles}):
        last = col_tiles - (-(-col_tiles // cbk) - 1) * cbk
        limit = depth["acc"] // ((1 if min(cbk, last) >= 3 else 2) * cbk)
        if limit < 1:
            continue
        found = {}
        for mode in _modes(cfg, low):
            size = _p_block(low, limit, _fits(cfg, low, mode, wrap=cbk < col_tiles))
            if size is not None:
                found[mode] = _tiling(cfg, low, gemm, mode, cbk, size)
        single = found.pop("single", None)
        overlapped = list(found.values())
        if single is not None and (not overlapped or (
                not any(t.weights_resident for t in overlapped)
                and single.p_blocks < min(t.p_blocks for t in overlapped))):
            overlapped.append(single)
        out += overlapped
    if not out:
        raise ScheduleError(f"layer {name!r}: the input rows one output pixel reads "
                            f"({_max_footprint(low, 1)} pixels of {low.c_blocks(cfg)} rows) "
                            f"do not fit the activation buffer (act_buffer_kib="
                            f"{cfg.act_buffer_kib})")
    return out


CONTROL_CYCLES = 3


def estimated_cycles(t: Tiling) -> int:
    """A closed-form estimate of the program's cycles with ideal memory, to break near-ties in
    bytes (the cost model times the program exactly): the first block's loads, then per block
    the array's time (each tile ``max(beats, tile period + CONTROL_CYCLES)``: the controller
    dispatches a PRELOAD after its weight load and the COMPUTE after the PRELOAD's last row,
    a few cycles past the array's own period) or, when longer, the LOAD engine's
    (the next block's activation rows, the block's weight tiles, its scale rows); a single
    region's loads wait for the block's end; then the drain. Stacked GEMMs count alike. The
    first block's loads come first: its footprint, or a sliced layer's first slice (one row per
    pixel; the other slices load while the tiles before them compute)."""
    cfg, cb = t.cfg, t.c_blocks
    fixed = timing.array_timing(cfg)
    period = fixed.tile_period + CONTROL_CYCLES
    first = t.block_loads(0)
    total = 0
    per_stack = t.col_blocks * t.p_blocks
    for i in range(min(t.blocks, per_stack)):
        _, c, pb = t.locate(i)
        tiles = t.block_tile_count(c)
        compute = tiles * max(t.block_beats(pb), period)
        nxt = t.block_loads(i + 1) if i + 1 < t.blocks else None
        acts = nxt[1] * cb if nxt else 0
        weights = tiles * cfg.rows if pb == 0 or not t.weights_resident else 0
        total += compute + acts if t.acts == "single" else \
            max(compute, acts + weights + t.block_cols(c))
    up_front = first[1] * (1 if t.sliced else cb) if first else 0
    return (total * t.stack + up_front + cfg.rows + fixed.latency
            + t.block_beats(t.p_blocks - 1))


# Tilings within this fraction of the fewest bytes count as equal; the estimate decides.
BYTE_SLACK = 0.05


def schedule_lowering(low: Lowering, cfg: ArrayConfig, *, gemm: Gemm | None = None,
                      name: str = "gemm") -> Tiling:
    """Among the tilings whose P blocks are long enough to hide the next tile's weight load
    (``tile_period`` beats, when P allows it), those within :data:`BYTE_SLACK` of the fewest
    DRAM bytes; of these the fewest estimated cycles (:func:`estimated_cycles`), then bytes,
    tiles and the smaller column block. Layers with equal program keys
    (:func:`~sparsa.sw.lower.program_key`) choose alike: the choice is made once."""
    try:
        t = _choose(program_key(low, cfg), cfg)
    except ScheduleError:
        candidate_tilings(low, cfg, name=name)     # raises, naming the layer
        raise
    return dataclasses.replace(t, low=low, gemm=gemm or Gemm(
        p=low.geom.p, k=low.k_group * low.offsets, cols=low.cols, groups=low.groups))


@functools.lru_cache(maxsize=1024)
def _choose(low: Lowering, cfg: ArrayConfig) -> Tiling:
    cands = candidate_tilings(low, cfg)
    period = timing.array_timing(cfg).tile_period
    cands = [t for t in cands if t.p_block >= min(low.stack_p, period)] or cands
    least = min(tiling_bytes(t).total for t in cands)
    near = [t for t in cands if tiling_bytes(t).total <= least * (1 + BYTE_SLACK)]
    return min(near, key=lambda t: (estimated_cycles(t), tiling_bytes(t).total, t.tiles,
                                    t.col_block))


def schedule_gemm(gemm: Gemm, cfg: ArrayConfig, *, sparse: bool, name: str = "gemm") -> Tiling:
    """A linear layer (or ``groups`` block-diagonal ones) of ``gemm``'s shape; ``sparse``: its
    weights satisfy the hardware's N:M pattern."""
    return schedule_lowering(linear_lowering(cfg, gemm, pruned=sparse), cfg, gemm=gemm,
                             name=name)


@dataclass(frozen=True)
class LayerSchedule:
    name: str
    kind: str
    pattern: str            # "2:4" when the layer's weight tiles are N:M, "dense" otherwise
    tiling: Tiling
    cfg: ArrayConfig


def schedule_layer(layer: Layer, cfg: ArrayConfig) -> LayerSchedule | None:
    """Schedule one layer (``None`` for layers that are not GEMMs)."""
    low = lower_layer(layer, cfg)
    if low is None:
        return None
    return LayerSchedule(name=layer.name, kind=layer.kind,
                         pattern=cfg.nm if low.runs_sparse(cfg) else "dense",
                         tiling=schedule_lowering(low, cfg, gemm=layer.gemm, name=layer.name),
                         cfg=cfg)


def schedule_graph(graph: LayerGraph, cfg: ArrayConfig) -> list[LayerSchedule]:
    return [s for layer in graph if (s := schedule_layer(layer, cfg)) is not None]


# ---- the program's operations ----------------------------------------------------------------

@dataclass(frozen=True)
class Block:
    """One (column block, P block) of the loop nest (of stacked GEMM ``group``); ``index``:
    blocks before it."""

    col_block: int
    p_block: int
    index: int
    group: int = 0


def iter_blocks(tiling: Tiling) -> Iterator[Block]:
    for index in range(tiling.blocks):
        g, cb, pb = tiling.locate(index)
        yield Block(cb, pb, index, g)


def _chunks(first: int, pixels: int, slots: int, chunks: int) -> list[tuple[int, int, int]]:
    """``pixels`` from ``first`` in ``chunks`` nearly equal runs spread evenly over ``slots``:
    ``(slot, first, count)`` (empty runs left out)."""
    chunks = max(1, min(chunks, slots, pixels))
    out, at = [], first
    for c in range(chunks):
        n = pixels * (c + 1) // chunks - pixels * c // chunks
        if n:
            out.append((c * slots // chunks, at, n))
            at += n
    return out


def _chunk_count(t: Tiling, rows: int) -> int:
    """Chunks for ``rows`` activation rows loaded among tiles of ``p_block`` beats: each small
    enough to leave a weight load (``rows`` of the array) room in its tile."""
    room = max(1, max(t.p_block, timing.array_timing(t.cfg).tile_period) - 2 * t.cfg.rows)
    return -(-rows // room)


def _ring_split(t: Tiling, index: int, first: int, n: int) -> list[tuple[int, int]]:
    """A ring's run of pixels cut where the ring wraps (a LOAD_ACT writes consecutive rows)."""
    ring = t.region // t.c_blocks
    v, out = t.act_base(index) // t.c_blocks + first, []
    while n:
        take = min(n, ring - v % ring)
        out.append((first, take))
        first, v, n = first + take, v + take, n - take
    return out


def load_plan(t: Tiling, block: Block, tiles: int) -> dict[int, list[LoadActs]]:
    """The LoadActs placed before the PRELOAD of each tile of ``block`` (key ``tiles``: after
    its last COMPUTE): its own loads before the first one when it is the program's first
    block; the next block's spread over tiles ``1 ..``, or after the last COMPUTE when the block
    has one tile or the region is single (the loads then wait for it: same tag)."""
    plan: dict[int, list[LoadActs]] = {}

    def place(index: int, slots: list[int]) -> None:
        got = t.block_loads(index)
        if got is None:
            return
        lo, pixels = got
        for s, at, n in _chunks(lo, pixels, len(slots), _chunk_count(t, pixels * t.c_blocks)):
            runs = _ring_split(t, index, at, n) if t.acts == "ring" else [(at, n)]
            plan.setdefault(slots[s], []).extend(LoadActs(
                block=index, p_block=t.locate(index)[2], first=first, pixels=count,
                tag=t.block_tag(index)) for first, count in runs)

    if t.sliced:
        return _slice_plan(t, block, tiles)
    if block.index == 0:
        place(0, [0])
    if block.index + 1 < t.blocks:
        place(block.index + 1, list(range(1, tiles)) if tiles > 1 and t.tagged else [tiles])
    return plan


def _slice_plan(t: Tiling, block: Block, tiles: int) -> dict[int, list[LoadActs]]:
    """A sliced layer's loads: each channel block's slice of the P block spread over the tiles
    of the channel block before it (the next block's first slice over this block's last
    channel block), or after its only tile; the first slice of the program up front."""
    plan: dict[int, list[LoadActs]] = {}
    per = t.low.phases * t.block_cols(block.col_block)    # tiles of one channel block

    def place(index: int, b: int, slots: list[int]) -> None:
        g, _, pb = t.locate(index)
        first = t.block_first(pb, g)
        beats = t.block_beats(pb)
        for s, at, n in _chunks(first, beats, len(slots), _chunk_count(t, beats)):
            plan.setdefault(slots[s], []).append(LoadActs(
                block=index, p_block=pb, first=at, pixels=n,
                tag=t.slice_load(index, b) % 2, slice=b))

    if block.index == 0:
        place(0, 0, [0])
    for b in range(t.c_blocks):     # no groups, one offset: tiles are (block, phase, column)
        slots = list(range(b * per + 1, (b + 1) * per)) if per > 1 else [b + 1]
        if b + 1 < t.c_blocks:
            place(block.index, b + 1, slots)
        elif block.index + 1 < t.blocks:
            place(block.index + 1, 0, slots)
    return plan


def iter_block_ops(tiling: Tiling, block: Block) -> Iterator[Op]:
    """The operations of one block in program order: per tile its weight load (when needed),
    the chunk of the next block's activations placed there, the preload and the compute; each
    column tile's store after its last K pass. The first block starts with the CONFIG."""
    walk = BlockWalk(tiling, block)
    return walk.ops(0, walk.count)


class BlockWalk:
    """One block's tiles and what decides their operations, so that any span of its tiles can
    be walked on its own (:meth:`ops`): the operations of ``ops(0, a)``, ``ops(a, b)``, ...,
    ``ops(z, count)`` one after the other are :func:`iter_block_ops`'s."""

    def __init__(self, tiling: Tiling, block: Block):
        t, cb = tiling, block.col_block
        self.t, self.block = t, block
        self.tiles = t.block_tiles(cb)
        self.count = len(self.tiles)
        self.plan = load_plan(t, block, self.count)
        self.load = block.p_block == 0 or not t.weights_resident
        self.slot = t.weight_loads_before(block.index)
        self.first_at, self.last, self.stores = _block_shape(t, cb)
        # the STORE before: the previous block's last (a stacked GEMM's scales are its own)
        before = t.locate(block.index - 1) if block.index else None
        self.prev = (before[0], t.store_cols(before[1])[-1]) if before else None
        self.beats, self.tag = t.block_beats(block.p_block), t.block_tag(block.index)
        self.first, self.base = t.block_first(block.p_block, block.group), t.act_base(block.index)

    def w_slot(self, s: int) -> int:
        """The weight slot of tile ``s``."""
        return s if self.t.weights_resident else (self.slot + s) % 2

    def ops(self, start: int, stop: int) -> Iterator[Op]:
        """The operations of tiles ``start .. stop - 1`` (with the CONFIG before the program's
        first tile and the loads after the block's last)."""
        t, block, tiles, pb = self.t, self.block, self.tiles, self.block.p_block
        if block.index == 0 and start == 0:
            yield Configure()
        tag, base, slices = self.tag, self.base, {}
        for s in range(start, stop):
            k, c, offset, b = tiles[s]
            w_slot = self.w_slot(s)
            if self.load:
                yield LoadWeights(col_tile=c, k_pass=k, slot=w_slot, group=block.group)
            yield from self.plan.get(s, ())
            yield PreloadWeights(col_tile=c, k_pass=k, slot=w_slot)
            if t.sliced:
                if b not in slices:    # each channel block's slice: its tag and base, once
                    slices[b] = t.slice_load(block.index, b) % 2, t.slice_base(block.index, b)
                tag, base = slices[b]
            yield Compute(p_block=pb, col_tile=c, k_pass=k, offset=offset, block=b,
                          beats=self.beats, accumulate=s > self.first_at[c], tag=tag,
                          first=self.first, base=base)
            if self.last[c] == k:
                yield self.store(s)
        if stop == self.count:
            yield from self.plan.get(self.count, ())

    def store(self, s: int) -> Store:
        """The STORE after tile ``s`` (the last K pass of its column tile): with a LOAD_SCALE
        unless the STORE before it (the previous block's last, for the block's first) is of
        the same column tile."""
        g, c = self.block.group, self.tiles[s][1]
        at = bisect.bisect_left(self.stores, s)
        prev = (g, self.tiles[self.stores[at - 1]][1]) if at else self.prev
        return Store(p_block=self.block.p_block, col_tile=c, beats=self.beats,
                     scale=(g, c) != prev, first=self.first, group=g)


@functools.lru_cache(maxsize=256)
def _block_shape(t: Tiling, cb: int) -> tuple[dict[int, int], dict[int, int], list[int]]:
    """Of column block ``cb``'s tiles: the first tile of each column tile, its last K pass, and
    the tiles its STOREs follow, in order."""
    first_at: dict[int, int] = {}
    last: dict[int, int] = {}
    for s, (k, c, _, _) in enumerate(t.block_tiles(cb)):
        first_at.setdefault(c, s)
        last[c] = k
    stores = [s for s, (k, c, _, _) in enumerate(t.block_tiles(cb)) if last[c] == k]
    return first_at, last, stores
