"""Every GEMM layer of any model on an accelerator backend, one program per layer, checked.

Models without trained int8 weights (zoo models, ONNX files, Hugging Face configs, SCALE-Sim
topologies) get seeded random int8 activations and weights; the weights of the layers the prune
policy selects (:func:`sparsa.sw.prune.mark_pruned`, as ``sparsa report`` costs them) are pruned
to the array's N:M pattern at random positions. Each layer's random stream is seeded by ``(seed,
layer index)``, so a subset (``--layers``) runs the same data as the whole model.

Per layer (:func:`run_layer`):

* the layer is scheduled as the report schedules it and assembled (:mod:`sparsa.sw.assemble`)
  into one program, which runs on the backend;
* measured cycles == the report's cycles for the layer (:func:`sparsa.sw.cost.layer_cost`: its
  compute cycles with ideal memory, its total with the configuration's DRAM rate);
* counters == the report's counts (:func:`sparsa.sw.cost.tiling_counts`), and ``gated_macs`` ==
  the count predicted from the data (:func:`sparsa.sw.activity.layer_gated_macs`);
* the requantized outputs == an independent computation (:func:`reference`: torch's convolution
  or a matmul in float64, exact for these integer sums), and, for layers of at most
  ``golden_macs`` MACs, the raw ``data_out`` rows == the golden executor's
  (:class:`~sparsa.sim.golden_accel.GoldenAccelerator`), too slow in NumPy for the large ones.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import ClassVar

import numpy as np

from sparsa import nm
from sparsa.config import ArrayConfig
from sparsa.sw.activity import layer_gated_macs
from sparsa.sw.assemble import assemble_layer
from sparsa.sw.cost import layer_cost, tiling_counts
from sparsa.sw.prune import PrunePolicy, mark_pruned
from sparsa.sw.schedule import LayerSchedule, schedule_layer
from sparsa.sw.top_timing import layer_top_cycles

from .infer import LayerTotals

__all__ = ["GOLDEN_MACS", "MEMORIES", "SEED_ENV", "LayerData", "LayerResult", "LayersRun",
           "PlannedLayer", "cpu_seconds", "layer_program", "parse_layers", "plan_layers",
           "predicted_cycles", "random_nm", "reference", "resolve_seed", "run_layer",
           "weights_line"]

SEED_ENV = "SPARSA_SEED"
GOLDEN_MACS = 2_000_000   # layers of up to this many MACs are also run on the golden executor


def resolve_seed(seed: int | None) -> int:
    """``seed``, else ``SPARSA_SEED`` (an integer), else 0."""
    if seed is not None:
        return seed
    raw = os.environ.get(SEED_ENV, "").strip()
    if not raw:
        return 0
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{SEED_ENV} must be an integer, not {raw!r}") from None


_RANGE = re.compile(r"(\d+)(?:-(\d+))?")


def parse_layers(text: str, names: list[str]) -> list[int]:
    """Indices (ascending, each once) into ``names`` (a model's GEMM layers) selected by
    ``text``: comma-separated indices, ranges ``a-b`` (inclusive), layer names or globs
    (``*.attention.*``)."""
    chosen: set[int] = set()
    last = len(names) - 1
    for part in (p.strip() for p in text.split(",")):
        match = _RANGE.fullmatch(part)
        if match:
            lo = int(match[1])
            hi = int(match[2]) if match[2] is not None else lo
            if lo > hi or hi > last:
                raise ValueError(f"--layers: {part!r} is not inside the model's GEMM layers "
                                 f"0-{last}")
            chosen.update(range(lo, hi + 1))
            continue
        hits = [i for i, name in enumerate(names) if name == part or fnmatchcase(name, part)]
        if not part or not hits:
            raise ValueError(f"--layers: {part!r} is neither a GEMM layer index (0-{last}), a "
                             f"range such as 0-3, nor the name or glob of a GEMM layer "
                             f"(e.g. {names[0]!r}; 'sparsa report' lists them)")
        chosen.update(hits)
    return sorted(chosen)


def random_nm(rng: np.random.Generator, shape: tuple[int, ...], pattern: tuple[int, int] | None
              ) -> np.ndarray:
    """Random int8 GEMM weights ``(groups, K, cols)``; with ``pattern = (n, m)``, at most ``n``
    nonzeros in every ``m`` consecutive K indices of a column."""
    w = rng.integers(-128, 128, shape, dtype=np.int64)
    if pattern is None:
        return w
    n, m = pattern
    groups, k, cols = shape
    kp = -(-k // m) * m
    keys = rng.random((groups, kp // m, m, cols))
    keep = np.argsort(np.argsort(keys, axis=2), axis=2) < n
    return w * keep.reshape(groups, kp, cols)[:, :k]


@dataclass(frozen=True)
class LayerData:
    x: np.ndarray          # NHWC for a conv, (P, K) otherwise (a matmul's groups stacked on P)
    w: np.ndarray          # (groups, K_g, cols_g), Layer.gemm_weight's layout
    multiplier: np.ndarray
    shift: np.ndarray


def layer_data(cfg: ArrayConfig, sched: LayerSchedule, layer, rng: np.random.Generator
               ) -> LayerData:
    """Random int8 input (30% zeros, for gating) and weights (N:M where the layer is pruned),
    and requantization that keeps most outputs inside int8."""
    g = sched.tiling.gemm
    if layer.kind == "conv2d":
        n, c, h, w = layer.in_shape
        x = rng.integers(-128, 128, (n, h, w, c), dtype=np.int64)
    elif layer.kind == "matmul":
        x = rng.integers(-128, 128, (g.groups * g.p, g.k), dtype=np.int64)
    else:
        x = rng.integers(-128, 128, (g.p, g.k * g.groups), dtype=np.int64)
    x = np.where(rng.random(x.shape) < 0.3, 0, x)
    weights = random_nm(rng, (g.groups, g.k, g.cols), layer.nm)   # Gemm.cols: per group
    cols = g.cols if layer.kind == "matmul" else g.groups * g.cols  # a matmul's stack on P
    # a sum is about 2**12 sqrt(K), the multiplier about 2**14
    shift = np.full(cols, int(np.log2(np.sqrt(g.k))) + 20, dtype=np.int64)
    return LayerData(x, weights, rng.integers(1 << 12, 1 << 15, cols), shift)


def layer_program(cfg: ArrayConfig, layer, rng: np.random.Generator):
    """The assembled program of ``layer`` on random data, its schedule and the data."""
    sched = schedule_layer(layer, cfg)
    data = layer_data(cfg, sched, layer, rng)
    asm = assemble_layer(cfg, sched.tiling, data.x, data.w, multiplier=data.multiplier,
                         shift=data.shift)
    return asm, sched, data


def reference(layer, data: LayerData) -> np.ndarray:
    """The layer's requantized output ``(P, cols)`` by an independent computation: torch's
    convolution, or a matmul in float64 per group (exact for these integer sums)."""
    if layer.kind == "conv2d":
        import torch

        a = layer.attrs
        groups, k, cols_g = data.w.shape
        kh, kw = a["kernel"]
        w = data.w.reshape(groups, kh, kw, k // (kh * kw), cols_g).transpose(0, 4, 3, 1, 2)
        x = torch.from_numpy(data.x.transpose(0, 3, 1, 2).astype(np.float64))
        # an output larger than the input covers (SCALE-Sim's ceil) reads zeros past the
        # bottom and right edges
        extra = [max(0, (o - 1) * s + (kk - 1) * d + 1 - (i + 2 * p)) for o, s, kk, d, i, p in
                 zip(layer.out_shape[2:], a["stride"], a["kernel"], a["dilation"],
                     data.x.shape[1:3], a["padding"], strict=True)]
        x = torch.nn.functional.pad(x, (0, extra[1], 0, extra[0]))
        out = torch.nn.functional.conv2d(
            x,
            torch.from_numpy(w.reshape(groups * cols_g, k // (kh * kw), kh, kw)
                             .astype(np.float64)),
            stride=a["stride"], padding=a["padding"], dilation=a["dilation"], groups=groups)
        acc = out.numpy().transpose(0, 2, 3, 1).reshape(-1, groups * cols_g)
    elif layer.kind == "matmul":   # groups stacked along P, each with its own weights
        groups = data.w.shape[0]
        xs = data.x.astype(np.float64).reshape(groups, -1, data.x.shape[1])
        acc = np.concatenate([xs[g] @ data.w[g].astype(np.float64) for g in range(groups)])
    else:
        acc = data.x.astype(np.float64) @ data.w[0].astype(np.float64)
    return nm.requantize(np.rint(acc).astype(np.int64), data.multiplier, data.shift)


@dataclass(frozen=True)
class PlannedLayer:
    index: int             # among the model's GEMM layers
    layer: object          # the Layer, marked pruned as the report marks it
    schedule: LayerSchedule
    predicted: int         # the report's cycles for the layer


MEMORIES = ("ideal", "dram", "axi")


def predicted_cycles(sched: LayerSchedule, memory: str) -> int:
    """The report's cycles of a scheduled layer for a run with ``memory``: its compute cycles
    with ideal streams, its total with DRAM ports of the configuration's rate, or the
    memory-mapped top's cycles (:func:`sparsa.sw.top_timing.layer_top_cycles`)."""
    if memory == "axi":
        return layer_top_cycles(sched.tiling.cfg, sched.tiling)
    cycles = layer_cost(sched).cycles
    return cycles.total if memory == "dram" else cycles.compute


def plan_layers(graph, cfg: ArrayConfig, policy: PrunePolicy | None, selection: str | None, *,
                memory: str = "ideal", max_cycles: int | None = None) -> list[PlannedLayer]:
    """The selected GEMM layers, scheduled and costed as the report does for ``memory`` (one
    of :data:`MEMORIES`), checked before any simulator starts (``max_cycles``: the
    simulator's limit)."""
    if memory not in MEMORIES:
        raise ValueError(f"memory must be one of {', '.join(MEMORIES)}, not {memory!r}")
    gemm = mark_pruned(graph, cfg.n, cfg.m, policy).gemm_layers()
    if not gemm:
        raise ValueError(f"model {graph.name!r} has no GEMM layers (conv2d, linear, matmul) to "
                         f"run")
    indices = (parse_layers(selection, [lay.name for lay in gemm]) if selection is not None
               else range(len(gemm)))
    planned = []
    for i in indices:
        sched = schedule_layer(gemm[i], cfg)
        predicted = predicted_cycles(sched, memory)
        if max_cycles is not None and predicted > max_cycles:
            raise ValueError(f"layer {i} {gemm[i].name!r}: {predicted:,} predicted cycles, "
                             f"beyond the simulator's limit of {max_cycles:,} (--max-cycles); "
                             f"select other layers with --layers or raise the limit")
        planned.append(PlannedLayer(i, gemm[i], sched, predicted))
    return planned


def weights_line(graph, cfg: ArrayConfig, policy: PrunePolicy | None, seed: int) -> str:
    """What the run's data is, in one line."""
    gemm = mark_pruned(graph, cfg.n, cfg.m, policy).gemm_layers()
    patterns = sorted({f"{lay.nm[0]}:{lay.nm[1]}" for lay in gemm if lay.nm is not None})
    pruned = sum(lay.nm is not None for lay in gemm)
    how = (f"pruned {', '.join(patterns)} (random positions) in {pruned} of {len(gemm)} GEMM "
           f"layers, policy: {(policy or PrunePolicy()).describe(graph)}" if pruned
           else "no layer pruned (dense)")
    own = "; the model's own weights are not used" if graph.meta.get("weights") != "absent" \
        else ""
    return (f"weights: random int8, seed {seed}, {how}; activations: random int8 (30% zeros), "
            f"same seed{own}")


@dataclass(frozen=True)
class LayerResult:
    index: int
    name: str
    gemm: str
    pattern: str
    instructions: int
    measured: int
    predicted: int
    counter_diffs: dict
    outputs_exact: bool        # == reference()
    golden: bool | None        # data_out rows == the golden executor's (None: not run)
    macs: int
    gated_macs: int
    sim_seconds: float         # the backend's run, wall time
    sim_cpu_seconds: float     # ... its CPU time (this process and the simulator's)
    seconds: float             # the whole layer: assembling, running, checking

    @property
    def ok(self) -> bool:
        return (self.measured == self.predicted and not self.counter_diffs
                and self.outputs_exact and self.golden is not False)

    def problems(self) -> list[str]:
        """One line per mismatch."""
        where = f"layer {self.index} {self.name}"
        lines = []
        if self.measured != self.predicted:
            lines.append(f"{where}: {self.measured} cycles measured, {self.predicted} predicted "
                         f"by the report (difference {self.measured - self.predicted:+d})")
        for k, v in self.counter_diffs.items():
            lines.append(f"{where}: counter {k} differs from the predicted count by {v:+d}")
        if not self.outputs_exact:
            lines.append(f"{where}: outputs differ from the independent computation (torch's "
                         f"convolution / a float64 matmul)")
        if self.golden is False:
            lines.append(f"{where}: data_out rows differ from the golden executor's")
        return lines


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the native simulator), user +
    system: a figure that a loaded machine does not inflate as it does wall time."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _golden(cfg: ArrayConfig, asm, outputs) -> tuple[bool, int]:
    from .golden_accel import GoldenAccelerator

    golden = GoldenAccelerator(cfg)
    rows = golden.run(asm.program, asm.data_in)
    # rows read back from memory hold each STORE's real columns only
    if asm.memory is not None and len(rows) == len(outputs):
        rows = [row[:len(out)] for row, out in zip(rows, outputs, strict=True)]
    same = len(rows) == len(outputs) and all(np.array_equal(a, b)
                                             for a, b in zip(rows, outputs, strict=True))
    return same, golden.gated_macs


async def run_layer(backend, cfg: ArrayConfig, planned: PlannedLayer, seed: int, *,
                    golden_macs: int = GOLDEN_MACS) -> LayerResult:
    """One planned layer on ``backend`` with the data of ``(seed, index)``, checked."""
    start = time.perf_counter()
    layer, sched = planned.layer, planned.schedule
    rng = np.random.default_rng([seed, planned.index])
    data = layer_data(cfg, sched, layer, rng)
    t = sched.tiling
    in_memory = getattr(backend, "in_memory", False)
    asm = assemble_layer(cfg, t, data.x, data.w, multiplier=data.multiplier, shift=data.shift,
                         in_memory=in_memory)
    sim_start, cpu_start = time.perf_counter(), cpu_seconds()
    run = await (backend.run(asm.program, asm.data_in, asm.memory) if in_memory
                 else backend.run(asm.program, asm.data_in))
    sim_seconds, sim_cpu = time.perf_counter() - sim_start, cpu_seconds() - cpu_start
    exact = np.array_equal(asm.collect(run.outputs), reference(layer, data))
    golden = None
    if backend.name != "golden" and t.gemm.macs <= golden_macs:
        golden, _ = _golden(cfg, asm, run.outputs)
    expected = {**tiling_counts(cfg, t), "gated_macs": layer_gated_macs(cfg, t, data.x, data.w)}
    diffs = {k: run.counters.get(k, 0) - v for k, v in expected.items()
             if run.counters.get(k, 0) != v}
    g = t.gemm
    return LayerResult(
        index=planned.index, name=layer.name,
        gemm=f"{g.p}x{g.k}x{g.cols}" + (f" g{g.groups}" if g.groups > 1 else ""),
        pattern=sched.pattern, instructions=len(asm.program), measured=run.cycles,
        predicted=planned.predicted, counter_diffs=diffs, outputs_exact=exact, golden=golden,
        macs=expected["macs"], gated_macs=run.counters.get("gated_macs", 0),
        sim_seconds=sim_seconds, sim_cpu_seconds=sim_cpu, seconds=time.perf_counter() - start)


@dataclass(frozen=True)
class LayersRun(LayerTotals):
    RECORD: ClassVar[type] = LayerResult
    DERIVED: ClassVar[tuple[str, ...]] = ("measured", "predicted", "ok")

    model: str
    backend: str
    memory: str                # "ideal", "DRAM N B/cycle" or "AXI ... latency N"
    weights: str               # weights_line()
    seed: int
    layers: list[LayerResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.layers)
