"""The host driver: one API to run accelerator programs, with interchangeable backends.

``await backend.run(program, data_in)`` returns the ``data_out`` rows, the cycles from the first
instruction dispatched to the last row out, and the activity-counter increments. Backends:

* :class:`GoldenBackend`: the golden program executor; cycles and counts are the predictions
  (:func:`sparsa.sw.accel_timing.program_timing` / :func:`program_counts`; ``gated_macs``
  counted by the executor from the data).
* :class:`PyVerilatorBackend`: the Verilated accelerator driven from Python
  (:class:`~sparsa.sim.pyverilator_driver.PyVerilatorAccelerator`).
* :class:`NativeBackend`: the Verilated accelerator run by a compiled C++ harness, no Python
  per cycle (:class:`~sparsa.sim.native.NativeAccelerator`).
* :class:`NativeAxiBackend`: the memory-mapped accelerator (:mod:`sparsa.hw.top`) run the same
  way (:class:`~sparsa.sim.native_axi.NativeAxiAccelerator`), its memory in the harness. Its
  programs address their operands (``in_memory``: ``run(program, data_in, memory)`` with the
  assembler's :class:`~sparsa.sw.memory_layout.LayerMemory`); cycles are ``run_cycles``, from
  the start pulse until everything is written back.
* :class:`~sparsa.sim.tb_run.CocotbBackend`: inside a cocotb test (Verilator or Icarus).

The Python RTL backends run the one accelerator driver (:mod:`.accel_driver`); the native
harness keeps its discipline in C++. All of them are awaited
the same way, so the model runner (:mod:`.infer`) is written once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sparsa.config import ArrayConfig
from sparsa.isa import Instruction
from sparsa.sw.accel_timing import program_counts, program_timing
from sparsa.sw.memory_layout import LayerMemory

if TYPE_CHECKING:   # the golden backend runs without Amaranth's drivers loaded
    from .accel_driver import AccelRun

__all__ = ["BACKENDS", "GoldenBackend", "NativeAxiBackend", "NativeBackend", "ProgramRun",
           "PyVerilatorBackend"]

BACKENDS = ("golden", "native", "pyverilator", "verilator", "icarus")


@dataclass(frozen=True)
class ProgramRun:
    outputs: list[np.ndarray]
    cycles: int
    counters: dict[str, int]

    @classmethod
    def of(cls, run: AccelRun) -> ProgramRun:
        """The host's view of a driver's :class:`~sparsa.sim.accel_driver.AccelRun`."""
        return cls(outputs=list(run.outputs), cycles=run.cycles, counters=dict(run.counters))


class GoldenBackend:
    name = "golden"

    def __init__(self, cfg: ArrayConfig):
        self.cfg = cfg

    async def run(self, program: Sequence[Instruction], data_in: Sequence[int]) -> ProgramRun:
        from .golden_accel import GoldenAccelerator

        golden = GoldenAccelerator(self.cfg)
        outputs = golden.run(program, data_in)
        counts = program_counts(self.cfg, program, len(data_in))
        return ProgramRun(outputs=outputs, cycles=program_timing(self.cfg, program).cycles,
                          counters={**counts, "gated_macs": golden.gated_macs})


class PyVerilatorBackend:
    """The exported accelerator, Verilated once, driven cycle by cycle from Python with ideal
    streams (instructions and data always valid, output always ready)."""

    name = "pyverilator"

    def __init__(self, cfg: ArrayConfig, build_dir: str | Path):
        from .pyverilator_driver import PyVerilatorAccelerator

        self.accelerator = PyVerilatorAccelerator(cfg, build_dir)

    async def run(self, program: Sequence[Instruction], data_in: Sequence[int]) -> ProgramRun:
        return ProgramRun.of(self.accelerator.run_program(program, data_in))


class NativeBackend:
    """The exported accelerator, Verilated with a C++ harness into one executable (built once
    per configuration and cached, :func:`sparsa.sim.native.build`), running each program with
    ideal streams or DRAM ports of ``dram_bytes_per_cycle``."""

    name = "native"

    def __init__(self, cfg: ArrayConfig, *, dram_bytes_per_cycle: int | None = None):
        from .native import NativeAccelerator

        self.accelerator = NativeAccelerator(cfg, dram_bytes_per_cycle=dram_bytes_per_cycle)

    async def run(self, program: Sequence[Instruction], data_in: Sequence[int]) -> ProgramRun:
        return ProgramRun.of(self.accelerator.run_program(program, data_in))


class NativeAxiBackend:
    """The memory-mapped accelerator Verilated with its memory in a C++ harness (built once
    per configuration and cached, :func:`sparsa.sim.native_axi.build`), memory of read latency
    ``cfg.axi_latency``; ``max_cycles`` bounds each run."""

    name = "native"
    in_memory = True

    def __init__(self, cfg: ArrayConfig, *, max_cycles: int = 100_000_000):
        from .native_axi import NativeAxiAccelerator

        self.cfg = cfg
        self.accelerator = NativeAxiAccelerator(cfg, latency=cfg.axi_latency,
                                                max_cycles=max_cycles)

    async def run(self, program: Sequence[Instruction], data_in: Sequence[int],
                  memory: LayerMemory) -> ProgramRun:
        from .memory_image import place

        run = self.accelerator.run(place(self.cfg, program, data_in, memory))
        return ProgramRun(outputs=run.outputs, cycles=run.run_cycles, counters=run.counters)
