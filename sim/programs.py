"""Random accelerator programs for tests (ISA v2): GEMMs and convolutions tiled by hand into
instructions + data beats, each with an independent expectation.

* :func:`gemm_program`: a linear layer ``X (P, K) . W``, the 1x1 conv of
  :func:`sparsa.im2col.linear_geometry`: one CONFIG, the activations as NHWC pixel rows (one
  LOAD_ACT with ``channels = K``), one COMPUTE per (column tile, K pass). Two loop orders:
  ``k_inner`` (for each column tile all K passes back to back: accumulation chains on the same
  accumulator rows) and ``cols_inner`` (for each K pass all column tiles: consecutive COMPUTEs
  write different rows). Its :meth:`GemmProgram.reference` is a dense matmul.
* :func:`conv_program`: a convolution in P blocks, each block's input footprint loaded into one
  of two activation regions with alternating hazard tags (the next block's LOAD_ACT placed among
  the current block's COMPUTEs), K passes over (kernel offset, channel block), several column
  tiles, grouped/depthwise convs (block-diagonal weight tiles; tiles with no common group
  skipped) and dense layers on sparse hardware (``m/n`` phases: weight tiles with fixed indices
  over the same activations). Its :meth:`ConvProgram.reference` is a direct convolution.

Weights are N:M (or dense), activations over the full int8 range; scales random, so STORE
exercises requantization and ReLU. Every STORE is recorded (:class:`Placement`) so
:meth:`AccelProgram.collect` reassembles the ``data_out`` rows into output matrices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparsa import im2col, isa, nm
from sparsa.config import ADDR_BITS, ArrayConfig
from sparsa.im2col import ConvGeometry
from sparsa.isa import Instruction, Opcode

from .stimulus import random_acts, random_conv_weights, random_nm_weights

__all__ = ["AccelProgram", "ConvPass", "ConvProgram", "GemmProgram", "Placement", "act_rows",
           "conv_program", "direct_conv", "gemm_program", "psum_rows", "random_conv_program",
           "random_gemm_program", "weight_rows"]

ORDERS = ("k_inner", "cols_inner")
_MASK = (1 << ADDR_BITS) - 1


@dataclass(frozen=True)
class Placement:
    """Where the rows of one STORE go: output rows ``first ..`` (``count``), columns
    ``col ..`` (one column tile), requantized or ``raw``."""

    first: int
    count: int
    col: int
    raw: bool


@dataclass(frozen=True)
class AccelProgram:
    program: list[Instruction]
    data_in: list[int]
    stores: tuple[Placement, ...]   # one per STORE, in program order
    shape: tuple[int, int]          # (output rows, output columns) of the result

    def collect(self, outputs, cols: int) -> tuple[np.ndarray, np.ndarray]:
        """``(requantized, raw)`` output matrices of :attr:`shape` from the ``data_out`` rows
        (``cols`` per row; the padded columns of the last tile are dropped)."""
        outs = {False: np.zeros(self.shape, dtype=np.int64),
                True: np.zeros(self.shape, dtype=np.int64)}
        rows = iter(outputs)
        for st in self.stores:
            block = np.array([next(rows) for _ in range(st.count)], dtype=np.int64)
            width = min(cols, self.shape[1] - st.col)
            outs[st.raw][st.first:st.first + st.count, st.col:st.col + width] = block[:, :width]
        if next(rows, None) is not None:
            raise ValueError("more data_out rows than the program's STOREs")
        return outs[False], outs[True]


@dataclass(frozen=True)
class GemmProgram(AccelProgram):
    x: np.ndarray
    w: np.ndarray
    psum0: np.ndarray       # initial accumulators (LOAD_ACC), zero when the first pass overwrites
    bias: np.ndarray        # per column, added by STORE
    mult: np.ndarray
    shift: np.ndarray
    relu: bool

    def reference(self, acc_width: int, act_width: int) -> tuple[np.ndarray, np.ndarray]:
        """Independent expectation: (requantized, raw) = dense matmul + initial accumulators +
        bias, wrapped."""
        raw = nm.gemm_dense(self.x, self.w, self.psum0 + self.bias[None, :],
                            acc_width=acc_width)
        return nm.requantize(raw, self.mult, self.shift, relu=self.relu,
                             out_width=act_width), raw


def _scales(rng: np.random.Generator, columns: int, *, tiles: int, cols: int):
    """Random bias, multiplier and shift per column, zero on the padded columns."""
    b, mult, shift = (np.zeros(tiles * cols, dtype=np.int64) for _ in range(3))
    b[:columns] = rng.integers(-(1 << 31), 1 << 31, size=columns)
    mult[:columns] = rng.integers(1, 1 << 15, size=columns)
    shift[:columns] = rng.integers(8, 24, size=columns)
    return b, mult, shift


def act_rows(cfg: ArrayConfig, pixels: np.ndarray) -> list[int]:
    """Pixels ``(count, channels)`` -> their NHWC scratchpad rows (``C_blocks`` per pixel, the
    last block zero-padded), packed."""
    kp = cfg.k_per_pass
    blocks = -(-pixels.shape[1] // kp)
    padded = np.zeros((pixels.shape[0], blocks * kp), dtype=np.int64)
    padded[:, :pixels.shape[1]] = pixels
    return [isa.pack_act_row(cfg, row) for row in padded.reshape(-1, kp)]


def weight_rows(cfg: ArrayConfig, packed: nm.CompressedNM, phase: int = 0) -> list[int]:
    """A compressed weight tile -> its ``rows`` weight scratchpad rows (one PE row each), or
    with ``phase`` (a dense phase's LOAD_WEIGHT, :mod:`sparsa.isa`) their values only."""
    if phase:
        return [isa.pack_weight_row(cfg, packed.values[r]) for r in range(cfg.rows)]
    return [isa.pack_weight_row(cfg, packed.values[r], packed.indices[r])
            for r in range(cfg.rows)]


def gemm_program(cfg: ArrayConfig, rng: np.random.Generator, *, p: int, passes: int,
                 col_tiles: int, order: str = "k_inner", load_acc: bool = True,
                 relu: bool = False, zero_fraction: float = 0.0, tag: int = 0) -> GemmProgram:
    """``load_acc``: start from random accumulators loaded with LOAD_ACC (every pass
    accumulates); otherwise the first K pass overwrites. ``zero_fraction``: activations set to
    zero at random (ReLU-like activation sparsity, for the zero-gating counter). ``tag``: the
    hazard tag of the activations."""
    if order not in ORDERS:
        raise ValueError(f"order must be 'k_inner' or 'cols_inner', not {order!r}")
    kp, cols = cfg.k_per_pass, cfg.cols
    k = kp * passes - (int(rng.integers(0, cfg.m)) if passes > 1 else 0)
    w = random_nm_weights(rng, k, cols * col_tiles, cfg.n, cfg.m, width=cfg.weight_width)
    x = random_acts(rng, p, k, width=cfg.act_width)
    if zero_fraction:
        x = np.where(rng.random(x.shape) < zero_fraction, 0, x)
    b, mult, shift = _scales(rng, cols * col_tiles, tiles=col_tiles, cols=cols)
    psum0 = rng.integers(-(1 << 31), 1 << 31, size=(p, cols * col_tiles)) if load_acc else \
        np.zeros((p, cols * col_tiles), dtype=np.int64)
    wp = np.zeros((passes * kp, cols * col_tiles), dtype=np.int64)
    wp[:k] = w
    geom = im2col.linear_geometry(p, k)

    # Activations: pixel q's block j at q*passes + j; weight tile (c, j) at (c*passes + j)*rows;
    # accumulators of column tile c at c*p.
    prog = [im2col.config_instruction(cfg, geom),
            Instruction(Opcode.LOAD_ACT, addr=0, count=passes * p, channels=k, tag=tag,
                        pixels=p)]
    data = act_rows(cfg, x)
    if load_acc:
        prog.append(Instruction(Opcode.LOAD_ACC, acc_addr=0, count=col_tiles * p))
        for c in range(col_tiles):
            data += [isa.pack_psum_row(cfg, row) for row in psum0[:, c * cols:(c + 1) * cols]]
    for c in range(col_tiles):
        for j in range(passes):
            packed = nm.pack_nm(wp[j * kp:(j + 1) * kp, c * cols:(c + 1) * cols], cfg.n, cfg.m)
            prog.append(Instruction(Opcode.LOAD_WEIGHT, addr=(c * passes + j) * cfg.rows,
                                    count=cfg.rows))
            data += weight_rows(cfg, packed)
    steps = [(c, j) for c in range(col_tiles) for j in range(passes)] if order == "k_inner" \
        else [(c, j) for j in range(passes) for c in range(col_tiles)]
    for c, j in steps:
        walk = im2col.compute_fields(cfg, geom, base=0, first=0, offset=(0, 0), block=j)
        prog.append(Instruction(Opcode.PRELOAD, addr=(c * passes + j) * cfg.rows))
        prog.append(Instruction(Opcode.COMPUTE, acc_addr=c * p, count=p,
                                accumulate=load_acc or j > 0, tag=tag, **walk))
    stores = []
    for c in range(col_tiles):
        prog.append(Instruction(Opcode.LOAD_SCALE))
        sl = slice(c * cols, (c + 1) * cols)
        data.append(isa.pack_scale_row(cfg, mult[sl], shift[sl], b[sl]))
        for raw in (False, True):
            prog.append(Instruction(Opcode.STORE, acc_addr=c * p, count=p, relu=relu and not raw,
                                    raw=raw, channels=cols))
            stores.append(Placement(0, p, c * cols, raw))
    return GemmProgram(program=prog, data_in=data, stores=tuple(stores),
                       shape=(p, cols * col_tiles), x=x, w=w, psum0=psum0, bias=b, mult=mult,
                       shift=shift, relu=relu)


def random_gemm_program(cfg: ArrayConfig, rng: np.random.Generator, *, order: str,
                        max_beats: int | None = None, zero_fraction: float = 0.0
                        ) -> GemmProgram:
    """A :func:`gemm_program` of random size (1-3 K passes, 1-2 column tiles, up to
    ``max_beats`` rows, default three times rows + cols) that fits the scratchpads, with random
    ReLU, accumulator initialisation and tag."""
    depth = cfg.scratchpad_rows
    passes = int(rng.integers(1, 4))
    col_tiles = int(rng.integers(1, 3))
    if col_tiles * passes * cfg.rows > depth["weight"]:
        col_tiles = passes = 1
    limit = min(max_beats or 3 * (cfg.rows + cfg.cols), depth["act"] // passes,
                depth["acc"] // col_tiles)
    if limit < 1:
        raise ValueError(f"the scratchpads of {cfg} cannot hold a single-beat program")
    return gemm_program(cfg, rng, p=int(rng.integers(1, limit + 1)), passes=passes,
                        col_tiles=col_tiles, order=order, relu=bool(rng.integers(0, 2)),
                        load_acc=bool(rng.integers(0, 2)), zero_fraction=zero_fraction,
                        tag=int(rng.integers(0, 2)))


# ---- convolutions ---------------------------------------------------------------------------

def direct_conv(x: np.ndarray, w: np.ndarray, stride: tuple[int, int],
                padding: tuple[int, int]) -> np.ndarray:
    """``x (N, H, W, C) * w (kh, kw, C, Cout)`` as a plain int64 convolution (``padding``
    zeros on every side, the output size of :class:`~sparsa.im2col.ConvGeometry`), one kernel
    offset at a time over the strided windows of the padded input; ``(N, Ho, Wo, Cout)``.
    Independent of im2col and of the walk."""
    n, h, wd, c = x.shape
    kh, kw, _, cout = w.shape
    (sh, sw), (ph, pw) = stride, padding
    ho, wo = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    xp = np.zeros((n, h + 2 * ph, wd + 2 * pw, c), dtype=np.int64)
    xp[:, ph:ph + h, pw:pw + wd] = x
    out = np.zeros((n, ho, wo, cout), dtype=np.int64)
    for i in range(kh):
        for j in range(kw):
            window = xp[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
            out += np.einsum("nyxc,co->nyxo", window, w[i, j].astype(np.int64))
    return out


@dataclass(frozen=True)
class ConvPass:
    """What one COMPUTE of a :class:`ConvProgram` does: output pixels ``first ..`` (``count``)
    at kernel ``offset``, channel ``block``, with weight tile ``weights``."""

    first: int
    count: int
    offset: tuple[int, int]
    block: int
    weights: nm.CompressedNM


@dataclass(frozen=True)
class ConvProgram(AccelProgram):
    geometry: ConvGeometry
    x: np.ndarray           # (N, H, W, C)
    w: np.ndarray           # (kh, kw, C, Cout)
    psum0: np.ndarray       # (P, Cout) initial accumulators (LOAD_ACC) or zeros
    bias: np.ndarray        # per output channel (padded to whole column tiles)
    mult: np.ndarray
    shift: np.ndarray
    relu: bool
    groups: int = 1
    dense: bool = False     # weights not N:M: run as m/n phases on sparse hardware
    passes: tuple[ConvPass, ...] = ()   # one per COMPUTE, in program order

    def reference(self, acc_width: int, act_width: int) -> tuple[np.ndarray, np.ndarray]:
        """Independent expectation: (requantized, raw) ``(P, Cout)`` = the direct convolution
        (:func:`direct_conv`) + initial accumulators + bias, wrapped to ``acc_width`` bits."""
        g = self.geometry
        cout = self.w.shape[3]
        conv = direct_conv(self.x, self.w, g.stride, g.padding).reshape(-1, cout)
        raw = nm.wrap(conv + self.psum0 + self.bias[None, :cout], acc_width)
        return nm.requantize(raw, self.mult[:cout], self.shift[:cout], relu=self.relu,
                             out_width=act_width), raw


def _phases(cfg: ArrayConfig, dense: bool) -> int:
    """Weight tiles per K pass: ``ceil(m/n)`` for dense weights on sparse hardware, else 1."""
    return -(-cfg.m // cfg.n) if dense and not cfg.is_dense else 1


def _tile_passes(cfg: ArrayConfig, kernel: tuple[int, int], channels: int, out_channels: int,
                 groups: int) -> dict[int, list[tuple[int, int, int]]]:
    """Per column tile, its K passes ``(i, j, block)`` in K order, without the ones whose
    channel block and columns share no conv group."""
    kp, cols = cfg.k_per_pass, cfg.cols
    cin_g, cout_g = channels // groups, out_channels // groups
    out: dict[int, list[tuple[int, int, int]]] = {}
    for t in range(-(-out_channels // cols)):
        col_groups = {o // cout_g for o in range(t * cols, min(out_channels, (t + 1) * cols))}
        out[t] = [(i, j, b) for i in range(kernel[0]) for j in range(kernel[1])
                  for b in range(-(-channels // kp))
                  if col_groups & {ch // cin_g for ch in range(b * kp, min(channels,
                                                                           (b + 1) * kp))}]
    return out


def _weight_tiles(cfg: ArrayConfig, w: np.ndarray, *, groups: int, dense: bool
                  ) -> dict[int, list[tuple[tuple[int, int, int], nm.CompressedNM]]]:
    """Per column tile, its weight tiles in K order: ``((i, j, block), packed)``, one per phase
    (:func:`_phases`) of every pass of :func:`_tile_passes`."""
    kh, kw, c, cout = w.shape
    kp, cols = cfg.k_per_pass, cfg.cols
    cb, tiles = -(-c // kp), -(-cout // cols)
    wp = np.zeros((kh, kw, cb * kp, tiles * cols), dtype=np.int64)
    wp[:, :, :c, :cout] = w
    phases = _phases(cfg, dense)
    out: dict[int, list] = {}
    for t, passes in _tile_passes(cfg, (kh, kw), c, cout, groups).items():
        out[t] = []
        for i, j, b in passes:
            tile = wp[i, j, b * kp:(b + 1) * kp, t * cols:(t + 1) * cols]
            out[t] += [((i, j, b), nm.pack_phase(tile, cfg.n, cfg.m, q) if phases > 1 else
                        nm.pack_nm(tile, cfg.n, cfg.m)) for q in range(phases)]
    return out


def _p_blocks(p: int, size: int) -> list[tuple[int, int]]:
    return [(f, min(size, p - f)) for f in range(0, p, size)]


def _region_rows(cfg: ArrayConfig, geom: ConvGeometry, p_block: int) -> int:
    """Scratchpad rows of the largest P block's footprint."""
    cb = geom.c_blocks(cfg)
    return max(hi - lo for lo, hi in (im2col.footprint(geom, f, n)
                                      for f, n in _p_blocks(geom.p, p_block))) * cb


def conv_program(cfg: ArrayConfig, rng: np.random.Generator, *, geometry: ConvGeometry,
                 out_channels: int, p_block: int, groups: int = 1, dense: bool = False,
                 order: str = "k_inner", load_acc: bool = True, relu: bool = False,
                 zero_fraction: float = 0.0, weights_upfront: bool = True) -> ConvProgram:
    """A convolution of random data in P blocks of ``p_block`` output pixels (module
    docstring). ``weights_upfront``: every weight tile loaded once at the start (they must
    fit), else each one just before its PRELOAD into a ring of three slots.
    ``load_acc``: every (P block, column tile) starts from random accumulators."""
    if order not in ORDERS:
        raise ValueError(f"order must be 'k_inner' or 'cols_inner', not {order!r}")
    geom = geometry
    geom.check(cfg)
    (h, wd), c = geom.in_size, geom.channels
    x = random_acts(rng, geom.images * h * wd, c, width=cfg.act_width)
    if zero_fraction:
        x = np.where(rng.random(x.shape) < zero_fraction, 0, x)
    w = random_conv_weights(rng, geom.kernel, c, out_channels, cfg.n, cfg.m, groups=groups,
                            dense=dense, width=cfg.weight_width)
    tiles = _weight_tiles(cfg, w, groups=groups, dense=dense)
    col_tiles = len(tiles)
    b, mult, shift = _scales(rng, out_channels, tiles=col_tiles, cols=cfg.cols)
    psum0 = rng.integers(-(1 << 31), 1 << 31, size=(geom.p, out_channels)) if load_acc else \
        np.zeros((geom.p, out_channels), dtype=np.int64)
    builder = _ConvBuilder(cfg, geom, rng, x=x, tiles=tiles, p_block=p_block, order=order,
                           load_acc=load_acc, psum0=psum0, upfront=weights_upfront,
                           phases=_phases(cfg, dense))
    builder.build(scales=(mult, shift, b), relu=relu, out_channels=out_channels)
    return ConvProgram(program=builder.prog, data_in=builder.data, stores=tuple(builder.stores),
                       shape=(geom.p, out_channels), geometry=geom, x=x.reshape(
                           geom.images, h, wd, c), w=w, psum0=psum0, bias=b, mult=mult,
                       shift=shift, relu=relu, groups=groups, dense=dense,
                       passes=tuple(builder.passes))


class _ConvBuilder:
    """Emits a conv program's instructions and data beats (see :func:`conv_program`)."""

    RING = 3   # weight slots when the tiles are loaded just in time

    def __init__(self, cfg, geom, rng, *, x, tiles, p_block, order, load_acc, psum0, upfront,
                 phases):
        self.cfg, self.geom, self.rng, self.x, self.tiles = cfg, geom, rng, x, tiles
        self.phases = phases
        self.order, self.load_acc, self.psum0, self.upfront = order, load_acc, psum0, upfront
        self.blocks = _p_blocks(geom.p, p_block)
        self.p_block = p_block
        self.region = _region_rows(cfg, geom, p_block)
        depth = cfg.scratchpad_rows
        ntiles = sum(len(v) for v in tiles.values())
        if 2 * self.region > depth["act"] or len(tiles) * p_block > depth["acc"]:
            raise ValueError(f"P blocks of {p_block} pixels of {geom} do not fit the "
                             f"scratchpads of {cfg}")
        if (ntiles if upfront else self.RING) * cfg.rows > depth["weight"]:
            raise ValueError(f"{ntiles if upfront else self.RING} weight tiles do not fit the "
                             f"weight scratchpad ({depth['weight']} rows)")
        self.acc_regions = 2 if 2 * len(tiles) * p_block <= depth["acc"] else 1
        self.slot = {}          # (column tile, tile index) -> weight row, when upfront
        self.ring = 0
        self.prog: list[Instruction] = []
        self.data: list[int] = []
        self.stores: list[Placement] = []
        self.passes: list[ConvPass] = []

    def emit(self, insn: Instruction, data=()) -> None:
        self.prog.append(insn)
        self.data += data

    def load_block(self, q: int) -> None:
        """LOAD_ACT of P block ``q``'s footprint into region ``q % 2`` (tag ``q % 2``)."""
        first, count = self.blocks[q]
        lo, hi = im2col.footprint(self.geom, first, count)
        cb = self.geom.c_blocks(self.cfg)
        self.emit(Instruction(Opcode.LOAD_ACT, addr=(q % 2) * self.region, count=(hi - lo) * cb,
                              channels=self.geom.channels, tag=q % 2, pixels=hi - lo),
                  act_rows(self.cfg, self.x[lo:hi]))

    def base(self, q: int) -> int:
        lo, _ = im2col.footprint(self.geom, *self.blocks[q])
        return ((q % 2) * self.region - lo * self.geom.c_blocks(self.cfg)) & _MASK

    def acc_addr(self, q: int, t: int) -> int:
        return ((q % self.acc_regions) * len(self.tiles) + t) * self.p_block

    def steps(self) -> list[tuple[int, int]]:
        """(column tile, tile index) in the loop order."""
        if self.order == "k_inner":
            return [(t, k) for t, ts in self.tiles.items() for k in range(len(ts))]
        most = max(len(ts) for ts in self.tiles.values())
        return [(t, k) for k in range(most) for t, ts in self.tiles.items() if k < len(ts)]

    def load_weight(self, addr: int, t: int, k: int) -> None:
        """Tile ``k`` of column tile ``t`` into weight rows ``addr ..``: a dense phase's values
        only (LOAD_WEIGHT ``phase``), as the assembler loads them."""
        phase = k % self.phases + 1 if self.phases > 1 else 0
        self.emit(Instruction(Opcode.LOAD_WEIGHT, addr=addr, count=self.cfg.rows, phase=phase),
                  weight_rows(self.cfg, self.tiles[t][k][1], phase))

    def preload(self, t: int, k: int) -> None:
        rows = self.cfg.rows
        if self.upfront:
            addr = self.slot[t, k]
        else:
            addr, self.ring = (self.ring % self.RING) * rows, self.ring + 1
            self.load_weight(addr, t, k)
        self.emit(Instruction(Opcode.PRELOAD, addr=addr))

    def build(self, *, scales, relu: bool, out_channels: int) -> None:
        cfg, geom = self.cfg, self.geom
        self.emit(im2col.config_instruction(cfg, geom))
        if self.upfront:
            for t, ts in self.tiles.items():
                for k in range(len(ts)):
                    self.slot[t, k] = len(self.slot) * cfg.rows
                    self.load_weight(self.slot[t, k], t, k)
        self.load_block(0)
        for q, (first, count) in enumerate(self.blocks):
            steps = self.steps()
            next_at = int(self.rng.integers(0, len(steps) + 1))
            if self.load_acc:
                for t in self.tiles:
                    rows = self.psum0[first:first + count, t * cfg.cols:(t + 1) * cfg.cols]
                    self.emit(Instruction(Opcode.LOAD_ACC, acc_addr=self.acc_addr(q, t),
                                          count=count), psum_rows(cfg, rows))
            started = set()
            for s, (t, k) in enumerate(steps):
                if s == next_at and q + 1 < len(self.blocks):
                    self.load_block(q + 1)
                (i, j, block), packed = self.tiles[t][k]
                self.passes.append(ConvPass(first, count, (i, j), block, packed))
                walk = im2col.compute_fields(cfg, geom, base=self.base(q), first=first,
                                             offset=(i, j), block=block)
                self.preload(t, k)
                self.emit(Instruction(Opcode.COMPUTE, acc_addr=self.acc_addr(q, t), count=count,
                                      accumulate=self.load_acc or t in started, tag=q % 2,
                                      **walk))
                started.add(t)
            if next_at == len(steps) and q + 1 < len(self.blocks):
                self.load_block(q + 1)
            self.store_block(q, scales, relu, out_channels)

    def store_block(self, q: int, scales, relu: bool, out_channels: int) -> None:
        cfg = self.cfg
        first, count = self.blocks[q]
        mult, shift, b = scales
        for t in self.tiles:
            sl = slice(t * cfg.cols, (t + 1) * cfg.cols)
            self.emit(Instruction(Opcode.LOAD_SCALE),
                      [isa.pack_scale_row(cfg, mult[sl], shift[sl], b[sl])])
            for raw in (False, True):
                self.emit(Instruction(Opcode.STORE, acc_addr=self.acc_addr(q, t), count=count,
                                      relu=relu and not raw, raw=raw,
                                      channels=min(cfg.cols, out_channels - t * cfg.cols)))
                self.stores.append(Placement(first, count, t * cfg.cols, raw))


def psum_rows(cfg: ArrayConfig, rows: np.ndarray) -> list[int]:
    """Accumulator values ``(count, columns <= cols)`` -> accumulator rows (zero-padded)."""
    padded = np.zeros((rows.shape[0], cfg.cols), dtype=np.int64)
    padded[:, :rows.shape[1]] = rows
    return [isa.pack_psum_row(cfg, row) for row in padded]


def _random_geometry(cfg: ArrayConfig, rng: np.random.Generator) -> ConvGeometry:
    """Small random conv shapes: 1-2 images, 1-3 channel blocks (the last one partial at
    random), kernels 1-4 (mostly 1-3), strides 1-2, padding below the kernel."""
    kp = cfg.k_per_pass
    kh, kw = (int(v) for v in rng.choice([1, 2, 3, 3, 4], size=2))
    sh, sw = (int(v) for v in rng.integers(1, 3, size=2))
    ph, pw = int(rng.integers(0, kh)), int(rng.integers(0, kw))
    h = int(rng.integers(max(1, kh - 2 * ph), max(1, kh - 2 * ph) + 5))
    w = int(rng.integers(max(1, kw - 2 * pw), max(1, kw - 2 * pw) + 5))
    channels = int(rng.integers(1, 3 * kp + 1)) if rng.random() < 0.8 else \
        kp * int(rng.integers(1, 3))
    return ConvGeometry(images=int(rng.integers(1, 3)), in_size=(h, w), channels=channels,
                        kernel=(kh, kw), stride=(sh, sw), padding=(ph, pw))


def random_conv_program(cfg: ArrayConfig, rng: np.random.Generator, *, order: str | None = None,
                        max_beats: int | None = None, zero_fraction: float = 0.0,
                        dense: bool | None = None, grouped: bool | None = None,
                        max_computes: int = 120, max_compute_beats: int = 600) -> ConvProgram:
    """A :func:`conv_program` of random shape that fits the scratchpads and runs at most
    ``max_computes`` COMPUTEs of ``max_compute_beats`` beats in all (RTL simulation time): P
    blocks of up to ``max_beats`` output pixels (default three times rows + cols), 1-2 images,
    random kernel,
    stride, padding, channels and output channels (1-3 column tiles), random order, ReLU,
    accumulator initialisation and weight loading. ``dense``: dense weights (``m/n`` phases on
    sparse hardware); ``grouped``: a grouped or depthwise conv; None draws each at random."""
    dense = bool(rng.random() < 0.3) if dense is None else dense
    grouped = bool(rng.random() < 0.3) if grouped is None else grouped
    order = order or ORDERS[int(rng.integers(0, 2))]
    limit = max_beats or 3 * (cfg.rows + cfg.cols)
    depth = cfg.scratchpad_rows
    for _ in range(200):
        geom = _random_geometry(cfg, rng)
        cout = int(rng.integers(1, 3 * cfg.cols + 1))
        groups = 1
        if grouped:
            if rng.random() < 0.5:   # depthwise: one channel per group
                cout = geom.channels
            common = [g for g in range(2, geom.channels + 1)
                      if geom.channels % g == 0 and cout % g == 0]
            if not common:
                continue
            groups = geom.channels if cout == geom.channels and rng.random() < 0.7 else \
                int(rng.choice(common))
        col_tiles = -(-cout // cfg.cols)
        p_block = int(rng.integers(1, min(limit, geom.p) + 1))
        while p_block > 1 and (2 * _region_rows(cfg, geom, p_block) > depth["act"] or
                               col_tiles * p_block > depth["acc"]):
            p_block = (p_block + 1) // 2
        if 2 * _region_rows(cfg, geom, p_block) > depth["act"] or col_tiles > depth["acc"]:
            continue
        ntiles = _phases(cfg, dense) * sum(len(v) for v in _tile_passes(
            cfg, geom.kernel, geom.channels, cout, groups).values())
        if ntiles * geom.p > max_compute_beats or \
                ntiles * -(-geom.p // p_block) > max_computes:
            continue
        upfront = ntiles * cfg.rows <= depth["weight"] and bool(rng.random() < 0.7)
        if not upfront and _ConvBuilder.RING * cfg.rows > depth["weight"]:
            continue
        return conv_program(cfg, rng, geometry=geom, out_channels=cout, p_block=p_block,
                            groups=groups, dense=dense, order=order,
                            load_acc=bool(rng.integers(0, 2)), relu=bool(rng.integers(0, 2)),
                            zero_fraction=zero_fraction, weights_upfront=upfront)
    raise ValueError(f"no random conv fits the scratchpads of {cfg}")
