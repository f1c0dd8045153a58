"""Testbench (cocotb) of :class:`~sparsa.hw.accelerator.Accelerator` (top ``sparsa_accelerator``).

Random GEMM and convolution programs (:mod:`sparsa.sim.programs`, ISA v2: on-chip im2col,
hazard tags) go in through the accelerator driver
(:mod:`sparsa.sim.accel_driver`: ``insn`` and ``data_in`` sources, a ``data_out`` sink) on the
cocotb harness; the output rows are compared in order with the golden program executor
(:mod:`sparsa.sim.golden_accel`), the activity counters with counts read off the program (and
``gated_macs`` with the golden executor's count from the data), and,
with ideal streams, every dispatch and output cycle with the cycle model
(:mod:`sparsa.sw.accel_timing`). Every failure names the test's seed.
"""

from __future__ import annotations

import cocotb
import numpy as np

from sparsa.sw.accel_timing import program_counts, program_timing

from .accel_driver import AcceleratorDriver, AccelRun
from .cocotb_util import CocotbHarness, load_config, log, seed_for, start_clock_and_reset
from .golden_accel import GoldenAccelerator
from .programs import random_conv_program, random_gemm_program

TIMEOUT_US = 5000


class AccelTB:
    """Clock, reset and the accelerator driver of one test, with the test's own seed."""

    def __init__(self, dut, name: str, *, idle: float = 0.0, backpressure: float = 0.0):
        self.dut = dut
        self.cfg = load_config()
        self.seed = seed_for(name)
        self.np_rng = self.seed.numpy()
        self.driver = AcceleratorDriver(self.cfg, CocotbHarness(dut), rng=self.seed.rng(),
                                        idle=idle, backpressure=backpressure)

    async def start(self) -> None:
        dut = self.dut
        await start_clock_and_reset(dut, [dut.insn__valid, dut.data_in__valid,
                                          dut.data_out__ready])

    async def run(self, program, data_in) -> AccelRun:
        """Run one program to completion: outputs, dispatch and output cycles (relative to the
        first dispatch) and the counter increments."""
        return await self.driver.run(program, data_in)


def check_counters(cfg, program, data_in, counts, gated_macs: int) -> None:
    """Every counter against the program's counts; ``gated_macs`` against the golden
    executor's count from the data."""
    expected = {**program_counts(cfg, program, len(data_in)), "gated_macs": gated_macs}
    for name, value in expected.items():
        assert counts[name] == value, f"counter {name}: RTL {counts[name]}, program {value}"


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
@cocotb.parametrize(idle=[0.0, 0.3], backpressure=[0.0, 0.4])
async def random_programs(dut, idle: float, backpressure: float) -> None:
    """Random GEMM programs in both loop orders and a random convolution, random gaps and
    backpressure: every output row equals the golden executor's, every counter the program's
    count (``gated_macs``: the golden executor's count of zero-selected products, with 40% of
    the activations zero); with ideal streams every dispatch/output cycle equals the cycle
    model's."""
    tb = AccelTB(dut, f"random_programs-{idle}-{backpressure}", idle=idle,
                 backpressure=backpressure)
    await tb.start()
    cfg = tb.cfg
    with tb.seed.named_in_failures():
        for order in ("k_inner", "cols_inner", "k_inner", "conv"):
            prog = random_conv_program(cfg, tb.np_rng, zero_fraction=0.4, max_computes=40,
                                       max_compute_beats=240) if order == "conv" else \
                random_gemm_program(cfg, tb.np_rng, order=order, zero_fraction=0.4)
            golden = GoldenAccelerator(cfg)
            golden_out = golden.run(prog.program, prog.data_in)
            run = await tb.run(prog.program, prog.data_in)
            assert len(run.outputs) == len(golden_out)
            for k, (got, want) in enumerate(zip(run.outputs, golden_out, strict=True)):
                assert np.array_equal(got, want), f"output row {k}: RTL {got}, golden {want}"
            check_counters(cfg, prog.program, prog.data_in, run.counters, golden.gated_macs)
            if idle == 0.0 and backpressure == 0.0:
                predicted = program_timing(cfg, prog.program)
                assert run.dispatch == predicted.dispatch, (run.dispatch, predicted.dispatch)
                assert run.out_cycles == predicted.out_cycles
                log.info("%s program of %d instructions: %d cycles, model %d", order,
                         len(prog.program), run.cycles, predicted.cycles)
