"""The array's cocotb testbenches on Verilator and Icarus over the issue's configurations."""

from __future__ import annotations

import pytest

from sparsa.config import ArrayConfig
from sparsa.sim.runner import SIMULATORS, run_testbench

CONFIGS = {
    "2x2-2of4": ArrayConfig(rows=2, cols=2, n=2, m=4),
    "4x4-2of4": ArrayConfig(rows=4, cols=4, n=2, m=4),
    "4x4-1of4": ArrayConfig(rows=4, cols=4, n=1, m=4),
    "4x8-2of8": ArrayConfig(rows=4, cols=8, n=2, m=8),
    "4x4-1of1": ArrayConfig(rows=4, cols=4, n=1, m=1),
    "4x4-4of4": ArrayConfig(rows=4, cols=4, n=4, m=4),
    "8x8-2of4": ArrayConfig(rows=8, cols=8, n=2, m=4),
    # PE pipeline registers (issue 6): after the multipliers, and after the select too.
    "4x4-2of4-d2": ArrayConfig(rows=4, cols=4, n=2, m=4, pipeline_depth=2),
    "4x8-1of4-d1": ArrayConfig(rows=4, cols=8, n=1, m=4, pipeline_depth=1),
}


@pytest.mark.rtl
@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("name", CONFIGS)
def test_array(name: str, simulator: str, seed_for) -> None:
    cfg = CONFIGS[name]
    seed = seed_for(f"array-{name}-{simulator}")
    result = run_testbench(cfg, top="array", simulator=simulator, seed=seed)
    assert result.tests >= 8, f"expected all array testbench tests to run, got {result.tests}"
    assert result.failed == 0, f"{result.failed} of {result.tests} failed: {result.results_xml}"
    records = result.measurements()
    assert records, "the cycle-contract test recorded no measurement"
    for rec in records:
        assert rec["measured"] == rec["predicted"], rec
    print(f"{name} on {simulator}: {result.tests} cocotb tests passed, "
          f"{len(records)} cycle measurements == prediction")


# The PE depends on (n, m, pipeline depth) only; one entry per such triple of CONFIGS.
PE_PATTERNS = {f"{c.n}of{c.m}-d{c.pipeline_depth}": c for c in CONFIGS.values()}


@pytest.mark.rtl
@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("pattern", PE_PATTERNS)
def test_pe(pattern: str, simulator: str, seed_for) -> None:
    cfg = PE_PATTERNS[pattern]
    seed = seed_for(f"pe-{pattern}-{simulator}")
    result = run_testbench(cfg, top="pe", simulator=simulator, seed=seed)
    assert result.tests == 2, f"expected both PE testbench tests to run, got {result.tests}"
    assert result.failed == 0, f"{result.failed} of {result.tests} failed: {result.results_xml}"


SMALL = dict(act_buffer_kib=1, weight_buffer_kib=1, acc_buffer_kib=1)
ACCEL_CONFIGS = {
    "4x4-2of4": ArrayConfig(rows=4, cols=4, n=2, m=4, **SMALL),
    "4x4-1of1": ArrayConfig(rows=4, cols=4, n=1, m=1, **SMALL),
}


@pytest.mark.rtl
@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("name", ACCEL_CONFIGS)
def test_accelerator(name: str, simulator: str, seed_for) -> None:
    cfg = ACCEL_CONFIGS[name]
    seed = seed_for(f"accelerator-{name}-{simulator}")
    result = run_testbench(cfg, top="accelerator", simulator=simulator, seed=seed)
    assert result.tests == 4, f"expected all accelerator tests to run, got {result.tests}"
    assert result.failed == 0, f"{result.failed} of {result.tests} failed: {result.results_xml}"
