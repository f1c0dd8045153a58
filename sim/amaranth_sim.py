"""Backend: Amaranth's own simulator (fast, no Verilog toolchain), and the array entry point.

:class:`AmaranthHarness` adapts an Amaranth 0.5 testbench context to the drivers' harness
(``ctx.set`` / ``ctx.get`` on the component's signals, ``await ctx.tick()``); :func:`simulate`
runs one driver coroutine against a component. :func:`run_tiles` streams the same
:class:`~sparsa.sim.stimulus.Tile` workloads as the cocotb testbench through
:class:`~sparsa.sim.array_driver.ArrayDriver`; programs go through
:func:`sparsa.sim.accel_sim.run_program`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import numpy as np
from amaranth.hdl import Value
from amaranth.lib import wiring
from amaranth.sim import Simulator

from sparsa.config import ArrayConfig
from sparsa.hw import SystolicArray

from .array_driver import ArrayDriver, ArrayRun
from .stimulus import Tile

__all__ = ["AmaranthHarness", "run_tiles", "simulate"]

T = TypeVar("T")


class AmaranthHarness:
    """A component in an Amaranth testbench, ports named as in its generated Verilog
    (``act__valid`` is ``dut.act.valid``). A testbench's ``ctx.set`` settles at once, so
    :meth:`settle` has nothing to wait for."""

    def __init__(self, dut: wiring.Component, ctx):
        self.dut, self.ctx = dut, ctx
        self._values: dict[str, Value] = {}

    def _value(self, port: str) -> Value:
        value = self._values.get(port)
        if value is None:
            obj = self.dut
            for member in port.split("__"):
                obj = getattr(obj, member)
            value = self._values[port] = Value.cast(obj)
        return value

    def set(self, port: str, value: int) -> None:
        self.ctx.set(self._value(port), value)

    def get(self, port: str) -> int:
        value = self._value(port)
        return self.ctx.get(value) & ((1 << len(value)) - 1)

    async def settle(self) -> None:
        pass

    async def tick(self) -> None:
        await self.ctx.tick()


def simulate(dut: wiring.Component, body: Callable[[AmaranthHarness], Awaitable[T]]) -> T:
    """Run ``await body(harness)`` as the testbench of ``dut`` (one clock, no reset phase) and
    return its result."""
    result: list[T] = []

    async def testbench(ctx) -> None:
        result.append(await body(AmaranthHarness(dut, ctx)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return result[0]


def run_tiles(cfg: ArrayConfig, tiles: Sequence[Tile], *, seed: int = 0, idle: float = 0.0,
              backpressure: float = 0.0, overlap: bool = True,
              max_cycles: int = 100_000) -> ArrayRun:
    """Stream ``tiles`` through a :class:`~sparsa.hw.SystolicArray` for ``cfg`` (see
    :meth:`ArrayDriver.run <sparsa.sim.array_driver.ArrayDriver.run>`); the random gaps are
    drawn from a generator seeded with ``seed``."""
    rng = np.random.default_rng(seed)

    def body(harness: AmaranthHarness) -> Awaitable[ArrayRun]:
        driver = ArrayDriver(cfg, harness, rng=rng, idle=idle, backpressure=backpressure,
                             max_cycles=max_cycles)
        return driver.run(tiles, overlap=overlap)

    return simulate(SystolicArray(cfg), body)
