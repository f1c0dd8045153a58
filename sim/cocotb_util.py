"""Backend: cocotb on Verilator or Icarus, and the plumbing every cocotb testbench shares (the
configuration under test, seeds, clock and reset).

:class:`CocotbHarness` adapts a cocotb DUT to the drivers' harness: inputs are driven right after
a rising edge, handshakes and outputs are read in the ``ReadOnly`` phase of the same cycle, when
every combinational path has settled (the same on Verilator and Icarus).
"""

from __future__ import annotations

import logging
import os
import random
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge
from cocotb.types import Logic

from sparsa.config import ArrayConfig

__all__ = [
    "CLOCK_NS",
    "CocotbHarness",
    "Seed",
    "load_config",
    "seed_for",
    "start_clock_and_reset",
]

CLOCK_NS = 10
log = logging.getLogger("sparsa.tb")


def load_config() -> ArrayConfig:
    """The array configuration of the Verilog under test (passed by the runner as JSON)."""
    text = os.environ.get("SPARSA_CONFIG")
    if not text:
        raise RuntimeError("SPARSA_CONFIG is not set: run testbenches through sparsa.sim.runner")
    return ArrayConfig.from_json(text)


@dataclass(frozen=True)
class Seed:
    """The random stream of one cocotb test: ``value`` seeds its generators; failures inside
    :meth:`named_in_failures` carry it in their message."""

    key: str
    value: int

    def __str__(self) -> str:
        regression = os.environ.get("COCOTB_RANDOM_SEED", "unset")
        return f"seed {self.value} for {self.key!r} (COCOTB_RANDOM_SEED={regression})"

    def rng(self) -> random.Random:
        return random.Random(self.value)

    def numpy(self) -> np.random.Generator:
        return np.random.default_rng(self.value)

    @contextmanager
    def named_in_failures(self) -> Iterator[None]:
        try:
            yield
        except AssertionError as err:
            raise AssertionError(f"{err} [{self}]") from err
        except Exception as err:
            err.add_note(str(self))
            raise


def seed_for(key: str) -> Seed:
    """The seed of the stream named ``key``: the running test's cocotb seed (derived by cocotb
    from ``COCOTB_RANDOM_SEED``, which the runner sets from the pytest test's seed, and the
    test's name) combined with ``key``, the simulator and the configuration, so no two tests,
    simulators or configurations share a stream."""
    sim = os.environ.get("SPARSA_SIM", "?")
    text = f"{cocotb.RANDOM_SEED}:{sim}:{os.environ.get('SPARSA_CONFIG', '')}:{key}"
    seed = Seed(key, zlib.crc32(text.encode()))
    log.info("%s on %s", seed, sim)
    return seed


async def start_clock_and_reset(dut, inputs: list) -> None:
    """Drive ``inputs`` low, start the clock and hold ``rst`` for three cycles; returns just after
    a rising edge, where drivers may drive."""
    for sig in inputs:
        sig.value = 0
    Clock(dut.clk, CLOCK_NS, unit="ns").start(start_high=False)
    dut.rst.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


class CocotbHarness:
    """A cocotb DUT, ports by their Verilog names. :meth:`settle` waits for ``ReadOnly``;
    :meth:`tick` for the next rising edge of ``clk``."""

    def __init__(self, dut):
        self.dut = dut
        self._handles: dict[str, object] = {}

    def _handle(self, port: str):
        handle = self._handles.get(port)
        if handle is None:
            handle = self._handles[port] = getattr(self.dut, port)
        return handle

    def set(self, port: str, value: int) -> None:
        self._handle(port).value = value

    def get(self, port: str) -> int:
        value = self._handle(port).value
        return int(value) if isinstance(value, Logic) else value.to_unsigned()

    async def settle(self) -> None:
        await ReadOnly()

    async def tick(self) -> None:
        await RisingEdge(self.dut.clk)
