"""cocotb building blocks shared by the testbenches: stream source/sink and the run config.

Sampling discipline (the same on Verilator and Icarus): inputs are driven right after a rising
edge, handshakes and outputs are sampled in the ``ReadOnly`` phase of the same cycle, when every
combinational path has settled. A transfer is recorded with the index of the cycle it happened in.
"""

from __future__ import annotations

import logging
import os
import random
from collections import deque

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import Event, ReadOnly, RisingEdge

from sparsa.config import ArrayConfig

__all__ = [
    "CLOCK_NS",
    "StreamSink",
    "StreamSource",
    "cycle_now",
    "load_config",
    "make_rng",
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


def make_rng(salt: str) -> random.Random:
    """A generator seeded from cocotb's (logged) seed and the test's name."""
    seed = (cocotb.RANDOM_SEED * 1_000_003 + sum(map(ord, salt))) % (1 << 32)
    log.info("random seed for %s: %d (COCOTB_RANDOM_SEED=%d)", salt, seed, cocotb.RANDOM_SEED)
    return random.Random(seed)


def cycle_now() -> int:
    return int(get_sim_time("ns")) // CLOCK_NS


async def start_clock_and_reset(dut, inputs: list) -> None:
    for sig in inputs:
        sig.value = 0
    Clock(dut.clk, CLOCK_NS, unit="ns").start(start_high=False)
    dut.rst.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


class StreamSource:
    """Drives ``<name>__valid/__payload`` from a queue of integers, holding each beat until
    ``<name>__ready``; before presenting a new beat it idles with probability ``idle``."""

    def __init__(self, dut, name: str, rng: random.Random, idle: float = 0.0):
        self.clk = dut.clk
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.name, self.rng, self.idle = name, rng, idle
        self.queue: deque[int] = deque()
        self.transfers: list[int] = []
        self.gate: Event | None = None       # if set, wait for it before the next beat
        self.drained = Event()
        self._driving = False
        self.valid.value = 0

    def send(self, payloads) -> None:
        self.queue.extend(int(p) for p in payloads)
        self.drained.clear()

    async def run(self) -> None:
        while True:
            await RisingEdge(self.clk)
            if not self._driving:
                ready_to_go = self.queue and (self.gate is None or self.gate.is_set())
                if ready_to_go and self.rng.random() >= self.idle:
                    self.payload.value = self.queue[0]
                    self.valid.value = 1
                    self._driving = True
                else:
                    self.valid.value = 0
            await ReadOnly()
            if self._driving and self.ready.value:
                self.queue.popleft()
                self.transfers.append(cycle_now())
                self._driving = False
                if not self.queue:
                    self.drained.set()


class StreamSink:
    """Takes beats from ``<name>__valid/__payload``, deasserting ``<name>__ready`` with
    probability ``backpressure`` each cycle; records payloads and their cycles."""

    def __init__(self, dut, name: str, rng: random.Random, backpressure: float = 0.0):
        self.clk = dut.clk
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.rng, self.backpressure = rng, backpressure
        self.received: list[int] = []
        self.transfers: list[int] = []
        self.count_event = Event()
        self.expect = 0
        self.ready.value = 0

    async def run(self) -> None:
        while True:
            await RisingEdge(self.clk)
            self.ready.value = int(self.rng.random() >= self.backpressure)
            await ReadOnly()
            if self.valid.value and self.ready.value:
                self.received.append(self.payload.value.to_unsigned())
                self.transfers.append(cycle_now())
                if len(self.received) >= self.expect:
                    self.count_event.set()

    async def wait_for(self, count: int) -> None:
        self.expect = count
        if len(self.received) < count:
            self.count_event.clear()
            await self.count_event.wait()
