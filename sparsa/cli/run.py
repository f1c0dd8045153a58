"""``sparsa run``: a pruned, quantized demo network on the accelerator (RTL or golden)."""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from pathlib import Path

from sparsa.sw.prune import POLICY_HELP

from .common import (
    add_command,
    add_config_args,
    add_prune_args,
    check_output_dir,
    config_from_args,
    output_dir,
    prune_policy_from_args,
)

__all__ = ["register"]

BACKENDS = ("golden", "native", "pyverilator", "verilator", "icarus")


def _in_process(args, cfg, prepared, bar, task):
    """golden, native and pyverilator: the model runner in this process."""
    from sparsa.sim.host import GoldenBackend, NativeBackend, PyVerilatorBackend
    from sparsa.sim.infer import run_model
    from sparsa.sim.runner import build_dir_for

    name, qgraph, x, labels = prepared
    if args.sim == "golden":
        backend = GoldenBackend(cfg)
    elif args.sim == "native":
        bar.update(task, description="building the native simulator (cached after the first run)")
        backend = NativeBackend(cfg)
    else:
        bar.update(task, description="building the Verilated accelerator")
        backend = PyVerilatorBackend(cfg, build_dir_for(cfg, "accelerator", "pyverilator"))
    bar.update(task, description=f"{name} on {args.sim}")
    return asyncio.run(run_model(backend, cfg, name, qgraph, x, labels,
                                 progress=lambda record: bar.advance(task)))


def _in_simulator(args, cfg, policy, bar, task, work: Path):
    """verilator and icarus: the model runner inside a cocotb test; its per-layer records
    arrive in a file the progress bar follows."""
    from sparsa.sim.infer import ModelRun
    from sparsa.sim.runner import build_dir_for, run_testbench

    log = build_dir_for(cfg, "accelerator", args.sim) / "run.log"   # kept after a failure

    job = {"model": args.model, "images": args.images, "simulator": args.sim,
           "result": str(work / "run.json"), "progress": str(work / "progress.jsonl"),
           "policy": policy.to_dict()}
    outcome: dict = {}

    def simulate() -> None:
        try:
            outcome["tb"] = run_testbench(
                cfg, top="accelerator", simulator=args.sim, test_module="sparsa.sim.tb_run",
                extra_env={"SPARSA_RUN_JOB": json.dumps(job)},
                log_file=None if args.verbose else log)
        except BaseException as e:  # reported by the main thread
            outcome["error"] = e

    thread = threading.Thread(target=simulate, daemon=True)
    bar.update(task, description=f"building and running {args.sim}")
    thread.start()
    while thread.is_alive():
        thread.join(0.5)
        done = Path(job["progress"])
        if done.is_file():
            bar.update(task, completed=len(done.read_text().splitlines()))
    if "error" in outcome:
        raise outcome["error"]
    tb = outcome["tb"]
    if tb.failed:
        where = "" if args.verbose else f"; simulator log: {log}"
        raise RuntimeError(f"the {args.sim} run failed: {tb.failure()}{where}")
    return ModelRun.from_json(Path(job["result"]).read_text())


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from sparsa.sim.infer import prepare_model

    out = check_output_dir(args.output)
    cfg = config_from_args(args)
    policy = prune_policy_from_args(args)
    # Everything about the model and the images is checked here, before any simulator starts.
    prepared = prepare_model(args.model, cfg, args.images, policy)
    layers = sum(layer.has_static_weight for layer in prepared[1].graph.layers)
    start = time.perf_counter()
    progress = Progress(transient=True, console=Console(stderr=True))
    with output_dir(out, "run") as tmp, progress as bar:
        task = bar.add_task("preparing", total=layers)
        if args.sim in ("golden", "native", "pyverilator"):
            result = _in_process(args, cfg, prepared, bar, task)
        else:
            result = _in_simulator(args, cfg, policy, bar, task, tmp)
        (tmp / "run.json").write_text(result.to_json())
    _print(result, cfg, time.perf_counter() - start)
    print(f"wrote {out / 'run.json'}")
    ok = result.bit_exact and all(r.measured == r.predicted and r.counters_match
                                  for r in result.layers)
    return 0 if ok else 1


def _print(result, cfg, seconds: float) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result.model} on {result.backend}: {cfg.rows}x{cfg.cols} "
                        f"{cfg.nm}, {result.images} images", box=box.SIMPLE_HEAD)
    for col in ("layer", "GEMM PxKxC", "N:M", "insns", "measured", "model", "diff",
                "counters"):
        table.add_column(col, justify="left" if col in ("layer", "N:M") else "right",
                         no_wrap=True)
    for r in result.layers:
        table.add_row(r.name, r.gemm, r.pattern, str(r.instructions), str(r.measured),
                      str(r.predicted), str(r.difference),
                      "match" if r.counters_match else f"differ {r.counter_diffs}")
    table.add_section()
    table.add_row("total", "", "", str(sum(r.instructions for r in result.layers)),
                  str(result.measured), str(result.predicted),
                  str(result.measured - result.predicted), "")
    console = Console()
    console.print(table)
    where = ("the RTL" if result.backend != "golden"
             else "the golden executor, which takes them from the cycle model")
    console.print(f"Cycles. measured: on {where}; model: the cycle model of 'sparsa report' "
                  f"for the same layer and batch with ideal memory (the report's compute "
                  f"cycles).")
    _print_gating(console, result)
    console.print(f"Accuracy {result.accuracy:.2%} over {result.images} digits test images "
                  f"(golden integer model {result.golden_accuracy:.2%}); outputs "
                  f"{'bit-exact with' if result.bit_exact else 'DIFFERENT from'} golden; "
                  f"wall time {seconds:.1f} s.")


def _print_gating(console, result) -> None:
    """Zero gating: the gated-MAC counter against its prediction, and the energy it saves."""
    from sparsa.sw.energy import load_table

    gated, predicted, macs = (result.total(f) for f in ("gated_macs", "gated_predicted", "macs"))
    plain, with_gating = result.total("energy_pj"), result.total("energy_gated_pj")
    mac_energy = macs * load_table().mac_pj
    densities = ", ".join(f"{r.name} {r.act_density:.0%}" for r in result.layers)
    console.print(
        f"Zero gating. gated MACs (selected activation zero): {gated} of {macs} issued "
        f"({gated / max(macs, 1):.1%}); predicted from the data {predicted} "
        f"({'equal' if gated == predicted else 'DIFFERENT'}). Input activation density: "
        f"{densities}. Energy (default table, predicted counts): {plain / 1e6:.3f} uJ without "
        f"gating, {with_gating / 1e6:.3f} uJ with it: {plain - with_gating:.0f} pJ "
        f"({(plain - with_gating) / max(plain, 1e-12):.1%} of the total, "
        f"{(plain - with_gating) / max(mac_energy, 1e-12):.1%} of the MAC energy) saved.")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "run",
                    "run a pruned int8 demo network on the accelerator (RTL or golden)")
    p.add_argument("model", help="digits_cnn, digits_mlp, or a .npz written by 'sparsa prune'")
    p.add_argument("--sim", choices=BACKENDS, default="verilator", help="backend")
    p.add_argument("--images", type=int, default=20, help="digits test images (one batch)")
    p.add_argument("-o", "--output", default="build/run", help="output directory")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show the simulator's and cocotb's own log lines")
    add_config_args(p)
    add_prune_args(p, POLICY_HELP + " (demo models are pruned by magnitude here)")
    p.set_defaults(func=_run)
