"""Entry point: an accelerator program in Amaranth's simulator (fast, no Verilog toolchain).

:class:`~sparsa.sim.accel_driver.AcceleratorDriver` on the
:class:`~sparsa.sim.amaranth_sim.AmaranthHarness` of a fresh
:class:`~sparsa.hw.accelerator.Accelerator`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence

import numpy as np

from sparsa.config import ArrayConfig
from sparsa.hw.accelerator import Accelerator
from sparsa.isa import Instruction

from .accel_driver import AcceleratorDriver, AccelRun
from .amaranth_sim import AmaranthHarness, simulate

__all__ = ["run_program"]


def run_program(cfg: ArrayConfig, program: Sequence[Instruction], data_in: Sequence[int], *,
                seed: int = 0, idle: float = 0.0, backpressure: float = 0.0,
                dram_bytes_per_cycle: int | None = None,
                max_cycles: int = 200_000) -> AccelRun:
    """Run ``program`` with ``data_in``. ``idle``/``backpressure``: random gaps on the input
    streams and random ``data_out`` stalls, from a generator seeded with ``seed``;
    ``dram_bytes_per_cycle``: ``data_in`` and ``data_out`` paced by DRAM ports of that rate
    instead (:class:`sparsa.sw.accel_timing.DramPort`)."""
    rng = np.random.default_rng(seed)

    def body(harness: AmaranthHarness) -> Awaitable[AccelRun]:
        driver = AcceleratorDriver(cfg, harness, rng=rng, idle=idle, backpressure=backpressure,
                                   dram_bytes_per_cycle=dram_bytes_per_cycle,
                                   max_cycles=max_cycles)
        return driver.run(program, data_in)

    return simulate(Accelerator(cfg), body)
