"""``sparsa run``: a pruned, quantized demo network on the accelerator (RTL or golden)."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

__all__ = ["register"]


def _run(args: argparse.Namespace) -> int:
    from sparsa.cli import config_from_args

    from .host import GoldenBackend, PyVerilatorBackend
    from .infer import ModelRun, prepare_model, run_model

    cfg = config_from_args(args)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if args.sim in ("golden", "pyverilator"):
        name, qgraph, x, labels = prepare_model(args.model, cfg, args.images)
        backend = GoldenBackend(cfg) if args.sim == "golden" else PyVerilatorBackend(
            cfg, out / "pyverilator")
        result = asyncio.run(run_model(backend, cfg, name, qgraph, x, labels))
    else:
        from .runner import run_testbench

        job = {"model": args.model, "images": args.images, "simulator": args.sim,
               "result": str((out / "run.json").resolve())}
        Path(job["result"]).unlink(missing_ok=True)
        tb = run_testbench(cfg, top="accelerator", simulator=args.sim,
                           test_module="sparsa.sim.tb_run",
                           extra_env={"SPARSA_RUN_JOB": json.dumps(job)})
        if tb.failed:
            raise RuntimeError(f"the {args.sim} run failed; see {tb.results_xml}")
        result = ModelRun.from_json(Path(job["result"]).read_text())
    seconds = time.perf_counter() - start
    (out / "run.json").write_text(result.to_json())
    _print(result, cfg, seconds)
    ok = result.bit_exact and all(r.measured == r.predicted and r.counters_match
                                  for r in result.layers)
    return 0 if ok else 1


def _print(result, cfg, seconds: float) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result.model} on {result.backend}: {cfg.rows}x{cfg.cols} "
                        f"{cfg.nm}, {result.images} images")
    for col in ("layer", "GEMM PxKxC", "N:M", "insns", "cycles", "predicted", "diff",
                "counters"):
        table.add_column(col, justify="left" if col in ("layer", "N:M") else "right",
                         no_wrap=True)
    for r in result.layers:
        table.add_row(r.name, r.gemm, r.pattern, str(r.instructions), str(r.measured),
                      str(r.predicted), str(r.difference),
                      "match" if r.counters_match else f"differ {r.counter_diffs}")
    table.add_row("total", "", "", str(sum(r.instructions for r in result.layers)),
                  str(result.measured), str(result.predicted),
                  str(result.measured - result.predicted), "")
    console = Console()
    console.print(table)
    console.print(f"accuracy {result.accuracy:.2%} over {result.images} digits test images "
                  f"(golden integer model {result.golden_accuracy:.2%}); outputs "
                  f"{'bit-exact with' if result.bit_exact else 'DIFFERENT from'} golden; "
                  f"wall time {seconds:.1f} s")


def register(subparsers: argparse._SubParsersAction) -> None:
    from sparsa.cli import add_config_args

    from .host import BACKENDS

    p = subparsers.add_parser(
        "run", help="run a pruned int8 demo network on the accelerator (RTL or golden)")
    p.add_argument("model", help="digits_cnn, digits_mlp, or a .npz written by 'sparsa prune'")
    p.add_argument("--sim", choices=BACKENDS, default="verilator", help="backend")
    p.add_argument("--images", type=int, default=20, help="digits test images (a batch)")
    p.add_argument("-o", "--output", default="build/run", help="output directory")
    add_config_args(p)
    p.set_defaults(func=_run)
