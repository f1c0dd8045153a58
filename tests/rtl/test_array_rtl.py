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


def run_all(cfg: ArrayConfig, top: str, simulator: str, seed: int, *, tests: int):
    """Build and run every test of ``top``'s cocotb testbench with ``seed`` (cocotb's seed, which
    every cocotb test combines with its own name); all ``tests`` must pass."""
    result = run_testbench(cfg, top=top, simulator=simulator, seed=seed)
    assert result.tests == tests, f"expected {tests} {top} testbench tests, got {result.tests}"
    assert result.failed == 0, (f"{result.failed} of {result.tests} failed with "
                                f"COCOTB_RANDOM_SEED={seed}; first: {result.failure()} "
                                f"(results: {result.results_xml})")
    return result


@pytest.mark.rtl
@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("name", CONFIGS)
def test_array(name: str, simulator: str, seed_for) -> None:
    result = run_all(CONFIGS[name], "array", simulator, seed_for(f"array-{name}-{simulator}"),
                     tests=8)
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
    run_all(PE_PATTERNS[pattern], "pe", simulator, seed_for(f"pe-{pattern}-{simulator}"),
            tests=2)


SMALL = dict(act_buffer_kib=1, weight_buffer_kib=1, acc_buffer_kib=1)
ACCEL_CONFIGS = {
    "4x4-2of4": ArrayConfig(rows=4, cols=4, n=2, m=4, **SMALL),
    "4x4-1of1": ArrayConfig(rows=4, cols=4, n=1, m=1, **SMALL),
}


@pytest.mark.rtl
@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("name", ACCEL_CONFIGS)
def test_accelerator(name: str, simulator: str, seed_for) -> None:
    run_all(ACCEL_CONFIGS[name], "accelerator", simulator,
            seed_for(f"accelerator-{name}-{simulator}"), tests=4)
