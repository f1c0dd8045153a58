"""Backend: the Verilated design driven from Python with ``pyverilator`` (long programs, no
cocotb), and its array and accelerator entry points.

:class:`PyVerilatorHarness` adapts a model to the drivers' harness: inputs are applied with the
clock low (every write re-evaluates the model, so outputs read next are settled), then a rising
edge. The drivers (:mod:`.array_driver`, :mod:`.accel_driver`) keep the discipline of every other
backend, so cycle counts obey the same contracts (:mod:`sparsa.sw.timing`,
:mod:`sparsa.sw.accel_timing`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sparsa.config import ArrayConfig
from sparsa.hw.export import export_verilog
from sparsa.isa import Instruction

from . import pyverilator_compat as pvc
from .accel_driver import AcceleratorDriver, AccelRun
from .array_driver import ArrayDriver, ArrayRun
from .stimulus import Tile
from .streams import run_sync

__all__ = ["PyVerilatorAccelerator", "PyVerilatorArray", "PyVerilatorHarness"]


class PyVerilatorHarness:
    """A Verilated model (:func:`sparsa.sim.pyverilator_compat.build`) with ports ``clk`` and
    ``rst``. Nothing here suspends, so drivers on it run with
    :func:`~sparsa.sim.streams.run_sync` or inside any event loop."""

    def __init__(self, sim):
        self.sim = sim

    @classmethod
    def build(cls, cfg: ArrayConfig, build_dir: str | Path, top: str) -> PyVerilatorHarness:
        """Export ``top`` for ``cfg``, Verilate it into ``build_dir`` and reset it."""
        build_dir = Path(build_dir)
        paths = export_verilog(cfg, build_dir / "rtl", top=top)
        harness = cls(pvc.build(paths.verilog, paths.module, build_dir / "pyverilator",
                                extra_args=["-Wno-fatal"]))
        harness.reset()
        return harness

    def reset(self, cycles: int = 2) -> None:
        """Hold ``rst`` for ``cycles`` cycles (every other input is 0 after the build)."""
        pvc.set_port(self.sim, "clk", 0)
        pvc.set_port(self.sim, "rst", 1)
        pvc.tick(self.sim, cycles)
        pvc.set_port(self.sim, "rst", 0)

    def set(self, port: str, value: int) -> None:
        pvc.set_port(self.sim, port, value)

    def get(self, port: str) -> int:
        return pvc.get_port(self.sim, port)

    async def settle(self) -> None:
        pass

    async def tick(self) -> None:
        pvc.tick(self.sim)


class PyVerilatorArray:
    """A Verilated :class:`~sparsa.hw.SystolicArray` for ``cfg``, built into ``build_dir``."""

    def __init__(self, cfg: ArrayConfig, build_dir: str | Path):
        self.cfg = cfg
        self.harness = PyVerilatorHarness.build(cfg, build_dir, "array")

    def run_tiles(self, tiles: Sequence[Tile], *, max_cycles: int = 10_000_000) -> ArrayRun:
        """Stream ``tiles`` back to back (each next weight tile loads while the previous one
        computes); every stream always valid, output always ready."""
        driver = ArrayDriver(self.cfg, self.harness, max_cycles=max_cycles)
        return run_sync(driver.run(tiles, overlap=True))


class PyVerilatorAccelerator:
    """A Verilated :class:`~sparsa.hw.accelerator.Accelerator` for ``cfg``, built into
    ``build_dir``, running programs with ideal streams (instructions and data always valid,
    output always ready) or DRAM ports of ``dram_bytes_per_cycle``."""

    def __init__(self, cfg: ArrayConfig, build_dir: str | Path, *,
                 dram_bytes_per_cycle: int | None = None):
        self.cfg = cfg
        self.harness = PyVerilatorHarness.build(cfg, build_dir, "accelerator")
        self.driver = AcceleratorDriver(cfg, self.harness,
                                        dram_bytes_per_cycle=dram_bytes_per_cycle)

    def run_program(self, program: Sequence[Instruction], data_in: Sequence[int]) -> AccelRun:
        return run_sync(self.driver.run(program, data_in))
