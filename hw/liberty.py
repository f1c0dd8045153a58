"""ASIC cell area in µm² with a user's standard-cell library (a Liberty ``.lib`` file).

The array is synthesized as for the gate-equivalent figure (:mod:`sparsa.hw.area`: modular by
default, each distinct PE module once), but mapped onto the library's cells with Yosys'
``dfflibmap`` and ``abc -liberty``; every flip-flop is first made a plain positive-edge D
flip-flop (its enable and synchronous reset as gates), so the library needs one, plus the
combinational cells ABC maps to (a buffer and an inverter at least). The area is the cell counts
times the ``area`` attribute of each cell in the library, read here (:func:`cell_areas`) and
checked in the tests against Yosys' own ``stat -liberty``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sparsa.config import ArrayConfig

from .area import cached_cells, export_text, modular_cells

__all__ = ["LIBERTY_GLUE_SCRIPT", "LIBERTY_SCRIPT", "LibertyArea", "LibertyError", "area_um2",
           "cell_areas", "liberty_area"]

LIB = "cells.lib"   # the library's name beside the Verilog in the synthesis directory
_MAP = (f"dfflegalize -cell $_DFF_P_ 01; dfflibmap -liberty {LIB}; abc -liberty {LIB}; "
        "opt_clean; tee -q -o {stats} stat -json")
LIBERTY_SCRIPT = "read_verilog {top}.v; synth -flatten -noabc -top {top}; " + _MAP
LIBERTY_GLUE_SCRIPT = ("read_verilog {top}.v; hierarchy -top {top}; blackbox {top}.pe_*; "
                       "synth -noabc -top {top}; " + _MAP)

_CELL = re.compile(r"\bcell\s*\(\s*\"?([^\s\")]+)\"?\s*\)")
_AREA = re.compile(r"\barea\s*:\s*([-+0-9.eE]+)\s*;?")


class LibertyError(ValueError):
    """A Liberty file cannot be read, or lacks the area of a cell the netlist uses."""


@dataclass(frozen=True)
class LibertyArea:
    module: str
    cells: Mapping[str, int]
    um2: float
    library: str


def cell_areas(text: str) -> dict[str, float]:
    """The ``area`` of every cell of a Liberty file (the first ``area`` after ``cell(NAME)``)."""
    starts = list(_CELL.finditer(text))
    areas = {}
    for i, match in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        area = _AREA.search(text, match.end(), end)
        if area:
            areas[match.group(1)] = float(area.group(1))
    return areas


def _read(liberty: str | Path) -> str:
    try:
        text = Path(liberty).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise LibertyError(f"cannot read Liberty file {str(liberty)!r}: {e}") from None
    if not cell_areas(text):
        raise LibertyError(f"Liberty file {str(liberty)!r} has no cell with an area")
    if not re.search(r"\bff\s*\(", text):
        raise LibertyError(f"Liberty file {str(liberty)!r} has no flip-flop cell (an ff group); "
                           "the array's registers need a D flip-flop")
    return text


def liberty_area(cfg: ArrayConfig, liberty: str | Path, *, method: str = "modular",
                 cache: bool = True) -> LibertyArea:
    """The array of ``cfg`` mapped onto the cells of ``liberty``: counts and µm²."""
    if method not in ("flat", "modular"):
        raise ValueError(f"method must be 'flat' or 'modular', not {method!r}")
    text = _read(liberty)
    module, verilog = export_text(cfg, "array")
    files = {LIB: text}
    if method == "flat":
        cells, _ = cached_cells(verilog, module, LIBERTY_SCRIPT, cache, files)
    else:
        cells, _ = modular_cells(verilog, module, cache, script=LIBERTY_SCRIPT,
                                 glue_script=LIBERTY_GLUE_SCRIPT, files=files)
    areas = cell_areas(text)
    cells = {c: n for c, n in cells.items() if c != "$scopeinfo"}
    missing = sorted(c for c in cells if c not in areas)
    if missing:
        raise LibertyError(f"{liberty}: the netlist uses cells without a library area: "
                           f"{', '.join(missing)} (the library needs a D flip-flop, a buffer, "
                           "an inverter and two-input gates)")
    name = f"{Path(liberty).name} sha256:{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    return LibertyArea(module=module, cells=cells,
                       um2=sum(n * areas[c] for c, n in cells.items()), library=name)


def area_um2(cfg: ArrayConfig, liberty: str | Path) -> float:
    """The array's cell area in µm² with ``liberty`` (what ``sparsa explore`` uses)."""
    return liberty_area(cfg, liberty).um2
