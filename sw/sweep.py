"""Run an exploration on Dask: every (configuration, model) is a pure task, results are stored by
the client as they arrive.

:func:`run_sweep` takes a connected ``distributed.Client`` (a LocalCluster or a real cluster, the
caller's choice). Traced graphs are scattered to every worker once; each point is submitted as
``client.submit(evaluate, cfg, graph_future, area_future, key=<content hash>, pure=True,
retries=2)`` and gathered with ``as_completed``; a point already in the
:class:`~sparsa.sw.result_store.ResultStore` is not submitted again. The area of a configuration is
its own task (one per configuration, shared by its models) running the ``area`` callable the
caller injects (the command line passes :func:`sparsa.hw.area.area_kge`). A task whose worker
dies is rescheduled by Dask; one that raises is retried twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sparsa.config import ArrayConfig
from sparsa.models.graph import LayerGraph

from .design_space import ExploreSpec, ModelSpec, Objective
from .energy import EnergyTable
from .evaluate import Evaluation, combine, evaluate, point_key, sparsa_version
from .result_store import ResultStore
from .search import make_search

__all__ = ["SweepResult", "aggregate", "load_models", "model_identity", "run_sweep"]


def model_identity(model: ModelSpec) -> str:
    """What names a model in a point's hash: its label, and the SHA-256 of a model file or of a
    Hugging Face config."""
    from sparsa.models.hf_config import config_path

    path = Path(model.name)
    if path.suffix.lower() in (".onnx", ".csv", ".npz") and path.is_file():
        return f"{model.label}#sha256:{hashlib.sha256(path.read_bytes()).hexdigest()}"
    config = config_path(model.name)
    if config is not None and config.is_file():
        return f"{model.label}#sha256:{hashlib.sha256(config.read_bytes()).hexdigest()}"
    return model.label


def load_models(spec: ExploreSpec) -> dict[str, LayerGraph]:
    """The layer graph of every model of the SPEC, by label (traced once, here)."""
    from sparsa.models.load import load_graph

    graphs = {}
    for model in spec.models:
        try:
            graphs[model.label] = load_graph(model.name, batch=model.batch or 1, seq=model.seq)
        except ValueError as e:
            raise ValueError(f"{spec.source}: model {model.name!r}: {e}") from None
    return graphs


def aggregate(objective: Objective, results: Sequence[Evaluation]) -> float | None:
    """One objective over several models: its value for all of them run one after the other
    (:func:`~sparsa.sw.evaluate.combine`)."""
    return combine(results).metrics[objective.metric] if results else None


@dataclass(frozen=True)
class SweepResult:
    """Every evaluation of the sweep (stored before or now), and how many were computed now."""

    evaluations: tuple[Evaluation, ...]
    computed: int
    reused: int


def _task_key(prefix: str, text: str) -> str:
    return f"{prefix}-{hashlib.sha256(text.encode()).hexdigest()}"


def run_sweep(spec: ExploreSpec, graphs: Mapping[str, LayerGraph], store: ResultStore, client, *,
              table: EnergyTable, area: Callable[[ArrayConfig], float] | None = None,
              area_name: str = "none",
              fpga: Callable[[ArrayConfig], Mapping[str, int]] | None = None,
              liberty: Callable[[ArrayConfig], float] | None = None,
              model_ids: Mapping[str, str] | None = None,
              progress: Callable[[int, int], None] | None = None) -> SweepResult:
    """Evaluate the SPEC's search on ``client``; ``progress(done, total)`` after each point.
    ``area`` (kGE), ``fpga`` (LUTs, FFs, DSPs) and ``liberty`` (µm²) of a configuration are
    computed by the callables given, each a task of its own, when the SPEC asks for them; the
    caller names them in ``area_name`` (part of every point's key)."""
    from distributed import as_completed

    hardware = _hardware(spec, {"area": area, "fpga": fpga, "liberty": liberty})
    area_name = area_name if "area" in hardware else "none"
    if "fpga" in hardware:
        area_name += (f"; fpga {spec.fpga} {spec.fpga_device or 'default device'}, BRAMs"
                      + {True: "; post-route Fmax", "estimate": "; Fmax estimated"}.get(
                          spec.fpga_fmax, ""))
    ids = {label: (model_ids or {}).get(label, label) for label in graphs}
    search = make_search(spec)
    code = sparsa_version()
    total = search.total * len(graphs)
    # hash=False: a fresh key per sweep, so a graph released by an earlier sweep on the same
    # client is never mistaken for this one.
    shared = {label: client.scatter(g, broadcast=True, hash=False)
              for label, g in graphs.items()}
    results: dict[str, Evaluation] = {}
    computed = reused = 0
    while batch := search.ask():
        keys = {(cfg, label): point_key(cfg, ids[label], table.name, area_name, code)
                for cfg in batch for label in graphs}
        stored = store.get(keys.values())
        reused += len(stored)
        results.update(stored)
        if progress is not None:
            progress(len(results), total)
        todo = {point: key for point, key in keys.items() if key not in stored}
        futures, helpers = _submit(client, todo, shared, hardware, area_name, table)
        try:
            for future in as_completed(futures):
                try:
                    result = future.result()
                except Exception as e:
                    cfg, label = futures[future]
                    raise RuntimeError(f"{label} on {cfg.rows}x{cfg.cols} {cfg.nm} "
                                       f"({cfg.to_json()}) failed: {e}") from e
                store.add(result)
                results[result.key] = result
                computed += 1
                if progress is not None:
                    progress(len(results), total)
        finally:
            client.cancel([*futures, *helpers])
        search.tell({cfg: _objective_values(spec, [results[keys[cfg, label]]
                                                   for label in graphs])
                     for cfg in batch})
    return SweepResult(evaluations=tuple(results.values()), computed=computed, reused=reused)


def _hardware(spec: ExploreSpec, given: dict[str, Callable | None]) -> dict[str, Callable]:
    """The hardware callables the SPEC asks for (an error when one of them is missing)."""
    wanted = {"area": spec.area, "fpga": bool(spec.fpga), "liberty": bool(spec.liberty)}
    for name, wanted_it in wanted.items():
        if wanted_it and given[name] is None:
            raise ValueError(f"the SPEC asks for {_WANTS[name]} but no {name} function was "
                             "given")
    return {name: f for name, f in given.items() if wanted[name]}


_WANTS = {"area": "the area (area = true)", "fpga": "FPGA resources (fpga = ...)",
          "liberty": "the cell area with a Liberty library (liberty = ...)"}


def _submit(client, todo: Mapping[tuple[ArrayConfig, str], str], shared: Mapping, hardware:
            Mapping[str, Callable], area_name: str, table: EnergyTable) -> tuple[dict, list]:
    """Submit the points ``todo`` ((configuration, model) -> key) and, once per configuration,
    its hardware tasks; (evaluation futures -> point, the hardware futures)."""
    configs = list(dict.fromkeys(cfg for cfg, _ in todo))
    home = _homes(client, configs)
    done_by = {name: _hardware_tasks(client, name, f, configs, area_name)
               for name, f in hardware.items()}
    futures = {}
    for (cfg, label), key in todo.items():
        figures = [done_by[name][cfg] if name in done_by else None
                   for name in ("area", "fpga", "liberty")]
        future = client.submit(evaluate, cfg, shared[label], *figures, point=key, model=label,
                               table=table, key=_task_key("eval", key), pure=True, retries=2,
                               workers=home[cfg], allow_other_workers=True)
        futures[future] = (cfg, label)
    return futures, [f for by_cfg in done_by.values() for f in by_cfg.values()]


def _hardware_tasks(client, name: str, f: Callable, configs: Sequence[ArrayConfig],
                    area_name: str) -> dict:
    """One task of the hardware callable ``f`` per configuration, or per configuration its
    ``same_hardware`` attribute maps them to (configurations of the same RTL share one task;
    two tasks would elaborate and synthesize the same design at once on two workers)."""
    same = getattr(f, "same_hardware", lambda cfg: cfg)
    tasks: dict[ArrayConfig, object] = {}
    done_by = {}
    for cfg in configs:
        stand_in = same(cfg)
        if stand_in not in tasks:
            tasks[stand_in] = client.submit(f, stand_in, key=_task_key(
                name, f"{area_name}\0{stand_in.to_json()}"), pure=True, retries=2)
        done_by[cfg] = tasks[stand_in]
    return done_by


def _homes(client, configs: Sequence[ArrayConfig]) -> dict[ArrayConfig, list[str]]:
    """A preferred worker for each configuration: those that share a dense baseline (1:4 and
    1:1 of one grid, 2:4 and 2:2) or differ only in the clock or the DRAM ports' rate go to the
    same worker, whose cost-model cache then builds their common programs once
    (:data:`sparsa.sw.cost.TIMING_NEUTRAL`). Groups are spread by their estimated work, the
    largest first onto the least loaded worker (:func:`_work`). Only a preference: Dask may run
    a task elsewhere (a busy or lost worker)."""
    workers = sorted(client.scheduler_info()["workers"])
    groups: dict[str, list[ArrayConfig]] = {}
    for cfg in dict.fromkeys(configs):
        # the programs depend on neither the clock nor the rate: one group across them too
        groups.setdefault(cfg.replace(m=cfg.n, clock_mhz=1.0, dram_bytes_per_cycle=1).to_json(),
                          []).append(cfg)
    load = dict.fromkeys(workers, 0.0)
    home = {}
    for members in sorted(groups.values(), key=lambda m: sum(map(_work, m)), reverse=True):
        worker = min(workers, key=lambda w: (load[w], w))
        load[worker] += sum(map(_work, members))
        home.update({cfg: [worker] for cfg in members})
    return home


def _work(cfg: ArrayConfig) -> float:
    """The relative time of evaluating a model on ``cfg``: about one over the square root of its
    PEs (fewer, larger blocks on a larger array; ResNet-50 2:4 took 1.48 s on 4x8, 1.03 s on
    8x8, 0.58 s on 16x16 and 0.32 s on 32x32; GPT-2 0.67 s to 0.11 s)."""
    return (cfg.rows * cfg.cols) ** -0.5


def _objective_values(spec: ExploreSpec, results: Sequence[Evaluation]) -> list[float] | None:
    values = [aggregate(o, results) for o in spec.objectives]
    return None if any(v is None for v in values) else values
