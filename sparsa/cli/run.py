"""``sparsa run``: a model on the accelerator (RTL or golden). The digits demos run end to end
(pruned, quantized, their accuracy measured); every other model runs layer by layer on seeded
random int8 data (:mod:`sparsa.sim.model_run`), each layer checked against the report."""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from pathlib import Path

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

BACKENDS = ("golden", "native", "pyverilator", "verilator", "icarus")


def _in_process(args, cfg, prepared, bar, task):
    """golden, native and pyverilator: the model runner in this process."""
    from sparsa.sim.host import GoldenBackend, NativeAxiBackend, NativeBackend, PyVerilatorBackend
    from sparsa.sim.infer import run_model
    from sparsa.sim.runner import build_dir_for

    name, qgraph, x, labels = prepared
    if args.sim == "golden":
        backend = GoldenBackend(cfg)
    elif args.sim == "native":
        bar.update(task, description="building the native simulator (cached after the first run)")
        backend = NativeAxiBackend(cfg) if args.memory == "axi" else NativeBackend(cfg)
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

    job = {"model": _spec(args.model), "images": args.images, "result": str(work / "run.json"),
           "policy": policy.to_dict()}
    _cocotb(args, cfg, job, "sparsa.sim.tb_run", bar, task, work)
    return ModelRun.from_json(Path(job["result"]).read_text())


def _spec(model: str) -> str:
    """A model file's absolute path (the simulator runs in its build folder), or the name."""
    return str(Path(model).resolve()) if Path(model).exists() else model


def _cocotb(args, cfg, job: dict, test_module: str, bar, task, work: Path) -> None:
    """Run ``test_module`` on ``args.sim`` with ``job`` (its progress file, one line per layer
    done, followed by the progress bar)."""
    from sparsa.sim.runner import build_dir_for, run_testbench

    log = build_dir_for(cfg, "accelerator", args.sim) / "run.log"   # kept after a failure
    job = {**job, "simulator": args.sim, "progress": str(work / "progress.jsonl")}
    outcome: dict = {}

    def simulate() -> None:
        try:
            outcome["tb"] = run_testbench(
                cfg, top="accelerator", simulator=args.sim, test_module=test_module,
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


def _is_demo(spec: str) -> bool:
    """A digits demo, or a pruned demo saved by 'sparsa prune' (run end to end)."""
    from sparsa.models.demo import DEMOS

    if spec in DEMOS:
        return True
    if Path(spec).suffix.lower() != ".npz" or not Path(spec).is_file():
        return False
    from sparsa.models.store import load_saved

    return load_saved(spec)[1].get("demo") in DEMOS


LAYER_OPTIONS = ("layers", "batch", "seq", "seed")


def _run(args: argparse.Namespace) -> int:
    if not _is_demo(args.model):
        return _run_layers(args)
    given = [f"--{name}" for name in LAYER_OPTIONS if getattr(args, name) is not None]
    if given or args.memory == "dram":
        raise UsageError(f"{', '.join(given) or '--memory dram'}: the digits demos run end to "
                         f"end on their test images; these options apply to the other models, "
                         f"run layer by layer")
    if args.memory == "axi" and args.sim != "native":
        raise UsageError(f"--memory axi runs on the native backend only, not {args.sim}")
    return _run_demo(args)


def _run_demo(args: argparse.Namespace) -> int:
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
    _print(result, cfg, time.perf_counter() - start, args.memory)
    print(f"wrote {out / 'run.json'}")
    ok = result.bit_exact and all(r.measured == r.predicted and r.counters_match
                                  for r in result.layers)
    return 0 if ok else 1


def _print(result, cfg, seconds: float, memory: str) -> None:
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
    how = ("with ideal memory (the report's compute cycles)" if memory == "ideal" else
           f"on the memory-mapped accelerator, its program and tensors in memory of latency "
           f"{cfg.axi_latency} ('sparsa report --memory axi')")
    console.print(f"Cycles. measured: on {where}; model: the cycle model of 'sparsa report' "
                  f"for the same layer and batch {how}.")
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


# Every other model, layer by layer (sparsa.sim.model_run).

def _layer_backend(args, cfg, bar, task):
    """The in-process backend for the layer-by-layer run."""
    from sparsa.sim.host import (
        GoldenBackend,
        NativeAxiBackend,
        NativeBackend,
        PyVerilatorBackend,
    )
    from sparsa.sim.runner import build_dir_for

    if args.sim == "golden":
        return GoldenBackend(cfg)
    if args.sim == "native":
        bar.update(task, description="building the native simulator (cached after the first run)")
        if args.memory == "axi":
            return NativeAxiBackend(cfg, max_cycles=args.max_cycles)
        backend = NativeBackend(cfg, dram_bytes_per_cycle=cfg.dram_bytes_per_cycle
                                if args.memory == "dram" else None)
        backend.accelerator.max_cycles = args.max_cycles
        return backend
    bar.update(task, description="building the Verilated accelerator")
    return PyVerilatorBackend(cfg, build_dir_for(cfg, "accelerator", "pyverilator"))


def _plan(args, graph, cfg, policy):
    from sparsa.sim.model_run import plan_layers

    if args.memory != "ideal" and args.sim != "native":
        raise UsageError(f"--memory {args.memory} runs on the native backend only, not "
                         f"{args.sim}")
    if args.max_cycles < 1:
        raise UsageError(f"--max-cycles must be a positive number of cycles, not "
                         f"{args.max_cycles}")
    try:
        return plan_layers(graph, cfg, policy, args.layers, memory=args.memory,
                           max_cycles=args.max_cycles)
    except ValueError as e:
        if str(e).startswith("--layers"):
            raise UsageError(str(e)) from None
        raise


def _run_layers(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from sparsa.sim.model_run import (
        GOLDEN_MACS,
        LayerResult,
        LayersRun,
        cpu_seconds,
        resolve_seed,
        run_layer,
        weights_line,
    )

    out = check_output_dir(args.output)
    cfg = config_from_args(args)
    policy = prune_policy_from_args(args)
    seed = resolve_seed(args.seed)
    graph = load_model(args.model, batch=args.batch or 1, seq=args.seq)
    planned = _plan(args, graph, cfg, policy)   # everything checked before any simulator starts
    memory = {"ideal": "ideal", "dram": f"DRAM {cfg.dram_bytes_per_cycle} B/cycle",
              "axi": f"AXI {cfg.axi_data_bits}-bit, latency {cfg.axi_latency}"}[args.memory]
    result = LayersRun(model=graph.name, backend=args.sim, memory=memory,
                       weights=weights_line(graph, cfg, policy, seed), seed=seed)
    print(result.weights, flush=True)
    golden_macs = GOLDEN_MACS if args.golden_macs is None else args.golden_macs
    start, cpu = time.perf_counter(), cpu_seconds()
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), transient=True, console=Console(stderr=True))
    with output_dir(out, "run") as tmp, progress as bar:
        task = bar.add_task("preparing", total=len(planned))
        if args.sim in ("verilator", "icarus"):
            job = {"model": _spec(args.model), "batch": args.batch or 1, "seq": args.seq,
                   "policy": policy.to_dict(), "layers": args.layers, "seed": seed,
                   "golden_macs": golden_macs}
            _cocotb(args, cfg, job, "sparsa.sim.tb_model_run", bar, task, tmp)
            lines = (tmp / "progress.jsonl").read_text().splitlines()
            result.layers.extend(LayerResult(**json.loads(line)) for line in lines)
        else:
            backend = _layer_backend(args, cfg, bar, task)
            for item in planned:
                bar.update(task, description=f"{item.index} {item.layer.name[-40:]}")
                result.layers.append(asyncio.run(run_layer(backend, cfg, item, seed,
                                                           golden_macs=golden_macs)))
                bar.advance(task)
        (tmp / "run.json").write_text(result.to_json())
    _print_layers(result, cfg, (time.perf_counter() - start, cpu_seconds() - cpu), golden_macs)
    print(f"wrote {out / 'run.json'}")
    return 0 if result.ok else 1


def _outputs_cell(r) -> str:
    if not r.outputs_exact or r.golden is False:
        return "DIFFER"
    return "torch+gold" if r.golden else "torch"


def _print_layers(result, cfg, seconds: tuple[float, float], golden_macs: int) -> None:
    """The table, what its columns compare, the totals and rates, and every mismatch (``seconds``:
    the run's wall and CPU time)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from sparsa.sw.model_report import short_names

    console = Console()
    console = console if console.is_terminal else Console(width=120)
    table = Table(title=f"{result.model} on {result.backend}: {cfg.rows}x{cfg.cols} {cfg.nm}, "
                        f"{result.memory} memory, {len(result.layers)} GEMM layers",
                  box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    for col in ("#", "layer", "GEMM PxKxC", "N:M", "measured", "report", "diff", "counters",
                "outputs", "sim s"):
        table.add_column(col, justify="left" if col in ("layer", "N:M", "outputs") else "right",
                         no_wrap=True)
    names = short_names([r.name for r in result.layers], max(12, console.width - 96))
    for r, name in zip(result.layers, names, strict=True):
        table.add_row(str(r.index), name, r.gemm, r.pattern, str(r.measured), str(r.predicted),
                      str(r.measured - r.predicted),
                      "match" if not r.counter_diffs else "DIFFER", _outputs_cell(r),
                      f"{r.sim_seconds:.2f}")
    table.add_section()
    measured, predicted = result.total("measured"), result.total("predicted")
    table.add_row("", "total", "", "", str(measured), str(predicted),
                  str(measured - predicted), "", "", f"{result.total('sim_seconds'):.1f}")
    console.print(table)
    kind = ("compute cycles (ideal memory)" if result.memory == "ideal" else
            "cycles on the memory-mapped accelerator (--memory axi)"
            if result.memory.startswith("AXI") else f"total cycles ({result.memory})")
    where = ("the RTL" if result.backend != "golden"
             else "the golden executor, which takes them from the cycle model")
    console.print(f"Cycles. measured: on {where}; report: "
                  f"the report's {kind} for the layer. Outputs: requantized outputs == "
                  f"torch's convolution / a float64 matmul for every layer; data_out rows == "
                  f"the golden executor's for layers of up to {golden_macs:,} MACs "
                  f"('torch+gold').")
    sim, sim_cpu = result.total("sim_seconds"), result.total("sim_cpu_seconds")
    console.print(f"{result.model}: {len(result.layers)} layers, {measured:,} cycles measured, "
                  f"{predicted:,} predicted. Simulated cycles/s on {result.backend}: "
                  f"{measured / max(sim, 1e-9):,.0f} over the backend's wall time ({sim:.1f} s), "
                  f"{measured / max(sim_cpu, 1e-9):,.0f} over its CPU time ({sim_cpu:.1f} s). "
                  f"Whole run: wall {seconds[0]:.1f} s, CPU {seconds[1]:.1f} s (with "
                  f"assembling and checking).")
    problems = [line for r in result.layers for line in r.problems()]
    for line in problems:
        console.print(f"MISMATCH {line}", style="bold red", highlight=False)
    console.print("every layer: cycles, counters and outputs as predicted" if not problems
                  else f"{len(problems)} mismatch(es)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "run",
                    "run a model on the accelerator (RTL or golden): the digits demos end to "
                    "end, every other model's GEMM layers one program each, checked against "
                    "the report")
    p.add_argument("model", help="digits_cnn, digits_mlp, a pruned demo .npz written by "
                                 "'sparsa prune' (end to end, accuracy measured); or a zoo name, "
                                 ".onnx file, SCALE-Sim .csv topology or Hugging Face "
                                 "config.json (layer by layer, seeded random int8 data)")
    p.add_argument("--sim", choices=BACKENDS, default="verilator",
                   help="backend (native is the fast one for large models)")
    p.add_argument("--images", type=int, default=20, help="digits test images (one batch)")
    group = p.add_argument_group("layer by layer (models other than the digits demos)")
    group.add_argument("--layers", default=None, metavar="SEL",
                       help="GEMM layers to run: indices and ranges (0-3,7), names or globs, "
                            "comma-separated (default: all)")
    group.add_argument("--seed", type=int, default=None,
                       help="seed of the random weights and activations (default: "
                            "$SPARSA_SEED, else 0)")
    group.add_argument("--batch", type=int, default=None,
                       help="images or sequences per inference, as 'sparsa report' (default: 1)")
    group.add_argument("--seq", type=int, default=None,
                       help="tokens per sequence of transformers, as 'sparsa report'")
    group.add_argument("--memory", choices=("ideal", "dram", "axi"), default="ideal",
                       help="ideal streams (cycles == the report's compute cycles), DRAM "
                            "ports of the configuration's rate (== the report's total cycles), "
                            "or axi: the memory-mapped accelerator fetching its program and "
                            "tensors over AXI from memory of latency axi_latency (== the "
                            "report's --memory axi cycles); dram and axi: native only")
    group.add_argument("--max-cycles", type=int, default=50_000_000,
                       help="the simulator's limit per layer program; larger layers are refused "
                            "before anything runs")
    group.add_argument("--golden-macs", type=int, default=None, metavar="MACS",
                       help="also run layers of up to this many MACs on the golden executor "
                            "(default: 2,000,000; every layer is checked against torch)")
    p.add_argument("-o", "--output", default="build/run", help="output directory")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show the simulator's and cocotb's own log lines")
    add_config_args(p)
    add_prune_args(p, POLICY_HELP + " (demo models are pruned by magnitude here)")
    p.set_defaults(func=_run)
