"""Runner: builds generated Verilog and runs the cocotb testbenches with ``cocotb_tools.runner``.

One build directory per (simulator, top, configuration), so parallel runs never share one and a
rebuild happens only when the Verilog changes. ``WAVES=1`` in the environment records waveforms.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cocotb_tools.check_results import get_results
from cocotb_tools.runner import get_runner

from sparsa.config import ArrayConfig
from sparsa.hw.export import export_verilog

from .tools import require, setup_environ

__all__ = ["SIMULATORS", "TESTBENCHES", "TestbenchResult", "build_dir_for", "run_testbench"]

SIMULATORS = ("verilator", "icarus")
# top -> cocotb test module
TESTBENCHES = {"array": "sparsa.sim.tb_array", "pe": "sparsa.sim.tb_pe",
               "accelerator": "sparsa.sim.tb_accel", "dma_reader": "sparsa.sim.tb_dma",
               "dma_writer": "sparsa.sim.tb_dma", "csr": "sparsa.sim.tb_csr",
               "axi_accelerator": "sparsa.sim.tb_top"}
TOOLS = {"verilator": "verilator", "icarus": "iverilog"}


@dataclass(frozen=True)
class TestbenchResult:
    tests: int
    failed: int
    results_xml: Path
    test_dir: Path

    def failure(self) -> str:
        """The first failing test's message, from the results file (empty if none)."""
        from xml.etree import ElementTree

        for case in ElementTree.parse(self.results_xml).getroot().iter("testcase"):
            for failure in (*case.iter("failure"), *case.iter("error")):
                text = failure.get("message") or (failure.text or "").strip()
                return f"{case.get('name')}: {text}"
        return ""

    def measurements(self) -> list[dict]:
        """Cycle-contract records the testbench wrote (``cycles.jsonl``)."""
        path = self.test_dir / "cycles.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]


def build_dir_for(cfg: ArrayConfig, top: str, simulator: str,
                  root: str | Path = "build/sim") -> Path:
    key = hashlib.sha256(cfg.to_json().encode()).hexdigest()[:10]
    name = f"{simulator}-{top}-{cfg.rows}x{cfg.cols}-{cfg.n}of{cfg.m}-{key}"
    return Path(root).resolve() / name


def run_testbench(cfg: ArrayConfig, *, top: str = "array", simulator: str = "verilator",
                  seed: int | None = None, testcase: str | None = None,
                  root: str | Path = "build/sim", test_module: str | None = None,
                  extra_env: dict[str, str] | None = None,
                  log_file: str | Path | None = None) -> TestbenchResult:
    """Export ``top`` for ``cfg``, build it with ``simulator`` and run its cocotb testbench
    (or ``test_module``); ``log_file`` takes the simulator's and cocotb's output instead of
    the terminal."""
    if simulator not in SIMULATORS:
        raise ValueError(f"unknown simulator {simulator!r}; expected one of "
                         f"{', '.join(SIMULATORS)}")
    if top not in TESTBENCHES:
        raise ValueError(f"no testbench for top {top!r}; expected one of {', '.join(TESTBENCHES)}")
    setup_environ()
    require(TOOLS[simulator])
    build_dir = build_dir_for(cfg, top, simulator, root)
    paths = export_verilog(cfg, build_dir / "rtl", top=top)
    sources = [paths.verilog]
    build_args: list[str] = []
    if simulator == "verilator":
        sources.insert(0, paths.waivers)
        build_args = ["-Wno-fatal", "-O2", "--x-assign", "fast"]
    runner = get_runner(simulator)
    runner.build(sources=sources, hdl_toplevel=paths.module, build_dir=build_dir,
                 build_args=build_args, timescale=("1ns", "1ps"),
                 waves=os.environ.get("WAVES") == "1", log_file=build_dir / "build.log")
    module = test_module or TESTBENCHES[top]
    test_dir = build_dir / ("run-" + (testcase or module.rsplit(".", 1)[-1]))
    test_dir.mkdir(parents=True, exist_ok=True)
    (test_dir / "cycles.jsonl").unlink(missing_ok=True)
    results = test_dir / "results.xml"
    try:
        runner.test(
            test_module=module, hdl_toplevel=paths.module, testcase=testcase,
            seed=seed, build_dir=build_dir, test_dir=test_dir,
            extra_env={"SPARSA_CONFIG": cfg.to_json(), "SPARSA_SIM": simulator,
                       **(extra_env or {})},
            timescale=("1ns", "1ps"), results_xml=str(results), log_file=log_file)
    except SystemExit as stop:
        # Under pytest the runner exits when a test failed: report it like any other result,
        # so the caller's message names the failure and the seed.
        if not results.is_file() or not get_results(results)[1]:
            raise RuntimeError(f"{simulator} stopped with status {stop.code} running {module} "
                               f"(no failing test in {results})") from None
    tests, failed = get_results(results)
    return TestbenchResult(tests=tests, failed=failed, results_xml=results, test_dir=test_dir)
