"""Verilog export: one flat Verilog file per top plus a JSON manifest (config and ports)."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from importlib.resources import files
from pathlib import Path

# Amaranth raises this (not re-exported publicly) when its built-in Yosys fails.
from amaranth._toolchain.yosys import YosysError
from amaranth.back import verilog
from amaranth.hdl import ValueCastable
from amaranth.lib import wiring

from sparsa.config import ArrayConfig
from sparsa.files import umask

from . import layouts
from .accelerator import COUNTERS, Accelerator
from .array import SystolicArray
from .csr import CsrBlock
from .dma import DmaReader, DmaWriter
from .pe import SparsePE
from .top import AxiAccelerator

__all__ = ["LINT_WAIVERS", "MAX_PES", "TOPS", "Export", "build_top", "check_export_size",
           "export_verilog", "port_list"]

# Name of each exportable top -> (Verilog module name, constructor).
TOPS = {
    "array": ("sparsa_array", SystolicArray),
    "pe": ("sparsa_pe", SparsePE),
    "accelerator": ("sparsa_accelerator", Accelerator),
    "dma_reader": ("sparsa_dma_reader", DmaReader),
    "dma_writer": ("sparsa_dma_writer", DmaWriter),
    "csr": ("sparsa_csr", lambda cfg: CsrBlock(cfg, counters=layouts.counters(COUNTERS))),
    "axi_accelerator": ("sparsa_axi_accelerator", AxiAccelerator),
}

LINT_WAIVERS = "lint_waivers.vlt"


@dataclass(frozen=True)
class Export:
    """Paths written by :func:`export_verilog`."""

    verilog: Path
    manifest: Path
    waivers: Path
    module: str


# Elaboration time and memory grow with the PE count (a 16x16 array takes 7 s and 0.3 GB, a
# 32x32 one 21 s and 0.5 GB on a 2-core machine); beyond 64x64 an export would run for many
# minutes and gigabytes, so it is refused up front.
MAX_PES = 64 * 64


def check_export_size(cfg: ArrayConfig) -> None:
    """Refuse configurations too large to elaborate in reasonable time and memory."""
    if cfg.rows * cfg.cols > MAX_PES:
        raise ValueError(f"a {cfg.rows}x{cfg.cols} array has {cfg.rows * cfg.cols} PEs; RTL "
                         f"export is limited to {MAX_PES} PEs (64x64): elaboration time and "
                         f"memory grow with the PE count (32x32 takes about 20 s and 0.5 GB)")


def build_top(cfg: ArrayConfig, top: str = "array") -> wiring.Component:
    try:
        _, make = TOPS[top]
    except KeyError:
        raise ValueError(f"unknown top {top!r}; expected one of {', '.join(TOPS)}") from None
    return make(cfg)


def port_list(component: wiring.Component) -> list[dict]:
    """Ports as they appear in the Verilog: ``path__field`` names, direction, width."""
    ports = [{"name": "clk", "direction": "input", "width": 1},
             {"name": "rst", "direction": "input", "width": 1}]
    for path, member, value in component.signature.flatten(component):
        if isinstance(value, ValueCastable):
            value = value.as_value()
        ports.append({
            "name": "__".join(map(str, path)),
            "direction": "input" if member.flow == wiring.In else "output",
            "width": len(value),
        })
    return ports


def _write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` atomically; leave it untouched (and its mtime, for build caches) when it
    already holds ``text``."""
    if path.is_file() and path.read_text() == text:
        return
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False,
                                     prefix=f".{path.name}.") as tmp:
        try:
            tmp.write(text)
            tmp.flush()
        except BaseException:
            tmp.close()
            os.unlink(tmp.name)
            raise
    os.chmod(tmp.name, 0o666 & ~umask())   # a temporary file is private (0600); the output is not
    os.replace(tmp.name, path)


def export_verilog(cfg: ArrayConfig, out_dir: str | Path, *, top: str = "array") -> Export:
    """Elaborate ``top`` for ``cfg`` and write ``<module>.v``, ``<module>.json`` and the lint
    waiver file into ``out_dir``. Files are replaced atomically: a failed run leaves the old
    ones."""
    check_export_size(cfg)
    component = build_top(cfg, top)
    module, _ = TOPS[top]
    try:
        text = verilog.convert(component, name=module, emit_src=False)
    except YosysError as e:   # e.g. a full disk under Yosys's own temporary files
        lines = [line for line in str(e).splitlines() if line.strip()]
        raise RuntimeError(f"Yosys could not write the Verilog: "
                           f"{lines[-1] if lines else 'no reason given'}") from None
    manifest = {
        "top": top,
        "module": module,
        "generator": f"amaranth {version('amaranth')}",
        "config": cfg.to_dict(),
        "ports": port_list(component),
    }
    if isinstance(component, SystolicArray):
        manifest["latency_cycles"] = component.latency
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = Export(verilog=out / f"{module}.v", manifest=out / f"{module}.json",
                   waivers=out / LINT_WAIVERS, module=module)
    _write_atomic(paths.verilog, text)
    _write_atomic(paths.manifest, json.dumps(manifest, indent=2) + "\n")
    _write_atomic(paths.waivers, files("sparsa.hw").joinpath(LINT_WAIVERS).read_text())
    return paths
