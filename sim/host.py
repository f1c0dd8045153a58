"""The host driver: one API to run accelerator programs, with interchangeable backends.

``await backend.run(program, data_in)`` returns the ``data_out`` rows, the cycles from the first
instruction dispatched to the last row out, and the activity-counter increments. Backends:

* :class:`GoldenBackend`: the golden program executor; cycles and counts are the predictions
  (:func:`sparsa.sw.accel_timing.program_timing` / :func:`program_counts`).
* :class:`PyVerilatorBackend`: the Verilated accelerator driven from Python (pyverilator).
* :class:`CocotbBackend`: inside a cocotb test (Verilator or Icarus), see :mod:`.tb_run`.

All of them are awaited the same way, so the model runner (:mod:`.infer`) is written once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sparsa import isa
from sparsa.config import ArrayConfig
from sparsa.isa import Instruction, Opcode
from sparsa.sw.accel_timing import program_counts, program_timing

__all__ = ["BACKENDS", "GoldenBackend", "ProgramRun", "PyVerilatorBackend"]

BACKENDS = ("golden", "pyverilator", "verilator", "icarus")


@dataclass(frozen=True)
class ProgramRun:
    outputs: list[np.ndarray]
    cycles: int
    counters: dict[str, int]


class GoldenBackend:
    name = "golden"

    def __init__(self, cfg: ArrayConfig):
        self.cfg = cfg

    async def run(self, program: Sequence[Instruction], data_in: Sequence[int]) -> ProgramRun:
        from .golden_accel import GoldenAccelerator

        outputs = GoldenAccelerator(self.cfg).run(program, data_in)
        return ProgramRun(outputs=outputs, cycles=program_timing(self.cfg, program).cycles,
                          counters=program_counts(self.cfg, program, len(data_in)))


class PyVerilatorBackend:
    """The exported accelerator, Verilated once, driven cycle by cycle from Python with ideal
    streams (instructions and data always valid, output always ready)."""

    name = "pyverilator"

    def __init__(self, cfg: ArrayConfig, build_dir: str | Path):
        from sparsa.hw.accelerator import COUNTERS
        from sparsa.hw.export import export_verilog

        from . import pyverilator_compat as pvc
        from .pyverilator_driver import reset

        self.cfg, self.pvc, self.counter_names = cfg, pvc, COUNTERS
        paths = export_verilog(cfg, Path(build_dir) / "rtl", top="accelerator")
        self.sim = pvc.build(paths.verilog, paths.module, Path(build_dir) / "pyverilator",
                             extra_args=["-Wno-fatal"])
        reset(self.sim, ["insn__valid", "data_in__valid", "data_out__ready"])

    def _counters(self) -> dict[str, int]:
        raw = self.pvc.get_port(self.sim, "counters")
        return {name: (raw >> (32 * i)) & 0xFFFFFFFF for i, name in enumerate(self.counter_names)}

    async def run(self, program: Sequence[Instruction], data_in: Sequence[int]) -> ProgramRun:
        from .pyverilator_driver import stream_cycle

        pvc, sim = self.pvc, self.sim
        before = self._counters()
        queues = {"insn": deque(i.encode() for i in program), "data_in": deque(data_in)}
        expected = sum(i.count for i in program if i.opcode == Opcode.STORE)
        received: list[int] = []
        first = last = None
        pvc.set_port(sim, "data_out__ready", 1)
        cycle = 0
        while queues["insn"] or len(received) < expected or not pvc.get_port(sim, "idle"):
            fired, out = stream_cycle(sim, queues, "data_out")
            if out is not None:
                received.append(out)
                last = cycle
            if "insn" in fired and first is None:
                first = cycle
            cycle += 1
            if cycle > 50_000_000:
                raise TimeoutError("program did not finish in 50M cycles")
        for name in queues:
            pvc.set_port(sim, f"{name}__valid", 0)
        after = self._counters()
        outputs = [np.array(isa.unpack_psum_row(self.cfg, r), dtype=np.int64) for r in received]
        end = last if last is not None else cycle - 1
        return ProgramRun(outputs=outputs, cycles=end - first + 1,
                          counters={k: (after[k] - before[k]) & 0xFFFFFFFF for k in after})
