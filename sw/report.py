"""Per-model cycle and energy reports: N:M beside the same network dense on the same multipliers.

:func:`build_report` (:mod:`~sparsa.sw.model_report`) costs every layer of a model on the N:M
array and on its dense baseline. This module writes the result as Markdown, CSV (a row per layer
and a totals row) and JSON; :mod:`~sparsa.sw.report_terminal` prints it to fit the terminal and
:mod:`~sparsa.sw.report_plots` draws the PNG plots.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .cost import Cycles, LayerCost
from .energy import Energy
from .model_report import (
    ENERGY_LABELS,
    SHORTFALL_TOLERANCE,
    WORKLOAD_KEYS,
    LayerReport,
    ModelReport,
    build_report,
    dense_baseline,
)
from .phase_summary import phase_to_dict
from .report_plots import write_png
from .report_terminal import print_table, summary_lines

__all__ = ["FORMATS", "SHORTFALL_TOLERANCE", "LayerReport", "ModelReport", "build_report",
           "dense_baseline", "print_table", "render_csv", "render_markdown", "report_to_dict",
           "write_png", "write_report"]

FORMATS = ("table", "md", "csv", "json", "png")


# Rendering.

def _cycles(c: Cycles) -> dict[str, int]:
    return {**dataclasses.asdict(c), "total": c.total}


def _energy(e: Energy) -> dict[str, float]:
    return {**dataclasses.asdict(e), "total": e.total}


def _cost(c: LayerCost) -> dict[str, Any]:
    return {"cycles": _cycles(c.cycles), "actions": dataclasses.asdict(c.actions),
            "dram_bytes": c.actions.dram_bytes, "compulsory": dataclasses.asdict(c.compulsory),
            "compulsory_bytes": c.compulsory_bytes, "tiles": c.tiles, "beats": c.beats}


def report_to_dict(report: ModelReport) -> dict[str, Any]:
    layers = []
    for x in report.layers:
        layers.append({
            "name": x.name, "kind": x.kind,
            "gemm": {"p": x.p, "k": x.k, "cols": x.cols, "groups": x.groups},
            "pattern": x.pattern, "order": x.order, "passes": x.passes,
            "dense_passes": x.dense_passes, "macs": x.macs,
            "sparse": _cost(x.sparse), "dense": _cost(x.dense),
            "utilization": x.utilization, "dense_utilization": x.dense_utilization,
            "energy_pj": _energy(x.energy), "dense_energy_pj": _energy(x.dense_energy),
            "speedup": x.speedup, "energy_ratio": x.energy_ratio,
            "shortfall": report.shortfall(x),
        })
    return {
        "model": report.model, "source": report.source,
        "design_name": report.design_name, "baseline_name": report.baseline_name,
        "config": report.cfg.to_dict(),
        "dense_config": report.dense_cfg.to_dict(), "prune_policy": report.prune_policy,
        "energy_table": report.table, "ideal_speedup": report.ideal, "memory": report.memory,
        "workload": dict(report.workload), "weights_absent": report.weights_absent,
        "area": dict(report.area),
        "phase": phase_to_dict(report.phase) if report.phase is not None else None,
        "gating": report.gating.to_dict() if report.gating is not None else None,
        "layers": layers,
        "totals": {"sparse": _cost(report.total), "dense": _cost(report.dense_total),
                   "energy_pj": _energy(report.energy),
                   "dense_energy_pj": _energy(report.dense_energy),
                   "macs": sum(x.macs for x in report.layers),
                   "utilization": report.utilization,
                   "speedup": report.speedup, "energy_ratio": report.energy_ratio},
    }


COLUMNS = ("layer", "kind", "GEMM PxKxC (g)", "pattern", "order", "passes", "cycles",
           "dense cycles", "speedup", "util", "MACs", "DRAM B", "compulsory B", "SRAM B",
           "energy uJ", "dense uJ", "why short of M/N")


def _sram_bytes(c: LayerCost) -> int:
    a = c.actions
    return (a.act_buffer_read_bytes + a.act_buffer_write_bytes + a.weight_buffer_read_bytes
            + a.weight_buffer_write_bytes + a.metadata_buffer_read_bytes
            + a.metadata_buffer_write_bytes + a.acc_buffer_read_bytes + a.acc_buffer_write_bytes)


def _rows(report: ModelReport) -> list[list[str]]:
    out = []
    for x in report.layers:
        out.append([x.name, x.kind, f"{x.p}x{x.k}x{x.cols}" + (f" ({x.groups})" if x.groups > 1
                                                               else ""),
                    x.pattern, x.order, str(x.passes), str(x.sparse.cycles.total),
                    str(x.dense.cycles.total), f"{x.speedup:.2f}", f"{x.utilization:.0%}",
                    str(x.macs), str(x.sparse.actions.dram_bytes),
                    str(x.sparse.compulsory_bytes), str(_sram_bytes(x.sparse)),
                    f"{x.energy.total / 1e6:.2f}", f"{x.dense_energy.total / 1e6:.2f}",
                    report.shortfall(x)])
    t = report.total
    out.append(["total", "", "", report.cfg.nm, "", str(sum(x.passes for x in report.layers)),
                str(t.cycles.total), str(report.dense_total.cycles.total),
                f"{report.speedup:.2f}", f"{report.utilization:.0%}",
                str(sum(x.macs for x in report.layers)),
                str(t.actions.dram_bytes), str(t.compulsory_bytes), str(_sram_bytes(t)),
                f"{report.energy.total / 1e6:.2f}", f"{report.dense_energy.total / 1e6:.2f}", ""])
    return out


def render_markdown(report: ModelReport) -> str:
    summary = [f"- {line[:1].upper()}{line[1:].rstrip('.')}." for line in
               (x.strip() for x in summary_lines(report))]
    lines = [f"# sparsa report: {report.model}", "", *summary, "",
             f"Every GEMM layer; \"dense\" columns are the {report.baseline_name} baseline.",
             "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(r) + " |" for r in _rows(report)]
    e = report.energy
    lines += ["", "## Energy by component (uJ)", "",
              f"| component | {report.design_name} | {report.baseline_name} |", "|---|---|---|"]
    for f in dataclasses.fields(Energy):
        lines.append(f"| {ENERGY_LABELS.get(f.name, f.name)} | {getattr(e, f.name) / 1e6:.3f} | "
                     f"{getattr(report.dense_energy, f.name) / 1e6:.3f} |")
    lines.append(f"| total | {e.total / 1e6:.3f} | {report.dense_energy.total / 1e6:.3f} |")
    return "\n".join(lines) + "\n"


# Zero gating per layer (empty without densities): the activation density, the expected gated
# MACs and the N:M energy with them gated (energy_pj is the energy without gating), as the JSON's
# "gating" section holds them.
GATING_COLUMNS = ("act_density", "gated_macs", "energy_gated_pj")


def _gating_cells(report: ModelReport) -> list[list[str]]:
    g = report.gating
    if g is None:
        return [[""] * len(GATING_COLUMNS) for _ in report.layers]
    return [[f"{x.density:.6f}", f"{x.gated_macs:.1f}", f"{x.energy_gated_pj:.3f}"]
            for x in g.layers]


def _gating_total(report: ModelReport) -> list[str]:
    g = report.gating
    if g is None:
        return [""] * len(GATING_COLUMNS)
    return ["", f"{g.total('gated_macs'):.1f}", f"{g.total('energy_gated_pj'):.3f}"]


def render_csv(report: ModelReport) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["layer", "kind", "p", "k", "cols", "groups", "pattern", "order", "passes",
                     "cycles", "compute_cycles", "dram_stall_cycles", "dense_cycles",
                     "speedup", "utilization", "macs", "dram_bytes", "compulsory_bytes",
                     "sram_bytes",
                     *(f"energy_{f.name}_pj" for f in dataclasses.fields(Energy)),
                     "energy_pj", "dense_energy_pj", "shortfall", *GATING_COLUMNS,
                     *WORKLOAD_KEYS])
    workload = [report.workload.get(k, "") for k in WORKLOAD_KEYS]
    gating = _gating_cells(report)
    for x, gated in zip(report.layers, gating, strict=True):
        c = x.sparse.cycles
        writer.writerow([x.name, x.kind, x.p, x.k, x.cols, x.groups, x.pattern, x.order,
                         x.passes, c.total, c.compute, c.stall, x.dense.cycles.total,
                         f"{x.speedup:.6f}", f"{x.utilization:.6f}", x.macs,
                         x.sparse.actions.dram_bytes, x.sparse.compulsory_bytes,
                         _sram_bytes(x.sparse),
                         *(f"{v:.3f}" for v in dataclasses.astuple(x.energy)),
                         f"{x.energy.total:.3f}", f"{x.dense_energy.total:.3f}",
                         report.shortfall(x), *gated, *workload])
    t, e = report.total, report.energy
    writer.writerow(["total", "", "", "", "", "", report.cfg.nm, "",
                     sum(x.passes for x in report.layers), t.cycles.total, t.cycles.compute,
                     t.cycles.stall, report.dense_total.cycles.total, f"{report.speedup:.6f}",
                     f"{report.utilization:.6f}", sum(x.macs for x in report.layers),
                     t.actions.dram_bytes, t.compulsory_bytes, _sram_bytes(t),
                     *(f"{v:.3f}" for v in dataclasses.astuple(e)), f"{e.total:.3f}",
                     f"{report.dense_energy.total:.3f}", "", *_gating_total(report),
                     *workload])
    return buf.getvalue()


def write_report(report: ModelReport, formats: Sequence[str], out: Path) -> list[Path]:
    """Print the table and write the file formats into ``out``; returns the files written."""
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ValueError(f"unknown report format(s) {', '.join(bad)}; expected some of "
                         f"{', '.join(FORMATS)}")
    written: list[Path] = []
    if any(f != "table" for f in formats):
        out.mkdir(parents=True, exist_ok=True)
    if "md" in formats:
        written.append(out / "report.md")
        written[-1].write_text(render_markdown(report))
    if "csv" in formats:
        written.append(out / "report.csv")
        written[-1].write_text(render_csv(report))
    if "json" in formats:
        written.append(out / "report.json")
        written[-1].write_text(json.dumps(report_to_dict(report), indent=1))
    if "png" in formats:
        written += write_png(report, out)
    if "table" in formats:
        print_table(report)
    return written
