"""``sparsa report``: cycles, utilization, traffic and energy per layer, N:M beside dense."""

from __future__ import annotations

import argparse
import dataclasses

from sparsa.models.hf_config import DEFAULT_SEQ
from sparsa.sw.phases import PHASES
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

DEFAULT_TOKENS = 128


def _formats(text: str) -> list[str]:
    from sparsa.sw.report import FORMATS

    formats = [f.strip() for f in text.split(",") if f.strip()]
    if not formats or any(f not in FORMATS for f in formats):
        raise UsageError(f"--format takes a comma-separated list of {', '.join(FORMATS)}, "
                         f"not {text!r}")
    return formats


def _positive(value: int | None, option: str, low: int = 1) -> None:
    from sparsa.sw.phases import WORKLOAD_LIMITS

    if value is None:
        return
    if value < low:
        raise UsageError(f"{option} must be an integer of at least {low}, not {value}")
    limit = WORKLOAD_LIMITS[option.lstrip("-")]
    if value > limit:
        raise UsageError(f"{option} {value} is beyond sparsa's bound of {limit:,} (probably a "
                         "typo)")


def _check_workload(args: argparse.Namespace) -> None:
    """The workload options, checked before any work."""
    _positive(args.batch, "--batch")
    _positive(args.seq, "--seq")
    _positive(args.context, "--context")
    _positive(args.tokens, "--tokens", 0)
    if args.context is not None and args.phase != "decode":
        raise UsageError("--context applies to --phase decode (generate grows the context from "
                         "--seq)")
    if args.tokens is not None and args.phase != "generate":
        raise UsageError("--tokens applies to --phase generate")
    if args.phase == "generate" and args.tokens == 0:
        raise UsageError("--tokens must be at least 1 for --phase generate")
    if args.phase is not None and args.memory != "dram":
        raise UsageError(f"--memory {args.memory} costs one pass of the model; --phase "
                         f"reports are costed with --memory dram only")


def _build(args: argparse.Namespace, graph, cfg, table, policy, progress):
    from sparsa.sw.phases import phase_report
    from sparsa.sw.report import build_report

    if args.phase is None:
        return build_report(graph, cfg, table=table, policy=policy, progress=progress,
                            memory=args.memory)
    return phase_report(graph, cfg, args.phase, context=args.context,
                        tokens=args.tokens or DEFAULT_TOKENS if args.phase == "generate" else 0,
                        table=table, policy=policy, progress=progress)


def _gating(args: argparse.Namespace, report, graph, calibration, table, policy):
    """Zero gating: densities declared with --act-density, measured on --calibration inputs,
    else measured for the digits demos (their int8 GEMM inputs over the test set); other models
    are reported without."""
    from sparsa.models.demo import DEMOS
    from sparsa.sw.activity import gating_of

    if args.act_density is not None:
        densities, source = args.act_density
    elif calibration is not None:
        from sparsa.sw.activity import calibrated_densities

        cfg = report.cfg
        densities = calibrated_densities(graph, calibration, n=cfg.n, m=cfg.m, policy=policy)
        source = (f"measured on {len(calibration)} inputs from {args.calibration}, int8 GEMM "
                  "inputs")
    elif args.model in DEMOS:
        densities, source = _measured(args.model, report.cfg, policy)
    else:
        return report
    return dataclasses.replace(report, gating=gating_of(report, densities, table, source))


def _act_density(text: str) -> tuple:
    """``--act-density``, checked as it is parsed: (densities, where they come from)."""
    from sparsa.sw.activity import ActDensityError, load_densities

    try:
        densities = load_densities(text)
    except ActDensityError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--act-density: ")) from None
    return densities, (f"declared: {densities:g} for every layer" if isinstance(densities, float)
                       else f"declared per layer in {text}")


def _measured(name: str, cfg, policy) -> tuple[dict, str]:
    """Densities of a digits demo's int8 GEMM inputs over its test set (pruned as 'run' does)."""
    from sparsa.models.demo import demo_graph, digits_data
    from sparsa.sw.activity import calibrated_densities

    x_tr, _, x_te, _ = digits_data(name)
    densities = calibrated_densities(demo_graph(name), x_tr, x_te, n=cfg.n, m=cfg.m,
                                     policy=policy)
    return densities, f"measured on the {len(x_te)} digits test images, int8 GEMM inputs"


def _calibration_inputs(args: argparse.Namespace, graph):
    """``--calibration``'s inputs, checked before any work (the model must carry weights)."""
    from sparsa.sw.activity import load_inputs, require_weights

    if args.calibration is None:
        return None
    require_weights(graph)
    return load_inputs(args.calibration, graph.input_shape)


AREAS = ("asic", "fpga", "none")
AREA_SCOPE = "accelerator: array + logic + scratchpad SRAM"


def _area(kind: str, cfg, dense_cfg) -> dict:
    """The area of the design and of its dense baseline, from Yosys synthesis of their RTL
    (cached by the RTL's hash, so a configuration is synthesized once per machine)."""
    from rich.console import Console

    from sparsa.hw.area import accelerator_area, load_gate_table
    from sparsa.hw.export import MAX_PES
    from sparsa.hw.fpga_area import fpga_resources
    from sparsa.hw.sram import load_sram_table

    if max(cfg.rows * cfg.cols, dense_cfg.rows * dense_cfg.cols) > MAX_PES:
        return {}   # too large to elaborate; the report says nothing of area
    with Console(stderr=True).status(f"synthesizing for the {kind} area (cached once done)"):
        if kind == "asic":
            design, baseline = (accelerator_area(c) for c in (cfg, dense_cfg))
            return {"kind": "asic", "unit": "kGE", "design": design["area_kge"],
                    "baseline": baseline["area_kge"], "scope": AREA_SCOPE,
                    "parts": {"design": design, "baseline": baseline},
                    "table": load_gate_table().name, "sram_table": load_sram_table().name}
        design, baseline = (fpga_resources(c) for c in (cfg, dense_cfg))
        return {"kind": "fpga", "target": "ECP5 85k", "design": design, "baseline": baseline,
                "scope": "the array before place and route, and the scratchpads' block RAMs"}


def _cmd_report(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from sparsa.sw.energy import load_table
    from sparsa.sw.report import print_table, write_report

    formats = _formats(args.format)
    _check_workload(args)
    files = [f for f in formats if f != "table"]
    out = check_output_dir(args.output) if files else None
    cfg = config_from_args(args)
    policy = prune_policy_from_args(args)
    table = load_table(args.energy_table)
    graph = load_model(args.model, batch=args.batch or 1, seq=args.seq)
    calibration = _calibration_inputs(args, graph)
    with Progress(transient=True, console=Console(stderr=True)) as bar:
        what = "decode steps" if args.phase == "generate" else "layers"
        task = bar.add_task(f"scheduling {graph.name} ({what})", total=None)
        report = _build(args, graph, cfg, table, policy, lambda done, total: bar.update(
            task, completed=done, total=total))
    if args.area != "none":
        report = dataclasses.replace(report, area=_area(args.area, cfg, report.dense_cfg))
    report = _gating(args, report, graph, calibration, table, policy)
    if out is not None:
        with output_dir(out, "report") as tmp:
            written = write_report(report, files, tmp)
        for path in written:
            print(f"wrote {out / path.name}")
    if "table" in formats:
        every = [f"report.{f}" for f in files if f in ("md", "csv", "json")]
        print_table(report, full=", ".join(str(out / f) for f in every) if every else "")
    else:
        print(f"{report.model}: speedup {report.speedup:.3f}x, energy ratio "
              f"{report.energy_ratio:.3f}x vs {report.baseline_name}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``sparsa report`` to the CLI."""
    p = add_command(subparsers, "report",
                    "per-layer cycles, utilization, traffic and energy, N:M vs dense")
    p.add_argument("model", help="zoo name, .onnx file, SCALE-Sim .csv topology, Hugging Face "
                                 "config.json (or its model directory) or a pruned .npz written "
                                 "by 'sparsa prune'")
    add_config_args(p)
    group = p.add_argument_group("workload", "batch and sequence length apply to zoo "
                                 "transformers and Hugging Face configs (image models: batch); "
                                 "phases to decoder LLMs")
    group.add_argument("--batch", type=int, default=None,
                       help="sequences or images per inference (default: 1)")
    group.add_argument("--seq", type=int, default=None,
                       help=f"tokens per sequence; the prompt length of the phases (default: "
                            f"{DEFAULT_SEQ})")
    group.add_argument("--phase", choices=PHASES, default=None,
                       help="LLM phase: prefill of --seq tokens, decode of one token at "
                            "--context, or generate (prefill + --tokens decode steps); "
                            "default: the traced graph as it is")
    group.add_argument("--context", type=int, default=None,
                       help="decode: KV-cache length (default: --seq)")
    group.add_argument("--tokens", type=int, default=None,
                       help=f"generate: tokens to decode (default: {DEFAULT_TOKENS})")
    add_prune_args(p, POLICY_HELP)
    p.add_argument("--format", default="table,md,csv,json,png",
                   help="comma-separated outputs: table (terminal), md, csv, json, png")
    p.add_argument("--energy-table", metavar="FILE", default=None,
                   help="TOML technology table (default: 45 nm, Horowitz ISSCC 2014)")
    p.add_argument("--memory", choices=("dram", "axi"), default="dram",
                   help="dram: the stream-fed core with DRAM ports of dram_bytes_per_cycle "
                        "(default); axi: the memory-mapped accelerator, which fetches its "
                        "program and tensors over the AXI port from memory of latency "
                        "axi_latency (the cycles 'sparsa run --memory axi' measures; slower "
                        "to cost: every instruction is timed)")
    p.add_argument("--area", choices=AREAS, default="asic",
                   help="area of the array and its dense baseline from Yosys synthesis of the "
                        "RTL: ASIC gate equivalents, or ECP5 LUTs/FFs/DSPs (cached per "
                        "configuration; the first synthesis takes seconds, and the first run of "
                        "the YoWASP tools on a machine about two minutes)")
    p.add_argument("--act-density", metavar="D|FILE", default=None, type=_act_density,
                   help="activation density (fraction nonzero) for zero gating: one number, "
                        "or a TOML file of layer name or glob -> density (default: measured "
                        "for the digits demos, else no gating)")
    p.add_argument("--calibration", metavar="FILE.npy", default=None,
                   help="inputs (N, *input shape) of a model with weights: its activation "
                        "densities are measured on them, as for the digits demos")
    p.add_argument("-o", "--output", default="build/report", help="output directory")
    p.set_defaults(func=_cmd_report)
