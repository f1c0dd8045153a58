"""Benchmark of ``sparsa explore``'s Dask sweep (issue 12 speed figures).

Sweeps one space (36 configurations x zoo CNNs and transformers, area off so the cost model is
the whole inner loop) on a LocalCluster of 1 and then 2 worker processes, each time into a fresh
result store, after the workers have imported sparsa, and prints the wall time, evaluations per
second per core and the scaling from 1 to 2 workers.

Run: ``.venv/bin/python bench/explore_bench.py [--models digits_cnn,gpt2,...] [--workers 1,2]``.
"""

from __future__ import annotations

import argparse
import importlib
import tempfile
import time
from pathlib import Path

from sparsa.sw.energy import load_table
from sparsa.sw.explore import parse_spec
from sparsa.sw.result_store import ResultStore
from sparsa.sw.sweep import load_models, run_sweep

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("digits_cnn", str(ROOT / "examples" / "tiny_convnet.csv"), "gpt2", "bert_base")
SPACE = {"rows": [4, 8, 16], "cols": [8, 16], "nm": ["1:1", "2:4", "1:4"],
         "dram_bytes_per_cycle": [16, 64]}


def _warm() -> None:
    importlib.import_module("sparsa.sw.evaluate")


def sweep(spec, graphs, workers: int) -> tuple[int, float]:
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        client.run(_warm)
        with tempfile.TemporaryDirectory() as tmp, ResultStore(Path(tmp) / "r.sqlite") as store:
            start = time.perf_counter()
            result = run_sweep(spec, graphs, store, client, table=load_table())
            return result.computed, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args()
    spec = parse_spec({"models": [{"name": m} for m in args.models.split(",")],
                       "space": SPACE, "area": False,
                       "objectives": ["latency", "energy"]}, source="bench")
    graphs = load_models(spec)
    print(f"{len(spec.configs())} configurations x {len(graphs)} models "
          f"({', '.join(Path(m).name for m in graphs)}), area off")
    seconds = {}
    for workers in (int(w) for w in args.workers.split(",")):
        n, s = sweep(spec, graphs, workers)
        seconds[workers] = s
        print(f"{workers} worker(s): {n} evaluations in {s:.1f} s = {n / s:.2f} per second, "
              f"{n / s / workers:.2f} per second per core")
    if 1 in seconds and 2 in seconds:
        print(f"2 workers vs 1: {seconds[1] / seconds[2]:.2f}x faster")


if __name__ == "__main__":
    main()
