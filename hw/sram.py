"""Area of the accelerator's scratchpad SRAMs, from a table of CACTI 7.0 results.

The accelerator (:class:`~sparsa.hw.accelerator.Accelerator`) has three scratchpads
(:func:`scratchpads`): activations and weights with one read and one write port, accumulators
with two read ports (the feed engine's and the store engine's) and one write port. Each is
``ArrayConfig.scratchpad_rows`` deep and ``ArrayConfig.row_bits`` wide.

Their area comes from a data file (default ``hw/data/sram_cacti_45nm.toml``: CACTI 7.0 as shipped
in the zigzag-dse wheel, 45 nm, the options and the command that regenerates it written in the
file) that gives, per port configuration, the area of a RAM macro of each tabulated word width
and depth. A W-bit scratchpad of D rows is built from ``ceil(W / w)`` macros of one tabulated
width ``w``, each D rows deep, with the cheapest ``w`` (CACTI's figures for one very wide, shallow
macro grow without bound, as its wires do; a designer splits the word). Between tabulated depths
the area is linear in depth; a memory shallower than the smallest tabulated depth takes the
smallest macro. ``bench/sram_cacti.py`` prints this model's error against CACTI run directly.
Gate equivalents are µm² over the table's NAND2 area (NanGate45's, as the gate-equivalent table).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sparsa.config import ArrayConfig
from sparsa.files import read_table

__all__ = ["SCRATCHPAD_PORTS", "Scratchpad", "SramTable", "SramTableError", "load_sram_table",
           "scratchpad_areas", "scratchpads", "sram_area_um2"]

DEFAULT_TABLE = "sram_cacti_45nm.toml"

# Read and write ports of each scratchpad of hw/accelerator.py (tests/hw/test_area.py counts them
# in the exported Verilog): the port configuration named in the table.
SCRATCHPAD_PORTS = {"act": "1r1w", "weight": "1r1w", "acc": "2r1w"}


class SramTableError(ValueError):
    """An SRAM area table is malformed, or has no figure for a memory."""


@dataclass(frozen=True)
class SramTable:
    """Macro areas (µm²) by port configuration, depth and word width."""

    name: str
    source: str
    nand2_um2: float
    widths_bits: tuple[int, ...]
    depths_rows: tuple[int, ...]
    area_um2: Mapping[str, tuple[tuple[float, ...], ...]]   # ports -> [depth][width]


@dataclass(frozen=True)
class Scratchpad:
    name: str
    depth: int
    width_bits: int
    ports: str


def scratchpads(cfg: ArrayConfig) -> list[Scratchpad]:
    """The accelerator's scratchpads: depth, word width and ports of each."""
    rows, bits = cfg.scratchpad_rows, cfg.row_bits
    return [Scratchpad(name, rows[name], bits[name], ports)
            for name, ports in SCRATCHPAD_PORTS.items()]


def _err(source: str, what: str) -> SramTableError:
    return SramTableError(f"SRAM area table {source}: {what}")


def _ascending(source: str, key: str, values: object) -> tuple[int, ...]:
    if (not isinstance(values, list) or not values
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values)
            or sorted(set(values)) != values):
        raise _err(source, f"{key} must be a list of ascending positive integers, "
                           f"not {values!r}")
    return tuple(values)


def _grid(source: str, name: str, entry: object, shape: tuple[int, int]) -> tuple:
    grid = entry.get("area_um2") if isinstance(entry, dict) else None
    if (not isinstance(grid, list) or len(grid) != shape[0]
            or not all(isinstance(row, list) and len(row) == shape[1] for row in grid)):
        raise _err(source, f"[ports.{name}] area_um2 must be {shape[0]} rows (depths) of "
                           f"{shape[1]} numbers (widths)")
    for row in grid:
        for a in row:
            if isinstance(a, bool) or not isinstance(a, (int, float)) or not a > 0:
                raise _err(source, f"[ports.{name}] area_um2 holds {a!r}; expected positive "
                                   "areas in µm²")
    return tuple(tuple(float(a) for a in row) for row in grid)


def load_sram_table(path: str | Path | None = None) -> SramTable:
    """The default table (CACTI 7.0, 45 nm) or a TOML file of the same form."""
    values, source = read_table("sparsa.hw", DEFAULT_TABLE, path, "SRAM area table",
                                SramTableError)
    widths = _ascending(source, "widths_bits", values.get("widths_bits"))
    depths = _ascending(source, "depths_rows", values.get("depths_rows"))
    nand2 = values.get("nand2_um2")
    if isinstance(nand2, bool) or not isinstance(nand2, (int, float)) or not nand2 > 0:
        raise _err(source, f"nand2_um2 (the area of one gate equivalent) must be a positive "
                           f"number, not {nand2!r}")
    ports = values.get("ports")
    if not isinstance(ports, dict) or not ports:
        raise _err(source, "expected [ports.NAME] tables (e.g. [ports.1r1w])")
    missing = sorted(set(SCRATCHPAD_PORTS.values()) - set(ports))
    if missing:
        raise _err(source, f"no [ports.{missing[0]}] table; the scratchpads need "
                           f"{', '.join(sorted(set(SCRATCHPAD_PORTS.values())))}")
    grids = {name: _grid(source, name, entry, (len(depths), len(widths)))
             for name, entry in ports.items()}
    return SramTable(name=str(values.get("name", source)), source=str(values.get("source", "")),
                     nand2_um2=float(nand2), widths_bits=widths, depths_rows=depths,
                     area_um2=grids)


def _column_at(table: SramTable, ports: str, depth: int, j: int) -> float:
    """The area of one macro of width ``widths_bits[j]`` and ``depth`` rows: linear between the
    tabulated depths, the smallest one's below them."""
    depths, grid = table.depths_rows, table.area_um2[ports]
    if depth <= depths[0]:
        return grid[0][j]
    i = bisect.bisect_left(depths, depth)
    if depths[i] == depth:
        return grid[i][j]
    lo, hi = depths[i - 1], depths[i]
    t = (depth - lo) / (hi - lo)
    return grid[i - 1][j] * (1 - t) + grid[i][j] * t


def sram_area_um2(depth: int, width_bits: int, ports: str, table: SramTable) -> float:
    """Area of a ``depth`` x ``width_bits`` RAM with ``ports``: ``ceil(width_bits / w)`` macros
    of the tabulated width ``w`` that gives the least area."""
    if ports not in table.area_um2:
        raise SramTableError(f"SRAM area table {table.name!r} has no ports {ports!r}")
    if depth > table.depths_rows[-1]:
        raise SramTableError(f"SRAM area table {table.name!r} covers up to "
                             f"{table.depths_rows[-1]} rows, not {depth}")
    return min(math.ceil(width_bits / w) * _column_at(table, ports, depth, j)
               for j, w in enumerate(table.widths_bits))


def scratchpad_areas(cfg: ArrayConfig, table: SramTable | None = None) -> dict[str, float]:
    """Area in µm² of each scratchpad of ``cfg`` (act, weight, acc)."""
    table = table or load_sram_table()
    return {s.name: sram_area_um2(s.depth, s.width_bits, s.ports, table)
            for s in scratchpads(cfg)}
