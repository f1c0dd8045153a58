"""Runs array tiles in Amaranth's own simulator (fast, no Verilog toolchain).

The same :class:`~sparsa.sim.stimulus.Tile` workloads as the cocotb testbenches: a weight
source, an act + psum_in source and a psum sink, each with its own random idle/backpressure
pattern, run concurrently against the elaborated :class:`~sparsa.hw.SystolicArray`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from amaranth.sim import Simulator

from sparsa.config import ArrayConfig
from sparsa.hw import SystolicArray

from .encode import decode_psum, tile_beats
from .stimulus import Tile

__all__ = ["ArrayRun", "run_tiles"]


@dataclass(frozen=True)
class ArrayRun:
    outputs: list[np.ndarray]   # one (P, cols) array per tile, in order
    cycles: int                 # first weight beat accepted .. last psum beat transferred


def run_tiles(cfg: ArrayConfig, tiles: Sequence[Tile], *, seed: int = 0, idle: float = 0.0,
              backpressure: float = 0.0, overlap: bool = True,
              max_cycles: int = 100_000) -> ArrayRun:
    """Stream ``tiles`` through the array. With ``overlap`` the weight source runs ahead (the
    next tile loads while the current one computes); without it, each tile's weights are sent
    only after the previous tile's outputs have all arrived."""
    dut = SystolicArray(cfg)
    rng = np.random.default_rng(seed)
    beats = [tile_beats(cfg, t) for t in tiles]
    total = sum(t.beats for t in tiles)
    received: list[int] = []
    events = {"first_weight": None, "last_psum": None, "tiles_done": 0}

    async def send(ctx, stream, payload):
        while rng.random() < idle:
            await ctx.tick()
        ctx.set(stream.valid, 1)
        ctx.set(stream.payload.as_value(), payload)
        while True:
            _, _, ready = await ctx.tick().sample(stream.ready)
            if ready:
                break
        ctx.set(stream.valid, 0)

    async def weight_source(ctx):
        for i, b in enumerate(beats):
            if not overlap:
                while events["tiles_done"] < i:
                    await ctx.tick()
            for w in b.weight:
                await send(ctx, dut.weight, w)

    async def act_source(ctx):
        for b in beats:
            for a in b.act:
                await send(ctx, dut.act, a)

    async def psum_source(ctx):
        for b in beats:
            for p in b.psum_in:
                await send(ctx, dut.psum_in, p)

    async def sink(ctx):
        cycle = 0
        tile_end = np.cumsum([t.beats for t in tiles])
        while len(received) < total:
            ready = rng.random() >= backpressure
            ctx.set(dut.psum.ready, int(ready))
            _, _, valid, payload, rdy, wvalid, wready = await ctx.tick().sample(
                dut.psum.valid, dut.psum.payload.as_value(), dut.psum.ready,
                dut.weight.valid, dut.weight.ready)
            if wvalid and wready and events["first_weight"] is None:
                events["first_weight"] = cycle
            if valid and rdy:
                received.append(int(payload))
                events["last_psum"] = cycle
                events["tiles_done"] = int(np.searchsorted(tile_end, len(received), "right"))
            cycle += 1
            if cycle > max_cycles:
                raise TimeoutError(f"array produced {len(received)} of {total} beats in "
                                   f"{max_cycles} cycles")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(weight_source, background=True)
    sim.add_testbench(act_source, background=True)
    sim.add_testbench(psum_source, background=True)
    sim.add_testbench(sink)
    sim.run()

    decoded = [decode_psum(cfg, r) for r in received]
    outputs, start = [], 0
    for t in tiles:
        outputs.append(np.array(decoded[start:start + t.beats]).reshape(t.beats, cfg.cols))
        start += t.beats
    return ArrayRun(outputs=outputs, cycles=events["last_psum"] - events["first_weight"] + 1)
