# amaranth: UnusedElaboratable=no
"""The cycle costs documented in :mod:`sparsa.hw.top`, as executable rules, against the RTL in
Amaranth's simulator (probes of :attr:`~sparsa.hw.top.AxiAccelerator.probes`, memory of fixed
read latency ``L`` without pauses, :class:`~sparsa.sim.axi_memory.AxiMemory`):

* the read path: a LOAD alone (random kind, rows, stride, alignment, 4 KiB crossings, ``L`` from
  1 to 20 so the four-burst limit binds): every ``data_in`` beat's cycle after its dispatch;
* instruction fetch: CONFIG-only programs (dispatched as soon as they arrive): every dispatch
  cycle after the start pulse;
* the write path: a STORE alone: every ``data_out`` handshake and the writer's completion.

The rules here are the docstring's, written once more as code (no RTL signal is read besides
the probes), for the top's cycle model to follow."""

from __future__ import annotations

import random

import pytest

from sparsa import isa
from sparsa.config import ArrayConfig
from sparsa.hw.axi import MAX_BURST_BEATS, PAGE_BYTES
from sparsa.hw.dma import DEFAULT_OUTSTANDING
from sparsa.hw.fetch import DEFAULT_FETCH_INSNS, INSN_BYTES
from sparsa.hw.operands import Kind, chunk_size
from sparsa.hw.top import AxiAccelerator
from sparsa.isa import Instruction, Opcode
from sparsa.sim.axi_memory import run_top

SMALL = dict(act_buffer_kib=1, weight_buffer_kib=1, acc_buffer_kib=1)
CONFIGS = {
    "2x2-2of4-axi64": ArrayConfig(rows=2, cols=2, n=2, m=4, axi_data_bits=64, **SMALL),
    "2x3-1of4-axi32": ArrayConfig(rows=2, cols=3, n=1, m=4, axi_data_bits=32, **SMALL),
    "3x5-1of1-axi128": ArrayConfig(rows=3, cols=5, n=1, m=1, axi_data_bits=128, **SMALL),
}
PROG_BASE = 0x100
FIFO_WORDS = 2 * DEFAULT_FETCH_INSNS     # words the fetcher reserves at most


def bursts(rows: list[tuple[int, int]], bus: int) -> list[list[int]]:
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
    """Planner cycles: per descriptor accepted in cycle ``accept`` (:meth:`start`), per row a
    ROW cycle, then its bursts, one per cycle, burst ``q`` (counted over all descriptors) not
    before ``done[q - 4] + 1`` (four bursts in flight; ``done``: the cycle the burst's last beat
    (read) or response (write) is taken)."""

    def __init__(self):
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
            if b in self.first:
                self.cursor += 1
                self.row_cycle.append(self.cursor)
            t = self.cursor + 1
            if b >= DEFAULT_OUTSTANDING:
                t = max(t, self.done[b - DEFAULT_OUTSTANDING] + 1)
            self.issue.append(t)
            self.cursor = t
        return self.issue[q]


class ReadPath:
    """The read path's rules (see :mod:`sparsa.hw.top`) over a sequence of descriptors; the
    consumer of chunks is always ready."""

    def __init__(self, bus: int, latency: int):
        self.bus, self.latency, self.planner = bus, latency, Planner()
        self.owner: list[tuple[int, int]] = []     # per input beat: (burst, index in it)
        self.taken: list[int] = []
        self.end: int | None = None                # the last row's last cycle

    def _valid(self, i: int) -> int:
        q, index = self.owner[i]
        due = self.planner.at(q) + self.latency + index
        return max(due, self.taken[i - 1] + 1) if i else due

    def _take(self, i: int, cycle: int) -> None:
        self.taken.append(cycle)
        if i + 1 == len(self.owner) or self.owner[i + 1][0] != self.owner[i][0]:
            self.planner.done[self.owner[i][0]] = cycle

    def descriptor(self, rows: list[tuple[int, int]], size: int, accept: int) -> list[int]:
        """The chunk cycles of a descriptor accepted in cycle ``accept``."""
        plan = bursts(rows, self.bus)
        q0 = self.planner.planned
        self.planner.start(plan, accept)
        self.owner += [(q0 + q, i) for q, n in enumerate(b for row in plan for b in row)
                       for i in range(n)]
        chunks, first = [], len(self.taken)
        for (_, nbytes), row in zip(rows, plan, strict=True):
            n_in = sum(row)
            cycle = self._valid(first) if self.end is None else max(self.end + 1,
                                                                     self._valid(first))
            self._take(first, cycle)
            for t in range(-(-nbytes // self.bus)):
                begin = cycle + 1
                if t + 1 < n_in:
                    begin = max(begin, self._valid(first + t + 1))
                done = pieces(t, nbytes, size, self.bus)
                chunks += [begin + p for p, complete in enumerate(done) if complete]
                cycle = begin + len(done) - 1
                if t + 1 < n_in:
                    self._take(first + t + 1, cycle)
            self.end, first = cycle, first + n_in
        return chunks

    def idle_from(self) -> int:
        """The cycle the planner can accept the next descriptor (after the last burst)."""
        return self.planner.issue[-1] + 1


def write_store(rows: list[tuple[int, int]], bus: int, job: int, offer: int
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


def run(cfg: ArrayConfig, program: list[Instruction], latency: int):
    memory = bytearray(random.Random(7).randbytes(1 << 15))
    words = b"".join(i.encode().to_bytes(INSN_BYTES, "little") for i in program)
    memory[PROG_BASE:PROG_BASE + len(words)] = words
    return run_top(AxiAccelerator(cfg), memory, prog_base=PROG_BASE,
                   prog_len=len(words), latency=latency).events


def random_load(cfg: ArrayConfig, rng: random.Random, case: int) -> tuple[Instruction, list]:
    """A LOAD and its rows ``(address, bytes)``: case 0 a LOAD_ACT of 8 short pixels (slow
    memory makes the four-burst limit bind), case 1 a LOAD_WEIGHT across a 4 KiB boundary,
    then random ones."""
    op = [Opcode.LOAD_ACT, Opcode.LOAD_WEIGHT][case] if case < 2 else rng.choice(
        [Opcode.LOAD_ACT, Opcode.LOAD_ACT, Opcode.LOAD_WEIGHT, Opcode.LOAD_ACC, Opcode.LOAD_SCALE])
    dram = 0x3000 - rng.randrange(1, 40) if case == 1 or rng.random() < 0.3 else \
        0x2000 + rng.randrange(64)
    if op == Opcode.LOAD_ACT:
        kp = cfg.k_per_pass
        channels = rng.randint(1, kp if case == 0 else 3 * kp)
        pixels = 8 if case == 0 else rng.randint(1, 8)
        stride = channels * cfg.act_width // 8 + rng.randint(0, 9)
        insn = Instruction(op, count=pixels * -(-channels // kp), channels=channels, dram=dram,
                           stride=stride, pixels=pixels)
        return insn, [(dram + p * stride, channels) for p in range(pixels)]
    count = 1 if op == Opcode.LOAD_SCALE else rng.randint(2 if case == 1 else 1, 8)
    insn = Instruction(op, dram=dram, **({} if op == Opcode.LOAD_SCALE else {"count": count}))
    return insn, [(dram, count * isa.data_in_bytes(cfg, op))]


@pytest.mark.parametrize("name", CONFIGS)
def test_load_costs(name, seed_for, request):
    """A LOAD dispatched in cycle D with the read path idle: its request is taken in D + 1,
    then the read path's rules give every ``data_in`` beat."""
    cfg, rng = CONFIGS[name], random.Random(seed_for(request.node.nodeid))
    for case in range(4):
        insn, rows = random_load(cfg, rng, case)
        latency = 20 if case == 0 else rng.choice([1, 2, 5, 9, 20])
        events = run(cfg, [insn], latency)
        (dispatch,) = events["dispatch"]
        size = chunk_size(cfg, Kind(insn.opcode.value))
        expected = ReadPath(cfg.axi_data_bits // 8, latency).descriptor(rows, size, dispatch + 1)
        assert events["data_in"] == expected, f"{insn} with L={latency}"


def fetch_dispatches(words: int, bus: int, latency: int, start: int) -> list[int]:
    """Dispatch cycles of a program of ``words`` instructions that dispatch as soon as they are
    at the instruction FIFO's output. Fetch descriptor ``i`` (``n`` words from word ``f``) is
    taken in the cycle after the start pulse, or after the previous descriptor's last burst +
    1, and not before the cycle after word ``f + n - 17`` is dispatched (16 words reserved at
    most); a word is at the FIFO's output two cycles after its chunk, or one cycle after the
    previous word's dispatch."""
    dispatches, accept, path = [], start + 1, ReadPath(bus, latency)
    for first in range(0, words, DEFAULT_FETCH_INSNS):
        n = min(DEFAULT_FETCH_INSNS, words - first)
        if first + n > FIFO_WORDS:
            accept = max(accept, dispatches[first + n - FIFO_WORDS - 1] + 1)
        rows = [(PROG_BASE + first * INSN_BYTES, n * INSN_BYTES)]
        for c in path.descriptor(rows, INSN_BYTES, accept):
            dispatches.append(c + 2 if not dispatches else max(c + 2, dispatches[-1] + 1))
        accept = path.idle_from()
    return dispatches


@pytest.mark.parametrize("name", CONFIGS)
def test_fetch_costs(name, seed_for, request):
    """CONFIG-only programs: each dispatch cycle from the start pulse (:func:`fetch_dispatches`)."""
    cfg, rng = CONFIGS[name], random.Random(seed_for(request.node.nodeid))
    for words in (rng.randint(1, 16), rng.randint(25, 40)):    # the second waits for room
        latency = rng.choice([1, 4, 13])
        events = run(cfg, [Instruction(Opcode.CONFIG, height=i) for i in range(words)], latency)
        (start,) = events["start"]
        assert events["dispatch"] == fetch_dispatches(words, cfg.axi_data_bits // 8, latency,
                                                      start), f"{words} words, L={latency}"


@pytest.mark.parametrize("name", CONFIGS)
def test_store_costs(name, seed_for, request):
    """A STORE dispatched in cycle D: its job is taken in D + 2, the core offers its rows from
    D + 2, and the write path's rules give the ``data_out`` handshakes and the completion."""
    cfg, rng = CONFIGS[name], random.Random(seed_for(request.node.nodeid))
    bus = cfg.axi_data_bits // 8
    for _ in range(4):
        count, channels, raw = rng.randint(1, 10), rng.randint(1, cfg.cols), rng.random() < 0.5
        size = channels * (cfg.acc_width if raw else cfg.act_width) // 8
        dram = rng.choice([0x2000 + rng.randrange(64), 0x3000 - rng.randrange(1, 4 * bus)])
        stride = size + rng.choice([0, rng.randint(0, 70)])
        insn = Instruction(Opcode.STORE, count=count, channels=channels, raw=raw, dram=dram,
                           stride=stride)
        events = run(cfg, [insn], 1)
        (dispatch,) = events["dispatch"]
        rows = [(dram + r * stride, size) for r in range(count)]
        handshakes, done = write_store(rows, bus, dispatch + 2, dispatch + 2)
        assert events["data_out"] == handshakes, str(insn)
        assert events["store_done"] == [done], str(insn)


@pytest.mark.parametrize("name", CONFIGS)
def test_a_load_after_a_store_waits_for_it(name, seed_for, request):
    """A STORE then a LOAD: the LOAD's request is held until the cycle after the STORE's
    completion, then the read path's rules give every ``data_in`` beat."""
    cfg, rng = CONFIGS[name], random.Random(seed_for(request.node.nodeid))
    insn, rows = random_load(cfg, rng, 2)
    store = Instruction(Opcode.STORE, count=rng.randint(1, 6), channels=cfg.cols, raw=True,
                        dram=0x2800 + rng.randrange(64), stride=cfg.cols * cfg.acc_width // 8)
    latency = rng.choice([1, 5])
    events = run(cfg, [store, insn], latency)
    _, dispatch = events["dispatch"]
    (done,) = events["store_done"]
    size = chunk_size(cfg, Kind(insn.opcode.value))
    expected = ReadPath(cfg.axi_data_bits // 8, latency).descriptor(rows, size,
                                                                   max(dispatch, done) + 1)
    assert done > dispatch, "the LOAD was dispatched before the STORE completed"
    assert events["data_in"] == expected
