"""The memory system's AXI blocks on Verilator and Icarus: DMA reader and writer (cocotb
testbenches in ``sparsa.sim.tb_dma``) and the CSR block (``sparsa.sim.tb_csr``), each
configuration and simulator with its own seed; and their exported Verilog, and the memory-mapped
accelerator's, is lint-clean with the repository's waiver file."""

from __future__ import annotations

from xml.etree import ElementTree

import pytest

from sparsa.config import ArrayConfig
from sparsa.hw.export import export_verilog
from sparsa.sim.runner import SIMULATORS, run_testbench
from sparsa.sim.tools import lint

CONFIGS = {
    "axi64": ArrayConfig(axi_data_bits=64, axi_addr_bits=40),
    "axi128": ArrayConfig(axi_data_bits=128),
}
# top -> cocotb tests its testbench runs on that top
TESTS = {"dma_reader": 3, "dma_writer": 3, "csr": 2}


def passed_tests(results_xml) -> list[str]:
    """Names of the cocotb tests that ran and passed (a testbench skips the other tops' tests)."""
    return [case.get("name") for case in ElementTree.parse(results_xml).getroot().iter("testcase")
            if all(case.find(tag) is None for tag in ("failure", "error", "skipped"))]


@pytest.mark.rtl
@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("top", TESTS)
def test_axi_block(top: str, name: str, simulator: str, seed_for) -> None:
    seed = seed_for(f"{top}-{name}-{simulator}")
    result = run_testbench(CONFIGS[name], top=top, simulator=simulator, seed=seed)
    passed = passed_tests(result.results_xml)
    assert result.failed == 0, (f"{result.failed} of {result.tests} failed with "
                                f"COCOTB_RANDOM_SEED={seed}; first: {result.failure()} "
                                f"(results: {result.results_xml})")
    assert len(passed) == TESTS[top], f"expected {TESTS[top]} {top} tests to pass: {passed}"


# The memory-mapped accelerator holds the whole core: a 2x2 array keeps its export short (the
# core alone is linted at larger sizes in test_lint.py).
LINT_ARRAYS = {**{top: {} for top in TESTS}, "axi_accelerator": {"rows": 2, "cols": 2}}


@pytest.mark.rtl
@pytest.mark.parametrize("bits", [32, 128, 1024])
@pytest.mark.parametrize("top", LINT_ARRAYS)
def test_axi_block_is_lint_clean(tmp_path, top: str, bits: int) -> None:
    cfg = ArrayConfig(axi_data_bits=bits, axi_addr_bits=40, **LINT_ARRAYS[top])
    paths = export_verilog(cfg, tmp_path, top=top)
    lint(paths.verilog, paths.waivers, top=paths.module)
