"""The accelerator program: the scheduler's output, run by the RTL and costed by the cost model.

A program is a flat sequence of small frozen operations. Indices name tiles of one layer's GEMM
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

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = ["OPS", "Compute", "LoadActs", "LoadWeights", "Op", "PreloadWeights", "Program",
           "Store", "ops_from_json", "ops_to_json"]


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
OPS: dict[str, type] = {cls.opcode: cls for cls in (LoadActs, LoadWeights, PreloadWeights,
                                                      Compute, Store)}


def _op_to_dict(op: Op) -> dict[str, Any]:
    return {"op": op.opcode, **dataclasses.asdict(op)}


def _op_from_dict(values: dict[str, Any]) -> Op:
    if not isinstance(values, dict) or "op" not in values:
        raise ValueError(f"program operation must be an object with an 'op' key, not {values!r}")
    values = dict(values)
    name = values.pop("op")
    if name not in OPS:
        raise ValueError(f"unknown program operation {name!r}; expected one of {', '.join(OPS)}")
    cls = OPS[name]
    fields = {f.name for f in dataclasses.fields(cls)}
    if set(values) != fields:
        raise ValueError(f"operation {name!r} needs fields {sorted(fields)}, got {sorted(values)}")
    return cls(**values)


def ops_to_json(ops: Iterable[Op]) -> str:
    return json.dumps([_op_to_dict(op) for op in ops])


def ops_from_json(text: str) -> list[Op]:
    values = json.loads(text)
    if not isinstance(values, list):
        raise ValueError("a program in JSON is a list of operations")
    return [_op_from_dict(v) for v in values]


@dataclass(frozen=True)
class Program:
    """The operations of one layer, with the configuration they were scheduled for (as JSON)."""

    layer: str
    config_json: str
    ops: tuple[Op, ...]

    def to_json(self) -> str:
        return json.dumps({"layer": self.layer, "config": json.loads(self.config_json),
                           "ops": [_op_to_dict(op) for op in self.ops]})

    @classmethod
    def from_json(cls, text: str) -> Program:
        values = json.loads(text)
        return cls(layer=values["layer"], config_json=json.dumps(values["config"], sort_keys=True),
                   ops=tuple(_op_from_dict(v) for v in values["ops"]))
