"""Simulated cycles per second of the memory-mapped accelerator on the native AXI harness (issue 11
goal: >= 200,000 on one core for the default 8x8 2:4 accelerator, 128-bit AXI), its memory in C++.

One ResNet-50 2:4 layer program from the assembler (seeded random int8 activations and 2:4-pruned
int8 weights, as ``bench/native_bench.py`` makes them), linked into memory with
:func:`sparsa.sim.memory_image.link` (random offsets and gaps), runs on
:class:`sparsa.sim.native_axi.NativeAxiAccelerator` with memory of read latency ``--latency``:
instruction fetch, every LOAD and every STORE over the AXI port. The figure is the cycles the
harness simulated over the wall time of its cycle loop, over the loop's CPU time (the figure
to read on a loaded machine) and over the whole run (writing the image, starting the
executable, reading the memory and the outputs back). Checked beside it: the whole memory
afterwards == the golden executor's run on the same image, the counters == the predicted counts,
and ``run_cycles`` beside the top's cycle model (:func:`sparsa.sw.top_timing.top_timing`).

Run: ``.venv/bin/python bench/native_axi_bench.py [--layer NAME] [--latency L]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from sparsa.config import preset
from sparsa.sim.golden_accel import GoldenAccelerator
from sparsa.sim.memory_image import link
from sparsa.sim.native_axi import PAD_BYTES, NativeAxiAccelerator
from sparsa.sw.accel_timing import program_counts
from sparsa.sw.cost import program_cycles
from sparsa.sw.top_timing import top_timing

sys.path.insert(0, str(Path(__file__).resolve().parent))
from native_bench import layer_program, network_layers  # a sibling script

GOAL = 200_000          # simulated cycles per second (issue 11)
# a mid-sized layer: about 200k cycles on the stream-fed core, 9,618 instructions
DEFAULT_LAYER = "resnet.encoder.stages.0.layers.2.layer.2.convolution"


def linked_layer(cfg, name: str, rng: np.random.Generator):
    layers = {layer.name: layer for layer in network_layers("resnet50", cfg)}
    if name not in layers:
        raise SystemExit(f"unknown ResNet-50 layer {name!r}; expected one of: "
                         f"{', '.join(layers)}")
    asm, sched, _ = layer_program(cfg, layers[name], rng)
    return link(cfg, asm.program, asm.data_in, rng=rng), sched


def check(cfg, mp, run, latency: int) -> list[str]:
    """The memory against golden, the counters against the predicted counts, run_cycles
    beside the top's cycle model."""
    golden = GoldenAccelerator(cfg)
    memory = mp.image() + bytearray(PAD_BYTES)
    golden.run_in_memory(mp.program, memory)
    counts = {**program_counts(cfg, mp.program), "gated_macs": golden.gated_macs,
              "insns_fetched": len(mp.program)}
    wrong = {k: (run.counters[k], v) for k, v in counts.items() if run.counters[k] != v}
    lines = [f"memory {'equal to' if memory == run.memory else 'DIFFERENT from'} golden; "
             f"counters {'match' if not wrong else 'differ (got, predicted): ' + str(wrong)}"]
    try:
        timing = top_timing(cfg, mp.program, latency=latency, prog_base=mp.prog_base)
    except Exception as e:   # a figure beside the measurement, not the measurement
        return [*lines, f"run_cycles {run.run_cycles:,}; the top cycle model failed: {e!r}"]
    same = run.run_cycles == timing.run_cycles
    return [*lines, f"run_cycles {run.run_cycles:,}; top cycle model {timing.run_cycles:,} "
                    f"({'equal' if same else 'different'})"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layer", default=DEFAULT_LAYER, help="ResNet-50 layer name")
    parser.add_argument("--latency", type=int, default=1, help="memory read latency (cycles)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cfg = preset("default")
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    acc = NativeAxiAccelerator(cfg, latency=args.latency)
    print(f"native AXI harness: {acc.binary} (ready in {time.perf_counter() - start:.1f} s)")
    mp, sched = linked_layer(cfg, args.layer, rng)
    start = time.perf_counter()
    run = acc.run(mp)
    wall = time.perf_counter() - start
    print(f"\n== native Verilator, memory-mapped top, {cfg.rows}x{cfg.cols} {cfg.n}:{cfg.m} "
          f"(preset default), {cfg.axi_data_bits}-bit AXI, read latency {args.latency} ==")
    print(f"layer {args.layer} ({sched.pattern}): {len(mp.program)} instructions, "
          f"{mp.size:,} bytes of memory; {run.simulated:,} cycles simulated "
          f"(stream-fed core's model: {program_cycles(cfg, sched.tiling):,})")
    for line in check(cfg, mp, run, args.latency):
        print(line)
    loop_rate, wall_rate = run.simulated / run.seconds, run.simulated / wall
    cpu_rate = run.simulated / run.cpu_seconds
    print(f"simulated cycles/s: {loop_rate:,.0f} (cycle loop, {run.seconds:.2f} s), "
          f"{cpu_rate:,.0f} per CPU second of the loop ({run.cpu_seconds:.2f} s), "
          f"{wall_rate:,.0f} (whole run, {wall:.2f} s); goal {GOAL:,} on one core (the "
          f"loop's CPU time): {'met' if cpu_rate >= GOAL else 'NOT met'}")


if __name__ == "__main__":
    main()
