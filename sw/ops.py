"""The scheduler's operations: what :func:`sparsa.sw.schedule.iter_block_ops` yields for each
block of a tiled GEMM and :mod:`sparsa.sw.assemble` turns into instructions (one path from the
scheduler to the accelerator program, which the RTL runs and the cost model costs).

The operations are small and frozen. Indices name tiles of one layer's GEMM
(``group``, ``p_block``, ``col_tile``, ``k_pass``); byte counts are what crosses the off-chip port,
in the array's own layouts (an activation beat is ``rows * m`` activations, a weight tile is
``rows * cols * n`` values plus their ``ceil(log2 m)``-bit indices, an output row is ``cols``
requantized activations):

``LoadActs``        DRAM -> activation scratchpad: ``beats`` beats of one K pass of one P block.
``LoadWeights``     DRAM -> weight scratchpad: one weight tile (values and index metadata).
``PreloadWeights``  weight scratchpad -> the PEs' shadow bank (``rows`` beats, overlaps compute).
``Compute``         stream ``beats`` activation beats through the array; the first beat swaps in
                    the preloaded tile; ``accumulate`` adds the accumulator scratchpad through
                    ``psum_in`` (K passes after the first), otherwise ``psum_in`` is zero.
``Store``           accumulator scratchpad -> DRAM, requantized: ``beats`` rows of one column tile.

Every ``Compute`` is one tile of the tile cycle contract (:mod:`sparsa.sw.timing`). Data moves
that appear between ``Compute`` ``t`` and ``Compute`` ``t+1`` run while tile ``t`` streams
(double-buffered scratchpads); those before the first ``Compute`` are the program's fill.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

__all__ = ["Compute", "LoadActs", "LoadWeights", "Op", "PreloadWeights", "Store"]


@dataclass(frozen=True)
class LoadActs:
    opcode: ClassVar[str] = "load_acts"
    group: int
    p_block: int
    k_pass: int
    beats: int
    dram_bytes: int


@dataclass(frozen=True)
class LoadWeights:
    opcode: ClassVar[str] = "load_weights"
    group: int
    col_tile: int
    k_pass: int
    weight_bytes: int
    metadata_bytes: int

    @property
    def dram_bytes(self) -> int:
        return self.weight_bytes + self.metadata_bytes


@dataclass(frozen=True)
class PreloadWeights:
    opcode: ClassVar[str] = "preload_weights"
    group: int
    col_tile: int
    k_pass: int
    dram_bytes: ClassVar[int] = 0


@dataclass(frozen=True)
class Compute:
    opcode: ClassVar[str] = "compute"
    group: int
    p_block: int
    col_tile: int
    k_pass: int
    beats: int
    accumulate: bool
    dram_bytes: ClassVar[int] = 0


@dataclass(frozen=True)
class Store:
    opcode: ClassVar[str] = "store"
    group: int
    p_block: int
    col_tile: int
    beats: int
    dram_bytes: int


Op = LoadActs | LoadWeights | PreloadWeights | Compute | Store
