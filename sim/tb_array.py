"""Testbench (cocotb) of :class:`~sparsa.hw.SystolicArray` (top ``sparsa_array``).

The array driver (:mod:`sparsa.sim.array_driver`: weight, act and psum_in sources, a psum sink
with backpressure) on the cocotb harness, the golden model (expectations computed by
:mod:`sparsa.sim.stimulus` from :mod:`sparsa.nm`) and an in-order scoreboard. Run through
:mod:`sparsa.sim.runner`, which passes the configuration as ``SPARSA_CONFIG`` JSON and the
pytest test's seed as ``COCOTB_RANDOM_SEED``; every failure names the seed.
"""

from __future__ import annotations

import json
import os

import cocotb
import numpy as np

from sparsa.sw import timing

from .array_driver import ArrayDriver
from .cocotb_util import CocotbHarness, load_config, log, seed_for, start_clock_and_reset
from .stimulus import gemm_tiles, random_gemm

TIMEOUT_US = 5000


class ArrayTB:
    """Clock, reset and the array driver of one test, with the test's own seed."""

    def __init__(self, dut, name: str, *, idle: float = 0.0, backpressure: float = 0.0):
        self.dut = dut
        self.cfg = load_config()
        self.seed = seed_for(name)
        self.np_rng = self.seed.numpy()
        self.driver = ArrayDriver(self.cfg, CocotbHarness(dut), rng=self.seed.rng(), idle=idle,
                                  backpressure=backpressure)

    async def start(self) -> None:
        dut = self.dut
        await start_clock_and_reset(dut, [dut.weight__valid, dut.act__valid,
                                          dut.psum_in__valid, dut.psum__ready])

    async def run_tiles(self, tiles, *, overlap: bool = True) -> tuple[list[np.ndarray], int]:
        """Outputs of ``tiles`` and the cycles from the first weight beat accepted to the last
        output beat (see :meth:`ArrayDriver.run <sparsa.sim.array_driver.ArrayDriver.run>`)."""
        run = await self.driver.run(tiles, overlap=overlap)
        return run.outputs, run.cycles


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


def record(tb: ArrayTB, kind: str, beats, predicted: int, measured: int) -> None:
    """Append a cycle-contract measurement to ``cycles.jsonl`` (read back by the pytest side)."""
    cfg = tb.cfg
    with open("cycles.jsonl", "a") as f:
        f.write(json.dumps({"kind": kind, "sim": os.environ.get("SPARSA_SIM", "?"),
                            "config": f"{cfg.rows}x{cfg.cols} {cfg.nm}", "beats": list(beats),
                            "predicted": predicted, "measured": measured,
                            "seed": str(tb.seed)}) + "\n")


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
@cocotb.parametrize(idle=[0.0, 0.4], backpressure=[0.0, 0.5])
async def random_gemms(dut, idle: float, backpressure: float) -> None:
    """Random N:M GEMMs spanning 1-3 passes (accumulated through psum_in), random beat counts,
    random input gaps and output backpressure; every output beat checked against golden."""
    tb = ArrayTB(dut, f"random_gemms-{idle}-{backpressure}", idle=idle,
                 backpressure=backpressure)
    await tb.start()
    cfg = tb.cfg
    with tb.seed.named_in_failures():
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


def beat_counts(cfg, which: str) -> list[int]:
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
    counts = [max(1, p) for p in beat_counts(cfg, which)]
    with tb.seed.named_in_failures():
        for p in counts:
            tiles = random_gemm(cfg, tb.np_rng, p=p, passes=1)[3]
            outputs, measured = await tb.run_tiles(tiles, overlap=False)
            scoreboard(tiles, outputs, f"single tile P={p}")
            predicted = timing.tile_cycles(cfg, p)
            record(tb, "tile", [p], predicted, measured)
            assert measured == predicted, (f"P={p}: measured {measured} cycles, "
                                           f"predicted {predicted}")
        tiles = [random_gemm(cfg, tb.np_rng, p=p, passes=1)[3][0] for p in counts]
        outputs, measured = await tb.run_tiles(tiles, overlap=True)
        scoreboard(tiles, outputs, f"sequence {counts}")
        predicted = timing.tile_sequence_cycles(cfg, counts)
        record(tb, "sequence", counts, predicted, measured)
        assert measured == predicted, (f"{counts}: measured {measured} cycles, "
                                       f"predicted {predicted}")
