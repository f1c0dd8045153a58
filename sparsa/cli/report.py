"""``sparsa report``: cycles, utilization, traffic and energy per layer, N:M beside dense."""

from __future__ import annotations

import argparse

from sparsa.sw.prune import POLICY_HELP

from .common import (
    UsageError,
    add_command,
    add_config_args,
    add_prune_args,
    check_output_dir,
    config_from_args,
    load_model,
    output_dir,
    prune_policy_from_args,
)

__all__ = ["register"]


def _formats(text: str) -> list[str]:
    from sparsa.sw.report import FORMATS

    formats = [f.strip() for f in text.split(",") if f.strip()]
    if not formats or any(f not in FORMATS for f in formats):
        raise UsageError(f"--format takes a comma-separated list of {', '.join(FORMATS)}, "
                         f"not {text!r}")
    return formats


def _cmd_report(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from sparsa.sw.energy import load_table
    from sparsa.sw.report import build_report, print_table, write_report

    formats = _formats(args.format)
    files = [f for f in formats if f != "table"]
    out = check_output_dir(args.output) if files else None
    cfg = config_from_args(args)
    policy = prune_policy_from_args(args)
    table = load_table(args.energy_table)
    graph = load_model(args.model)
    with Progress(transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task(f"scheduling {graph.name}", total=len(graph.gemm_layers()))
        report = build_report(graph, cfg, table=table, policy=policy,
                              progress=lambda done, total: bar.update(task, completed=done))
    if out is not None:
        with output_dir(out, "report") as tmp:
            written = write_report(report, files, tmp)
        for path in written:
            print(f"wrote {out / path.name}")
    if "table" in formats:
        print_table(report)
    else:
        print(f"{report.model}: speedup {report.speedup:.3f}x, energy ratio "
              f"{report.energy_ratio:.3f}x vs {report.baseline_name}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``sparsa report`` to the CLI."""
    p = add_command(subparsers, "report",
                    "per-layer cycles, utilization, traffic and energy, N:M vs dense")
    p.add_argument("model", help="zoo name, .onnx file, SCALE-Sim .csv topology or a pruned "
                                 ".npz written by 'sparsa prune'")
    add_config_args(p)
    add_prune_args(p, POLICY_HELP)
    p.add_argument("--format", default="table,md,csv,json,png",
                   help="comma-separated outputs: table (terminal), md, csv, json, png")
    p.add_argument("--energy-table", metavar="FILE", default=None,
                   help="TOML technology table (default: 45 nm, Horowitz ISSCC 2014)")
    p.add_argument("-o", "--output", default="build/report", help="output directory")
    p.set_defaults(func=_cmd_report)
