"""Configurations that differ only in the DRAM ports' rate or the clock share a program's build
and its compute cycles (sparsa.sw.cost.TIMING_NEUTRAL): each layer's cost must still equal the
direct cost of its own program, timed at its own rate, whichever configuration came first."""

from __future__ import annotations

import random

from sparsa.config import ArrayConfig
from sparsa.models.graph import Gemm
from sparsa.sw.cost import direct_cost, layer_cost
from sparsa.sw.schedule import LayerSchedule, ScheduleError, schedule_gemm


def test_costs_shared_across_memory_ports_equal_direct_costs(node_seed):
    rng = random.Random(node_seed)
    checked, paced = 0, 0
    for _ in range(8):
        base = ArrayConfig(rows=rng.choice([2, 4]), cols=rng.choice([2, 4]), n=2,
                           m=rng.choice([2, 4]), pipeline_depth=rng.choice([0, 1]))
        gemm = Gemm(p=rng.randint(1, 60), k=rng.randint(1, 70), cols=rng.randint(1, 20),
                    groups=rng.randint(1, 2))
        stalls = set()
        for rate, clock in rng.sample([(1, 200.0), (2, 100.0), (16, 200.0), (64, 50.0)], 4):
            cfg = base.replace(dram_bytes_per_cycle=rate, clock_mhz=clock)
            try:
                t = schedule_gemm(gemm, cfg, sparse=cfg.n < cfg.m)
            except ScheduleError:
                continue
            got = layer_cost(LayerSchedule("x", "linear", "", t, cfg))
            assert got == direct_cost(cfg, t), (cfg, gemm)
            stalls.add(got.cycles.stall)
            checked += 1
        paced += len(stalls) > 1
    assert checked >= 8
    assert paced, "the rate still paces the shared program"     # 1 B/cycle stalls somewhere
