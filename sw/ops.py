"""The scheduler's operations: what :func:`sparsa.sw.schedule.iter_block_ops` yields for each
block of a tiled layer and :mod:`sparsa.sw.assemble` turns into instructions (one path from the
scheduler to the accelerator program, which the RTL runs and the cost model costs).

The operations are small and frozen. Indices name the layer's tiles: ``group`` (one of a
matmul's stacked GEMMs), ``p_block`` (a run of output pixels), ``col_tile`` (``cols`` output
channels) and the K pass ``(offset, block, phase)``: kernel
offset index ``i*kw + j``, channel block (``K_pass`` input channels) and phase (``m/n`` phases
for a dense layer on sparse hardware, else 0), numbered ``k_pass = (offset*C_blocks + block) *
phases + phase`` (the order the weights are packed in).

``Configure``       the CONFIG of the layer's im2col geometry (once, before everything).
``LoadActs``        DRAM -> activation scratchpad: input pixels ``first .. first+pixels-1``
                    (``C_blocks`` rows each) of P block ``p_block``'s footprint, with its
                    region's tag. A block's footprint may come in several chunks. A sliced
                    linear layer loads one channel block (``slice``, one row per pixel).
``LoadWeights``     DRAM -> weight scratchpad: one weight tile (values and index metadata).
``PreloadWeights``  weight scratchpad -> the PEs' shadow bank (``rows`` beats, overlaps compute).
``Compute``         one K pass of one column tile over a P block's ``beats`` output pixels, the
                    first beat swapping in the preloaded tile; ``accumulate`` adds the
                    accumulator rows (every pass but the column tile's first).
``Store``           accumulator scratchpad -> DRAM, requantized: ``beats`` rows of one column tile,
                    after a LOAD_SCALE of its scale row unless the previous STORE was of the
                    same column tile (``scale`` false: the register still holds it).

Every ``Compute`` is one tile of the tile cycle contract (:mod:`sparsa.sw.timing`). Data moves
that appear between ``Compute`` ``t`` and ``Compute`` ``t+1`` run while tile ``t`` streams
(double-buffered scratchpads); those before the first ``Compute`` are the program's fill.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

__all__ = ["Compute", "Configure", "LoadActs", "LoadWeights", "Op", "PreloadWeights", "Store"]


@dataclass(frozen=True)
class Configure:
    opcode: ClassVar[str] = "configure"


@dataclass(frozen=True)
class LoadActs:
    opcode: ClassVar[str] = "load_acts"
    block: int          # the block (program order) whose activations these are
    p_block: int
    first: int          # first input pixel (flattened (n*H + y)*W + x)
    pixels: int
    tag: int
    slice: int | None = None    # a sliced layer's channel block (K_pass channels per row)


@dataclass(frozen=True)
class LoadWeights:
    opcode: ClassVar[str] = "load_weights"
    col_tile: int
    k_pass: int
    slot: int           # weight scratchpad slot (of ``rows`` rows)
    group: int = 0      # the stacked GEMM (a matmul's batch x head) whose weights


@dataclass(frozen=True)
class PreloadWeights:
    opcode: ClassVar[str] = "preload_weights"
    col_tile: int
    k_pass: int
    slot: int


@dataclass(frozen=True)
class Compute:
    opcode: ClassVar[str] = "compute"
    p_block: int
    col_tile: int
    k_pass: int
    offset: int         # kernel offset index i*kw + j
    block: int          # channel block
    beats: int
    accumulate: bool
    tag: int
    first: int = 0      # first output pixel
    base: int = 0       # scratchpad row of input pixel 0 (modulo 2**ADDR_BITS)


@dataclass(frozen=True)
class Store:
    opcode: ClassVar[str] = "store"
    p_block: int
    col_tile: int
    beats: int
    scale: bool = True
    first: int = 0      # first output pixel
    group: int = 0      # the stacked GEMM


Op = Configure | LoadActs | LoadWeights | PreloadWeights | Compute | Store
