"""Cycle model of the memory-mapped accelerator (:class:`sparsa.hw.top.AxiAccelerator`): a whole
linked program (its LOADs and STOREs with ``dram``/``stride``/``pixels``/``channels`` filled in,
as :func:`sparsa.sim.memory_image.link` makes them) run from its start pulse.

It composes the stream-fed core's rules (:mod:`sparsa.sw.accel_timing`, through its two hooks
``Params.arrivals`` and ``Params.outputs``) with the top's read and write paths, the rules
documented in :mod:`sparsa.hw.top` ("Cycle costs") written as code here:

* :class:`ReadPath`: fetch descriptors and LOAD requests through the one in-order reader
  (planner with eight bursts in flight, read latency ``L``, one beat per cycle, the aligner and
  packer's pieces);
* fetch, in :class:`TopTimer`: a descriptor of ``fetch_insns`` words offered
  once the instruction FIFO has room for them (``insn_depth`` words), loads first when both are
  offered, a word at the FIFO's output two cycles after its chunk;
* a LOAD's request, made when the LOAD is fetched: offered once the previous LOAD with a
  request has dispatched (one request ahead) and every STORE before it in program order has
  dispatched, and those whose span overlaps its span have completed; its chunks taken from the
  cycle after its dispatch;
* :func:`write_store`: one STORE at a time through the job FIFO, the store unit and the writer.

One step per instruction, in program order: dispatch is in order, so every decision of the read
path before a dispatch depends on earlier instructions only. A LOAD's request is placed on the
read path when the LOAD is timed: it is offered after the previous LOAD's dispatch and its own
fetch, so every descriptor taken before it is placed already, and it needs its own dispatch
(when its chunks are taken), which its rule gives before its data. Every descriptor after it
holds words after the LOAD, timed later. One exception is looked ahead: a LOAD's request held
(behind a STORE, or the previous LOAD's dispatch) may find a fetch descriptor offered before it
whose FIFO room was made by instructions *after* the LOAD; those are timed as if the LOAD's data
never came (whatever dispatches before the request is taken cannot depend on it), without side
effects.

Covered: memory of a fixed read latency ``L >= 1`` that never pauses (``arready``, ``rvalid``,
``awready``, ``wready``, ``bvalid`` as soon as the protocol allows; a write response the cycle
after its last beat), so the bandwidth is one bus beat per cycle (``cfg.axi_data_bits``) each
way; any alignment, stride and 4 KiB crossing of the operands; the top's default
``fetch_insns`` and ``insn_depth`` (others are parameters here, unchecked against the RTL);
``loads_ahead`` 1 (the default) and 2.
Not covered: random memory pauses or back-pressure (the testbenches' ``pause``), a DMA error
response, and STOREs with no rows (rejected).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass

from sparsa import isa
from sparsa.config import ArrayConfig
from sparsa.isa import INSN_BYTES, Instruction, Opcode

from .accel_timing import RULES, AccelTimer, Addresses, TimerState, annotate_all
from .assemble import program_pairs
from .cost import Cycles, LayerCost, layer_cost
from .memory_layout import addressed_program
from .schedule import LayerSchedule
from .tiling import Tiling

__all__ = ["DEFAULT_FETCH_INSNS", "LOADS_AHEAD", "MAX_BURST_BEATS", "OUTSTANDING", "PAGE_BYTES",
           "READ_OUTSTANDING",
           "Planner", "ReadPath", "TopTimer", "TopTiming", "bursts", "chunk_size",
           "layer_top_cost", "layer_top_cycles", "pieces", "top_timing", "write_store"]

# The top's constants (sparsa.hw: axi, dma, fetch; a test checks they agree).
MAX_BURST_BEATS = 256       # AXI4 INCR burst
PAGE_BYTES = 4096           # no burst crosses a 4 KiB boundary
OUTSTANDING = 4             # write bursts in flight
READ_OUTSTANDING = 8        # read bursts in flight (the top's reader)
DEFAULT_FETCH_INSNS = 8     # instruction words per fetch descriptor
LOADS_AHEAD = 1             # read requests issued for LOADs not yet dispatched
STORE_JOBS = 4              # STORE jobs the tap's FIFO holds (a STORE waits for room)
FAR = 1 << 60               # "never": the data of a LOAD timed as if it did not come


def chunk_size(cfg: ArrayConfig, opcode: Opcode | None, *, values: bool = False) -> int:
    """Bytes of one packer chunk: an instruction word (``None``: fetch), a LOAD_ACT row of
    ``K_pass`` activations or the other loads' scratchpad row (``values``: a phase LOAD_WEIGHT's
    values, :func:`sparsa.isa.row_bytes`)."""
    if opcode is None:
        return INSN_BYTES
    if opcode == Opcode.LOAD_ACT:
        return cfg.k_per_pass * cfg.act_width // 8
    if values and opcode == Opcode.LOAD_WEIGHT and cfg.index_width:
        return isa.weight_values_bytes(cfg)
    return isa.data_in_bytes(cfg, opcode)


def bursts(rows: Sequence[tuple[int, int]], bus: int) -> list[list[int]]:
    """Per row ``(address, bytes)``: its bursts' beat counts (cut at 256 beats and 4 KiB)."""
    out = []
    for addr, nbytes in rows:
        beat, last, row = addr // bus, (addr + nbytes - 1) // bus, []
        while beat <= last:
            n = min(last - beat + 1, MAX_BURST_BEATS, (PAGE_BYTES - beat * bus % PAGE_BYTES) // bus)
            row.append(n)
            beat += n
        out.append(row)
    return out


def pieces(t: int, nbytes: int, size: int, bus: int) -> list[bool]:
    """The pieces of output beat ``t`` of a row: for each, whether it completes a chunk."""
    lo, hi = t * bus, min((t + 1) * bus, nbytes)
    cuts = sorted({lo, hi} | {k for k in range(lo + 1, hi) if k % size == 0})
    return [b % size == 0 or b == nbytes for b in cuts[1:]]


class Planner:
    """Planner cycles: per descriptor accepted in cycle ``accept`` (:meth:`start`), its bursts,
    one per cycle, burst ``q`` (counted over all descriptors) not before ``done[q - n] + 1``
    (``n = outstanding`` bursts in flight; ``done``: the cycle the burst's last beat (read) or
    response (write) is taken); a row is handed on (``row_cycle``) with its first burst."""

    def __init__(self, outstanding: int = OUTSTANDING):
        self.outstanding = outstanding
        self.issue: list[int] = []
        self.done: dict[int, int] = {}
        self.first: set[int] = set()
        self.cursor = self.planned = 0
        self.row_cycle: list[int] = []

    def start(self, rows: list[list[int]], accept: int) -> None:
        self.first |= {self.planned + sum(map(len, rows[:j])) for j in range(len(rows))}
        self.cursor, self.planned = accept, self.planned + sum(map(len, rows))

    def at(self, q: int) -> int:
        while len(self.issue) <= q:
            b = len(self.issue)
            t = self.cursor + 1
            if b >= self.outstanding:
                t = max(t, self.done[b - self.outstanding] + 1)
            if b in self.first:
                self.row_cycle.append(t)
            self.issue.append(t)
            self.cursor = t
        return self.issue[q]


class ReadPath:
    """The read path's rules (see :mod:`sparsa.hw.top`) over a sequence of descriptors, each
    descriptor's chunks taken from a given cycle on (``ready``), then as soon as they are
    complete."""

    def __init__(self, bus: int, latency: int):
        self.bus, self.latency, self.planner = bus, latency, Planner(READ_OUTSTANDING)
        self.owner: list[tuple[int, int]] = []     # per input beat: (burst, index in it)
        self.taken: list[int] = []
        self.end: int | None = None                # the last row's last cycle
        self.gap = 1                               # the next row's capture: from end + gap

    def _valid(self, i: int) -> int:
        q, index = self.owner[i]
        due = self.planner.at(q) + self.latency + index
        return max(due, self.taken[i - 1] + 1) if i else due

    def _take(self, i: int, cycle: int) -> None:
        self.taken.append(cycle)
        if i + 1 == len(self.owner) or self.owner[i + 1][0] != self.owner[i][0]:
            self.planner.done[self.owner[i][0]] = cycle

    def descriptor(self, rows: Sequence[tuple[int, int]], size: int, accept: int,
                   ready: int = 0) -> list[int]:
        """The chunk cycles of a descriptor accepted in cycle ``accept``, its consumer ready
        from cycle ``ready`` (a piece that completes a chunk waits for it, and the packer with
        it)."""
        plan = bursts(rows, self.bus)
        q0 = self.planner.planned
        self.planner.start(plan, accept)
        self.owner += [(q0 + q, i) for q, n in enumerate(b for row in plan for b in row)
                       for i in range(n)]
        chunks, first = [], len(self.taken)
        for (_, nbytes), row in zip(rows, plan, strict=True):
            n_in = sum(row)
            cycle = self._valid(first) if self.end is None else max(self.end + self.gap,
                                                                     self._valid(first))
            self._take(first, cycle)
            for t in range(-(-nbytes // self.bus)):
                begin = cycle + 1
                if t + 1 < n_in:
                    begin = max(begin, self._valid(first + t + 1))
                cycle = begin - 1
                for complete in pieces(t, nbytes, size, self.bus):
                    cycle = max(cycle + 1, ready) if complete else cycle + 1
                    if complete:
                        chunks.append(cycle)
                if t + 1 < n_in:
                    self._take(first + t + 1, cycle)
            # the next row's first beat is captured with this row's last piece when that
            # piece takes no input beat (the row's bytes end in the aligner's register)
            self.end, first = cycle, first + n_in
            self.gap = 0 if n_in == -(-nbytes // self.bus) else 1
        return chunks

    def idle_from(self) -> int:
        """The cycle the planner can accept the next descriptor (after the last burst)."""
        return self.planner.issue[-1] + 1 if self.planner.issue else 0


def write_store(rows: Sequence[tuple[int, int]], bus: int, job: int, offer: int
                ) -> tuple[list[int], int]:
    """One STORE's ``data_out`` handshakes and its completion, the job taken in cycle ``job`` by
    an idle write path, the core offering row ``r`` from ``max(offer + r, previous handshake
    + 1)`` and the memory answering a burst the cycle after its last beat."""
    plan = bursts(rows, bus)
    planner = Planner()
    planner.start(plan, job + 1)
    lengths = [b for row in plan for b in row]
    handshakes, q, in_burst = [], 0, 0
    w = row_pop = wlast = last_beat = None
    for r, (addr, nbytes) in enumerate(rows):
        k, n_bus = -(-nbytes // bus), -(-(addr % bus + nbytes) // bus)
        ready = offer + r if not handshakes else max(offer + r, handshakes[-1] + 1)
        handshakes.append(max(ready, job + 1, last_beat or 0))
        planner.at(q)
        visible = planner.row_cycle[r] + 2 if row_pop is None else \
            max(planner.row_cycle[r] + 2, row_pop + 1)
        beat = handshakes[-1] + 1                 # the compactor's next beat is ready
        for m in range(n_bus):
            burst = planner.at(q) + 2 if wlast is None else max(planner.at(q) + 2, wlast + 1)
            w = max(visible, burst) if w is None else max(w + 1, visible, burst)
            if m < k:
                w = max(w, beat)
                beat = w + 1
                last_beat = w if m == k - 1 else last_beat
            in_burst += 1
            if in_burst == lengths[q]:
                wlast, planner.done[q] = w, w + 1
                q, in_burst = q + 1, 0
        row_pop = w
    return handshakes, max(planner.done.values()) + 1


@functools.lru_cache(maxsize=1 << 14)
def _store_shape(offset: int, stride: int, count: int, size: int, bus: int, delay: int
                 ) -> tuple[tuple[int, ...], int]:
    """:func:`write_store` of ``count`` rows of ``size`` bytes from ``offset`` (the address in
    its 4 KiB page: bursts and beats depend on nothing else), job taken in cycle 0, rows offered
    from ``delay``. Every rule is a maximum of earlier cycles plus constants, so a STORE taken
    at ``job`` is this shifted by ``job``."""
    rows = [(offset + r * stride, size) for r in range(count)]
    handshakes, done = write_store(rows, bus, 0, delay)
    return tuple(handshakes), done


def load_rows(cfg: ArrayConfig, insn: Instruction) -> list[tuple[int, int]]:
    """The rows ``(address, bytes)`` of a LOAD's read request (:class:`~sparsa.hw.operands.
    OperandTap`): a LOAD_ACT's pixels, the others' rows back to back as one row."""
    if insn.opcode == Opcode.LOAD_ACT:
        size = insn.channels * cfg.act_width // 8
        return [(insn.dram + p * insn.stride, size) for p in range(insn.pixels)]
    count = 1 if insn.opcode == Opcode.LOAD_SCALE else insn.count
    return [(insn.dram, count * isa.row_bytes(cfg, insn))]


def store_rows(cfg: ArrayConfig, insn: Instruction) -> list[tuple[int, int]]:
    """The rows ``(address, bytes)`` a STORE writes."""
    size = insn.channels * (cfg.acc_width if insn.raw else cfg.act_width) // 8
    return [(insn.dram + r * insn.stride, size) for r in range(insn.count)]


class _Handshakes:
    def __init__(self, cycles: list[int]):
        self.cycles = cycles

    def at(self, j: int) -> int:
        return self.cycles[j]


@dataclass(frozen=True)
class TopTiming:
    """Cycles of one run, counted like the testbench's probes (the start pulse at ``start``):
    each instruction's dispatch, each ``data_in`` and ``data_out`` handshake, each STORE's
    completion, and ``run_cycles`` (cycles with ``status.busy``)."""

    dispatch: list[int]
    data_in: list[int]
    data_out: list[int]
    store_done: list[int]
    run_cycles: int


class TopTimer:
    """The whole top, one instruction at a time (:meth:`step`, in program order): the core's
    rules (:class:`~sparsa.sw.accel_timing.AccelTimer`, its LOADs' beats and STOREs' rows given
    by the read and write paths here), each dispatch no earlier than its word is at the
    instruction FIFO's output. Cycles are counted from 0 with the start pulse at ``start``."""

    def __init__(self, cfg: ArrayConfig, program: Sequence[Instruction], *, latency: int,
                 start: int = 0, prog_base: int = 0, fetch_insns: int = DEFAULT_FETCH_INSNS,
                 insn_depth: int = 2 * DEFAULT_FETCH_INSNS, loads_ahead: int = LOADS_AHEAD):
        if isinstance(latency, bool) or not isinstance(latency, int) or latency < 1:
            raise ValueError(f"latency must be a whole number of cycles >= 1, not {latency!r}")
        if isinstance(loads_ahead, bool) or not isinstance(loads_ahead, int) or loads_ahead < 1:
            raise ValueError(f"loads_ahead must be a whole number >= 1, not {loads_ahead!r}")
        self.cfg, self.program, self.prog_base = cfg, list(program), prog_base
        self.bus = cfg.axi_data_bits // 8
        self.fetch_insns, self.insn_depth, self.start = fetch_insns, insn_depth, start
        self.loads_ahead = loads_ahead
        self.core = AccelTimer(cfg)
        self.timed, _ = annotate_all(cfg.rows, Addresses(), self.program)
        self.core.params = dataclasses.replace(self.core.params, arrivals=self._arrivals,
                                               outputs=self._outputs)
        self.read = ReadPath(self.bus, latency)
        self.words: list[int] = []      # the chunk cycle of each fetched word
        self.fetch_offer = start + 1    # the next fetch descriptor is offered from here
        self.dispatch: list[int] = []
        self.data_in: list[int] = []
        self.data_out: list[int] = []
        self.store_done: list[int] = []
        self.jobs: list[int] = []       # the cycle each STORE's job is taken
        self.spans: list[tuple[int, int, int]] = []   # each STORE's dispatch and [dram, end)
        self.requests: list[int] = []   # the dispatch of each LOAD with a read request
        self.index, self._d = 0, 0      # the instruction being timed, its dispatch (in a rule)

    # -- instruction fetch ----------------------------------------------------------------------

    def _next_fetch(self) -> tuple[int, int, int] | None:
        """``(first word, words, gate)`` of the next fetch descriptor (``gate``: the word whose
        dispatch makes room for it), None when every word is requested."""
        f = len(self.words)
        if f >= len(self.program):
            return None
        n = min(self.fetch_insns, len(self.program) - f)
        return f, n, f + n - 1 - self.insn_depth

    def _take_fetch(self, first: int, n: int, accept: int) -> None:
        rows = [(self.prog_base + first * INSN_BYTES, n * INSN_BYTES)]
        self.words += self.read.descriptor(rows, INSN_BYTES, accept)
        self.fetch_offer = accept + 1

    def _fetch_until(self, word: int) -> None:
        while len(self.words) <= word:
            first, n, gate = self._next_fetch()
            offer = self.fetch_offer if gate < 0 else max(self.fetch_offer,
                                                          self.dispatch[gate] + 1)
            self._take_fetch(first, n, max(offer, self.read.idle_from()))

    # -- the hooks the core's LOAD and STORE rules call ------------------------------------------

    def _arrivals(self, d: int, count: int) -> int:
        """The LOAD being timed, dispatched at ``d``: its request after any fetch descriptor
        taken before it, its chunks taken from ``d + 1``; the cycle of its last ``data_in``
        beat."""
        self._d = d
        offer = self.words[self.index] + 3         # at the load queue's head
        if len(self.requests) >= self.loads_ahead:  # the request so many before: dispatched
            offer = max(offer, self.requests[-self.loads_ahead] + 1)
        insn = self.program[self.index]
        rows = load_rows(self.cfg, insn)
        offer = self._after_stores(insn.dram, max(a + n for a, n in rows), offer)
        while (nxt := self._next_fetch()) is not None:
            first, n, gate = nxt
            accept = max(self.fetch_offer, self.read.idle_from())
            if gate >= 0 and accept < offer:
                room = self._dispatch_before(gate, offer - 1)
                accept = offer if room is None else max(accept, room + 1)
            if accept >= offer:       # the load goes first when both are offered
                break
            self._take_fetch(first, n, accept)
        size = chunk_size(self.cfg, insn.opcode, values=insn.phase > 0)
        chunks = self.read.descriptor(rows, size,
                                      max(offer, self.read.idle_from()), d + 1)
        if len(chunks) != count:
            raise ValueError(f"instruction {self.index}: {insn.opcode.name} reads {len(chunks)} "
                             f"rows from memory, its count says {count}")
        self.data_in += chunks
        self.requests.append(d)
        return chunks[-1]

    def _after_stores(self, lo: int, end: int, offer: int) -> int:
        """``offer`` for a LOAD of the bytes ``[lo, end)``, no earlier than the cycle after every
        STORE before it is dispatched and after each one writing any of those bytes completes
        (STOREs complete in order: the scan stops at the first one complete by then)."""
        if self.spans:
            offer = max(offer, self.spans[-1][0] + 1)
        for (_, s_lo, s_end), done in zip(reversed(self.spans), reversed(self.store_done),
                                          strict=True):
            if done + 1 <= offer:
                break
            if lo < s_end and s_lo < end:
                offer = done + 1
        return offer

    def _dispatch_before(self, word: int, limit: int) -> int | None:
        """The dispatch cycle of ``word`` (in a LOAD's rule: the LOAD or an instruction after
        it); None if it is not before ``limit``. A later word is timed as if the LOAD's data never
        came, with the state before the LOAD (no side effect): what dispatches before the LOAD's
        request is taken depends on none of its data, and what does comes after ``limit``."""
        if word < self.index:
            return self.dispatch[word]
        if word == self.index:
            return self._d if self._d < limit else None
        saved = (len(self.data_out), len(self.store_done), len(self.jobs), self.index,
                 len(self.spans))
        params = dataclasses.replace(self.core.params, arrivals=lambda d, count: FAR)
        state = self.core.state
        try:
            for m in range(saved[3], word + 1):
                self.index = m
                state = RULES[self.program[m].opcode](params, self._bounded(state, m),
                                                      self.timed[m], False).state
                if state.last_dispatch >= limit:
                    return None
            return state.last_dispatch
        finally:
            del self.data_out[saved[0]:], self.store_done[saved[1]:], self.jobs[saved[2]:]
            del self.spans[saved[4]:]
            self.index = saved[3]

    def _outputs(self, d: int, offer: int, count: int) -> _Handshakes:
        """The STORE being timed, dispatched at ``d``: its job taken two cycles later or the
        cycle after the previous STORE's completion; its rows' handshakes."""
        job = d + 2 if not self.store_done else max(d + 2, self.store_done[-1] + 1)
        insn = self.program[self.index]
        size = insn.channels * (self.cfg.acc_width if insn.raw else self.cfg.act_width) // 8
        shape, end = _store_shape(insn.dram % PAGE_BYTES, insn.stride, insn.count, size,
                                  self.bus, offer - job)
        handshakes, done = [job + h for h in shape], job + end
        self.jobs.append(job)
        self.spans.append((d, insn.dram, insn.dram + (insn.count - 1) * insn.stride + size))
        self.data_out += handshakes
        self.store_done.append(done)
        return _Handshakes(handshakes)

    # -- the program ---------------------------------------------------------------------------

    def _bounded(self, state: TimerState, i: int) -> TimerState:
        """``state`` with instruction ``i`` not dispatched before its word is at the instruction
        FIFO's output (and, a STORE, before its job has a place)."""
        insn = self.program[i]
        earliest = self.words[i] + 2
        if insn.opcode == Opcode.STORE:
            if not insn.count:
                raise ValueError(f"instruction {i}: a STORE with no rows is not modelled")
            if len(self.jobs) >= STORE_JOBS:
                earliest = max(earliest, self.jobs[-STORE_JOBS] + 1)
        if state.last_dispatch >= earliest - 1:
            return state
        return dataclasses.replace(state, last_dispatch=earliest - 1)

    def step(self, i: int) -> int:
        """Dispatch instruction ``i`` (the next one); returns its dispatch cycle."""
        self._fetch_until(i)
        self.core.state = self._bounded(self.core.state, i)
        self.index = i
        d = self.core.step_timed(self.timed[i])
        self.dispatch.append(d)
        return d

    def run(self) -> TopTiming:
        for i in range(len(self.program)):
            self.step(i)
        return TopTiming(self.dispatch, self.data_in, self.data_out, self.store_done,
                         self.run_cycles())

    def run_cycles(self) -> int:
        """Cycles with ``status.busy``: from the cycle after the start pulse to the cycle
        everything is finished."""
        ends = [self.dispatch[-1] + 1 if self.dispatch else self.start + 1, self.core.end + 1]
        if self.store_done:
            ends.append(self.store_done[-1] + 1)
        return max(ends) - self.start


def top_timing(cfg: ArrayConfig, program: Sequence[Instruction], *, latency: int,
               start: int = 0, prog_base: int = 0, loads_ahead: int = LOADS_AHEAD) -> TopTiming:
    """Time ``program`` (linked: its LOADs and STOREs carry their memory fields) on the
    memory-mapped top with memory of read latency ``latency``, the start pulse in ``start``."""
    return TopTimer(cfg, program, latency=latency, start=start, prog_base=prog_base,
                    loads_ahead=loads_ahead).run()


@functools.lru_cache(maxsize=256)
def _layer_top(cfg: ArrayConfig, tiling: Tiling, raw: bool) -> tuple[int, int]:
    pairs = program_pairs(cfg, tiling, raw=raw, relu=False)
    program, mem = addressed_program(cfg, tiling, pairs, raw=raw)
    timing = top_timing(cfg, program, latency=cfg.axi_latency, prog_base=mem.prog_base)
    return timing.run_cycles, len(program)


def layer_top_cycles(cfg: ArrayConfig, tiling: Tiling, *, raw: bool = False) -> int:
    """``run_cycles`` of a tiled layer on the memory-mapped top: the assembler's program with
    its operands in memory (:mod:`sparsa.sw.memory_layout`), memory of read latency
    ``cfg.axi_latency``. What ``sparsa run --memory axi`` measures on the RTL."""
    return _layer_top(cfg, tiling, raw)[0]


def layer_top_cost(schedule: LayerSchedule) -> LayerCost:
    """:func:`~sparsa.sw.cost.layer_cost` on the memory-mapped top: the cycles of
    :func:`layer_top_cycles` (``compute`` stays the core's with ideal streams, ``stall`` is the
    rest) and the program's instruction words among the DRAM bytes."""
    cost = layer_cost(schedule)
    cycles, instructions = _layer_top(schedule.cfg, schedule.tiling, False)
    actions = dataclasses.replace(cost.actions, dram_program_bytes=instructions * INSN_BYTES)
    return dataclasses.replace(cost, cycles=Cycles(compute=cost.cycles.compute,
                                                   stall=cycles - cost.cycles.compute),
                               actions=actions)
