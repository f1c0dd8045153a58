"""Benchmark of ``sparsa explore``'s Dask sweep (issue 12 speed figures).

1. Sweeps one space (36 configurations x zoo CNNs and transformers, area off so the cost model is
   the whole inner loop) on a LocalCluster of 1 and then 2 worker processes, each time into a
   fresh result store, after the workers have imported sparsa, and prints the wall time,
   evaluations per second per core and the scaling from 1 to 2 workers; also each worker's CPU
   seconds in the sweep, whose sum over the largest is the speedup the spread of the work
   allows on an idle machine (wall time also counts whatever else the machine runs).
2. ``--sample K``: the in-process cost of one evaluation of each model of a wider mix (zoo CNNs
   and transformers, ResNet-50 included) on ``K`` configurations drawn from a wider space, and
   from it the time of a 1,000-point sweep of that mix on 2 cores, clearly marked as an
   extrapolation (CPU time per point / 2 cores, perfect scaling).
3. ``--points N``: that sweep measured for real: a random search of ``N`` points
   (configurations x the wider mix) on ``--workers``' largest count.

Run: ``.venv/bin/python bench/explore_bench.py [--models digits_cnn,gpt2,...] [--workers 1,2]
[--sample K] [--points N] [--skip-sweep]``.
"""

from __future__ import annotations

import argparse
import importlib
import random
import statistics
import tempfile
import time
from pathlib import Path

from sparsa.sw.energy import load_table
from sparsa.sw.evaluate import evaluate
from sparsa.sw.explore import parse_spec
from sparsa.sw.result_store import ResultStore
from sparsa.sw.sweep import load_models, run_sweep

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("digits_cnn", str(ROOT / "examples" / "tiny_convnet.csv"), "gpt2", "bert_base")
SPACE = {"rows": [4, 8, 16], "cols": [8, 16], "nm": ["1:1", "2:4", "1:4"],
         "dram_bytes_per_cycle": [16, 64]}
# The wider mix for the 1,000-point figure: zoo CNNs and transformers.
WIDE_MODELS = ("digits_cnn", str(ROOT / "examples" / "tiny_convnet.csv"), "mobilenet_v2",
               "resnet50", "gpt2", "bert_base", "vit_b16")
WIDE_SPACE = {"rows": [4, 8, 16, 32], "cols": [8, 16, 32], "nm": ["1:1", "2:4", "1:4"],
              "dram_bytes_per_cycle": [8, 16, 64], "pipeline_depth": [1, 2]}
SWEEP_GOAL_S = 300


def _warm() -> None:
    importlib.import_module("sparsa.sw.evaluate")


def _spec(models, space, search=None):
    return parse_spec({"models": [{"name": m} for m in models], "space": space, "area": False,
                       "objectives": ["latency", "energy"], **({"search": search} if search
                                                                else {})}, source="bench")


def sweep(spec, graphs, workers: int) -> tuple[int, float]:
    """Points computed and wall seconds; also prints each worker's CPU seconds in the sweep (how
    evenly the work was spread, whatever else the machine runs)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        client.run(_warm)
        with tempfile.TemporaryDirectory() as tmp, ResultStore(Path(tmp) / "r.sqlite") as store:
            before = client.run(time.process_time)
            start = time.perf_counter()
            result = run_sweep(spec, graphs, store, client, table=load_table())
            wall = time.perf_counter() - start
            cpu = {w: t - before[w] for w, t in client.run(time.process_time).items()}
    print(f"  workers' CPU seconds: {', '.join(f'{t:.1f}' for t in cpu.values())} "
          f"(sum {sum(cpu.values()):.1f}; the sum over the largest: "
          f"{sum(cpu.values()) / max(cpu.values()):.2f}, the speedup an idle machine allows)")
    return result.computed, wall


def scaling(models: list[str], workers: list[int]) -> None:
    spec = _spec(models, SPACE)
    graphs = load_models(spec)
    print(f"{len(spec.configs())} configurations x {len(graphs)} models "
          f"({', '.join(Path(m).name for m in graphs)}), area off")
    seconds = {}
    for n_workers in workers:
        n, s = sweep(spec, graphs, n_workers)
        seconds[n_workers] = s
        print(f"{n_workers} worker(s): {n} evaluations in {s:.1f} s = {n / s:.2f} per second, "
              f"{n / s / n_workers:.2f} per second per core")
    if 1 in seconds and 2 in seconds:
        print(f"2 workers vs 1: {seconds[1] / seconds[2]:.2f}x faster")


def sampled_rate(sample: int, seed: int = 0) -> None:
    """CPU time of one evaluation per model of the wide mix, on ``sample`` drawn configurations
    (in this process, one core), and the 1,000-point sweep extrapolated from it."""
    spec = _spec(WIDE_MODELS, WIDE_SPACE)
    graphs = load_models(spec)
    configs = random.Random(seed).sample(list(spec.configs()), sample)
    table = load_table()
    print(f"== in process: {sample} configurations drawn from {len(spec.configs())} "
          f"(seed {seed}) x {len(graphs)} models ==")
    means = []
    for label, graph in graphs.items():
        times = []
        for cfg in configs:
            start = time.process_time()
            evaluate(cfg, graph, table=table)
            times.append(time.process_time() - start)
        mean = statistics.fmean(times)
        means.append(mean)
        print(f"{Path(label).name:16s} {mean:7.3f} s CPU per evaluation (max {max(times):.3f}), "
              f"{1 / mean:7.2f} evaluations per second per core")
    per_point = statistics.fmean(means)
    total = 1000 * per_point / 2
    print(f"all models: {1 / per_point:.2f} evaluations per second per core; a 1,000-point sweep "
          f"of this mix (equal points per model) on 2 cores: about {total:.0f} s "
          f"(EXTRAPOLATED from the CPU times above at perfect 2-core scaling, not measured; "
          f"goal < {SWEEP_GOAL_S} s)")


def wide_sweep(points: int, workers: int, seed: int = 0) -> None:
    budget = -(-points // len(WIDE_MODELS))
    spec = _spec(WIDE_MODELS, WIDE_SPACE, {"method": "random", "budget": budget, "seed": seed})
    graphs = load_models(spec)
    n, s = sweep(spec, graphs, workers)
    verdict = "meets" if s < SWEEP_GOAL_S else "misses"
    print(f"== measured: {budget} random configurations x {len(graphs)} models on {workers} "
          f"worker(s): {n} evaluations in {s:.1f} s ({verdict} goal < {SWEEP_GOAL_S} s for "
          f"1,000), {n / s / workers:.2f} per second per core")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--sample", type=int, default=0,
                        help="configurations per model for the in-process rate (0: skip)")
    parser.add_argument("--points", type=int, default=0,
                        help="measure a random sweep of this many points of the wide mix")
    parser.add_argument("--skip-sweep", action="store_true",
                        help="skip the 1-vs-2-worker sweep of --models")
    args = parser.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    if not args.skip_sweep:
        scaling(args.models.split(","), workers)
    if args.sample:
        sampled_rate(args.sample)
    if args.points:
        wide_sweep(args.points, max(workers))


if __name__ == "__main__":
    main()
