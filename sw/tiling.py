"""How a lowered layer (:mod:`sparsa.sw.lower`) maps onto the array: the :class:`Tiling` the
scheduler (:mod:`sparsa.sw.schedule`) chooses, and its byte model (:func:`tiling_bytes`, exactly
the bytes the program's instructions move).

One pass of the array covers ``K_pass = rows * m`` input channels of one kernel offset (a channel
block) and ``cols`` output channels (a column tile); output pixels stream as beats. The loop
nest, for each stacked GEMM (one, unless a matmul's)::

    for col_block:                 # col_block column tiles each
        for p_block:               # p_block output pixels (accumulators: p_block x col_block)
            for k_pass:            # (kernel offset, channel block, phase)
                for col_tile in col_block:   # only the tiles that exist (grouped convs)
                    tile(col_tile, k_pass, p_block)   # load, preload, compute (accumulate k>0)
            store the block

**Activations** (``acts``). A P block's activations are its input footprint (whole input rows,
``C_blocks`` scratchpad rows per pixel), loaded while the block before computes:

* ``resident``: the whole input fits the scratchpad: each block loads the pixels its
  predecessors did not, later column blocks nothing;
* ``ring``: the scratchpad is a ring of whole pixels (its depth a power of two that a pixel's
  rows divide: the walk's addresses wrap there); each block loads only the pixels the block
  before did not (an input row crosses DRAM once per column block), consecutive blocks
  alternate hazard tags;
* ``double``: each block's footprint in one of two regions, alternating with the tags;
* ``single``: one region as large as the scratchpad (bigger blocks, so fewer weight reloads);
  the next block's loads wait for the block's last COMPUTE (one tag);
* ``sliced`` (linear layers): the walk sees one channel block per pixel, and each K pass's
  slice of the P block (a 2-D strided load of real channels) goes to one of two regions of
  ``p_block`` rows with alternating tags while the slice before computes, so P blocks are
  bounded by the accumulators only.

**Weights** are *resident* when every tile of a column block fits the weight scratchpad (each
loaded once, in the column block's first P block), else loaded before each use into two
alternating slots. **Accumulators**: one region of ``p_block`` rows per column tile of the block,
in two sets alternating between consecutive blocks (a block's STOREs overlap the next), or one
set when every column block has at least three tiles.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from sparsa import isa
from sparsa.config import ArrayConfig
from sparsa.im2col import ConvGeometry, linear_geometry
from sparsa.isa import Opcode
from sparsa.models.graph import Gemm

from .lower import Lowering, Traffic, footprint

__all__ = ["Tiling", "tiling_bytes"]


@dataclass(frozen=True)
class Tiling:
    """How one lowered layer maps onto the array, and the loop order chosen."""

    cfg: ArrayConfig
    low: Lowering
    gemm: Gemm              # the layer's shape (what reports show)
    col_block: int
    p_block: int
    p_blocks: int
    acts: str               # "resident", "ring", "double", "single" or "sliced" (docstring)
    weights_resident: bool
    region: int             # activation rows of a region ("double": each of the two)

    @property
    def acc_sets(self) -> int:
        """Accumulator sets: two alternating between consecutive blocks (a block's STOREs
        overlap the next block), or one when every column block has at least three tiles (the
        deferred STOREs of a column tile then precede the next block's first COMPUTE of it in
        program order, and end before it runs)."""
        return 1 if self.block_cols(self.col_blocks - 1) >= 3 and self.col_block >= 3 else 2

    @property
    def acts_resident(self) -> bool:
        return self.acts == "resident"

    @property
    def tagged(self) -> bool:
        """Whether consecutive blocks alternate hazard tags (all but "single")."""
        return self.acts != "single"

    def block_tag(self, index: int) -> int:
        return index % 2 if self.tagged else 0

    @property
    def sliced(self) -> bool:
        return self.acts == "sliced"

    @property
    def walk_geom(self) -> ConvGeometry:
        """The geometry the walk sees: the layer's, or for a sliced linear layer one channel
        block per pixel."""
        g = self.low.geom
        if not self.sliced:
            return g
        return linear_geometry(g.p, min(g.channels, self.cfg.k_per_pass))

    def slice_load(self, index: int, block: int) -> int:
        """A sliced layer's slice loads before channel block ``block`` of block ``index``: they
        alternate between two regions of ``p_block`` rows and two tags."""
        return index * self.c_blocks + block

    def slice_base(self, index: int, block: int) -> int:
        g, _, pb = self.locate(index)
        return self.slice_load(index, block) % 2 * self.p_block - self.block_first(pb, g)

    @property
    def order(self) -> str:
        if self.col_block == 1:
            return "ws" if self.p_blocks == 1 else "p-block"
        return "col-block"

    @functools.cached_property
    def c_blocks(self) -> int:
        return self.low.c_blocks(self.cfg)

    @functools.cached_property
    def col_tiles(self) -> int:
        return -(-self.low.cols // self.cfg.cols)

    @functools.cached_property
    def col_blocks(self) -> int:
        return -(-self.col_tiles // self.col_block)

    @property
    def stack(self) -> int:
        return self.low.stack

    @functools.cached_property
    def blocks(self) -> int:
        return self.stack * self.col_blocks * self.p_blocks

    def locate(self, index: int) -> tuple[int, int, int]:
        """``(stacked GEMM, column block, P block)`` of block ``index``: the stacked GEMMs
        one after the other, each a column block x P block loop."""
        g, rest = divmod(index, self.col_blocks * self.p_blocks)
        return (g, *divmod(rest, self.p_blocks))

    def block_cols(self, cb: int) -> int:
        """Column tiles in column block ``cb``."""
        return min(self.col_block, self.col_tiles - cb * self.col_block)

    def block_first(self, pb: int, g: int = 0) -> int:
        """First output pixel of P block ``pb`` of stacked GEMM ``g``."""
        return g * self.low.stack_p + pb * self.p_block

    def block_beats(self, pb: int) -> int:
        """Output pixels of P block ``pb`` (the last one takes the rest)."""
        return min(self.p_block, self.low.stack_p - pb * self.p_block)

    def footprint(self, pb: int, g: int = 0) -> tuple[int, int]:
        """Input pixels ``(lo, hi)`` P block ``pb`` of stacked GEMM ``g`` reads."""
        lo, hi = self._footprints[pb]
        shift = g * self.low.stack_p        # stacked GEMMs are linear: one pixel per row
        return lo + shift, hi + shift

    @functools.cached_property
    def _footprints(self) -> tuple[tuple[int, int], ...]:
        return tuple(footprint(self.low.geom, self.block_first(pb), self.block_beats(pb))
                     for pb in range(self.p_blocks))

    def passes_of(self, col_tile: int) -> tuple[tuple[int, int, int], ...]:
        """The K passes ``(k_pass, offset, block)`` of column tile ``col_tile`` in K order
        (without groups the same for every column tile)."""
        return _tile_passes(self.cfg, self.low, col_tile if self.low.groups > 1 else 0)

    @property
    def passes(self) -> int:
        """K passes of the column tile with the most."""
        if self.low.groups == 1:
            return len(self.passes_of(0))
        return max(len(self.passes_of(c)) for c in range(self.col_tiles))

    def block_tile_count(self, cb: int) -> int:
        """Tiles of column block ``cb`` (the ones that exist)."""
        if self.low.groups == 1:
            return self._passes * self.block_cols(cb)
        return len(self.block_tiles(cb))

    @functools.cached_property
    def _passes(self) -> int:
        return len(self.passes_of(0))

    def block_tiles(self, cb: int) -> tuple[tuple[int, int, int, int], ...]:
        """The tiles of column block ``cb`` in loop order: ``(k_pass, col_tile, offset,
        block)``, K pass outer."""
        return _block_tiles(self.cfg, self.low, self.col_block, cb,
                            self.block_cols(cb))

    def store_cols(self, cb: int) -> list[int]:
        """The column tiles of column block ``cb`` in the order of their STOREs (after each
        one's last K pass)."""
        if self.low.groups == 1:
            return list(range(cb * self.col_block, cb * self.col_block + self.block_cols(cb)))
        tiles = self.block_tiles(cb)
        last = {c: k for k, c, _, _ in tiles}
        return [c for k, c, _, _ in tiles if last[c] == k]

    def scale_loads(self) -> int:
        """LOAD_SCALEs of the program: one per STORE, unless the STORE before was of the same
        column tile (a column block of one tile: its P blocks after the first; column blocks
        hold disjoint tiles)."""
        loads = 0
        for cb in range(self.col_blocks):
            cols = len(self.store_cols(cb))
            loads += self.p_blocks * cols - (self.p_blocks - 1) * (cols == 1)
        return loads * self.stack

    @property
    def layer_tiles(self) -> int:
        """Weight tiles of the layer (the ones that exist)."""
        if self.low.groups == 1:
            return len(self.passes_of(0)) * self.col_tiles
        return sum(len(self.passes_of(c)) for c in range(self.col_tiles))

    @property
    def tiles(self) -> int:
        return self.stack * self.p_blocks * self.layer_tiles

    @property
    def beats(self) -> int:
        return self.layer_tiles * self.low.geom.p

    @property
    def span(self) -> int:
        """Input pixels from the first block's footprint to the last one's."""
        return self.footprint(self.p_blocks - 1)[1] - self.footprint(0)[0]

    def block_loads(self, index: int) -> tuple[int, int] | None:
        """Input pixels ``(first, count)`` block ``index`` loads (None: nothing): its footprint,
        or the part of it the blocks before have not loaded (resident and ring)."""
        g, cb, pb = self.locate(index)
        lo, hi = self.footprint(pb, g)
        if self.acts in ("resident", "ring") and pb:
            lo = max(lo, self.footprint(pb - 1, g)[1])
        if self.acts == "resident" and cb:
            return None
        return (lo, hi - lo) if hi > lo else None

    def act_base(self, index: int) -> int:
        """Scratchpad row of input pixel 0 for block ``index`` (modulo 2**ADDR_BITS; a ring
        wraps at the scratchpad's depth)."""
        g, cb, pb = self.locate(index)
        if self.acts == "resident":
            return 0
        if self.acts == "ring":     # column block c reads pixel p as ring pixel c*span + p
            return cb * self.span * self.c_blocks % self.region
        lo, _ = self.footprint(pb, g)
        return (index % 2) * self.region * (self.acts == "double") - lo * self.c_blocks

    def weight_loads_before(self, index: int) -> int:
        """LOAD_WEIGHTs in the blocks before block ``index``."""
        g, cb, pb = self.locate(index)
        before, total = self._tile_prefix[cb], self._tile_prefix[-1]
        per = self.block_tile_count(cb)
        if self.weights_resident:
            return g * total + before + (per if pb else 0)
        return self.p_blocks * (g * total + before) + pb * per

    @functools.cached_property
    def _tile_prefix(self) -> tuple[int, ...]:
        """Tiles of the column blocks before each (and of all, last)."""
        out = [0]
        for c in range(self.col_blocks):
            out.append(out[-1] + self.block_tile_count(c))
        return tuple(out)


@functools.lru_cache(maxsize=1 << 14)
def _tile_passes(cfg: ArrayConfig, low: Lowering, col_tile: int) -> tuple[tuple[int, int, int],
                                                                          ...]:
    return tuple(low.tile_passes(cfg, col_tile))


@functools.lru_cache(maxsize=256)
def _block_tiles(cfg: ArrayConfig, low: Lowering, col_block: int, cb: int,
                 cols: int) -> tuple[tuple[int, int, int, int], ...]:
    first = cb * col_block
    if low.groups == 1:
        return tuple((k, c, o, b) for k, o, b in _tile_passes(cfg, low, 0)
                     for c in range(first, first + cols))
    return tuple(sorted(((k, c, o, b) for c in range(first, first + cols)
                         for k, o, b in _tile_passes(cfg, low, c)), key=lambda x: (x[0], x[1])))


@functools.lru_cache(maxsize=1 << 10)
def _pixel_bytes(cfg: ArrayConfig, channels: int) -> int:
    """Off-chip bytes of one pixel (its ``C_blocks`` rows' real channels)."""
    return sum(isa.act_row_bytes(cfg, channels, r)
               for r in range(isa.act_rows_per_pixel(cfg, channels)))


@functools.lru_cache(maxsize=1 << 12)
def tiling_bytes(t: Tiling, *, raw: bool = False) -> Traffic:
    """The bytes the tiling's program moves between DRAM and the accelerator, by kind: exactly
    the sum over its instructions (LOAD_ACT rows' real channels, whole weight rows of every
    LOAD_WEIGHT (values only for dense phases), one LOAD_SCALE row per STORE, STORE rows of
    ``cols`` outputs)."""
    cfg = t.cfg
    # every stacked GEMM and every column block loads alike (resident: the first only)
    pixels = sum(got[1] for i in range(t.p_blocks) if (got := t.block_loads(i)) is not None)
    pixels *= t.stack * (1 if t.acts_resident else t.col_blocks)
    w_values = isa.weight_values_bytes(cfg)
    # dense phases load values only (the loader writes their fixed indices)
    w_meta = 0 if t.low.values_only else isa.data_in_bytes(cfg, Opcode.LOAD_WEIGHT) - w_values
    loads = t.stack * t.layer_tiles * (1 if t.weights_resident else t.p_blocks) * cfg.rows
    return Traffic(act=pixels * _pixel_bytes(cfg, t.low.geom.channels),
                   weight=loads * w_values, metadata=loads * w_meta,
                   scale=t.scale_loads() * isa.data_in_bytes(cfg, Opcode.LOAD_SCALE),
                   out=t.low.geom.p * t.col_tiles * isa.data_out_bytes(cfg, raw))


# ---- candidates ------------------------------------------------------------------------------
