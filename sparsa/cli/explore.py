"""``sparsa explore``: sweep configurations x models on Dask, store every point, write the Pareto
fronts, plots and a configuration file per Pareto point.

The output directory holds ``results.sqlite`` (the durable store, written as results arrive),
``spec.toml`` (the SPEC of the last run; ``--resume`` reads it) and ``report/`` (tables, fronts,
plots, summary and Pareto configurations, replaced whole at the end of each run).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import logging
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from .common import (
    MARKER,
    UsageError,
    add_command,
    check_output_dir,
    output_dir,
    output_file,
)

__all__ = ["register"]

STORE = "results.sqlite"
SPEC_COPY = "spec.toml"


def _paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """The SPEC to run and the output directory, checked before any work."""
    if args.spec is None and not args.resume:
        raise UsageError("give a SPEC file (or --resume with -o DIR of an earlier sweep)")
    if args.output is None and args.spec is None:
        raise UsageError("--resume without a SPEC needs -o DIR (the sweep to resume)")
    out = Path(args.output or f"build/explore/{Path(args.spec).stem}")
    if args.resume:
        if not (out / STORE).is_file():
            raise UsageError(f"--resume: {str(out)!r} holds no sweep to resume (no {STORE}); "
                             "run without --resume to start one")
        saved = out / SPEC_COPY
        if args.spec is None:
            return saved, check_output_dir(out)
        if saved.is_file() and Path(args.spec).is_file() \
                and saved.read_bytes() != Path(args.spec).read_bytes():
            raise UsageError(f"--resume: {args.spec!r} differs from the SPEC of the sweep in "
                             f"{str(out)!r} ({saved}); drop --resume to run the new SPEC there")
    return Path(args.spec), check_output_dir(out)


@contextlib.contextmanager
def _client(args: argparse.Namespace) -> Iterator:
    """A Dask client: on the scheduler given, or on a LocalCluster of worker processes."""
    from distributed import Client, LocalCluster

    if args.scheduler:
        with Client(args.scheduler, timeout="20s") as client:
            yield client
        return
    # silence_logs: the workers' warnings about tasks cancelled by Ctrl-C are expected noise.
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=args.dashboard_address,
                      silence_logs=logging.ERROR) as cluster, \
            Client(cluster) as client:
        yield client


def _start_dir(out: Path, spec_path: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    marker = out / MARKER
    if not marker.is_file():
        marker.write_text("written by sparsa explore; results.sqlite is kept across runs\n")
    copy = out / SPEC_COPY
    if spec_path.resolve() != copy.resolve():
        with output_file(copy) as tmp:
            shutil.copyfile(spec_path, tmp)


def _sweep(args: argparse.Namespace, spec, graphs: dict, out: Path):
    """Run the sweep into ``out``'s store; (result, seconds, worker threads)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from sparsa.hw.area import area_kge, load_gate_table
    from sparsa.hw.fpga_area import fpga_resources
    from sparsa.hw.liberty import area_um2
    from sparsa.sw.energy import load_table
    from sparsa.sw.result_store import ResultStore
    from sparsa.sw.sweep import model_identity, run_sweep

    table = load_table(spec.energy_table)
    ids = {m.label: model_identity(m) for m in spec.models}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with ResultStore(out / STORE) as store, _client(args) as client:
        cores = sum(w["nthreads"] for w in client.scheduler_info()["workers"].values())
        print(f"Dask: {cores} worker thread(s); dashboard {client.dashboard_link}", flush=True)
        start = time.monotonic()
        try:
            with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
                task = bar.add_task("evaluating", total=None)
                result = run_sweep(spec, graphs, store, client, table=table,
                                   area=area_kge if spec.area else None,
                                   area_name=_area_name(spec, load_gate_table().name),
                                   fpga=functools.partial(fpga_resources, target=spec.fpga,
                                                          device=spec.fpga_device,
                                                          fmax=spec.fpga_fmax),
                                   liberty=functools.partial(
                                       area_um2, liberty=Path(spec.liberty).resolve())
                                   if spec.liberty else None,
                                   model_ids=ids,
                                   progress=lambda done, total: bar.update(
                                       task, completed=done, total=total))
        except KeyboardInterrupt:
            print(f"sparsa: {len(store)} points are stored in {out / STORE}; continue with "
                  f"'sparsa explore --resume -o {out}'", file=sys.stderr)
            raise
        return result, time.monotonic() - start, cores


def _area_name(spec, table: str) -> str:
    """What names the area models in each point's key: the GE table, the SRAM table, and the
    Liberty file by its content."""
    from sparsa.hw.sram import load_sram_table

    name = f"{table}, modular array + accelerator logic; SRAM {load_sram_table().name}"
    if spec.liberty:
        name += f"; liberty sha256:{hashlib.sha256(Path(spec.liberty).read_bytes()).hexdigest()}"
    return name


def _cmd_explore(args: argparse.Namespace) -> int:
    from rich.console import Console

    from sparsa.sw.explore import load_spec
    from sparsa.sw.explore_outputs import write_outputs
    from sparsa.sw.sweep import load_models

    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, not {args.workers}")
    spec_path, out = _paths(args)
    spec = load_spec(spec_path)
    with Console(stderr=True).status("loading models (traced or trained on first use, then "
                                     "cached)"):
        graphs = load_models(spec)
    fresh = not out.exists()
    _start_dir(out, spec_path)
    try:
        result, seconds, cores = _sweep(args, spec, graphs, out)
    except BaseException:
        if fresh and not _has_results(out):
            shutil.rmtree(out, ignore_errors=True)   # nothing to resume: leave nothing behind
        raise
    with output_dir(out / "report", "explore") as tmp:
        write_outputs(spec, result.evaluations, tmp, computed=result.computed,
                      reused=result.reused)
    rate = result.computed / seconds / max(1, cores) if result.computed else 0.0
    print(f"{len(result.evaluations)} points ({result.computed} evaluated, {result.reused} from "
          f"the store) in {seconds:.1f} s: {rate:.2f} evaluations per second per core")
    print(f"wrote {out / 'report'} (summary.md, results.csv/json, pareto.csv, plots, "
          f"pareto/*.toml); store {out / STORE}")
    if spec.fpga_fmax == "estimate":
        print(_fmax_error_line(spec))
    return 0


def _fmax_error_line(spec) -> str:
    """How far the Fmax estimate is from place and route: leave-one-out over every array placed
    and routed so far on this device."""
    from sparsa.hw.fpga_area import fmax_estimate_errors

    errors = [est / real - 1 for _, real, est in fmax_estimate_errors(spec.fpga,
                                                                       spec.fpga_device)]
    if not errors:
        return ("Fmax estimate: its error is not measurable yet (no PE placed and routed at "
                "three array sizes)")
    mean = sum(abs(e) for e in errors) / len(errors)
    return (f"Fmax estimate (least squares on log2 PEs per PE, from the placed and routed "
            f"arrays) vs place and route, leave-one-out over {len(errors)} arrays: mean |error| "
            f"{mean:.1%}, worst {max(errors, key=abs):+.1%}")


def _has_results(out: Path) -> bool:
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(out / STORE)) as db:
            return db.execute("SELECT COUNT(*) FROM results").fetchone()[0] > 0
    except sqlite3.Error:
        return False


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``sparsa explore`` to the CLI."""
    p = add_command(subparsers, "explore",
                    "sweep configurations x models on Dask and write the Pareto fronts")
    p.add_argument("spec", nargs="?", default=None, metavar="SPEC",
                   help="exploration SPEC (.toml); optional with --resume (the sweep's own)")
    p.add_argument("-o", "--output", default=None, metavar="DIR",
                   help="sweep directory (default build/explore/<SPEC name>)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=2, metavar="N",
                       help="worker processes of the local Dask cluster (one thread each)")
    where.add_argument("--scheduler", metavar="ADDRESS", default=None,
                       help="run on an existing Dask scheduler, e.g. tcp://127.0.0.1:8786")
    p.add_argument("--dashboard-address", default=":8787", metavar="ADDRESS",
                   help="where the local cluster serves its dashboard (':0' for any free port)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted sweep in -o DIR (points already stored are "
                        "skipped on every run; --resume also takes the SPEC saved there)")
    p.set_defaults(func=_cmd_explore)
