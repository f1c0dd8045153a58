"""Driver: the valid/ready stream source and sink, written once for every backend.

A backend is a :class:`Harness`: it drives input ports, reads settled outputs and clocks, nothing
else (the adapters are :class:`~sparsa.sim.amaranth_sim.AmaranthHarness`,
:class:`~sparsa.sim.cocotb_util.CocotbHarness` and
:class:`~sparsa.sim.pyverilator_driver.PyVerilatorHarness`). Ports carry the generated Verilog's
names (``act__valid``, ``psum__payload``, ``counters``).

Sources and sinks are plain objects that :func:`run_cycles` steps once per clock cycle:

1. every part drives its inputs (right after a rising edge);
2. the harness settles (every combinational path);
3. every part samples: a transfer happens in the cycle where valid and ready are both high at this
   settled point, before the next rising edge, and is recorded with that cycle's index;
4. the harness clocks.

A part decides what to drive from what it sampled in earlier cycles only, so the order of the
parts never matters. This is the discipline :mod:`sparsa.sw.timing` and
:mod:`sparsa.sw.accel_timing` count cycles with.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol

from sparsa.sw.accel_timing import DramPort

__all__ = [
    "DramPacing",
    "Harness",
    "Pacing",
    "Part",
    "RandomGaps",
    "StreamSink",
    "StreamSource",
    "run_background",
    "run_cycles",
    "run_sync",
]


class Harness(Protocol):
    """One simulated design under a driver, once per cycle: :meth:`set` inputs, :meth:`settle`,
    :meth:`get` outputs, :meth:`tick`. Between runs it rests just after a rising edge."""

    def set(self, port: str, value: int) -> None:
        """Drive input ``port`` with ``value`` (unsigned) from now on."""

    def get(self, port: str) -> int:
        """The settled value of ``port`` (unsigned), between :meth:`settle` and :meth:`tick`."""

    async def settle(self) -> None:
        """Wait until every combinational path has settled."""

    async def tick(self) -> None:
        """Let one rising edge of the clock pass."""


class Pacing(Protocol):
    """When a stream may move its next beat: asked once per cycle, told what moved."""

    def allows(self, beat: int) -> bool:
        """Whether beat number ``beat`` may be offered (source) or taken (sink) this cycle."""

    def end_cycle(self, moved: int | None) -> None:
        """The cycle ended; beat number ``moved`` transferred in it (None: none did)."""


class RandomGaps:
    """Holds a stream back with probability ``p`` per cycle: a source idles before offering its
    next beat, a sink deasserts ready. ``rng`` is anything with ``random()``; ``p == 0`` never
    draws from it."""

    def __init__(self, rng, p: float = 0.0):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"a gap probability must be in [0, 1), not {p!r}")
        if p and rng is None:
            raise ValueError("random gaps need a random generator")
        self.rng, self.p = rng, p

    def allows(self, beat: int) -> bool:
        return not self.p or self.rng.random() >= self.p

    def end_cycle(self, moved: int | None) -> None:
        pass


class DramPacing:
    """Beats of ``sizes`` bytes paced by a :class:`~sparsa.sw.accel_timing.DramPort` token
    bucket: beat ``i`` may move when the port holds ``sizes[i]`` bytes; none after the last."""

    def __init__(self, port: DramPort, sizes: Sequence[int]):
        self.port, self.sizes = port, list(sizes)

    def allows(self, beat: int) -> bool:
        return beat < len(self.sizes) and self.port.can(self.sizes[beat])

    def end_cycle(self, moved: int | None) -> None:
        self.port.tick(0 if moved is None else self.sizes[moved])


IDEAL = RandomGaps(None, 0.0)


class Part(Protocol):
    """Anything :func:`run_cycles` steps: a source, a sink, a monitor."""

    def drive(self, harness: Harness) -> None: ...

    def sample(self, harness: Harness, cycle: int) -> None: ...

    def stop(self, harness: Harness) -> None: ...


class StreamSource:
    """Offers ``payloads`` in order on ``<name>__valid`` / ``<name>__payload``, holding each beat
    until ``<name>__ready``. A new beat ``i`` is offered only when ``gate(i)`` (if given) and
    ``pacing`` allow it; ``transfers`` records the cycle each beat moved."""

    def __init__(self, name: str, payloads: Sequence[int], *, pacing: Pacing | None = None,
                 gate: Callable[[int], bool] | None = None):
        self.name = name
        self.valid_port, self.ready_port, self.payload_port = (
            f"{name}__valid", f"{name}__ready", f"{name}__payload")
        self.payloads = [int(p) for p in payloads]
        self.pacing = IDEAL if pacing is None else pacing
        self.gate = gate
        self.transfers: list[int] = []
        self.offering = False
        self._valid: int | None = None   # what the valid port holds (None: not driven yet)

    def send(self, payloads) -> None:
        """Queue more beats behind the ones given so far."""
        self.payloads.extend(int(p) for p in payloads)

    @property
    def sent(self) -> int:
        return len(self.transfers)

    @property
    def done(self) -> bool:
        return self.sent == len(self.payloads)

    def _set_valid(self, harness: Harness, valid: int) -> None:
        if valid != self._valid:
            harness.set(self.valid_port, valid)
            self._valid = valid

    def drive(self, harness: Harness) -> None:
        beat = self.sent
        if (not self.offering and beat < len(self.payloads)
                and (self.gate is None or self.gate(beat)) and self.pacing.allows(beat)):
            harness.set(self.payload_port, self.payloads[beat])
            self.offering = True
        self._set_valid(harness, int(self.offering))

    def sample(self, harness: Harness, cycle: int) -> None:
        moved = None
        if self.offering and harness.get(self.ready_port):
            moved = self.sent
            self.transfers.append(cycle)
            self.offering = False
        self.pacing.end_cycle(moved)

    def stop(self, harness: Harness) -> None:
        self.offering = False
        self._set_valid(harness, 0)


class StreamSink:
    """Takes beats from ``<name>__valid`` / ``<name>__payload``, raising ``<name>__ready`` when
    ``pacing`` allows the next beat; records each payload and the cycle it moved."""

    def __init__(self, name: str, *, pacing: Pacing | None = None):
        self.name = name
        self.valid_port, self.ready_port, self.payload_port = (
            f"{name}__valid", f"{name}__ready", f"{name}__payload")
        self.pacing = IDEAL if pacing is None else pacing
        self.received: list[int] = []
        self.transfers: list[int] = []
        self._ready: int | None = None

    def _set_ready(self, harness: Harness, ready: int) -> None:
        if ready != self._ready:
            harness.set(self.ready_port, ready)
            self._ready = ready

    def drive(self, harness: Harness) -> None:
        self._set_ready(harness, int(self.pacing.allows(len(self.received))))

    def sample(self, harness: Harness, cycle: int) -> None:
        moved = None
        if self._ready and harness.get(self.valid_port):
            moved = len(self.received)
            self.received.append(harness.get(self.payload_port))
            self.transfers.append(cycle)
        self.pacing.end_cycle(moved)

    def stop(self, harness: Harness) -> None:
        self._set_ready(harness, 0)


async def run_cycles(harness: Harness, parts: Sequence[Part], finished: Callable[[int], bool],
                     *, max_cycles: int, status: Callable[[], str] | None = None) -> int:
    """Step ``parts`` cycle by cycle (cycle 0 is the first) until ``finished(cycle)``, asked at
    the settled point after every part sampled; then clock once more (the last transfers
    complete) and stop every part (no valid or ready left high). Returns the last cycle.
    Raises :class:`TimeoutError`, with ``status()``, after ``max_cycles`` cycles."""
    for cycle in range(max_cycles):
        for part in parts:
            part.drive(harness)
        await harness.settle()
        for part in parts:
            part.sample(harness, cycle)
        done = finished(cycle)
        await harness.tick()
        if done:
            for part in parts:
                part.stop(harness)
            return cycle
    detail = f": {status()}" if status is not None else ""
    raise TimeoutError(f"not finished in {max_cycles} cycles{detail}")


async def run_background(harness: Harness, parts: Sequence[Part]) -> None:
    """Step ``parts`` every cycle for as long as the simulation runs (a testbench that queues
    beats with :meth:`StreamSource.send` and checks what arrived at its own pace)."""
    cycle = 0
    while True:
        for part in parts:
            part.drive(harness)
        await harness.settle()
        for part in parts:
            part.sample(harness, cycle)
        await harness.tick()
        cycle += 1


def run_sync(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """The result of a driver coroutine on a harness that never suspends (pyverilator)."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value
    coroutine.close()
    raise RuntimeError("the driver suspended: its harness needs an event loop or a simulator")
