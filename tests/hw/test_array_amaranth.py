"""Tile tests in Amaranth's own simulator: fast, no Verilog toolchain; same workloads and golden
model as the cocotb testbenches."""

from __future__ import annotations

import numpy as np
import pytest

from sparsa.config import ArrayConfig
from sparsa.sim.amaranth_sim import run_tiles
from sparsa.sim.stimulus import random_gemm
from sparsa.sw import timing

TINY = {
    "1x1-2of4": ArrayConfig(rows=1, cols=1, n=2, m=4),
    "2x2-2of4": ArrayConfig(rows=2, cols=2, n=2, m=4),
    "2x2-1of1": ArrayConfig(rows=2, cols=2, n=1, m=1),
    "2x3-1of4": ArrayConfig(rows=2, cols=3, n=1, m=4),
    "3x2-2of8": ArrayConfig(rows=3, cols=2, n=2, m=8),
    "2x2-4of4": ArrayConfig(rows=2, cols=2, n=4, m=4),
    "2x2-2of4-d1": ArrayConfig(rows=2, cols=2, n=2, m=4, pipeline_depth=1),
    "2x3-2of8-d2": ArrayConfig(rows=2, cols=3, n=2, m=8, pipeline_depth=2),
}


@pytest.fixture
def rng(request, seed_for):
    """One seed per test (overrides the multi-seed ``rng`` of conftest)."""
    return np.random.default_rng(seed_for(request.node.nodeid))


def assert_golden(tiles, outputs):
    for i, (tile, got) in enumerate(zip(tiles, outputs, strict=True)):
        bad = np.argwhere(got != tile.expected)
        assert not bad.size, (f"tile {i} beat/column {bad[0].tolist()}: got "
                              f"{got[tuple(bad[0])]}, golden {tile.expected[tuple(bad[0])]}")


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize(("idle", "backpressure"), [(0.0, 0.0), (0.4, 0.5)])
@pytest.mark.parametrize("overlap", [True, False])
def test_random_gemms(name, idle, backpressure, overlap, rng):
    cfg = TINY[name]
    tiles = []
    for _ in range(3):
        p = int(rng.integers(1, 3 * (cfg.rows + cfg.cols) + 2))
        tiles += random_gemm(cfg, rng, p=p, passes=int(rng.integers(1, 4)))[3]
    run = run_tiles(cfg, tiles, seed=int(rng.integers(1 << 31)), idle=idle,
                    backpressure=backpressure, overlap=overlap)
    assert_golden(tiles, run.outputs)


@pytest.mark.parametrize("name", TINY)
def test_cycle_contract(name, rng):
    """Measured == predicted for single tiles (P = 1 .. 2 tile periods) and for back-to-back
    sequences of tiles with mixed beat counts."""
    cfg = TINY[name]
    period = timing.array_timing(cfg).tile_period
    for p in range(1, 2 * period + 2):
        tiles = random_gemm(cfg, rng, p=p, passes=1)[3]
        run = run_tiles(cfg, tiles, overlap=False)
        assert_golden(tiles, run.outputs)
        assert run.cycles == timing.tile_cycles(cfg, p), f"P={p}"
    for _ in range(4):
        counts = [int(c) for c in rng.integers(1, 2 * period + 3, size=int(rng.integers(2, 5)))]
        tiles = [random_gemm(cfg, rng, p=c, passes=1)[3][0] for c in counts]
        run = run_tiles(cfg, tiles, overlap=True)
        assert_golden(tiles, run.outputs)
        assert run.cycles == timing.tile_sequence_cycles(cfg, counts), counts


def test_gaps_cost_cycles_but_not_results(rng):
    """Backpressure must stall, not drop or duplicate: the same tiles with and without it give
    identical outputs, and the stalled run takes longer."""
    cfg = TINY["2x2-2of4"]
    tiles = random_gemm(cfg, rng, p=12, passes=2)[3]
    free = run_tiles(cfg, tiles)
    stalled = run_tiles(cfg, tiles, seed=int(rng.integers(1 << 31)), backpressure=0.7)
    assert_golden(tiles, stalled.outputs)
    assert stalled.cycles > free.cycles


@pytest.mark.parametrize("name", ["2x2-2of4", "2x3-1of4", "2x2-1of1", "2x3-2of8-d2"])
def test_gated_count_per_beat(name, rng):
    """Zero gating: the ``gated`` port presented with each output beat equals that beat's count
    of products whose selected activation is zero (an independent count from the tile), under
    random gaps and backpressure (the count's registers stall with the datapath)."""
    from sparsa.hw import SystolicArray
    from sparsa.sim.amaranth_sim import AmaranthHarness, simulate
    from sparsa.sim.array_driver import ArrayDriver

    cfg = TINY[name]
    tiles = []
    for _ in range(3):
        p = int(rng.integers(1, 3 * (cfg.rows + cfg.cols) + 2))
        for tile in random_gemm(cfg, rng, p=p, passes=1)[3]:
            zero = rng.random(tile.acts.shape) < 0.4
            acts = np.where(zero, 0, tile.acts)
            tiles.append(type(tile)(weights=tile.weights, acts=acts, psum_in=tile.psum_in,
                                    expected=tile.expected))
    expected = []
    for tile in tiles:
        groups = tile.acts.reshape(tile.beats, cfg.rows, cfg.m)
        idx = tile.weights.indices                                   # (rows, n, cols)
        sel = groups[:, np.arange(cfg.rows)[:, None, None], idx]      # (P, rows, n, cols)
        expected += [int(v) for v in np.count_nonzero(sel == 0, axis=(1, 2, 3))]

    class Recording(AmaranthHarness):
        """Reads ``gated`` whenever the sink reads a psum payload (a transfer)."""

        def __init__(self, dut, ctx):
            super().__init__(dut, ctx)
            self.seen: list[int] = []

        def get(self, port: str) -> int:
            if port == "psum__payload":
                self.seen.append(super().get("gated"))
            return super().get(port)

    dut = SystolicArray(cfg)

    async def body(harness):
        recording = Recording(harness.dut, harness.ctx)
        driver = ArrayDriver(cfg, recording, rng=rng, idle=0.4, backpressure=0.5)
        await driver.run(tiles, overlap=True)
        return recording.seen

    assert simulate(dut, body) == expected
    assert sum(expected) > 0
