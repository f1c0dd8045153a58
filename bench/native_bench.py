"""Simulated cycles per second of the native Verilator backend (issue 11 goal: >= 200,000 on one
core for the default 8x8 2:4 accelerator), and whole networks on the RTL layer by layer.

1. The largest layer program of ResNet-50 2:4 on the default preset (the assembler's program for
   the layer's tiling, seeded random int8 activations and 2:4-pruned int8 weights) runs on the
   native harness (:mod:`sparsa.sim.native`): the figure is simulated cycles over the wall time
   of the harness's cycle loop, and over the whole run (writing the program, starting the
   executable, reading the rows back). Measured cycles must equal the report's
   (:func:`sparsa.sw.cost.program_cycles`), the counters the predicted counts, and the
   requantized outputs an independent computation (torch's convolution, or a matmul).
2. ``--networks digits_cnn,resnet50``: every GEMM layer of each network, one program per layer,
   measured cycles beside the report's predicted ones (they must be equal), outputs and
   counters checked as above, and the wall time
   (goal: ResNet-50 under 10 minutes).
3. ``--pyverilator``: the same measure on pyverilator (Python drives every clock) for a short
   program, for comparison (builds pyverilator's model: about a minute).

Zoo models carry no trained weights: they get seeded random int8 weights pruned to the array's
N:M pattern where the report prunes them (:func:`sparsa.sw.prune.mark_pruned`).
Run: ``.venv/bin/python bench/native_bench.py [--networks digits_cnn,resnet50] [--threads N]``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np

from sparsa import nm
from sparsa.config import ArrayConfig, preset
from sparsa.models.zoo import get_graph
from sparsa.sim.native import NativeAccelerator, NativeResult
from sparsa.sw.accel_timing import program_counts
from sparsa.sw.assemble import assemble_layer
from sparsa.sw.cost import program_cycles
from sparsa.sw.prune import mark_pruned
from sparsa.sw.schedule import schedule_layer

GOAL = 200_000          # simulated cycles per second (issue 11)
NETWORK_GOAL_S = 600    # ResNet-50, every layer, wall time


def random_nm(rng: np.random.Generator, shape: tuple[int, ...], nm: tuple[int, int] | None
              ) -> np.ndarray:
    """Random int8 GEMM weights ``(groups, K, cols)``; with ``nm = (n, m)``, at most ``n``
    nonzeros in every ``m`` consecutive K indices of a column."""
    w = rng.integers(-128, 128, shape, dtype=np.int64)
    if nm is None:
        return w
    n, m = nm
    groups, k, cols = shape
    kp = -(-k // m) * m
    keys = rng.random((groups, kp // m, m, cols))
    keep = np.argsort(np.argsort(keys, axis=2), axis=2) < n
    return w * keep.reshape(groups, kp, cols)[:, :k]


@dataclass(frozen=True)
class LayerData:
    x: np.ndarray          # NHWC for a conv, (P, K) otherwise
    w: np.ndarray          # (groups, K_g, cols_g), Layer.gemm_weight's layout
    multiplier: np.ndarray
    shift: np.ndarray


def layer_program(cfg: ArrayConfig, layer, rng: np.random.Generator):
    """The assembled program of ``layer`` on random data, its schedule and the data."""
    sched = schedule_layer(layer, cfg)
    g = sched.tiling.gemm
    if layer.kind == "conv2d":
        n, c, h, w = layer.in_shape
        x = rng.integers(-128, 128, (n, h, w, c), dtype=np.int64)
    else:
        x = rng.integers(-128, 128, (g.p, g.k * g.groups), dtype=np.int64)
    x = np.where(rng.random(x.shape) < 0.3, 0, x)   # some zero activations (gating)
    weights = random_nm(rng, (g.groups, g.k, g.cols // g.groups),
                        (cfg.n, cfg.m) if layer.nm is not None else None)
    # requantization that keeps most outputs inside int8: a sum is about 2**12 sqrt(K), the
    # multiplier about 2**14
    shift = np.full(g.cols, int(np.log2(np.sqrt(g.k))) + 20, dtype=np.int64)
    data = LayerData(x, weights, rng.integers(1 << 12, 1 << 15, g.cols), shift)
    asm = assemble_layer(cfg, sched.tiling, x, weights, multiplier=data.multiplier,
                         shift=data.shift)
    return asm, sched, data


def reference(layer, data: LayerData) -> np.ndarray:
    """The layer's requantized output ``(P, cols)`` by an independent computation: torch's
    convolution or a matmul in float64 (exact for these integer sums)."""
    import torch

    if layer.kind == "conv2d":
        a = layer.attrs
        groups, k, cols_g = data.w.shape
        kh, kw = a["kernel"]
        w = data.w.reshape(groups, kh, kw, k // (kh * kw), cols_g).transpose(0, 4, 3, 1, 2)
        out = torch.nn.functional.conv2d(
            torch.from_numpy(data.x.transpose(0, 3, 1, 2).astype(np.float64)),
            torch.from_numpy(w.reshape(groups * cols_g, k // (kh * kw), kh, kw)
                             .astype(np.float64)),
            stride=a["stride"], padding=a["padding"], dilation=a["dilation"], groups=groups)
        acc = out.numpy().transpose(0, 2, 3, 1).reshape(-1, groups * cols_g)
    else:
        acc = data.x.astype(np.float64) @ data.w[0].astype(np.float64)
    return nm.requantize(np.rint(acc).astype(np.int64), data.multiplier, data.shift)


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


def bench_network(acc: NativeAccelerator, cfg: ArrayConfig, name: str, rng) -> None:
    layers = network_layers(name, cfg)
    print(f"\n== {name}: every GEMM layer on the native RTL, one program per layer ==")
    print(f"{'layer':58s} {'N:M':>5s} {'insns':>6s} {'measured':>9s} {'model':>9s} "
          f"{'sim s':>6s}  out  counters")
    start = time.perf_counter()
    total = {"measured": 0, "predicted": 0, "simulated": 0, "loop_s": 0.0}
    bad = 0
    for layer in layers:
        r = run_layer(acc, cfg, layer, rng)
        for k in total:
            total[k] += r[k]
        bad += r["measured"] != r["predicted"] or bool(r["counters"]) or not r["exact"]
        print(f"{r['name'][-58:]:58s} {r['pattern']:>5s} {r['insns']:6d} {r['measured']:9d} "
              f"{r['predicted']:9d} {r['loop_s']:6.2f}  {'ok ' if r['exact'] else 'BAD'}  "
              f"{'match' if not r['counters'] else r['counters']}", flush=True)
    wall = time.perf_counter() - start
    print(f"{name}: {len(layers)} layers, {total['measured']:,} cycles measured, "
          f"{total['predicted']:,} predicted; {bad} layer(s) with other cycles, counters or "
          f"outputs; wall time {wall:.1f} s "
          f"(cycle loops {total['loop_s']:.1f} s, "
          f"{total['simulated'] / total['loop_s']:,.0f} cycles/s; whole "
          f"{total['simulated'] / wall:,.0f} cycles/s)"
          + (f"; goal < {NETWORK_GOAL_S} s: {'met' if wall < NETWORK_GOAL_S else 'NOT met'}"
             if name == "resnet50" else ""))


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
        bench_network(acc, cfg, name, rng)


if __name__ == "__main__":
    main()
