"""cocotb plumbing for the AXI ports: cocotbext-axi bus binding, pause generators and a protocol
checker for every handshake. The engines' own valid/ready streams are driven by the one stream
driver (:mod:`sparsa.sim.streams`, started with :func:`start_streams`).

The binding follows :mod:`sparsa.hw.axi`: Amaranth names a port ``<member>__<channel>__<signal>``
(``axi__ar__araddr``), so each cocotbext-axi channel bus is built from the prefix
``<member>__<channel>`` with ``bus_separator="__"``.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable, Iterator

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge
from cocotb.types import Logic
from cocotbext.axi import (
    AxiARBus,
    AxiAWBus,
    AxiBBus,
    AxiBus,
    AxiLiteARBus,
    AxiLiteAWBus,
    AxiLiteBBus,
    AxiLiteBus,
    AxiLiteRBus,
    AxiLiteWBus,
    AxiRBus,
    AxiReadBus,
    AxiWBus,
    AxiWriteBus,
)

from sparsa.hw.axi import MAX_BURST_BEATS, PAGE_BYTES

from .cocotb_util import CocotbHarness
from .streams import run_background

__all__ = ["PAUSES", "ChannelChecker", "check_burst", "lite_bus", "manager_bus",
           "pause_generator", "start_streams", "toplevel", "value"]

log = logging.getLogger("cocotb.sparsa.tb")

# Backpressure and idle profiles (test parameters): the probability that a channel pauses in a
# cycle, and the chance and length of a long pause (memory latency, a busy interconnect).
PAUSES = {"none": None, "heavy": (0.4, 0.03, 24)}


def toplevel() -> str:
    """The Verilog module under test (set by the cocotb runner)."""
    return os.environ.get("COCOTB_TOPLEVEL", "")


def value(handle) -> int:
    """A port's value as an unsigned integer."""
    v = handle.value
    return int(v) if isinstance(v, Logic) else v.to_unsigned()


def pause_generator(profile: str, rng: random.Random) -> Iterator[bool] | None:
    """cocotbext-axi pause generator for ``profile`` (a key of :data:`PAUSES`), or None."""
    spec = PAUSES[profile]
    if spec is None:
        return None
    p, p_long, long_len = spec

    def gen():
        while True:
            if rng.random() < p_long:
                yield from [True] * rng.randint(2, long_len)
            yield rng.random() < p
    return gen()


def _bus(dut, member: str, kinds: dict):
    return {name: kind.from_prefix(dut, f"{member}__{name}", bus_separator="__")
            for name, kind in kinds.items()}


def manager_bus(dut, member: str = "axi", *, read: bool = True, write: bool = True) -> AxiBus:
    """The cocotbext-axi bus of an AXI4 manager port (either half may be absent)."""
    kinds = {}
    if read:
        kinds |= {"ar": AxiARBus, "r": AxiRBus}
    if write:
        kinds |= {"aw": AxiAWBus, "w": AxiWBus, "b": AxiBBus}
    ch = _bus(dut, member, kinds)
    bus = AxiBus()
    if read:
        bus.read = AxiReadBus.from_channels(ch["ar"], ch["r"])
    if write:
        bus.write = AxiWriteBus.from_channels(ch["aw"], ch["w"], ch["b"])
    return bus


def lite_bus(dut, member: str = "csr") -> AxiLiteBus:
    """The cocotbext-axi bus of an AXI4-Lite subordinate port."""
    ch = _bus(dut, member, {"aw": AxiLiteAWBus, "w": AxiLiteWBus, "b": AxiLiteBBus,
                            "ar": AxiLiteARBus, "r": AxiLiteRBus})
    return AxiLiteBus.from_channels(ch["aw"], ch["w"], ch["b"], ch["ar"], ch["r"])


class ChannelChecker:
    """Watches one valid/ready channel every cycle: once ``valid`` is high it must stay high,
    with the payload unchanged, until ``ready``; each handshake is handed to ``on_transfer``
    (a dict of payload names to values). ``transfers`` counts them."""

    def __init__(self, dut, prefix: str, channel: str, payload: list[str],
                 on_transfer: Callable[[dict], None] | None = None):
        self.clk, self.rst = dut.clk, dut.rst
        self.name = f"{prefix}{channel}"
        self.valid = getattr(dut, f"{prefix}{channel}valid")
        self.ready = getattr(dut, f"{prefix}{channel}ready")
        self.payload = {p: getattr(dut, f"{prefix}{channel}{p}") for p in payload}
        self.on_transfer = on_transfer
        self.transfers = 0
        self.errors: list[str] = []

    def start(self) -> None:
        cocotb.start_soon(self._run())

    async def _run(self) -> None:
        held = None
        cycle = 0
        while True:
            await RisingEdge(self.clk)
            await ReadOnly()
            cycle += 1
            if value(self.rst):
                held = None
                continue
            valid = value(self.valid)
            if held is not None:
                if not valid:
                    self.errors.append(f"{self.name}: valid dropped before ready (cycle {cycle})")
                elif {k: value(h) for k, h in self.payload.items()} != held:
                    self.errors.append(f"{self.name}: payload changed before ready "
                                       f"(cycle {cycle})")
            if not valid:
                held = None
                continue
            beat = {k: value(h) for k, h in self.payload.items()}
            if value(self.ready):
                held = None
                self.transfers += 1
                if self.on_transfer is not None:
                    self.on_transfer(beat)
            else:
                held = beat


def check_burst(beat: dict, prefix: str, bus_bytes: int) -> list[str]:
    """Errors of one AR/AW transfer: INCR, full-width size, legal length, aligned start, no
    4 KiB crossing."""
    addr, length = beat[f"{prefix}addr"], beat[f"{prefix}len"] + 1
    errors = []
    if beat[f"{prefix}burst"] != 1:
        errors.append(f"{prefix}burst {beat[f'{prefix}burst']} is not INCR")
    if 1 << beat[f"{prefix}size"] != bus_bytes:
        errors.append(f"{prefix}size {beat[f'{prefix}size']} is not the bus width")
    if length > MAX_BURST_BEATS:
        errors.append(f"{prefix}len {length - 1} too long")
    if addr % bus_bytes:
        errors.append(f"{prefix}addr {addr:#x} not bus-aligned")
    if addr // PAGE_BYTES != (addr + length * bus_bytes - 1) // PAGE_BYTES:
        errors.append(f"burst {addr:#x} + {length} beats crosses a 4 KiB boundary")
    return errors


def start_streams(dut, parts) -> None:
    """Run the stream sources and sinks ``parts`` on ``dut`` in the background (every cycle,
    until the test ends)."""
    cocotb.start_soon(run_background(CocotbHarness(dut), parts))
