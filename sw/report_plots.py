"""PNG plots of a :class:`~sparsa.sw.model_report.ModelReport` (matplotlib figures made without
pyplot, so no GUI backend and no global figure state).

``cycles.png``: N:M and dense cycles per layer. A model with more than :data:`TOP_PLOT_LAYERS`
layers shows the ones with the most cycles, and beside them, on their own scale, the other
layers summed and the whole model. ``energy.png``: the model's energy by component, N:M beside
dense. Legends sit outside the axes, so they never hide a bar.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from .energy import Energy
from .model_report import ENERGY_LABELS, ModelReport, short_names

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["TOP_PLOT_LAYERS", "cycles_figure", "energy_figure", "write_png"]

TOP_PLOT_LAYERS = 30
NAME_WIDTH = 34
DPI = 120
DENSE_COLOR, SPARSE_COLOR = "tab:gray", "tab:blue"


def cycles_figure(report: ModelReport) -> Figure:
    """N:M and dense cycles of the heaviest layers, and of the rest and the whole model."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter

    few = len(report.layers) <= TOP_PLOT_LAYERS
    shown = report.layers if few else report.heaviest(TOP_PLOT_LAYERS)
    rest = len(report.layers) - len(shown)
    width = max(6.0, 0.3 * len(shown) + (3.0 if rest else 1.5))
    fig = Figure(figsize=(width, 5.2), layout="constrained")
    if rest:
        main, side = fig.subplots(1, 2, width_ratios=[len(shown), 3.5])
    else:
        main, side = fig.subplots(1, 1), None

    def bars(ax, labels, dense, sparse):
        xs = range(len(labels))
        ax.bar([i - 0.2 for i in xs], dense, 0.4, color=DENSE_COLOR, label=report.baseline_name)
        ax.bar([i + 0.2 for i in xs], sparse, 0.4, color=SPARSE_COLOR, label=report.design_name)
        if max(map(len, labels)) <= 8:
            ax.set_xticks(list(xs), labels, fontsize=8)
        else:
            ax.set_xticks(list(xs), labels, rotation=60, ha="right", rotation_mode="anchor",
                          fontsize=7)
        ax.set_xlim(-0.6, len(labels) - 0.4)
        ax.yaxis.set_major_formatter(EngFormatter())
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)

    bars(main, short_names([x.name for x in shown], NAME_WIDTH),
         [x.dense.cycles.total for x in shown], [x.sparse.cycles.total for x in shown])
    main.set_ylabel("cycles")
    main.set_title(f"all {len(shown)} layers" if few else
                   f"the {len(shown)} of {len(report.layers)} layers with the most cycles",
                   fontsize=9)
    if side is not None:
        ids = {id(x) for x in shown}
        others = [x for x in report.layers if id(x) not in ids]
        bars(side, [f"other {rest} layers", "whole model"],
             [sum(x.dense.cycles.total for x in others), report.dense_total.cycles.total],
             [sum(x.sparse.cycles.total for x in others), report.total.cycles.total])
        side.set_title("sums (own scale)", fontsize=9)
    workload = f" ({report.workload_text})" if report.workload else ""
    fig.suptitle(f"{report.model}{workload}: cycles per layer, speedup {report.speedup:.2f}x "
                 f"(ideal {report.ideal:.3g}x)")
    handles, labels = main.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    return fig


def energy_figure(report: ModelReport) -> Figure:
    """The model's energy by component, dense beside N:M."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter

    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.subplots()
    sides = [(report.baseline_name, report.dense_energy), (report.design_name, report.energy)]
    labels = [name.replace(", ", ",\n") for name, _ in sides]
    bottom = [0.0, 0.0]
    colors = colormaps["tab10"].colors
    for i, f in enumerate(dataclasses.fields(Energy)):
        vals = [getattr(e, f.name) * 1e-12 for _, e in sides]
        ax.bar(labels, vals, 0.55, bottom=bottom, color=colors[i % len(colors)],
               label=ENERGY_LABELS.get(f.name, f.name))
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    total_fmt = EngFormatter(unit="J", places=1)
    for x, total in enumerate(bottom):
        ax.annotate(total_fmt(total), (x, total), xytext=(0, 3), textcoords="offset points",
                    ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, max(bottom) * 1.1)
    ax.yaxis.set_major_formatter(EngFormatter(unit="J"))
    ax.set_ylabel("energy")
    workload = f" ({report.workload_text})" if report.workload else ""
    ax.set_title(f"{report.model}{workload}: energy by component\ndense uses "
                 f"{report.energy_ratio:.2f}x "
                 f"the energy of {report.cfg.nm}", fontsize=10)
    handles, names = ax.get_legend_handles_labels()
    # top of the stack first, as the bars read
    ax.legend(handles[::-1], names[::-1], loc="upper left", bbox_to_anchor=(1.02, 1),
              fontsize=8, frameon=False)
    return fig


def write_png(report: ModelReport, out: Path) -> list[Path]:
    """Write ``cycles.png`` and ``energy.png`` into ``out``; returns their paths."""
    cycles, energy = out / "cycles.png", out / "energy.png"
    cycles_figure(report).savefig(cycles, dpi=DPI)
    energy_figure(report).savefig(energy, dpi=DPI)
    return [cycles, energy]
