"""Per-model cycle and energy reports: N:M beside the same network dense on the same multipliers.

The dense baseline is the same grid with ``n = m = N`` (same PEs and multipliers, no index
multiplexers, no metadata). :func:`build_report` is pure; the writers render a
:class:`ModelReport` as a rich table, Markdown, CSV, JSON or PNG plots (matplotlib, Agg).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparsa.config import ArrayConfig, ConfigError
from sparsa.models.graph import LayerGraph

from . import timing
from .cost import Cycles, LayerCost, layer_cost
from .energy import Energy, EnergyTable, energy_of, load_table
from .prune import PrunePolicy, mark_pruned
from .schedule import schedule_layer

__all__ = ["FORMATS", "LayerReport", "ModelReport", "build_report", "dense_baseline",
           "render_markdown", "report_to_dict", "write_report"]

FORMATS = ("table", "md", "csv", "json", "png")
SHORTFALL_TOLERANCE = 0.97


def dense_baseline(cfg: ArrayConfig) -> ArrayConfig:
    """The same grid with ``n = m = N``: same multipliers, no index muxes."""
    try:
        return cfg.replace(n=cfg.n, m=cfg.n)
    except ConfigError as e:
        raise ConfigError(f"the dense baseline of {cfg.nm} needs {cfg.n}:{cfg.n} hardware, "
                          f"which is invalid ({e})") from None


@dataclass(frozen=True)
class LayerReport:
    name: str
    kind: str
    p: int
    k: int
    cols: int
    groups: int
    pattern: str
    order: str
    passes: int
    dense_passes: int
    min_beats: int
    sparse: LayerCost
    dense: LayerCost
    energy: Energy
    dense_energy: Energy
    multipliers: int

    @property
    def macs(self) -> int:
        return self.groups * self.p * self.k * self.cols

    @property
    def speedup(self) -> float:
        return self.dense.cycles.total / self.sparse.cycles.total

    @property
    def energy_ratio(self) -> float:
        return self.dense_energy.total / self.energy.total

    @property
    def utilization(self) -> float:
        """Required multiplies / (cycles x multipliers)."""
        return self.sparse.actions.macs_required / (self.sparse.cycles.total * self.multipliers)

    @property
    def dense_utilization(self) -> float:
        return self.dense.actions.macs_required / (self.dense.cycles.total * self.multipliers)


@dataclass(frozen=True)
class ModelReport:
    model: str
    source: str
    cfg: ArrayConfig
    dense_cfg: ArrayConfig
    prune_policy: str
    table: str
    layers: tuple[LayerReport, ...]

    @property
    def ideal(self) -> float:
        return self.cfg.m / self.cfg.n

    @property
    def total(self) -> LayerCost:
        return sum((x.sparse for x in self.layers), LayerCost(Cycles(), _zero_actions()))

    @property
    def dense_total(self) -> LayerCost:
        return sum((x.dense for x in self.layers), LayerCost(Cycles(), _zero_actions()))

    @property
    def energy(self) -> Energy:
        return sum((x.energy for x in self.layers), Energy())

    @property
    def dense_energy(self) -> Energy:
        return sum((x.dense_energy for x in self.layers), Energy())

    @property
    def speedup(self) -> float:
        return self.dense_total.cycles.total / self.total.cycles.total

    @property
    def energy_ratio(self) -> float:
        return self.dense_energy.total / self.energy.total

    def shortfall(self, layer: LayerReport) -> str:
        """Why a layer's speedup falls short of M/N ("" when it does not)."""
        ideal = self.ideal
        if layer.speedup >= SHORTFALL_TOLERANCE * ideal:
            return ""
        if layer.pattern == "dense":
            why = ("no static weights (activation x activation)" if layer.kind == "matmul"
                   else "weights not pruned to the pattern")
            return f"runs dense: {why}"
        c = layer.sparse.cycles
        waiting = c.stall / c.total
        dense_waiting = layer.dense.cycles.stall / layer.dense.cycles.total
        if waiting > 0.03 and waiting > dense_waiting:
            return f"bandwidth: {waiting:.0%} of cycles wait for DRAM"
        if layer.dense_passes < SHORTFALL_TOLERANCE * ideal * layer.passes:
            return (f"shape: K={layer.k} takes {layer.passes} sparse vs {layer.dense_passes} "
                    f"dense passes of the array")
        period = timing.array_timing(self.cfg).tile_period
        if layer.min_beats < period:
            return (f"fill/drain: {layer.min_beats} beats per tile < weight-load period "
                    f"{period}: the next tile's weights are not hidden")
        fixed = timing.array_timing(self.cfg)
        return (f"fill/drain: {fixed.load + fixed.latency} cycles of pipeline fill and drain "
                f"in {c.compute}")


def _zero_actions():
    from .cost import Actions

    return Actions()


def build_report(graph: LayerGraph, cfg: ArrayConfig, *, table: EnergyTable | None = None,
                 policy: PrunePolicy | None = None, table_name: str = "",
                 progress: Callable[[int, int], None] | None = None) -> ModelReport:
    """Schedule and cost every GEMM layer on ``cfg`` and on its dense baseline."""
    table = table or load_table()
    dense_cfg = dense_baseline(cfg)
    policy = policy or PrunePolicy()
    pruned = mark_pruned(graph, cfg.n, cfg.m, policy)
    gemm_layers = pruned.gemm_layers()
    if not gemm_layers:
        raise ValueError(f"model {graph.name!r} has no GEMM layers (conv2d, linear, matmul) "
                         f"to schedule")
    rows = []
    for i, layer in enumerate(gemm_layers):
        sched = schedule_layer(layer, cfg)
        dense_sched = schedule_layer(layer, dense_cfg)
        cost, dense = layer_cost(sched), layer_cost(dense_sched)
        t = sched.tiling
        rows.append(LayerReport(
            name=layer.name, kind=layer.kind, p=t.gemm.p, k=t.gemm.k, cols=t.gemm.cols,
            groups=t.gemm.groups, pattern=sched.pattern, order=t.order, passes=t.passes,
            dense_passes=dense_sched.tiling.passes,
            min_beats=min(t.block_beats(pb) for pb in range(t.p_blocks)),
            sparse=cost, dense=dense, energy=energy_of(cost.actions, cfg, table),
            dense_energy=energy_of(dense.actions, dense_cfg, table),
            multipliers=cfg.multipliers))
        if progress is not None:
            progress(i + 1, len(gemm_layers))
    return ModelReport(model=graph.name, source=graph.source, cfg=cfg, dense_cfg=dense_cfg,
                       prune_policy=policy.describe(graph), table=table_name or table.name,
                       layers=tuple(rows))


# Rendering.

def _cycles(c: Cycles) -> dict[str, int]:
    return {**dataclasses.asdict(c), "total": c.total}


def _energy(e: Energy) -> dict[str, float]:
    return {**dataclasses.asdict(e), "total": e.total}


def _cost(c: LayerCost) -> dict[str, Any]:
    return {"cycles": _cycles(c.cycles), "actions": dataclasses.asdict(c.actions),
            "dram_bytes": c.actions.dram_bytes, "tiles": c.tiles, "beats": c.beats}


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
        "model": report.model, "source": report.source, "config": report.cfg.to_dict(),
        "dense_config": report.dense_cfg.to_dict(), "prune_policy": report.prune_policy,
        "energy_table": report.table, "ideal_speedup": report.ideal,
        "layers": layers,
        "totals": {"sparse": _cost(report.total), "dense": _cost(report.dense_total),
                   "energy_pj": _energy(report.energy),
                   "dense_energy_pj": _energy(report.dense_energy),
                   "macs": sum(x.macs for x in report.layers),
                   "speedup": report.speedup, "energy_ratio": report.energy_ratio},
    }


COLUMNS = ("layer", "kind", "GEMM PxKxC (g)", "pattern", "order", "passes", "cycles",
           "dense cycles", "speedup", "util", "MACs", "DRAM B", "SRAM B", "energy uJ",
           "dense uJ", "why short of M/N")


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
                    str(x.macs), str(x.sparse.actions.dram_bytes), str(_sram_bytes(x.sparse)),
                    f"{x.energy.total / 1e6:.2f}", f"{x.dense_energy.total / 1e6:.2f}",
                    report.shortfall(x)])
    t = report.total
    out.append(["total", "", "", report.cfg.nm, "", str(sum(x.passes for x in report.layers)),
                str(t.cycles.total), str(report.dense_total.cycles.total),
                f"{report.speedup:.2f}", "", str(sum(x.macs for x in report.layers)),
                str(t.actions.dram_bytes), str(_sram_bytes(t)),
                f"{report.energy.total / 1e6:.2f}", f"{report.dense_energy.total / 1e6:.2f}", ""])
    return out


def _summary(report: ModelReport) -> str:
    c = report.cfg
    return (f"{report.model}: {c.rows}x{c.cols} {c.nm} ({c.multipliers} multipliers, "
            f"{c.clock_mhz:g} MHz, {c.dram_bytes_per_cycle} B/cycle DRAM) vs dense "
            f"{report.dense_cfg.nm} on the same multipliers: speedup {report.speedup:.3f}x "
            f"(ideal {report.ideal:g}x), energy ratio {report.energy_ratio:.3f}x, "
            f"{report.total.cycles.total} cycles = "
            f"{report.total.cycles.total / c.clock_mhz / 1e3:.3f} ms")


def render_markdown(report: ModelReport) -> str:
    lines = [f"# sparsa report: {report.model}", "", _summary(report), "",
             f"Energy table: {report.table}. Prune policy: {report.prune_policy}.", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(r) + " |" for r in _rows(report)]
    e = report.energy
    lines += ["", "## Energy by component (uJ)", "", "| component | N:M | dense |", "|---|---|---|"]
    for f in dataclasses.fields(Energy):
        lines.append(f"| {f.name} | {getattr(e, f.name) / 1e6:.3f} | "
                     f"{getattr(report.dense_energy, f.name) / 1e6:.3f} |")
    lines.append(f"| total | {e.total / 1e6:.3f} | {report.dense_energy.total / 1e6:.3f} |")
    return "\n".join(lines) + "\n"


def render_csv(report: ModelReport) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["layer", "kind", "p", "k", "cols", "groups", "pattern", "order", "passes",
                     "cycles", "compute_cycles", "dram_stall_cycles", "dense_cycles",
                     "speedup", "utilization", "macs", "dram_bytes", "sram_bytes",
                     *(f"energy_{f.name}_pj" for f in dataclasses.fields(Energy)),
                     "energy_pj", "dense_energy_pj", "shortfall"])
    for x in report.layers:
        c = x.sparse.cycles
        writer.writerow([x.name, x.kind, x.p, x.k, x.cols, x.groups, x.pattern, x.order,
                         x.passes, c.total, c.compute, c.stall, x.dense.cycles.total,
                         f"{x.speedup:.6f}", f"{x.utilization:.6f}", x.macs,
                         x.sparse.actions.dram_bytes, _sram_bytes(x.sparse),
                         *(f"{v:.3f}" for v in dataclasses.astuple(x.energy)),
                         f"{x.energy.total:.3f}", f"{x.dense_energy.total:.3f}",
                         report.shortfall(x)])
    return buf.getvalue()


def print_table(report: ModelReport) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=_summary(report), show_lines=False)
    for name in COLUMNS:
        table.add_column(name, overflow="fold",
                         justify="right" if name not in ("layer", "kind", "pattern", "order",
                                                         "why short of M/N") else "left")
    rows = _rows(report)
    for r in rows[:-1]:
        table.add_row(*r)
    table.add_section()
    table.add_row(*rows[-1], style="bold")
    console = Console()
    if console.width < 200:  # wide tables stay readable when piped or in narrow terminals
        console = Console(width=200)
    console.print(table)


def write_png(report: ModelReport, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [x.name for x in report.layers]
    xs = range(len(names))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.25 * len(names)), 4))
    ax.bar([i - 0.2 for i in xs], [x.dense.cycles.total for x in report.layers], 0.4,
           label=f"dense {report.dense_cfg.nm}")
    ax.bar([i + 0.2 for i in xs], [x.sparse.cycles.total for x in report.layers], 0.4,
           label=f"N:M {report.cfg.nm}")
    ax.set_xticks(list(xs), names, rotation=90, fontsize=6)
    ax.set_ylabel("cycles")
    ax.set_title(f"{report.model}: cycles per layer (speedup {report.speedup:.2f}x)")
    ax.legend()
    fig.tight_layout()
    cycles = out / "cycles.png"
    fig.savefig(cycles, dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    parts = [f.name for f in dataclasses.fields(Energy)]
    bottom = [0.0, 0.0]
    for part in parts:
        vals = [getattr(report.dense_energy, part) / 1e6, getattr(report.energy, part) / 1e6]
        ax.bar([f"dense {report.dense_cfg.nm}", f"N:M {report.cfg.nm}"], vals, bottom=bottom,
               label=part)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.set_ylabel("energy (uJ)")
    ax.set_title(f"{report.model}: energy by component ({report.energy_ratio:.2f}x)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    energy = out / "energy.png"
    fig.savefig(energy, dpi=120)
    plt.close(fig)
    return [cycles, energy]


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
