"""A model's per-layer cycles and energy: N:M beside the same network dense on the same multipliers.

The dense baseline is the same grid with ``n = m = N`` (same PEs and multipliers, no index
multiplexers, no metadata). :func:`build_report` is pure; :mod:`sparsa.sw.report` renders its
:class:`ModelReport`. The labels a reader sees (:attr:`ModelReport.design_name`,
:attr:`ModelReport.baseline_name`, :func:`short_names`) live here so every rendering shares them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sparsa.config import ArrayConfig, ConfigError
from sparsa.models.graph import Layer, LayerGraph

from . import timing
from .cost import Actions, Cycles, LayerCost, layer_cost
from .energy import Energy, EnergyTable, energy_of, load_table
from .lower import lower_layer
from .prune import PrunePolicy, mark_pruned
from .schedule import schedule_layer
from .top_timing import layer_top_cost

__all__ = [
    "ENERGY_LABELS",
    "MEMORIES",
    "SHORTFALL_TOLERANCE",
    "WORKLOAD_KEYS",
    "LayerReport",
    "ModelReport",
    "build_report",
    "dense_baseline",
    "layer_report",
    "short_name",
    "short_names",
    "si",
    "sum_costs",
    "workload_of",
]

SHORTFALL_TOLERANCE = 0.97
# Energy components (Energy's fields) as a reader names them.
ENERGY_LABELS = {"mac": "multiply-accumulates", "registers": "PE registers",
                 "act_sram": "activation SRAM", "weight_sram": "weight SRAM",
                 "metadata_sram": "N:M index SRAM", "acc_sram": "accumulator SRAM",
                 "dram": "DRAM"}


def dense_baseline(cfg: ArrayConfig) -> ArrayConfig:
    """The same grid with ``n = m = N``: same multipliers, no index muxes."""
    try:
        return cfg.replace(n=cfg.n, m=cfg.n)
    except ConfigError as e:
        raise ConfigError(f"the dense baseline of {cfg.nm} needs {cfg.n}:{cfg.n} hardware, "
                          f"which is invalid ({e})") from None


def sum_costs(costs: Iterable[LayerCost]) -> LayerCost:
    return sum(costs, LayerCost(Cycles(), Actions()))


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
    total_macs: int = 0     # set when the layer sums several shapes (an LLM's generation)

    @property
    def macs(self) -> int:
        return self.total_macs or self.groups * self.p * self.k * self.cols

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
    # batch, seq, phase, context, tokens (experts, top_k): the workload, where known (workload_of)
    workload: Mapping[str, Any] = field(default_factory=dict)
    weights_absent: bool = False    # an ONNX file whose external weight data is missing
    phase: Any = None               # a sparsa.sw.phase_summary.PhaseSummary for LLM phases
    # Area of the design and its baseline, when the command line measured it (sw cannot
    # synthesize): kind "asic" (design/baseline in kGE) or "fpga" (dicts of resources).
    area: Mapping[str, Any] = field(default_factory=dict)
    gating: Any = None              # a sparsa.sw.activity.Gating when densities are known
    memory: str = "dram"            # the memory model costed (layer_report)

    def area_lines(self, prefix: str = "") -> list[str]:
        """The lines stating the area (none when it was not measured)."""
        a = self.area
        if not a:
            return []
        if a["kind"] == "asic":
            lines = [f"{prefix}area {a['design']:,.1f} kGE (dense {a['baseline']:,.1f} kGE), "
                     f"{a['scope']}"]
            parts = a.get("parts", {}).get("design")
            if parts:
                lines.append(f"{prefix}  array {parts['array_kge']:,.1f} + logic "
                             f"{parts['logic_kge'] or 0:,.1f} + SRAM {parts['sram_kge']:,.1f} "
                             f"kGE ({parts['sram_um2'] / 1e6:.2f} mm², {a['sram_table']})")
            return lines

        def res(r: Mapping[str, int]) -> str:
            return ", ".join(f"{r[k]:,} {k[:-1].upper()}s"
                             for k in ("luts", "ffs", "dsps", "brams") if k in r)
        return [f"{prefix}{a['target']} resources, {a['scope']}: {res(a['design'])}",
                f"{prefix}  (dense {res(a['baseline'])})"]

    @property
    def workload_text(self) -> str:
        """"batch 1, seq 2048, phase generate, tokens 256" (empty when nothing is known)."""
        return ", ".join(f"{k} {v}" for k, v in self.workload.items())

    @property
    def design_name(self) -> str:
        """The N:M side as a reader names it: "2:4 sparse, 128 multipliers"."""
        kind = "dense" if self.cfg.is_dense else "sparse"
        return f"{self.cfg.nm} {kind}, {self.cfg.multipliers} multipliers"

    @property
    def baseline_name(self) -> str:
        """The dense baseline as a reader names it: "dense, same 128 multipliers"."""
        return f"dense, same {self.dense_cfg.multipliers} multipliers"

    @property
    def ideal(self) -> float:
        return self.cfg.m / self.cfg.n

    @property
    def total(self) -> LayerCost:
        return sum_costs(x.sparse for x in self.layers)

    @property
    def dense_total(self) -> LayerCost:
        return sum_costs(x.dense for x in self.layers)

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

    @property
    def utilization(self) -> float:
        """Required multiplies / (cycles x multipliers), over the whole model."""
        t = self.total
        return t.actions.macs_required / (t.cycles.total * self.cfg.multipliers)

    def heaviest(self, count: int) -> tuple[LayerReport, ...]:
        """The ``count`` layers with the most N:M cycles, most first (ties in network order)."""
        return tuple(sorted(self.layers, key=lambda x: -x.sparse.cycles.total)[:count])

    def shortfall(self, layer: LayerReport) -> str:
        """Why a layer's speedup falls short of M/N ("" when it does not)."""
        return self._shortfall(layer)[1]

    def shortfall_brief(self, layer: LayerReport) -> str:
        """:meth:`shortfall` in a few words, for a terminal column."""
        return self._shortfall(layer)[0]

    def _shortfall(self, layer: LayerReport) -> tuple[str, str]:
        ideal = self.ideal
        if layer.speedup >= SHORTFALL_TOLERANCE * ideal:
            return "", ""
        if layer.pattern == "dense":
            if layer.kind == "matmul":
                return ("dense: act x act",
                        "runs dense: no static weights (activation x activation)")
            return "dense: not pruned", "runs dense: weights not pruned to the pattern"
        c = layer.sparse.cycles
        waiting = c.stall / c.total
        dense_waiting = layer.dense.cycles.stall / layer.dense.cycles.total
        if waiting > 0.03 and waiting > dense_waiting:
            return (f"DRAM wait {waiting:.0%}",
                    f"bandwidth: {waiting:.0%} of cycles wait for DRAM")
        if layer.dense_passes < SHORTFALL_TOLERANCE * ideal * layer.passes:
            return (f"shape: {layer.passes} vs {layer.dense_passes} passes",
                    f"shape: K={layer.k} takes {layer.passes} sparse vs {layer.dense_passes} "
                    f"dense passes of the array")
        fixed = timing.array_timing(self.cfg)
        if layer.min_beats < fixed.tile_period:
            return ("weight load not hidden",
                    f"fill/drain: {layer.min_beats} beats per tile < weight-load period "
                    f"{fixed.tile_period}: the next tile's weights are not hidden")
        return ("pipeline fill/drain",
                f"fill/drain: {fixed.load + fixed.latency} cycles of pipeline fill and drain "
                f"in {c.compute}")


MEMORIES = ("dram", "axi")


def layer_report(layer: Layer, cfg: ArrayConfig, dense_cfg: ArrayConfig, table: EnergyTable,
                 memo: dict | None = None, memory: str = "dram") -> LayerReport:
    """One GEMM layer scheduled and costed on ``cfg`` and on ``dense_cfg``. ``memo`` (a dict the
    caller keeps) holds the reports of layers seen before by lowering (geometry, groups, weight
    tiles), so repeated shapes (an LLM's decoder layers, its decode steps) are costed once.
    ``memory``: ``"dram"``, the stream-fed core with DRAM ports of ``dram_bytes_per_cycle``
    (:func:`~sparsa.sw.cost.layer_cost`), or ``"axi"``, the memory-mapped accelerator
    fetching its program and tensors over AXI (:func:`~sparsa.sw.top_timing.layer_top_cost`)."""
    if memory not in MEMORIES:
        raise ValueError(f"memory must be one of {', '.join(MEMORIES)}, not {memory!r}")
    key = (lower_layer(layer, cfg), lower_layer(layer, dense_cfg), memory)
    got = memo.get(key) if memo is not None else None
    if got is not None:
        return got if got.name == layer.name else dataclasses.replace(got, name=layer.name)
    sched = schedule_layer(layer, cfg)
    dense_sched = schedule_layer(layer, dense_cfg)
    costed = layer_top_cost if memory == "axi" else layer_cost
    cost, dense = costed(sched), costed(dense_sched)
    t = sched.tiling
    got = LayerReport(
        name=layer.name, kind=layer.kind, p=t.gemm.p, k=t.gemm.k, cols=t.gemm.cols,
        groups=t.gemm.groups, pattern=sched.pattern, order=t.order, passes=t.passes,
        dense_passes=dense_sched.tiling.passes,
        min_beats=min(t.block_beats(pb) for pb in range(t.p_blocks)),
        sparse=cost, dense=dense, energy=energy_of(cost.actions, cfg, table),
        dense_energy=energy_of(dense.actions, dense_cfg, table),
        multipliers=cfg.multipliers)
    if memo is not None:
        memo[key] = got
    return got


WORKLOAD_KEYS = ("batch", "seq", "phase", "context", "tokens", "experts", "top_k")


def workload_of(graph: LayerGraph) -> dict[str, Any]:
    """The workload a graph was traced for (batch, seq, phase ...), as far as it is known."""
    return {k: graph.meta[k] for k in WORKLOAD_KEYS if graph.meta.get(k) is not None}


def build_report(graph: LayerGraph, cfg: ArrayConfig, *, table: EnergyTable | None = None,
                 policy: PrunePolicy | None = None, table_name: str = "",
                 progress: Callable[[int, int], None] | None = None,
                 memo: dict | None = None, memory: str = "dram") -> ModelReport:
    """Schedule and cost every GEMM layer on ``cfg`` and on its dense baseline (``memo`` and
    ``memory``: see :func:`layer_report`)."""
    table = table or load_table()
    dense_cfg = dense_baseline(cfg)
    policy = policy or PrunePolicy()
    pruned = mark_pruned(graph, cfg.n, cfg.m, policy)
    gemm_layers = pruned.gemm_layers()
    if not gemm_layers:
        raise ValueError(f"model {graph.name!r} has no GEMM layers (conv2d, linear, matmul) "
                         f"to schedule")
    memo = {} if memo is None else memo
    rows = []
    for i, layer in enumerate(gemm_layers):
        rows.append(layer_report(layer, cfg, dense_cfg, table, memo, memory))
        if progress is not None:
            progress(i + 1, len(gemm_layers))
    return ModelReport(model=graph.name, source=graph.source, cfg=cfg, dense_cfg=dense_cfg,
                       prune_policy=policy.describe(graph), table=table_name or table.name,
                       layers=tuple(rows), workload=workload_of(graph),
                       weights_absent=graph.meta.get("weights") == "absent", memory=memory)


# Compact numbers and layer names, for narrow places (a terminal column, a plot's labels).

_PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""), (1e-3, "m"),
             (1e-6, "u"), (1e-9, "n"))


def si(value: float, unit: str = "") -> str:
    """``value`` in three significant digits with an SI prefix: 1130014 -> "1.13M",
    ``si(2.5e-5, "J")`` -> "25.0 uJ"."""
    scale, prefix = next(((s, p) for s, p in _PREFIXES if abs(value) >= 0.9995 * s),
                         (1.0, "") if value == 0 else _PREFIXES[-1])
    x = value / scale
    if not prefix and x == int(x):
        text = str(int(x))
    else:
        text = f"{x:.2f}" if abs(x) < 9.995 else f"{x:.1f}" if abs(x) < 99.95 else f"{x:.0f}"
    return f"{text} {prefix}{unit}" if unit else f"{text}{prefix}"



ELLIPSIS = "..."
_ABBREVIATIONS = {"convolution": "conv", "attention": "attn", "embeddings": "emb",
                  "embedder": "emb", "intermediate": "inter", "projection": "proj"}
MIN_NAME_WIDTH = 8


def short_name(name: str, width: int) -> str:
    """``name`` in at most ``width`` characters (ASCII added only).

    A name that fits is kept. Otherwise common words are abbreviated (``convolution`` ->
    ``conv``), then leading dotted parts give way to ``...`` so the distinctive tail stays
    (``...stages.3.layers.2.layer.1.conv``), and a tail still too long is cut in the middle.
    """
    if width < MIN_NAME_WIDTH:
        raise ValueError(f"name width must be at least {MIN_NAME_WIDTH}, not {width!r}")
    if len(name) <= width:
        return name
    parts = [_ABBREVIATIONS.get(p, p) for p in name.split(".")]
    short = ".".join(parts)
    if len(short) <= width:
        return short
    for i in range(1, len(parts)):
        tail = ELLIPSIS + ".".join(parts[i:])
        if len(tail) <= width:
            return tail
    return _middle(short, width)


def _middle(name: str, width: int) -> str:
    keep = width - len(ELLIPSIS)
    return name[: keep - keep // 2] + ELLIPSIS + name[len(name) - keep // 2:]


def _squeeze(parts: list[str], width: int) -> str:
    """Words before the last part cut to their initials, from the left, until the name fits;
    numbers are kept (``r.e.s.3.l.2.layer.1.conv``)."""
    parts = list(parts)
    for i in range(len(parts) - 1):
        if len(".".join(parts)) <= width:
            break
        if not parts[i].isdigit():
            parts[i] = parts[i][0]
    squeezed = ".".join(parts)
    return squeezed if len(squeezed) <= width else _middle(squeezed, width)


def short_names(names: Sequence[str], width: int) -> list[str]:
    """:func:`short_name` of each name; where two names' tails collide, their words are cut to
    initials instead (numbers kept), so distinct names stay distinct wherever the width allows."""
    out = [short_name(n, width) for n in names]
    owners: dict[str, set[str]] = {}
    for name, short in zip(names, out, strict=True):
        owners.setdefault(short, set()).add(name)
    for i, (name, short) in enumerate(zip(names, out, strict=True)):
        if len(owners[short]) > 1:
            out[i] = _squeeze([_ABBREVIATIONS.get(p, p) for p in name.split(".")], width)
    return out
