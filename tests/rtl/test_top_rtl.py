"""The memory-mapped accelerator (:class:`~sparsa.hw.top.AxiAccelerator`) on Verilator and
Icarus: the cocotb testbench ``sparsa.sim.tb_top`` (cocotbext-axi memory and CSR host, random
GEMM and conv programs, memory and counters against golden) at a 64-bit 2:4 and a 128-bit dense
configuration, each simulator with its own seed."""

from __future__ import annotations

import pytest

from sparsa.config import ArrayConfig
from sparsa.sim.runner import SIMULATORS, run_testbench

SMALL = dict(act_buffer_kib=1, weight_buffer_kib=1, acc_buffer_kib=1)
CONFIGS = {
    "2x2-2of4-axi64": ArrayConfig(rows=2, cols=2, n=2, m=4, axi_data_bits=64, **SMALL),
    "2x3-1of1-axi128": ArrayConfig(rows=2, cols=3, n=1, m=1, axi_data_bits=128, **SMALL),
}
TESTS = 2


@pytest.mark.rtl
@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("name", CONFIGS)
def test_axi_accelerator(name: str, simulator: str, seed_for) -> None:
    seed = seed_for(f"axi_accelerator-{name}-{simulator}")
    result = run_testbench(CONFIGS[name], top="axi_accelerator", simulator=simulator, seed=seed)
    assert result.failed == 0, (f"{result.failed} of {result.tests} failed with "
                                f"COCOTB_RANDOM_SEED={seed}; first: {result.failure()} "
                                f"(results: {result.results_xml})")
    assert result.tests == TESTS, f"expected {TESTS} tests, got {result.tests}"
