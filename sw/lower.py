"""Lowering: how each GEMM layer meets the array's on-chip im2col, and the bytes it must move.

Every GEMM layer becomes one :class:`Lowering`: a :class:`sparsa.im2col.ConvGeometry` (the walk's
view of the input), its output channels, its groups and how its weight tiles run.

* A ``conv2d`` runs on the on-chip im2col over its NHWC input: K passes are (kernel offset,
  channel block of ``K_pass = rows * m`` channels, phase). Exceptions:

  - a 1x1 conv without padding is a linear layer over the pixels it reads: with stride ``s``
    only every ``s``-th input row and column (a 2-D strided DMA load), so the rows it skips
    never cross DRAM;
  - an output larger than the floor formula's (SCALE-Sim's topologies pad the bottom/right
    implicitly) is given to the geometry (``ConvGeometry.out``): the walk's beats past the
    input's bottom/right edge are padding beats, like the top/left ones;
  - it is lowered as a linear layer over the host's im2col matrix (its DRAM bytes are that
    matrix's real bytes) when the walk cannot describe it (:meth:`ConvGeometry.check` raises:
    kernel, stride or padding too large), when it dilates, when the input rows one output
    pixel reads do not fit half the activation scratchpad, and for an ordinary
    (``groups == 1``) kxk conv with fewer than ``K_pass / 2`` input channels: such a stem (3
    channels) would spend ``kh * kw`` passes whose lanes are mostly zero, where its im2col
    matrix packs ``kh * kw * C`` real values into few passes, for a small input read ``kh * kw``
    times.
* ``linear`` and ``matmul`` layers are :func:`sparsa.im2col.linear_geometry` over their ``(P,
  K)`` input. A matmul's groups (batch x heads) are independent GEMMs, each with its own rows
  and its own (activation) weights: they are *stacked* along P (``stack``), group ``g`` the
  pixels ``g*P ..``, and run one after the other. Its producer (a softmax, a projection)
  writes K padded to whole channel blocks, so an LLM's decode steps, whose attention K grows
  by one token a step, share a program for ``K_pass`` steps.

**Groups** of a conv (grouped and depthwise) are one GEMM with block-diagonal weights over
``groups * C_g`` input channels: the tile of (K pass, column tile) exists only when the pass's
channel block and the tile's output channels share a group; the others are skipped (no weight
load, no compute).

**Weight tiles.** A tile is N:M (packed as is, one pass per (offset, block)) when the layer is
pruned to the hardware's pattern and its N:M groups fall on the array's lanes (``m`` consecutive
channels of one group at one offset: ``C_g`` a multiple of ``m``, or a linear layer without
groups), when a group has at most ``n`` input channels (a depthwise tile is N:M by construction,
whatever the pruning) and always on dense hardware. Otherwise the layer is dense on sparse
hardware: each (offset, block) runs ``ceil(m/n)`` *phases*, phase ``q`` holding the weights of
lanes ``q*n .. q*n+n-1`` of every group of ``m`` with those fixed indices.

**Causal attention** (a decoder's prefill): query ``q`` sees keys ``0 .. q`` only, so the
score and context GEMMs need only their lower triangle. :func:`causal_gemms` splits them into
GEMMs that each run as a program of their own: the queries in blocks of ``block`` rows; the
score GEMM as the squares (query block ``i``, key block ``j <= i``), the context GEMM as one GEMM
per query block over the keys it sees (``K`` = the keys up to its last query: the sums over
keys stay in one program's accumulators). The diagonal squares compute their masked upper half
too.

**Compulsory bytes** (:meth:`Lowering.compulsory`): the layer's input activations once, its
weights once (N:M values and index metadata for a pruned layer, dense values otherwise), one
scale/bias entry per output channel and its outputs once: what any schedule must move.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

from sparsa import isa
from sparsa.config import ArrayConfig
from sparsa.im2col import ConvGeometry, footprint, linear_geometry
from sparsa.models.graph import Gemm, Layer
from sparsa.nm import pattern_fits

__all__ = [
    "CAUSAL_CONTEXT_BLOCKS",
    "CAUSAL_SQUARES",
    "HostConv",
    "Lowering",
    "ScheduleError",
    "Traffic",
    "causal_blocks",
    "causal_gemms",
    "layer_runs_sparse",
    "linear_lowering",
    "lower_layer",
    "program_key",
]


class ScheduleError(ValueError):
    """A layer cannot be mapped onto the configuration (a buffer is too small)."""


@dataclass(frozen=True)
class Traffic:
    """Off-chip bytes by kind."""

    act: int = 0
    weight: int = 0
    metadata: int = 0
    scale: int = 0
    acc: int = 0
    out: int = 0

    @property
    def total(self) -> int:
        return self.act + self.weight + self.metadata + self.scale + self.acc + self.out

    def __add__(self, other: Traffic) -> Traffic:
        return Traffic(**{f.name: getattr(self, f.name) + getattr(other, f.name)
                          for f in dataclasses.fields(self)})


@dataclass(frozen=True)
class HostConv:
    """A conv whose input the host rearranges before the accelerator reads it (1x1 with
    stride: the pixels it reads; otherwise its im2col matrix)."""

    in_size: tuple[int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    out_size: tuple[int, int]


def _bytes(count: int, bits: int) -> int:
    return -(-count * bits // 8)


@dataclass(frozen=True)
class Lowering:
    """One GEMM layer on the array (module docstring)."""

    geom: ConvGeometry
    cols: int               # output channels, all groups
    groups: int = 1
    pruned: bool = False    # the layer's weights satisfy the hardware's N:M pattern
    nm_tiles: bool = True   # weight tiles are N:M as packed (else dense phases)
    phases: int = 1
    how: str = "linear"     # "on-chip im2col", "linear", "1x1 strided", "host im2col: ..."
    in_elements: int = 0    # the layer's input activations (compulsory bytes)
    k_group: int = 1        # K of one group in the layer's own order (compulsory bytes)
    source: HostConv | None = None   # the conv the host turns into this layer's input
    stack: int = 1          # independent GEMMs stacked along P (a matmul's batch x heads)

    @property
    def offsets(self) -> int:
        kh, kw = self.geom.kernel
        return kh * kw

    def c_blocks(self, cfg: ArrayConfig) -> int:
        return self.geom.c_blocks(cfg)

    @property
    def host_im2col(self) -> bool:
        return self.how.startswith("host im2col")

    @property
    def values_only(self) -> bool:
        """Dense phases whose LOAD_WEIGHTs carry the values only, the loader writing each
        phase's fixed indices (:mod:`sparsa.isa`, LOAD_WEIGHT ``phase``)."""
        return not self.nm_tiles and self.phases < 1 << isa.PHASE_BITS

    def load_phase(self, k_pass: int) -> int:
        """The ``phase`` field of K pass ``k_pass``'s LOAD_WEIGHT: its dense phase + 1, or 0
        (N:M tiles: rows with their indices)."""
        return k_pass % self.phases + 1 if self.values_only else 0

    def runs_sparse(self, cfg: ArrayConfig) -> bool:
        """Whether the weight tiles use the hardware's N:M (the report's pattern)."""
        return self.nm_tiles and cfg.n < cfg.m

    def tile_passes(self, cfg: ArrayConfig, col_tile: int) -> list[tuple[int, int, int]]:
        """The K passes ``(k_pass, offset, block)`` of column tile ``col_tile`` that exist, in K
        order (offset, block, phase)."""
        cb, kp, ph = self.c_blocks(cfg), cfg.k_per_pass, self.phases
        blocks = range(cb)
        if self.groups > 1:
            cin_g, cout_g = self.geom.channels // self.groups, self.cols // self.groups
            g_lo = col_tile * cfg.cols // cout_g
            g_hi = (min(self.cols, (col_tile + 1) * cfg.cols) - 1) // cout_g
            blocks = range(g_lo * cin_g // kp, ((g_hi + 1) * cin_g - 1) // kp + 1)
        return [((o * cb + b) * ph + q, o, b) for o in range(self.offsets) for b in blocks
                for q in range(ph)]

    @functools.cached_property
    def stack_p(self) -> int:
        """Output pixels of one stacked GEMM."""
        return self.geom.p // self.stack

    def required_macs(self, cfg: ArrayConfig) -> int:
        """Multiplies the layer needs: nonzero weights (N:M slots when pruned) x P."""
        k = min(self.k_group, -(-self.k_group // cfg.m) * cfg.n) if self.pruned else self.k_group
        return self.geom.p * self.cols * k

    def compulsory(self, cfg: ArrayConfig, *, raw: bool = False) -> Traffic:
        """The bytes any schedule of this layer moves (module docstring)."""
        cols = self.cols * self.stack          # every stacked GEMM has its own
        if self.pruned:
            slots = -(-self.k_group // cfg.m) * cfg.n * cols
            weight, meta = _bytes(slots, cfg.weight_width), _bytes(slots, cfg.index_width)
        else:
            weight, meta = _bytes(self.k_group * cols, cfg.weight_width), 0
        return Traffic(
            act=_bytes(self.in_elements, cfg.act_width), weight=weight, metadata=meta,
            scale=_bytes(cols, isa.SCALE_MULT_BITS + isa.SCALE_SHIFT_BITS + cfg.acc_width),
            out=_bytes(self.geom.p * self.cols, cfg.acc_width if raw else cfg.act_width))


def layer_runs_sparse(layer: Layer, cfg: ArrayConfig) -> bool:
    """Whether ``layer.nm`` fits the hardware pattern (``n':m'`` with ``m'`` dividing ``m`` and
    at most ``n`` nonzeros per group of ``m``). Layers without static weights never do."""
    if not layer.has_static_weight or layer.nm is None:
        return False
    return pattern_fits(layer.nm, (cfg.n, cfg.m))


def _tile_kind(cfg: ArrayConfig, pruned: bool, cin_g: int, aligned: bool) -> tuple[bool, int]:
    """``(nm_tiles, phases)`` (module docstring)."""
    if cfg.is_dense or cin_g <= cfg.n or (pruned and aligned):
        return True, 1
    return False, -(-cfg.m // cfg.n)


def linear_lowering(cfg: ArrayConfig, gemm: Gemm, *, pruned: bool, how: str = "linear",
                    in_elements: int | None = None, source: HostConv | None = None,
                    stacked: bool = True) -> Lowering:
    """``gemm.groups`` linear layers ``(P, K) . (K, cols)``: independent GEMMs stacked along P
    (``stacked``: a matmul's batch x heads, each with its own rows and weights), or the
    block-diagonal groups of one ``(P, groups * K)`` input (a grouped conv's im2col matrix)."""
    g = gemm.groups
    stack, groups = (g, 1) if stacked else (1, g)
    nm_tiles, phases = _tile_kind(cfg, pruned, gemm.k,
                                  aligned=groups == 1 or gemm.k % cfg.m == 0)
    return Lowering(geom=linear_geometry(stack * gemm.p, groups * gemm.k),
                    cols=groups * gemm.cols, groups=groups, pruned=pruned,
                    nm_tiles=nm_tiles, phases=phases, how=how,
                    in_elements=gemm.p * g * gemm.k if in_elements is None else in_elements,
                    k_group=gemm.k, source=source, stack=stack)


def _host_reason(cfg: ArrayConfig, geom: ConvGeometry, out: tuple[int, int],
                 dilation: tuple[int, int], groups: int) -> str | None:
    """Why the conv cannot use the on-chip im2col (None: it can)."""
    if dilation != (1, 1):
        return f"dilation {dilation[0]}x{dilation[1]}"
    try:
        geom.check(cfg)
    except ValueError as e:
        return str(e)
    if geom.out_size != out:
        return f"output {out[0]}x{out[1]} is smaller than the floor formula's"
    if groups == 1 and geom.kernel != (1, 1) and 2 * geom.channels < cfg.k_per_pass:
        return f"{geom.channels} input channels < K_pass/2"
    depth, cb = cfg.scratchpad_rows["act"], geom.c_blocks(cfg)
    lo, hi = footprint(geom, 0, geom.p)
    if (hi - lo) * cb > depth and min(geom.kernel[0], geom.in_size[0]) * geom.in_size[1] * cb \
            > depth // 2:
        return "the input rows of one output row exceed half the activation scratchpad"
    return None


def _conv_lowering(layer: Layer, cfg: ArrayConfig, pruned: bool) -> Lowering:
    n, c_in, h, w = layer.in_shape
    _, c_out, ho, wo = layer.out_shape
    a = layer.attrs
    kernel = tuple(a["kernel"])
    stride, padding = tuple(a.get("stride", (1, 1))), tuple(a.get("padding", (0, 0)))
    dilation, groups = tuple(a.get("dilation", (1, 1))), int(a.get("groups", 1))
    gemm = layer.gemm
    in_elements = n * c_in * h * w
    source = HostConv(in_size=(h, w), kernel=kernel, stride=stride, padding=padding,
                      out_size=(ho, wo))
    if kernel == (1, 1) and padding == (0, 0):
        sub = (-(-h // stride[0]), -(-w // stride[1]))     # the pixels it reads
        src = None if stride == (1, 1) else source
        if (ho, wo) == sub:
            return linear_lowering(cfg, gemm, pruned=pruned, in_elements=in_elements,
                                   how="1x1" if src is None else "1x1 strided", source=src,
                                   stacked=False)
        geom = ConvGeometry(images=n, in_size=sub, channels=c_in, out=(ho, wo))
        if ho >= sub[0] and wo >= sub[1] and \
                _host_reason(cfg, geom, (ho, wo), (1, 1), groups) is None:
            return _on_chip(cfg, geom, c_out, groups, pruned, in_elements, gemm.k, src)
    geom = ConvGeometry(images=n, in_size=(h, w), channels=c_in, kernel=kernel, stride=stride,
                        padding=padding)
    floor = geom.out_size
    if (ho, wo) != floor and ho >= floor[0] and wo >= floor[1]:
        geom = ConvGeometry(images=n, in_size=(h, w), channels=c_in, kernel=kernel,
                             stride=stride, padding=padding, out=(ho, wo))
    reason = _host_reason(cfg, geom, (ho, wo), dilation, groups)
    if reason is not None:
        return linear_lowering(cfg, gemm, pruned=pruned, how=f"host im2col: {reason}",
                               in_elements=in_elements, source=source, stacked=False)
    return _on_chip(cfg, geom, c_out, groups, pruned, in_elements, gemm.k, None)


def _on_chip(cfg: ArrayConfig, geom: ConvGeometry, c_out: int, groups: int, pruned: bool,
             in_elements: int, k_group: int, source: HostConv | None) -> Lowering:
    cin_g = geom.channels // groups
    nm_tiles, phases = _tile_kind(cfg, pruned, cin_g,
                                  aligned=cin_g % cfg.m == 0 or
                                  (geom.kernel == (1, 1) and groups == 1))
    return Lowering(geom=geom, cols=c_out, groups=groups, pruned=pruned, nm_tiles=nm_tiles,
                    phases=phases, how="on-chip im2col", in_elements=in_elements,
                    k_group=k_group, source=source)


def lower_layer(layer: Layer, cfg: ArrayConfig) -> Lowering | None:
    """The lowering of a GEMM layer (None for other layers)."""
    gemm = layer.gemm
    if gemm is None:
        return None
    pruned = layer_runs_sparse(layer, cfg)
    if layer.kind == "conv2d":
        return _conv_lowering(layer, cfg, pruned)
    if layer.kind == "matmul":     # its producer writes K padded to whole channel blocks
        low = linear_lowering(cfg, gemm, pruned=False, how="matmul")
        padded = low.c_blocks(cfg) * cfg.k_per_pass
        return dataclasses.replace(low, geom=linear_geometry(low.geom.p, padded))
    return linear_lowering(cfg, gemm, pruned=pruned)


# Causal attention: the context GEMM in about this many query blocks (each a program of its own
# K, so each costed on its own), the score GEMM in squares of one of this many sizes.
CAUSAL_CONTEXT_BLOCKS = 8
CAUSAL_SQUARES = 4


def causal_blocks(cfgs: tuple[ArrayConfig, ...], seq: int, role: str) -> list[int]:
    """The query block sizes to try for a causal attention GEMM of ``seq`` tokens on every
    configuration of ``cfgs`` (the design and its baseline). The context GEMM's: one, about
    ``seq / CAUSAL_CONTEXT_BLOCKS`` rows rounded up to whole K passes of every configuration
    (so no block's K is padded). The score GEMM's: squares of whole column tiles, the context
    block and up to ``CAUSAL_SQUARES - 1`` halvings of it (the caller keeps the fastest)."""
    align = math.lcm(*(c.k_per_pass for c in cfgs))
    block = min(seq, align * -(-seq // (CAUSAL_CONTEXT_BLOCKS * align)))
    if role != "scores":
        return [block]
    cols = cfgs[0].cols
    sizes = [cols << j for j in range(block.bit_length()) if cols << j < block]
    return [*sizes, block][-CAUSAL_SQUARES:]


def causal_gemms(gemm: Gemm, role: str, block: int) -> list[tuple[Gemm, int]]:
    """The GEMMs computing the lower triangle of a causal attention GEMM (``role`` "scores":
    ``groups x (S x d) . (d x S)``; "context": ``groups x (S x S) . (S x d)``) with query blocks
    of ``block`` rows, each with the number of times it runs (module notes)."""
    seq = gemm.p
    if (gemm.cols if role == "scores" else gemm.k) != seq:
        raise ValueError(f"a causal {role} GEMM has as many keys as queries, not {gemm}")
    sizes = [min(block, seq - i) for i in range(0, seq, block)]
    out: dict[Gemm, int] = {}
    for i, rows in enumerate(sizes):
        if role == "scores":
            for keys in sizes[:i + 1]:
                g = Gemm(p=rows, k=gemm.k, cols=keys, groups=gemm.groups)
                out[g] = out.get(g, 0) + 1
        else:
            out[Gemm(p=rows, k=sum(sizes[:i + 1]), cols=gemm.cols, groups=gemm.groups)] = 1
    return list(out.items())


def program_key(low: Lowering, cfg: ArrayConfig) -> Lowering:
    """``low`` with what its programs do not depend on blanked: how and why it was lowered,
    its compulsory-byte figures and (without groups) the exact column count within the last
    column tile. Equal keys, equal programs (and tilings)."""
    cols = low.cols if low.groups > 1 else -(-low.cols // cfg.cols) * cfg.cols
    return dataclasses.replace(low, cols=cols, pruned=False, nm_tiles=low.phases == 1, how="",
                               in_elements=0, k_group=1, source=None)
