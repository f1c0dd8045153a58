"""Driver: accelerator programs through :class:`~sparsa.hw.accelerator.Accelerator`'s streams, on
any backend.

The ``insn`` source (one :data:`sparsa.isa.INSN_BITS`-bit word per instruction,
:meth:`~sparsa.isa.Instruction.encode`), the ``data_in`` source and the ``data_out`` sink of
:mod:`.streams`, paced either by random idle/backpressure or by the DRAM ports of
:mod:`sparsa.sw.accel_timing` (beat sizes from its :func:`~sparsa.sw.accel_timing.beat_bytes`:
an activation row costs its real channels only), plus the
``idle`` flag and the ``counters`` port, decoded in one place (:func:`decode_counters`). The
cocotb testbench, the Amaranth simulator and pyverilator all run programs through this driver.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sparsa import isa
from sparsa.config import ArrayConfig
from sparsa.hw import layouts
from sparsa.hw.accelerator import COUNTERS
from sparsa.isa import Instruction
from sparsa.sw.accel_timing import DramPort, beat_bytes, port_caps

from .streams import DramPacing, Harness, RandomGaps, StreamSink, StreamSource, run_cycles

__all__ = ["COUNTER_LAYOUT", "AccelRun", "AcceleratorDriver", "counter_increments",
           "decode_counters"]

# The ``counters`` port (tests/hw checks that this is the port's own layout).
COUNTER_LAYOUT = layouts.counters(COUNTERS)


@dataclass(frozen=True)
class AccelRun:
    outputs: list[np.ndarray]       # data_out rows, decoded as signed accumulator lanes
    cycles: int                     # first instruction dispatched .. last output transferred
    counters: dict[str, int]        # increments of the activity counters over the run
    dispatch: list[int]             # cycle each instruction was dispatched (first: 0)
    out_cycles: list[int]           # cycle of each data_out transfer (same origin)


def decode_counters(raw: int) -> dict[str, int]:
    """The flat ``counters`` port value ``raw`` as ``{name: value}``, in :data:`COUNTERS` order."""
    view = COUNTER_LAYOUT.from_bits(raw)
    return {name: int(getattr(view, name)) for name in COUNTERS}


def counter_increments(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """``after - before`` per counter, modulo the counters' width (they wrap)."""
    return {name: (after[name] - before[name]) % (1 << layouts.COUNTER_BITS)
            for name in COUNTERS}


class AcceleratorDriver:
    """Runs programs on the accelerator behind ``harness``.

    ``idle``/``backpressure``: random gaps on the input streams and random ``data_out`` stalls,
    drawn from ``rng``; ``dram_bytes_per_cycle``: ``data_in`` and ``data_out`` paced by DRAM
    ports of that rate instead (:class:`~sparsa.sw.accel_timing.DramPort`, full at the start of
    every program)."""

    def __init__(self, cfg: ArrayConfig, harness: Harness, *, rng=None, idle: float = 0.0,
                 backpressure: float = 0.0, dram_bytes_per_cycle: int | None = None,
                 max_cycles: int = 50_000_000):
        if dram_bytes_per_cycle is not None and (idle or backpressure):
            raise ValueError("use either random idle/backpressure or DRAM ports, not both")
        self.cfg, self.harness, self.max_cycles = cfg, harness, max_cycles
        self.idle = RandomGaps(rng, idle)
        self.backpressure = RandomGaps(rng, backpressure)
        self.dram_bytes_per_cycle = dram_bytes_per_cycle

    def counters(self) -> dict[str, int]:
        """The counters now (only at the settled point of a cycle)."""
        return decode_counters(self.harness.get("counters"))

    def _data_pacing(self, program: Sequence[Instruction], data_in: Sequence[int]):
        in_bytes, out_bytes = beat_bytes(self.cfg, program)
        if len(in_bytes) != len(data_in):
            raise ValueError(f"the program loads {len(in_bytes)} data_in beats, "
                             f"{len(data_in)} given")
        rate = self.dram_bytes_per_cycle
        if rate is None:
            return self.idle, self.backpressure, len(out_bytes)
        cap_in, cap_out = port_caps(self.cfg, rate)
        return (DramPacing(DramPort(rate, cap_in), in_bytes),
                DramPacing(DramPort(rate, cap_out), out_bytes), len(out_bytes))

    async def run(self, program: Sequence[Instruction], data_in: Sequence[int]) -> AccelRun:
        """Run ``program`` with ``data_in`` to completion: every instruction dispatched, every
        STOREd row out, and then the controller idle."""
        in_pacing, out_pacing, expected = self._data_pacing(program, data_in)
        insn = StreamSource("insn", [i.encode() for i in program], pacing=self.idle)
        beats = StreamSource("data_in", data_in, pacing=in_pacing)
        rows = StreamSink("data_out", pacing=out_pacing)
        counts: dict[str, dict[str, int]] = {}

        def finished(cycle: int) -> bool:
            if cycle == 0:
                counts["before"] = self.counters()
            done = (insn.done and (not program or insn.transfers[-1] < cycle)
                    and len(rows.received) >= expected and self.harness.get("idle"))
            if done:
                counts["after"] = self.counters()
            return bool(done)

        end = await run_cycles(
            self.harness, [insn, beats, rows], finished, max_cycles=self.max_cycles,
            status=lambda: f"{insn.sent} of {len(program)} instructions dispatched, "
                           f"{len(rows.received)} of {expected} output rows")
        first = insn.transfers[0] if program else 0
        last = rows.transfers[-1] if rows.transfers else end
        return AccelRun(
            outputs=[np.array(isa.unpack_psum_row(self.cfg, r), dtype=np.int64)
                     for r in rows.received],
            cycles=last - first + 1 if program else 0,
            counters=counter_increments(counts["before"], counts["after"]),
            dispatch=[c - first for c in insn.transfers],
            out_cycles=[c - first for c in rows.transfers])
