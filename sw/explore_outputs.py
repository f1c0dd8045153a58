"""What an exploration leaves behind: the full table (CSV, JSON), the Pareto front of each model
over the SPEC's objectives (exact), the best configuration per objective, plots, a Markdown
summary and every Pareto point as a configuration file that ``sparsa report --config`` and
``sparsa verilog --config`` read.

:func:`analyse` is pure; :func:`write_outputs` writes into a directory the caller provides (the
command line's all-or-nothing temporary directory).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparsa.config import ArrayConfig

from .design_space import ExploreSpec
from .evaluate import ALL_MODELS, Evaluation, combine
from .pareto import best_index, pareto_indices

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["COLUMNS", "Front", "analyse", "config_toml", "write_outputs"]

DPI = 120
COLUMNS = ("model", "key", "rows", "cols", "nm", "pipeline_depth", "act_buffer_kib",
           "weight_buffer_kib", "acc_buffer_kib", "dram_bytes_per_cycle", "clock_mhz",
           "multipliers", "cycles", "dense_cycles", "latency_s", "energy_uj", "edp_uj_s",
           "dram_bytes", "speedup", "energy_ratio", "area_kge", "array_kge", "logic_kge",
           "sram_kge", "throughput_per_kge", "luts",
           "ffs", "dsps", "throughput_per_dsp", "brams", "fmax_mhz", "area_um2", "feasible",
           "pareto")


@dataclass(frozen=True)
class Front:
    """One model's points: all of them, those meeting the constraints, the non-dominated ones
    among those, and the best feasible point of each objective."""

    model: str
    points: tuple[Evaluation, ...]
    feasible: tuple[Evaluation, ...]
    front: tuple[Evaluation, ...]
    best: dict[str, Evaluation]


def _vector(spec: ExploreSpec, e: Evaluation) -> tuple[float, ...] | None:
    m = e.metrics
    values = [m[o.metric] for o in spec.objectives]
    if any(v is None for v in values):
        return None
    return tuple(o.sign() * v for o, v in zip(spec.objectives, values, strict=True))


def _meets(spec: ExploreSpec, e: Evaluation) -> bool:
    m = e.metrics
    return all(m[c.quantity] is not None and c.holds(m[c.quantity])
               for c in spec.result_constraints)


def _order(e: Evaluation) -> tuple:
    c = e.config
    return (c.rows * c.cols * c.n, c.rows, c.cols, c.n, c.m, c.to_json())


def _front(spec: ExploreSpec, label: str, points: list[Evaluation],
           feasible: list[Evaluation]) -> Front:
    vectors = [_vector(spec, e) for e in feasible]
    front = [feasible[i] for i in pareto_indices(vectors)]
    best = {o.name: feasible[best_index(vectors, i)]
            for i, o in enumerate(spec.objectives)} if feasible else {}
    return Front(label, tuple(points), tuple(feasible), tuple(front), best)


def analyse(spec: ExploreSpec, evaluations: Sequence[Evaluation]) -> list[Front]:
    """The fronts and best points of every model of the SPEC (in SPEC order) and, with several
    models, of all of them together (each configuration evaluated on every model, combined with
    :func:`~sparsa.sw.evaluate.combine`; feasible when it is feasible on every model)."""
    fronts = []
    for model in spec.models:
        points = sorted((e for e in evaluations if e.model == model.label), key=_order)
        feasible = [e for e in points if _meets(spec, e) and _vector(spec, e) is not None]
        fronts.append(_front(spec, model.label, points, feasible))
    if len(spec.models) > 1:
        by_config: dict[ArrayConfig, list[Evaluation]] = {}
        for f in fronts:
            for e in f.points:
                by_config.setdefault(e.config, []).append(e)
        ok = {e.key for f in fronts for e in f.feasible}
        complete = [group for group in by_config.values() if len(group) == len(fronts)]
        points = sorted((combine(group) for group in complete), key=_order)
        feasible_keys = {combine(group).key for group in complete
                         if all(e.key in ok for e in group)}
        fronts.append(_front(spec, ALL_MODELS, points,
                             [e for e in points if e.key in feasible_keys]))
    return fronts


def _row(e: Evaluation, feasible: bool, pareto: bool) -> dict[str, Any]:
    c = e.config
    return {"model": e.model, "key": e.key, "rows": c.rows, "cols": c.cols, "nm": c.nm,
            "pipeline_depth": c.pipeline_depth, "act_buffer_kib": c.act_buffer_kib,
            "weight_buffer_kib": c.weight_buffer_kib, "acc_buffer_kib": c.acc_buffer_kib,
            "dram_bytes_per_cycle": c.dram_bytes_per_cycle, "clock_mhz": c.clock_mhz,
            "multipliers": e.multipliers, "cycles": e.cycles, "dense_cycles": e.dense_cycles,
            "latency_s": e.latency_s, "energy_uj": e.energy_uj,
            "edp_uj_s": e.metrics["edp_uj_s"], "dram_bytes": e.dram_bytes, "speedup": e.speedup,
            "energy_ratio": e.energy_ratio, "area_kge": e.area_kge, "array_kge": e.array_kge,
            "logic_kge": e.logic_kge, "sram_kge": e.sram_kge,
            "throughput_per_kge": e.metrics["throughput_per_kge"], "luts": e.luts, "ffs": e.ffs,
            "dsps": e.dsps, "throughput_per_dsp": e.metrics["throughput_per_dsp"],
            "brams": e.brams, "fmax_mhz": e.fmax_mhz,
            "area_um2": e.area_um2,
            "feasible": feasible, "pareto": pareto}


def _rows(fronts: Sequence[Front]) -> list[dict[str, Any]]:
    out = []
    for f in fronts:
        feasible, front = {e.key for e in f.feasible}, {e.key for e in f.front}
        out += [_row(e, e.key in feasible, e.key in front) for e in f.points]
    return out


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
    return buf.getvalue()


def _slug(label: str) -> str:
    """A file-name stem for a model label (a file model's name without folder and suffix)."""
    path = Path(label)
    name = path.stem if path.suffix.lower() in (".onnx", ".csv", ".npz") else path.name
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "model"


def config_toml(cfg: ArrayConfig, comment: str) -> str:
    """``cfg`` as a TOML ``[array]`` table (the form ``ArrayConfig.from_file`` reads)."""
    lines = [f"# {line}" for line in comment.splitlines()] + ["[array]"]
    for name, value in cfg.to_dict().items():
        text = json.dumps(value) if isinstance(value, str) else repr(value)
        lines.append(f"{name} = {text}")
    return "\n".join(lines) + "\n"


# metric -> (scale, unit) for one-line descriptions
_UNITS = {"latency_s": (1e3, " ms"), "energy_uj": (1, " µJ"), "area_kge": (1, " kGE"),
          "edp_uj_s": (1, " µJ·s"), "throughput_per_kge": (1, " inferences/s/kGE"),
          "luts": (1, " LUTs"), "ffs": (1, " FFs"), "dsps": (1, " DSPs"),
          "throughput_per_dsp": (1, " inferences/s/DSP"), "area_um2": (1, " µm²"),
          "cycles": (1, " cycles"), "dram_bytes": (1, " B"), "brams": (1, " BRAMs"),
          "fmax_mhz": (1, " MHz")}


def _describe(spec: ExploreSpec, e: Evaluation) -> str:
    m = e.metrics
    parts = []
    for o in spec.objectives:
        scale, unit = _UNITS[o.metric]
        parts.append(f"{o.name} {m[o.metric] * scale:.4g}{unit}")
    return ", ".join(parts)


def _opt(value: float | None, fmt: str = "") -> str:
    return "-" if value is None else format(value, fmt)


def _split(e: Evaluation) -> str:
    """"243.6 / 90.1 / 1500.2": the area's parts (a dash for a part not measured)."""
    return " / ".join("-" if v is None else f"{v:.1f}"
                      for v in (e.array_kge, e.logic_kge, e.sram_kge))


def _name(e: Evaluation) -> str:
    c = e.config
    return f"{c.rows}x{c.cols} {c.nm}"


def render_markdown(spec: ExploreSpec, fronts: Sequence[Front], *, computed: int | None = None,
                    reused: int | None = None) -> str:
    head = ["config", "multipliers", "latency (ms)", "energy (µJ)",
            *(["area (kGE)", "array / logic / SRAM (kGE)"] if spec.area else []), "speedup",
            "DRAM B/cycle",
            *(["LUTs", "DSPs", "BRAMs"] if spec.fpga else []),
            *(["Fmax (MHz)"] if spec.fpga_fmax else []),
            *(["cell area (µm²)"] if spec.liberty else []), "file"]
    lines = [f"# sparsa explore: {spec.source}", "",
             f"Search: {spec.search.method}; objectives: "
             f"{', '.join(o.name + ' (' + o.sense + ')' for o in spec.objectives)}; constraints: "
             f"{', '.join(c.text for c in spec.constraints) or 'none'}."]
    if computed is not None:
        lines.append(f"Points: {computed} evaluated now, {reused} from the result store.")
    for f in fronts:
        lines += ["", f"## {f.model}", "",
                  f"{len(f.points)} points, {len(f.feasible)} meet the constraints, "
                  f"{len(f.front)} on the Pareto front.", ""]
        if not f.front:
            lines.append("No point meets the constraints.")
            continue
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for i, e in enumerate(f.front):
            area = f"{e.area_kge:.1f} | {_split(e)} | " if spec.area else ""
            fpga = f"{e.luts} | {e.dsps} | {_opt(e.brams)} | " if spec.fpga else ""
            fpga += f"{_opt(e.fmax_mhz, '.1f')} | " if spec.fpga_fmax else ""
            fpga += f"{e.area_um2:.0f} | " if spec.liberty else ""
            lines.append(f"| {_name(e)} | {e.multipliers} | {e.latency_s * 1e3:.4g} | "
                         f"{e.energy_uj:.4g} | {area}{e.speedup:.2f} | "
                         f"{e.config.dram_bytes_per_cycle} | {fpga}`{_config_path(f, i, e)}` |")
        lines += ["", "Best per objective:", ""]
        lines += [f"- {name}: {_name(e)}, {_describe(spec, e)}" for name, e in f.best.items()]
    return "\n".join(lines) + "\n"


def _config_path(front: Front, i: int, e: Evaluation) -> str:
    c = e.config
    return (f"pareto/{_slug(front.model)}/{i:02d}_{c.rows}x{c.cols}_{c.n}of{c.m}_"
            f"{e.key[:8]}.toml")


def scatter_figure(spec: ExploreSpec, front: Front, y: str) -> Figure:
    """Latency against ``y`` ("energy" or "area"): a colour per N:M pattern, the front ringed."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter

    per = ", all models in turn" if front.model == ALL_MODELS else " per inference"
    ylabel = {"energy": f"energy{per} (µJ)", "area": "accelerator area (kGE)"}[y]
    value = {"energy": lambda e: e.energy_uj, "area": lambda e: e.area_kge}[y]
    fig = Figure(figsize=(6.4, 4.6), layout="constrained")
    ax = fig.add_subplot()
    patterns = sorted({e.config.nm for e in front.points},
                      key=lambda p: [int(x) for x in p.split(":")])
    on_front = {e.key for e in front.front}
    feasible = {e.key for e in front.feasible}
    for i, nm in enumerate(patterns):
        pts = [e for e in front.points if e.config.nm == nm and value(e) is not None]
        color = f"C{i % 10}"
        for group, kw in ((lambda e: e.key not in feasible, {"marker": "x", "alpha": 0.4}),
                          (lambda e: e.key in feasible and e.key not in on_front,
                           {"marker": "o", "alpha": 0.5}),
                          (lambda e: e.key in on_front,
                           {"marker": "o", "s": 70, "edgecolors": "black", "linewidths": 1.5})):
            sel = [e for e in pts if group(e)]
            if sel:
                ax.scatter([e.latency_s * 1e3 for e in sel], [value(e) for e in sel],
                           color=color, **kw)
    ax.set_xlabel(f"latency{per} (ms)")
    ax.set_ylabel(ylabel)
    # log axes where the values span more than a decade
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    shown = [e for e in front.points if value(e) is not None]
    for axis, values, set_scale in ((ax.xaxis, [e.latency_s for e in shown], ax.set_xscale),
                                    (ax.yaxis, [value(e) for e in shown], ax.set_yscale)):
        if values and min(values) > 0 and max(values) > 10 * min(values):
            set_scale("log")
            axis.set_major_formatter(plain)
            axis.set_minor_formatter(plain)
    title = (f"{front.model}: Pareto front over "
             f"{', '.join(o.name for o in spec.objectives)} ringed")
    if len(front.feasible) < len(front.points):
        title += ", x = fails a constraint"
    ax.set_title(title)
    handles = [Line2D([], [], color=f"C{i % 10}", marker="o", linestyle="", label=nm)
               for i, nm in enumerate(patterns)]
    ax.legend(handles=handles, title="N:M", loc="best")
    ax.grid(True, which="both", alpha=0.3)
    return fig


def write_outputs(spec: ExploreSpec, evaluations: Sequence[Evaluation], out: Path, *,
                  computed: int | None = None, reused: int | None = None) -> list[Path]:
    """Write the tables, fronts, plots, summary and Pareto configurations into ``out``."""
    fronts = analyse(spec, evaluations)
    rows = _rows(fronts)
    written = []

    def write(name: str, text: str) -> None:
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)

    write("results.csv", _csv(rows))
    write("pareto.csv", _csv([r for r in rows if r["pareto"]]))
    write("results.json", json.dumps({
        "spec": spec.source, "search": spec.search.method,
        "objectives": [o.name for o in spec.objectives],
        "constraints": [c.text for c in spec.constraints],
        "results": rows,
        "fronts": {f.model: [e.key for e in f.front] for f in fronts},
        "best": {f.model: {name: e.key for name, e in f.best.items()} for f in fronts},
    }, indent=1) + "\n")
    write("summary.md", render_markdown(spec, fronts, computed=computed, reused=reused))
    for f in fronts:
        for i, e in enumerate(f.front):
            write(_config_path(f, i, e), config_toml(
                e.config, f"Pareto point {i} of sparsa explore ({spec.source}), model "
                          f"{f.model}: {_describe(spec, e)}"))
        plots = ["energy", *(["area"] if spec.area else [])]
        for y in plots:
            if f.points:
                path = out / f"{_slug(f.model)}_latency_{y}.png"
                scatter_figure(spec, f, y).savefig(path, dpi=DPI)
                written.append(path)
    return written
