"""cocotb testbench of :class:`~sparsa.hw.SystolicArray` (top ``sparsa_array``).

Drivers (weight, act, psum_in stream sources), a monitor (psum sink with backpressure), the golden
model (expectations computed by :mod:`sparsa.sim.stimulus` from :mod:`sparsa.sim.golden`) and an
in-order scoreboard. Run through :mod:`sparsa.sim.runner`, which passes the configuration as
``SPARSA_CONFIG`` JSON and the seed as ``COCOTB_RANDOM_SEED``.
"""

from __future__ import annotations

import json
import os

import cocotb
import numpy as np

from sparsa.sw import timing

from .cocotb_util import StreamSink, StreamSource, load_config, log, make_rng, start_clock_and_reset
from .encode import decode_psum, tile_beats
from .stimulus import random_gemm

TIMEOUT_US = 5000


class ArrayTB:
    """Clock, reset, the three input sources and the output sink of one array."""

    def __init__(self, dut, name: str, *, idle: float = 0.0, backpressure: float = 0.0):
        self.dut = dut
        self.cfg = load_config()
        self.rng = make_rng(name)
        self.np_rng = np.random.default_rng(self.rng.getrandbits(63))
        self.weight = StreamSource(dut, "weight", self.rng, idle)
        self.act = StreamSource(dut, "act", self.rng, idle)
        self.psum_in = StreamSource(dut, "psum_in", self.rng, idle)
        self.psum = StreamSink(dut, "psum", self.rng, backpressure)

    async def start(self) -> None:
        await start_clock_and_reset(self.dut, [])
        for part in (self.weight, self.act, self.psum_in, self.psum):
            cocotb.start_soon(part.run())

    async def run_tiles(self, tiles, *, overlap: bool = True) -> tuple[list[np.ndarray], int]:
        """Stream ``tiles`` and return their outputs and the cycles from the first weight beat
        accepted to the last output beat transferred. With ``overlap`` all weights are queued
        at once (each load overlaps the previous tile's compute); without it each tile's
        weights are sent only after the previous tile's outputs have all arrived."""
        cfg = self.cfg
        beats = [tile_beats(cfg, t) for t in tiles]
        out_base, w_base = len(self.psum.received), len(self.weight.transfers)
        for b in beats:
            self.act.send(b.act)
            self.psum_in.send(b.psum_in)
        done = out_base
        for i, b in enumerate(beats):
            self.weight.send(b.weight)
            if not overlap and i + 1 < len(beats):
                done += tiles[i].beats
                await self.psum.wait_for(done)
        total = out_base + sum(t.beats for t in tiles)
        await self.psum.wait_for(total)
        raw = self.psum.received[out_base:total]
        decoded = [decode_psum(cfg, r) for r in raw]
        outputs, start = [], 0
        for t in tiles:
            outputs.append(np.array(decoded[start:start + t.beats]).reshape(t.beats, cfg.cols))
            start += t.beats
        cycles = self.psum.transfers[total - 1] - self.weight.transfers[w_base] + 1
        return outputs, cycles


def scoreboard(tiles, outputs, what: str) -> None:
    """In-order comparison of every output beat with the golden expectation."""
    bad = []
    for i, (tile, got) in enumerate(zip(tiles, outputs, strict=True)):
        for p, c in np.argwhere(got != tile.expected):
            bad.append(f"tile {i} beat {p} column {c}: got {got[p, c]}, "
                       f"golden {tile.expected[p, c]}")
    assert not bad, f"{what}: {len(bad)} mismatches, first: " + "; ".join(bad[:5])
    log.info("%s: %d tiles, %d beats match golden", what, len(tiles),
             sum(t.beats for t in tiles))


def record(kind: str, cfg, beats, predicted: int, measured: int) -> None:
    """Append a cycle-contract measurement to ``cycles.jsonl`` (read back by the pytest side)."""
    with open("cycles.jsonl", "a") as f:
        f.write(json.dumps({"kind": kind, "sim": os.environ.get("SPARSA_SIM", "?"),
                            "config": f"{cfg.rows}x{cfg.cols} {cfg.nm}", "beats": list(beats),
                            "predicted": predicted, "measured": measured}) + "\n")


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
@cocotb.parametrize(idle=[0.0, 0.4], backpressure=[0.0, 0.5])
async def random_gemms(dut, idle: float, backpressure: float) -> None:
    """Random N:M GEMMs spanning 1-3 passes (accumulated through psum_in), random beat counts,
    random input gaps and output backpressure; every output beat checked against golden."""
    tb = ArrayTB(dut, f"random_gemms-{idle}-{backpressure}", idle=idle,
                 backpressure=backpressure)
    await tb.start()
    cfg = tb.cfg
    for overlap in (True, False):
        tiles = []
        for _ in range(3):
            p = int(tb.np_rng.integers(1, 3 * (cfg.rows + cfg.cols)))
            passes = int(tb.np_rng.integers(1, 4))
            tiles += random_gemm(cfg, tb.np_rng, p=p, passes=passes)[3]
        outputs, _ = await tb.run_tiles(tiles, overlap=overlap)
        scoreboard(tiles, outputs, f"overlap={overlap}")


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def extreme_operands(dut) -> None:
    """All operands -128 (largest products), accumulators starting at the int limits so the
    sums wrap, and all-zero weight groups."""
    tb = ArrayTB(dut, "extreme_operands")
    await tb.start()
    cfg = tb.cfg
    from .stimulus import gemm_tiles

    k = cfg.k_per_pass * 2
    lo = -(1 << (cfg.act_width - 1))
    w = np.zeros((k, cfg.cols), dtype=np.int64)
    for g in range(k // cfg.m):
        if g % 3 != 2:  # every third group stays all-zero
            w[g * cfg.m: g * cfg.m + cfg.n, :] = -(1 << (cfg.weight_width - 1))
    x = np.full((6, k), lo, dtype=np.int64)
    top = (1 << (cfg.acc_width - 1)) - 1
    psum0 = np.where(np.arange(cfg.cols) % 2 == 0, top, -top - 1) * np.ones((6, 1), np.int64)
    tiles = gemm_tiles(cfg, x, w, psum0)
    outputs, _ = await tb.run_tiles(tiles)
    scoreboard(tiles, outputs, "extreme operands")


def _beat_counts(cfg, which: str) -> list[int]:
    period = timing.array_timing(cfg).tile_period
    return {"short": [1, 2, 3], "period": [period - 1, period, period + 1],
            "long": [3 * period + 5, 2 * period, 1]}[which]


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
@cocotb.parametrize(which=["short", "period", "long"])
async def cycle_contract(dut, which: str) -> None:
    """Measured cycles == sparsa.sw.timing's prediction: single tiles (no overlapped load) and
    back-to-back sequences (overlapped loads), with no gaps and no backpressure."""
    tb = ArrayTB(dut, f"cycle_contract-{which}")
    await tb.start()
    cfg = tb.cfg
    counts = [max(1, p) for p in _beat_counts(cfg, which)]
    for p in counts:
        tiles = random_gemm(cfg, tb.np_rng, p=p, passes=1)[3]
        outputs, measured = await tb.run_tiles(tiles, overlap=False)
        scoreboard(tiles, outputs, f"single tile P={p}")
        predicted = timing.tile_cycles(cfg, p)
        record("tile", cfg, [p], predicted, measured)
        assert measured == predicted, f"P={p}: measured {measured} cycles, predicted {predicted}"
    tiles = [random_gemm(cfg, tb.np_rng, p=p, passes=1)[3][0] for p in counts]
    outputs, measured = await tb.run_tiles(tiles, overlap=True)
    scoreboard(tiles, outputs, f"sequence {counts}")
    predicted = timing.tile_sequence_cycles(cfg, counts)
    record("sequence", cfg, counts, predicted, measured)
    assert measured == predicted, f"{counts}: measured {measured} cycles, predicted {predicted}"
