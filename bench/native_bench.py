"""Simulated cycles per second of the native Verilator backend (issue 11 goal: >= 200,000 on one
core for the default 8x8 2:4 accelerator), and whole networks on the RTL layer by layer.

1. The largest layer program of ResNet-50 2:4 on the default preset (the assembler's program for
   the layer's tiling, seeded random int8 activations and 2:4-pruned int8 weights) runs on the
   native harness (:mod:`sparsa.sim.native`): the figure is simulated cycles over the wall time
   of the harness's cycle loop, and over the whole run (writing the program, starting the
   executable, reading the rows back). Measured cycles must equal the report's
   (:func:`sparsa.sw.cost.program_cycles`), the counters the predicted counts, and the
   requantized outputs an independent computation (torch's convolution, or a matmul).
2. ``--networks resnet50,bert_base``: ``sparsa run NAME --sim native --preset default`` (every
   GEMM layer, one program per layer, :mod:`sparsa.sim.model_run`): measured cycles beside the
   report's (they must be equal), outputs and counters checked as above, the simulated cycles
   per second and the wall time (goal: ResNet-50 2:4 and BERT-base at seq 128 each under 10
   minutes on one core). The digits demos run end to end (their test images, accuracy).
3. ``--pyverilator``: the same measure on pyverilator (Python drives every clock) for a short
   program, for comparison (builds pyverilator's model: about a minute).

Zoo models carry no trained weights: they get seeded random int8 weights pruned to the array's
N:M pattern where the report prunes them (:func:`sparsa.sw.prune.mark_pruned`), and the data of
:func:`sparsa.sim.model_run.layer_program`.
Run: ``.venv/bin/python bench/native_bench.py [--networks resnet50,bert_base] [--threads N]``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from sparsa.cli import main as sparsa
from sparsa.config import ArrayConfig, preset
from sparsa.models.zoo import get_graph
from sparsa.sim.model_run import LayersRun, cpu_seconds, layer_program, reference
from sparsa.sim.native import NativeAccelerator, NativeResult
from sparsa.sw.accel_timing import program_counts
from sparsa.sw.cost import program_cycles
from sparsa.sw.prune import mark_pruned
from sparsa.sw.schedule import schedule_layer

GOAL = 200_000          # simulated cycles per second (issue 11)
NETWORK_GOAL_S = 600    # ResNet-50 and BERT-base, every layer, wall time
OUT = Path("build/bench")


def run_layer(acc: NativeAccelerator, cfg: ArrayConfig, layer, rng) -> dict:
    asm, sched, data = layer_program(cfg, layer, rng)
    start = time.perf_counter()
    res: NativeResult = acc.execute(asm.program, asm.data_in)
    wall = time.perf_counter() - start
    predicted = program_cycles(cfg, sched.tiling)
    counts = program_counts(cfg, asm.program, len(asm.data_in))
    diffs = {k: res.run.counters[k] - v for k, v in counts.items() if res.run.counters[k] != v}
    exact = np.array_equal(asm.collect(res.run.outputs), reference(layer, data))
    return {"name": layer.name, "pattern": sched.pattern, "insns": len(asm.program),
            "measured": res.run.cycles, "predicted": predicted, "counters": diffs,
            "exact": exact, "simulated": res.last_cycle + 1, "loop_s": res.seconds,
            "wall_s": wall}


def network_layers(name: str, cfg: ArrayConfig):
    return mark_pruned(get_graph(name), cfg.n, cfg.m).gemm_layers()


def bench_largest(acc: NativeAccelerator, cfg: ArrayConfig, rng) -> None:
    layers = network_layers("resnet50", cfg)
    layer = max(layers, key=lambda lay: program_cycles(cfg, schedule_layer(lay, cfg).tiling))
    r = run_layer(acc, cfg, layer, rng)
    print(f"\n== native Verilator, {cfg.rows}x{cfg.cols} {cfg.n}:{cfg.m} (preset default), "
          f"largest ResNet-50 layer program ==")
    print(f"layer {r['name']} ({r['pattern']}): {r['insns']} instructions, {r['measured']} "
          f"cycles measured, {r['predicted']} predicted "
          f"({'equal' if r['measured'] == r['predicted'] else 'DIFFERENT'}); counters "
          f"{'match' if not r['counters'] else 'differ ' + str(r['counters'])}; outputs "
          f"{'equal to' if r['exact'] else 'DIFFERENT from'} torch's convolution")
    loop_rate, wall_rate = r["simulated"] / r["loop_s"], r["simulated"] / r["wall_s"]
    print(f"simulated cycles/s: {loop_rate:,.0f} (cycle loop), {wall_rate:,.0f} (whole run, "
          f"{r['wall_s']:.2f} s); goal {GOAL:,} on one core: "
          f"{'met' if loop_rate >= GOAL else 'NOT met'}")


def bench_network(name: str, seed: int) -> None:
    """``sparsa run NAME --sim native --preset default`` (its table), timed."""
    print(f"\n== {name}: sparsa run {name} --sim native --preset default --seed {seed} ==",
          flush=True)
    out = OUT / f"run-{name}"
    start, cpu = time.perf_counter(), cpu_seconds()
    code = sparsa(["run", name, "--sim", "native", "--preset", "default", "--seed", str(seed),
                   "-o", str(out)])
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    run_json = out / "run.json"
    if not run_json.is_file():
        print(f"{name}: sparsa run failed (exit {code})")
        return
    values = json.loads(run_json.read_text())
    if "layers" in values and "memory" in values:
        result = LayersRun.from_json(run_json.read_text())
        cycles = result.total("measured")
        rate = (f"simulated cycles/s: {cycles / result.total('sim_seconds'):,.0f} over the "
                f"backend's wall time, {cycles / result.total('sim_cpu_seconds'):,.0f} over its "
                f"CPU time, {cycles / wall:,.0f} over the whole run's wall time")
        layers = len(result.layers)
    else:   # a digits demo, end to end
        rate, layers = "", len(values["layers"])
    print(f"{name}: {layers} layers on the native RTL, exit {code} "
          f"({'every layer as predicted' if code == 0 else 'MISMATCHES'}); wall time "
          f"{wall:.1f} s, CPU time {cpu:.1f} s (with loading, scheduling and checking); {rate}; "
          f"goal < {NETWORK_GOAL_S} s on one core: wall {_met(wall)}, CPU {_met(cpu)}",
          flush=True)


def _met(seconds: float) -> str:
    return "met" if seconds < NETWORK_GOAL_S else "NOT met"


def bench_pyverilator(cfg: ArrayConfig, rng) -> None:
    """pyverilator on the digits CNN's second conv (a few thousand cycles), built where
    ``sparsa run --sim pyverilator`` builds it."""
    from sparsa.sim.pyverilator_driver import PyVerilatorAccelerator
    from sparsa.sim.runner import build_dir_for

    layer = network_layers("digits_cnn", cfg)[1]
    asm, _, _ = layer_program(cfg, layer, rng)
    acc = PyVerilatorAccelerator(cfg, build_dir_for(cfg, "accelerator", "pyverilator"))
    start = time.perf_counter()
    run = acc.run_program(asm.program, asm.data_in)
    seconds = time.perf_counter() - start
    print(f"pyverilator (Python drives every clock), digits_cnn {layer.name}: {run.cycles} "
          f"cycles in {seconds:.2f} s: {run.cycles / seconds:,.0f} cycles/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", default="",
                        help="comma-separated zoo models to run every layer of")
    parser.add_argument("--threads", type=int, default=1, help="Verilator --threads")
    parser.add_argument("--pyverilator", action="store_true",
                        help="also measure pyverilator on a short program")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cfg = preset("default")
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    acc = NativeAccelerator(cfg, threads=args.threads)
    print(f"native harness: {acc.binary} (ready in {time.perf_counter() - start:.1f} s, "
          f"--threads {args.threads})")
    bench_largest(acc, cfg, rng)
    if args.pyverilator:
        bench_pyverilator(cfg, rng)
    for name in filter(None, args.networks.split(",")):
        bench_network(name, args.seed)


if __name__ == "__main__":
    main()
