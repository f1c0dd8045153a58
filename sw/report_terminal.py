"""The terminal view of a :class:`~sparsa.sw.model_report.ModelReport`: a short summary and the
layers that matter, sized to the console.

The table shows the :data:`TOP_LAYERS` layers with the most cycles, the rest as one row and the
totals. Columns are kept in order of importance while they fit the console's width (``COLUMNS``
when piped), names are shortened to fit, and the output is plain ASCII, so a line's length in
bytes is its width. Full names and every column are in the Markdown, CSV and JSON files.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .activity import gating_lines
from .model_report import (
    LayerReport,
    ModelReport,
    short_names,
    si,
    sum_costs,
)
from .phase_summary import workload_lines

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.table import Table

__all__ = ["TOP_LAYERS", "print_table", "summary_lines", "table_renderables"]

TOP_LAYERS = 15
NAME_WIDTHS = (16, 40)  # the narrowest and widest a shortened layer name gets
MIN_COLUMNS = 4         # layer, cycles, speedup and why short of M/N stay on any width


@dataclass(frozen=True)
class _Column:
    header: str
    priority: int       # columns with lower priorities stay longest on a narrow console
    cells: tuple[str, ...]
    left: bool = False
    position: int = 0   # from the left


def _group(report: ModelReport, layers: Sequence[LayerReport]) -> dict[str, str]:
    """The numeric cells of a group of layers (one layer, the rest, or all)."""
    cost, dense = sum_costs(x.sparse for x in layers), sum_costs(x.dense for x in layers)
    cycles, dense_cycles = cost.cycles.total, dense.cycles.total
    return {
        "cycles": si(cycles), "dense cycles": si(dense_cycles),
        "speedup": f"{dense_cycles / cycles:.2f}x",
        "util": f"{cost.actions.macs_required / (cycles * report.cfg.multipliers):.0%}",
        "DRAM": si(cost.actions.dram_bytes, "B"),
        "energy": si(sum(x.energy.total for x in layers) * 1e-12, "J"),
        "dense energy": si(sum(x.dense_energy.total for x in layers) * 1e-12, "J"),
    }


def _columns(report: ModelReport, shown: Sequence[LayerReport], name_width: int) -> list[_Column]:
    ids = {id(x) for x in shown}
    rest = [x for x in report.layers if id(x) not in ids]
    nm = report.cfg.nm
    names = short_names([x.name for x in shown], name_width)
    groups = [_group(report, [x]) for x in shown]
    labels = [*names]
    if rest:
        groups.append(_group(report, rest))
        labels.append(f"{len(rest)} other layers")
    groups.append(_group(report, report.layers))
    labels.append(f"total ({len(report.layers)} layers)")
    blank = [""] * (len(labels) - len(shown))

    def detail(values: list[str]) -> tuple[str, ...]:
        return (*values, *blank)

    def numeric(key: str) -> tuple[str, ...]:
        return tuple(g[key] for g in groups)

    columns = [
        _Column("layer", 0, tuple(labels), left=True),
        _Column("kind", 9, detail([x.kind for x in shown]), left=True),
        _Column("GEMM\nPxKxC", 10, detail([f"{x.p}x{x.k}x{x.cols}" for x in shown])),
        _Column("pattern", 6, detail([x.pattern for x in shown]), left=True),
        _Column(f"cycles\n{nm}", 0, numeric("cycles")),
        _Column("cycles\ndense", 2, numeric("dense cycles")),
        _Column("speedup", 0, numeric("speedup")),
        _Column("util", 4, numeric("util")),
        _Column("DRAM\ntraffic", 7, numeric("DRAM")),
        _Column(f"energy\n{nm}", 3, numeric("energy")),
        _Column("energy\ndense", 8, numeric("dense energy")),
        _Column(f"why short\nof {report.ideal:.3g}x", 1,
                detail([report.shortfall_brief(x) for x in shown]), left=True),
    ]
    return [dataclasses.replace(c, position=i) for i, c in enumerate(columns)]


def _table(columns: Sequence[_Column], rows: int, rest: bool) -> Table:
    from rich import box
    from rich.table import Table

    ascii_rules = box.Box("    \n    \n -- \n    \n -- \n    \n    \n    \n", ascii=True)
    table = Table(box=ascii_rules, show_edge=False, pad_edge=False, collapse_padding=True,
                  header_style="bold")
    for c in sorted(columns, key=lambda c: c.position):
        table.add_column(c.header, justify="left" if c.left else "right", overflow="fold")
    cells = list(zip(*(c.cells for c in sorted(columns, key=lambda c: c.position)), strict=True))
    for row in cells[:rows]:
        table.add_row(*row)
    table.add_section()
    if rest:
        table.add_row(*cells[rows], style="dim")
    table.add_row(*cells[-1], style="bold")
    return table


def memory_line(report: ModelReport) -> str:
    """The memory model the cycles are of (:data:`sparsa.sw.model_report.MEMORIES`)."""
    c = report.cfg
    if report.memory == "axi":
        return (f"memory-mapped accelerator: program and tensors fetched over "
                f"{c.axi_data_bits}-bit AXI from memory of latency {c.axi_latency} cycles")
    return f"stream-fed core, {c.dram_bytes_per_cycle} B/cycle DRAM ports"


def summary_lines(report: ModelReport) -> list[str]:
    """The summary as plain sentences (no final stop): the terminal indents them, the Markdown
    file makes them a list."""
    c, t, d = report.cfg, report.total, report.dense_total
    seconds = 1e-6 / c.clock_mhz
    dram, floor = t.actions.dram_bytes, t.compulsory_bytes
    return [
        f"{report.model}: {len(report.layers)} GEMM layers; {c.rows}x{c.cols} array of "
        f"{c.nm} PEs, {c.clock_mhz:g} MHz, " + memory_line(report),
        f"{report.design_name} vs {report.baseline_name}",
        f"the baseline is the same grid as {report.dense_cfg.nm} hardware, without index "
        f"multiplexers or N:M metadata",
        f"speedup {report.speedup:.3f}x (ideal {report.ideal:.3g}x), energy ratio "
        f"{report.energy_ratio:.3f}x (dense energy / {c.nm} energy)",
        f"cycles {t.cycles.total:,} = {si(t.cycles.total * seconds, 's')} "
        f"(dense {d.cycles.total:,} = {si(d.cycles.total * seconds, 's')})",
        f"DRAM traffic {si(dram, 'B')} = {dram / max(floor, 1):.2f}x the compulsory "
        f"{si(floor, 'B')} (each input, weight, scale and output once; dense "
        f"{si(d.actions.dram_bytes, 'B')}), energy {si(report.energy.total * 1e-12, 'J')} "
        f"(dense {si(report.dense_energy.total * 1e-12, 'J')})",
        f"energy table: {report.table}; prune policy: {report.prune_policy}",
        *report.area_lines(),
        *workload_lines(report),
        *gating_lines(report),
    ]


def table_renderables(report: ModelReport, width: int,
                      full: str = "report.md/csv/json") -> list[RenderableType]:
    """The summary, a caption and the layer table, for a console ``width`` characters wide;
    ``full`` names where every layer is (empty: nowhere was written)."""
    from rich.console import Console
    from rich.text import Text

    few = len(report.layers) <= TOP_LAYERS
    shown = report.layers if few else report.heaviest(TOP_LAYERS)
    caption = (f"all {len(report.layers)} layers" if few else
               f"{len(shown)} of {len(report.layers)} layers, by cycles"
               + (f"; all layers in {full}" if full else
                  "; add --format md, csv or json for all layers"))
    measure = Console(width=10 * width + 1000)  # wide enough to measure without wrapping

    def natural(columns: list[_Column]) -> tuple[Table, int]:
        table = _table(columns, len(shown), not few)
        return table, measure.measure(table).maximum

    # Drop the least important columns until the table fits with names of 5/12 of the
    # width, then give the names what is left (up to the widest).
    name_width = max(NAME_WIDTHS[0], min(NAME_WIDTHS[1], width * 5 // 12))
    kept = sorted(_columns(report, shown, name_width), key=lambda c: c.priority)
    table, used = natural(kept)
    while len(kept) > MIN_COLUMNS and used > width:
        kept.pop()
        table, used = natural(kept)
    names = max(len(cell) for cell in kept[0].cells)  # kept[0] is the layer column
    if used < width and names + width - used > name_width:
        headers = {c.header for c in kept}
        wider = _columns(report, shown, min(NAME_WIDTHS[1], names + width - used))
        table, used = natural([c for c in wider if c.header in headers])
    summary = summary_lines(report)
    lines = [Text(line, overflow="fold") for line in
             [summary[0], *("  " + line for line in summary[1:])]]
    return [*lines, Text(""), Text(caption, overflow="fold"), table]


def print_table(report: ModelReport, *, console: Console | None = None,
                full: str = "report.md/csv/json") -> None:
    """Print the summary and the heaviest layers, as wide as the console (``COLUMNS``)."""
    from rich.console import Console

    console = console or Console()
    for item in table_renderables(report, console.width, full):
        console.print(item)
