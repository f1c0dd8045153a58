"""``sparsa report``: cycles, utilization, traffic and energy per layer, N:M beside dense."""

from __future__ import annotations

import argparse
from pathlib import Path

from sparsa.cli import add_config_args, config_from_args

from .schedule import PRUNE_POLICIES

__all__ = ["register"]


def _load(spec: str):
    if spec.lower().endswith(".csv"):
        from sparsa.models.scalesim import read_topology

        return read_topology(spec)
    try:
        from sparsa.models.load import load_graph
    except ImportError as e:
        raise ValueError(f"cannot load model {spec!r}: the model loader is not available "
                         f"({e}); SCALE-Sim .csv topologies work without it") from None
    return load_graph(spec)


def _cmd_report(args: argparse.Namespace) -> int:
    from .energy import load_table
    from .report import FORMATS, build_report, write_report

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ValueError(f"--format takes a comma-separated list of {', '.join(FORMATS)}, "
                         f"not {args.format!r}")
    cfg = config_from_args(args)
    table = load_table(args.energy_table)
    graph = _load(args.model)

    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(f"scheduling {graph.name}", total=len(graph.gemm_layers()))
        report = build_report(graph, cfg, table=table, prune_policy=args.prune_policy,
                              progress=lambda done, total: bar.update(task, completed=done))
    written = write_report(report, formats, Path(args.output))
    for path in written:
        print(f"wrote {path}")
    if "table" not in formats:
        print(f"{report.model}: speedup {report.speedup:.3f}x, energy ratio "
              f"{report.energy_ratio:.3f}x vs dense {report.dense_cfg.nm}")
    return 0


def register(subparsers) -> None:
    """Add ``sparsa report`` to the CLI."""
    p = subparsers.add_parser(
        "report", help="per-layer cycles, utilization, traffic and energy, N:M vs dense")
    p.add_argument("model", help="zoo name, .onnx file, SCALE-Sim .csv topology or saved graph")
    add_config_args(p)
    p.add_argument("--prune-policy", choices=PRUNE_POLICIES, default="auto",
                   help="which weight layers are taken as N:M-pruned: the layers' own patterns "
                        "(keep), all, all but the first and last, none; auto = keep when the "
                        "model carries patterns, else all (default: auto)")
    p.add_argument("--format", default="table,md,csv,json,png",
                   help="comma-separated outputs: table (terminal), md, csv, json, png "
                        "(default: all)")
    p.add_argument("--energy-table", metavar="FILE", default=None,
                   help="TOML technology table (default: 45 nm, Horowitz ISSCC 2014)")
    p.add_argument("-o", "--output", default="build/report", help="output directory")
    p.set_defaults(func=_cmd_report)
