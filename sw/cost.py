"""Cycles, action counts and bytes of a scheduled layer, from the accelerator's own models.

The layer's instructions are the ones ``sparsa run`` sends to the RTL
(:func:`sparsa.sw.assemble.block_instructions`); their cycles come from the instruction-level
cycle model (:mod:`sparsa.sw.accel_timing`) that the RTL tests match cycle for cycle, and their
action counts from the activity counters the hardware must show
(:func:`sparsa.sw.accel_timing.program_counts`, also matched against the RTL).

Cycles (array clock cycles, from the first dispatch to the last output row):

* ``compute``: with ideal streams (``data_in`` always holding a beat, ``data_out`` always ready);
* ``stall``: the cycles added when ``data_in`` and ``data_out`` are DRAM ports of
  ``dram_bytes_per_cycle`` each (token buckets, see :mod:`~sparsa.sw.accel_timing`).

``total = compute + stall``. The program is timed at the ports' rate, watching whether they
delay any beat (:func:`paced_cycles`); only when they do is it timed again with ideal streams.

A layer's program can have millions of instructions (an LLM's projections), but it is made of
blocks (:func:`sparsa.sw.schedule.iter_blocks`) that repeat, and
a block of tiles that repeat. The cost model builds each distinct block once as the cycle model
sees it (:func:`sparsa.sw.assemble.timing_view`: without the im2col walk's fields and activation
addresses, which only decide which rows are read; blocks of a conv differ only there; the tiles
of a block that only load weights, preload and compute walked once per run of them,
:func:`sparsa.sw.assemble.block_view`), reads it as the rules do
(:func:`sparsa.sw.accel_timing.annotate`: the scratchpad addresses replaced by the hazards they
raise, so tiles that differ only in their weight slot or accumulator region are equal), splits
it into tiles, and :func:`program_cycles` runs the program as runs of equal blocks and, inside
each block, runs of equal tiles: once the cycle model's state relative to the last dispatch
(:meth:`AccelTimer.key`) repeats within a run, the remaining whole periods are skipped, and a
block that starts from a state it started from before is replayed, which is exact because the
model is invariant under a shift in time. Tests compare it with the plain
instruction-by-instruction recurrence.

Action counts (:class:`Actions`, per layer): the on-chip ones are the counters turned into bytes
of each row kind (an activation row is ``rows * m`` activations, a weight row ``cols * n`` values
plus their indices, an accumulator row ``cols`` sums); the off-chip ones (``dram_*``) are the
scheduler's byte model (:func:`sparsa.sw.tiling.tiling_bytes`), exactly the bytes the
instructions move: real activation channels, whole weight rows, scale rows, output rows.
:class:`LayerCost` also carries the layer's compulsory bytes (:meth:`sparsa.sw.lower.Lowering.
compulsory`), what any schedule must move, to show beside them.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np

from sparsa import isa
from sparsa.config import ArrayConfig
from sparsa.isa import LOADS, Opcode
from sparsa.models.graph import Gemm

from .accel_timing import NEVER, AccelTimer, Addresses, Timed, annotate_all, program_counts
from .assemble import block_view, shifted, timing_view, view_key
from .lower import Traffic, program_key
from .schedule import Block, LayerSchedule, Tiling, tiling_bytes

__all__ = ["Actions", "Cycles", "LayerCost", "actions_from_counts", "block_runs", "direct_cost",
           "layer_cost", "moved", "paced_cycles", "program_cycles", "program_tiling",
           "tiling_counts", "timing_view"]


def _add(a, b):
    if type(a) is not type(b):
        return NotImplemented
    return type(a)(**{f.name: getattr(a, f.name) + getattr(b, f.name)
                      for f in dataclasses.fields(a)})


@dataclass(frozen=True)
class Cycles:
    compute: int = 0    # ideal streams
    stall: int = 0      # added by the DRAM ports

    @property
    def total(self) -> int:
        return self.compute + self.stall

    __add__ = _add


@dataclass(frozen=True)
class Actions:
    """Counts of the energy-relevant events of a layer."""

    macs_issued: int = 0            # multiplier slots active (rows*cols*n per beat)
    macs_required: int = 0          # multiplies the layer needs (nonzero weights x P)
    pe_register_write_bits: int = 0  # weight/index shadow registers + per-beat pipeline registers
    act_buffer_read_bytes: int = 0
    act_buffer_write_bytes: int = 0
    weight_buffer_read_bytes: int = 0
    weight_buffer_write_bytes: int = 0
    metadata_buffer_read_bytes: int = 0
    metadata_buffer_write_bytes: int = 0
    acc_buffer_read_bytes: int = 0
    acc_buffer_write_bytes: int = 0
    dram_act_bytes: int = 0
    dram_weight_bytes: int = 0
    dram_metadata_bytes: int = 0
    dram_acc_bytes: int = 0         # LOAD_ACC rows
    dram_scale_bytes: int = 0       # LOAD_SCALE rows (bias, multiplier, shift per column)
    dram_out_bytes: int = 0
    dram_program_bytes: int = 0     # instruction words the memory-mapped top fetches

    @property
    def dram_bytes(self) -> int:
        return (self.dram_act_bytes + self.dram_weight_bytes + self.dram_metadata_bytes
                + self.dram_acc_bytes + self.dram_scale_bytes + self.dram_out_bytes
                + self.dram_program_bytes)

    __add__ = _add


@dataclass(frozen=True)
class LayerCost:
    cycles: Cycles
    actions: Actions
    tiles: int = 0
    beats: int = 0
    compulsory: Traffic = dataclasses.field(default_factory=Traffic)   # what any schedule moves

    @property
    def compulsory_bytes(self) -> int:
        return self.compulsory.total

    __add__ = _add


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def weight_row_split(cfg: ArrayConfig) -> tuple[int, int]:
    """Bytes of a weight row's values and of its index metadata (together one ``data_in``
    beat)."""
    values = isa.weight_values_bytes(cfg)
    return values, isa.data_in_bytes(cfg, Opcode.LOAD_WEIGHT) - values


def actions_from_counts(cfg: ArrayConfig, counts: dict[str, int], traffic: Traffic, *,
                        macs_required: int = 0) -> Actions:
    """The energy model's action counts from the accelerator's activity counters
    (:data:`sparsa.hw.accelerator.COUNTERS` names) of a program and its off-chip bytes
    (:func:`sparsa.sw.schedule.tiling_bytes`)."""
    act_row = isa.data_in_bytes(cfg, Opcode.LOAD_ACT)
    acc_row = isa.data_in_bytes(cfg, Opcode.LOAD_ACC)
    w_values, w_meta = weight_row_split(cfg)
    per_pe_weights = cfg.n * (cfg.weight_width + cfg.index_width)
    per_beat_bits = cfg.rows * cfg.cols * (cfg.m * cfg.act_width + cfg.acc_width)
    return Actions(
        macs_issued=counts["macs"],
        macs_required=macs_required,
        # a preloaded PE row writes cols shadow registers; every beat latches each PE's
        # activation vector and partial sum
        pe_register_write_bits=(counts["weight_reads"] * cfg.cols * per_pe_weights
                                + counts["act_beats"] * per_beat_bits),
        act_buffer_read_bytes=counts["act_reads"] * act_row,
        act_buffer_write_bytes=counts["act_writes"] * act_row,
        weight_buffer_read_bytes=counts["weight_reads"] * w_values,
        weight_buffer_write_bytes=counts["weight_writes"] * w_values,
        metadata_buffer_read_bytes=counts["weight_reads"] * w_meta,
        metadata_buffer_write_bytes=counts["weight_writes"] * w_meta,
        acc_buffer_read_bytes=counts["acc_reads"] * acc_row,
        acc_buffer_write_bytes=counts["acc_writes"] * acc_row,
        dram_act_bytes=traffic.act,
        dram_weight_bytes=traffic.weight,
        dram_metadata_bytes=traffic.metadata,
        dram_acc_bytes=traffic.acc,
        dram_scale_bytes=traffic.scale,
        dram_out_bytes=traffic.out,
    )


class _Chunks:
    """A program's tiles as the cycle model reads them: each block's instructions split after
    each COMPUTE (one tile each), annotated (:func:`sparsa.sw.accel_timing.annotate`) and given
    small ids, one per distinct timed chunk. A chunk of the same instruction objects after the
    same addresses annotates alike: looked up, not annotated again."""

    def __init__(self, rows: int):
        self.rows = rows
        self.interned: dict[tuple[Timed, ...], int] = {}
        self.seen: dict[tuple, tuple] = {}  # (addresses, ids of the objects) -> (id, after, chunk)

    def ids(self, at: Addresses, program: list) -> tuple[tuple[int, ...], Addresses]:
        """The chunk ids of ``program`` (instructions) after the addresses ``at``, and the
        addresses after it."""
        compute, seen = Opcode.COMPUTE, self.seen
        ends = [i + 1 for i, insn in enumerate(program) if insn.opcode is compute]
        if program and (not ends or ends[-1] != len(program)):
            ends.append(len(program))
        out, start = [], 0
        for end in ends:
            chunk = program[start:end]
            key = (at, *map(id, chunk))
            got = seen.get(key)
            if got is None:
                timed, after = annotate_all(self.rows, at, chunk)
                # the chunk is kept with its ids: no other object can take them
                got = seen[key] = (self.interned.setdefault(timed, len(self.interned)), after,
                                   chunk)
            out.append(got[0])
            at = got[1]
            start = end
        return tuple(out), at

    def runs(self, at: Addresses, segments: list) -> tuple[tuple[tuple[int, ...], int], ...]:
        """The chunk ids of a block's view segments (:func:`sparsa.sw.assemble.block_view`)
        after the addresses ``at``, as runs ``(ids, count)``, and the addresses after them.

        A segment's repetitions differ only in their weight addresses, moved by ``step`` each,
        and annotating is invariant under moving every weight address (the instructions' and
        those ``at`` holds) alike: it only compares weight rows with weight rows. So once the
        addresses after the second repetition are those after the first, moved by ``step``,
        every later repetition reads as the second (by induction) and is not annotated."""
        out: list[tuple[tuple[int, ...], int]] = []
        for insns, count, step in segments:
            ids, at = self.ids(at, insns)
            out.append((ids, 1))
            if count == 1:
                continue
            second = shifted(insns, step)
            ids, after = self.ids(at, second)
            if after == moved(at, step):
                out.append((ids, count - 1))
                at = moved(at, step * (count - 1))
                continue
            for r in range(1, count):   # not periodic: each repetition read on its own
                ids, at = self.ids(at, shifted(insns, r * step))
                out.append((ids, 1))
        return _merged(out), at

    def chunks(self) -> tuple[tuple[Timed, ...], ...]:
        """The distinct timed chunks, by id."""
        return tuple(sorted(self.interned, key=self.interned.__getitem__))


def moved(at: Addresses, step: int) -> Addresses:
    """``at`` with its weight rows moved by ``step`` (empty ones, which overlap nothing, left
    as they are)."""
    if not step:
        return at
    w, p = at.weight_load, at.preload
    return at._replace(weight_load=(w[0] + step, w[1]) if w[1] else w,
                       preload=(p[0] + step, p[1]) if p[1] else p)


def _merged(runs: list) -> tuple[tuple[tuple[int, ...], int], ...]:
    """``runs`` with consecutive single ones joined and each repeated unit cut to its shortest
    period."""
    out: list[tuple[tuple[int, ...], int]] = []
    for ids, count in runs:
        if count == 1:
            if out and out[-1][1] == 1:
                out[-1] = (out[-1][0] + ids, 1)
            else:
                out.append((ids, 1))
            continue
        n = len(ids)
        period = next(p for p in range(1, n + 1) if n % p == 0 and ids == ids[:p] * (n // p))
        out.append((ids[:period], count * (n // period)))
    return tuple(out)


@dataclass(frozen=True)
class _Program:
    """A tiling's program as the cycle model sees it: the block of each block in program order
    (ids; the held stores at the end are one more), the chunk ids of each block, the chunks
    (timing views), and the periods runs of blocks and of chunks are looked for with."""

    blocks: np.ndarray
    units: tuple[tuple[tuple[tuple[int, ...], int], ...], ...]
    chunks: tuple[tuple[Timed, ...], ...]
    block_periods: tuple[int, ...]
    chunk_periods: tuple[int, ...]


def _program(cfg: ArrayConfig, t: Tiling, raw: bool) -> _Program:
    """The timing views of the tiling's blocks (each distinct (block, carried stores) built
    once, :func:`sparsa.sw.assemble.view_key`), as chunk ids. Stacked GEMMs that start alike
    (the same parity and carried stores, neither the first nor the last) repeat the one before:
    they are taken from it, not walked."""
    walked: dict[tuple, tuple] = {}     # (view key, carried stores) -> segments, carry
    built: dict[tuple, tuple] = {}      # the same and the addresses before -> unit, state after
    chunker = _Chunks(cfg.rows)
    units: dict[tuple, int] = {}        # a block's runs of chunk ids -> its id
    keys: dict[tuple, tuple] = {}
    seq: list[int] = []
    state: tuple = ((), (), Addresses())    # (carried stores, their key, hazard addresses)
    per_stack = t.col_blocks * t.p_blocks
    stacks: dict[tuple, tuple] = {}

    def walk(first: int) -> None:
        nonlocal state
        for block in (Block(*t.locate(i)[1:], i, t.locate(i)[0])
                      for i in range(first, first + per_stack)):
            # what a block's view depends on, cheaply: its place in the loop nest and the next
            # block's (stacked GEMMs repeat one another's keys)
            i = block.index
            place = (block.col_block, block.p_block, i % 2, i == 0,
                     t.locate(i + 1)[1:] if i + 1 < t.blocks else None,
                     None if t.weights_resident else t.weight_loads_before(i) % 2)
            vkey = keys.get(place)
            if vkey is None:
                vkey = keys[place] = view_key(t, block)
            key = (vkey, state[1])
            got = built.get((key, state[2]))
            if got is None:
                done = walked.get(key)
                if done is None:    # the view does not depend on the addresses before
                    segments, carry = block_view(cfg, t, block, carry=state[0], raw=raw)
                    done = walked[key] = (segments, carry, tuple((i, n) for i, _, n in carry))
                ids, at = chunker.runs(state[2], done[0])
                got = built[key, state[2]] = (units.setdefault(ids, len(units)),
                                              (done[1], done[2], at))
            seq.append(got[0])
            state = got[1]

    for g in range(t.stack):
        entry = (g * per_stack % 2, state[1], state[2], g == 0, g == t.stack - 1)
        if entry in stacks:
            ids, state = stacks[entry]
            seq.extend(ids)
            continue
        start = len(seq)
        walk(g * per_stack)
        stacks[entry] = (seq[start:], state)
    if state[0]:
        ids = chunker.ids(state[2], [i for i, _, _ in state[0]])[0]
        seq.append(units.setdefault(((ids, 1),), len(units)))
    cols = {t.block_cols(c) for c in range(t.col_blocks)}
    ordered: list[tuple] = [()] * len(units)
    for ids, i in units.items():
        ordered[i] = ids
    return _Program(
        np.array(seq, dtype=np.int64), tuple(ordered), chunker.chunks(),
        tuple(sorted(set(range(1, PERIODS + 1)) | {per_stack, 2 * per_stack, t.p_blocks,
                                                    2 * t.p_blocks})),
        tuple(sorted(set(range(1, PERIODS + 1)) | {x * f for x in cols for f in (1, 2)})))


# Periods up to this many blocks or chunks are always looked for (and the ones of the loops).
PERIODS = 16


def _runs(seq, periods: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """``seq`` as runs ``(start, period, count)``: ``seq[start:start+period]`` repeated
    ``count`` times; greedily the run covering most chunks from each position (count 1:
    irregular stretches)."""
    seq = seq.tolist() if isinstance(seq, np.ndarray) else seq
    n = len(seq)
    streaks = {}
    for p in periods:
        if 2 * p > n:
            continue
        streak, equal = [0] * (n - p), 0    # equal pairs seq[j + p] == seq[j] from i on
        for i in range(n - p - 1, -1, -1):
            equal = equal + 1 if seq[i + p] == seq[i] else 0
            streak[i] = equal
        streaks[p] = streak
    out: list[tuple[int, int, int]] = []
    i = single = 0
    while i < n:
        best, period = 1, 1
        for p, streak in streaks.items():
            if i < len(streak):
                count = 1 + streak[i] // p
                if count >= 3 and count * p > best:
                    best, period = count * p, p
        if best == 1:
            if single == 0:
                out.append((i, 1, 1))
            else:
                start, length, _ = out[-1]
                out[-1] = (start, length + 1, 1)
            single, i = 1, i + 1
            continue
        out.append((i, period, best // period))
        single, i = 0, i + best
    return out


@functools.lru_cache(maxsize=1 << 12)
def _split(items: tuple[int, ...], periods: tuple[int, ...]) -> tuple:
    """``items`` as its runs: ``(unit, count)`` (cached: a program is timed at two rates)."""
    return tuple((items[start:start + period], count)
                 for start, period, count in _runs(items, periods))


def block_runs(cfg: ArrayConfig, t: Tiling, *, raw: bool = False) -> list[tuple[int, int]]:
    """The program's runs of blocks as ``(period in blocks, count)`` (what
    :func:`program_cycles` skips; inside each distinct block, runs of chunks too)."""
    prog = _program(cfg, t, raw)
    return [(period, count) for _, period, count in _runs(prog.blocks, prog.block_periods)]


# A run of equal units looks for a repeating state among its first units only.
PERIOD_SEARCH = 64


def _repeat(timer: AccelTimer, step, count: int, memo: dict | None = None,
            unit: object = None) -> int:
    """Run ``step`` (one unit, returning its latest event) ``count`` times; the latest event.

    Once the timer's state relative to the last dispatch (:meth:`AccelTimer.key`, the memo key
    that makes replay exact) repeats, the units between the two equal states repeat exactly,
    shifted in time, so the remaining whole periods are skipped in one step. ``memo`` (with
    ``unit`` naming what ``step`` runs): a run of the same units from the same key as before is
    replayed whole."""
    seen: dict | None = {}
    latest: list[int] = []
    end, i = NEVER, 0
    start, ref0 = timer.key(), timer.last_dispatch
    if memo is not None:
        got = memo.get((unit, count, start))
        if got is not None:
            after, shift, last = got
            timer.restore(after, ref0 + shift)
            return ref0 + last
    key = start
    while i < count:
        if i < PERIOD_SEARCH and seen is not None:
            if i:
                key = timer.key()
            if key in seen:
                first, ref = seen[key]
                period, shift = i - first, timer.last_dispatch - ref
                periods = (count - i) // period
                end = max(end, max(latest[first:i]) + periods * shift)
                timer.restore(key, timer.last_dispatch + periods * shift)
                i += periods * period
                seen = None
                continue
            seen[key] = (i, timer.last_dispatch)
        latest.append(step())
        end = max(end, latest[-1])
        i += 1
    if memo is not None:
        memo[unit, count, start] = (timer.key(), timer.last_dispatch - ref0, end - ref0)
    return end


def program_cycles(cfg: ArrayConfig, t: Tiling, *, dram_bytes_per_cycle: int | None = None,
                   raw: bool = False, program: _Program | None = None) -> int:
    """Cycles of the tiling's whole program (first dispatch .. last event): runs of equal
    blocks, and inside every block runs of equal chunks, skipped once periodic
    (:func:`_repeat`); a block that starts from a state it started from before is replayed
    (its key after it and its times, shifted); ``program``: :func:`_program`'s, if already
    built."""
    return paced_cycles(cfg, t, dram_bytes_per_cycle=dram_bytes_per_cycle, raw=raw,
                        program=program)[0]


def _watched(timer: AccelTimer, chunk: tuple[Timed, ...]) -> bool:
    """Run ``chunk`` one instruction at a time; whether the ``data_in`` port delayed a LOAD's
    beats (its last beat later than ``count`` cycles after its dispatch: the beats of an
    ideal stream)."""
    paced = False
    for insn in chunk:
        timer.run_timed((insn,))
        if insn.opcode in LOADS and (insn.count or insn.opcode is Opcode.LOAD_SCALE):
            s = timer.state
            paced = paced or s.load.last != s.last_dispatch + max(1, insn.count)
    return paced


def paced_cycles(cfg: ArrayConfig, t: Tiling, *, dram_bytes_per_cycle: int | None = None,
                 raw: bool = False, program: _Program | None = None) -> tuple[int, bool]:
    """:func:`program_cycles`, and whether the DRAM ports may have paced the program. False:
    they never delayed a beat, so the cycles are those with ideal streams. The ``data_in``
    port is watched (every LOAD its chunks run, until one is delayed; the runs skipped or
    replayed repeat, shifted, runs that were watched); the ``data_out`` port never delays a
    row when no STORE's rows are larger than the rate (its credit then stays above a row's
    bytes, :mod:`sparsa.sw.dram_port`)."""
    prog = program if program is not None else _program(cfg, t, raw)
    rate = dram_bytes_per_cycle
    timer = AccelTimer(cfg, dram_bytes_per_cycle=rate)
    inner: dict[int, list] = {}     # each block's runs of chunks
    seen: dict[tuple, tuple] = {}   # (block, key at its start) -> (key after, shift, end)
    memo: dict[tuple, tuple] = {}   # the same for runs of units (see _repeat)
    chunks = prog.chunks
    rows_out = {isa.data_out_bytes(cfg, i.raw) for c in chunks for i in c
                if i.opcode is Opcode.STORE}
    paced = rate is not None and max(rows_out, default=0) > rate
    watch = [rate is not None and any(i.opcode in LOADS for i in c) for c in chunks]

    def run(ids) -> int:
        nonlocal paced
        timer.end = NEVER
        for c in ids:
            if watch[c] and not paced:
                paced = _watched(timer, chunks[c])
            else:
                timer.run_timed(chunks[c])
        return timer.end

    def runs(split: list, step) -> int:
        end = NEVER
        for unit, count in split:
            end = max(end, step(unit) if count == 1 else
                      _repeat(timer, lambda unit=unit: step(unit), count, memo,
                              (step is run, unit)))
        return end

    def block(bid: int) -> int:
        """One block; replayed when it starts from a state (key) it started from before."""
        start, ref = timer.key(), timer.last_dispatch
        got = seen.get((bid, start))
        if got is not None:
            after, shift, latest = got
            timer.restore(after, ref + shift)
            return ref + latest
        if bid not in inner:
            inner[bid] = [run for ids, count in prog.units[bid] for run in
                          (_split(ids, prog.chunk_periods) if count == 1 else ((ids, count),))]
        end = runs(inner[bid], run)
        seen[bid, start] = (timer.key(), timer.last_dispatch - ref, end - ref)
        return end

    def each(unit: tuple[int, ...]) -> int:
        return max(block(b) for b in unit)

    def blocks(unit: tuple[int, ...]) -> int:
        """A unit of blocks; a long one (a stacked GEMM's) in runs of its own."""
        if len(unit) <= 2 * PERIODS:
            return each(unit)
        return runs(_split(unit, prog.chunk_periods[:PERIODS]), each)

    end = runs(_split(tuple(prog.blocks.tolist()), prog.block_periods), blocks)
    return end + 1, paced


def tiling_counts(cfg: ArrayConfig, t: Tiling, *, raw: bool = False,
                  program: _Program | None = None) -> dict[str, int]:
    """The activity counters of the tiling's whole program (sums over its blocks)."""
    prog = program if program is not None else _program(cfg, t, raw)
    times = np.zeros(len(prog.chunks), dtype=np.int64)     # each chunk's occurrences
    for bid, n in enumerate(np.bincount(prog.blocks, minlength=len(prog.units)).tolist()):
        if n:
            for ids, count in prog.units[bid]:
                times += n * count * np.bincount(np.array(ids, dtype=np.int64),
                                                 minlength=len(prog.chunks))
    total: dict[str, int] = {}
    for c, n in enumerate(times.tolist()):
        if n:
            for name, value in program_counts(cfg, prog.chunks[c]).items():
                total[name] = total.get(name, 0) + value * n
    return total


def program_tiling(t: Tiling) -> Tiling:
    """``t`` with what its program does not depend on blanked: the layer's shape summary and
    :func:`sparsa.sw.lower.program_key`. Tilings with equal program tilings have equal programs,
    so equal cycles and counters; the memo key of :func:`layer_cost`."""
    return dataclasses.replace(t, low=program_key(t.low, t.cfg), gemm=Gemm(p=1, k=1, cols=1))


def _counts_and_cycles(cfg: ArrayConfig, t: Tiling) -> tuple[Cycles, dict[str, int]]:
    prog = _program(cfg, t, raw=False)
    compute = program_cycles(cfg, t, program=prog)
    total = program_cycles(cfg, t, dram_bytes_per_cycle=cfg.dram_bytes_per_cycle, program=prog)
    return Cycles(compute=compute, stall=total - compute), tiling_counts(cfg, t, program=prog)


# Configuration fields a tiling's program, its compute cycles and its counters do not depend on:
# the DRAM ports' rate only paces the streams (program_cycles' dram_bytes_per_cycle), the clock
# nothing. Configurations that differ only in them (a sweep over memory ports) build each program
# once and time it again only at their own rate.
TIMING_NEUTRAL = ("clock_mhz", "dram_bytes_per_cycle")
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ArrayConfig)}


@functools.lru_cache(maxsize=512)
def _rate_free(cfg: ArrayConfig, t: Tiling) -> tuple[_Program, dict[str, int]]:
    """The program of ``t`` on ``cfg`` (both with :data:`TIMING_NEUTRAL` at their defaults)
    and its counters."""
    prog = _program(cfg, t, raw=False)
    return prog, tiling_counts(cfg, t, program=prog)


@functools.lru_cache(maxsize=512)
def _ideal_cycles(cfg: ArrayConfig, t: Tiling) -> int:
    """:func:`_rate_free`'s program's cycles with ideal streams."""
    return program_cycles(cfg, t, program=_rate_free(cfg, t)[0])


def _shared_counts_and_cycles(cfg: ArrayConfig, t: Tiling) -> tuple[Cycles, dict[str, int]]:
    """:func:`_counts_and_cycles`, the program and its compute cycles shared by configurations
    that differ only in :data:`TIMING_NEUTRAL` fields; the compute cycles are the total when
    the ports paced nothing (:func:`paced_cycles`)."""
    base = cfg.replace(**{name: _DEFAULTS[name] for name in TIMING_NEUTRAL})
    bt = t if base == cfg else dataclasses.replace(t, cfg=base)
    prog, counts = _rate_free(base, bt)
    total, paced = paced_cycles(base, bt, dram_bytes_per_cycle=cfg.dram_bytes_per_cycle,
                                program=prog)
    compute = _ideal_cycles(base, bt) if paced else total
    return Cycles(compute=compute, stall=total - compute), counts


_program_cost = functools.lru_cache(maxsize=4096)(_shared_counts_and_cycles)


def _cost(cfg: ArrayConfig, t: Tiling, cycles: Cycles, counts: dict[str, int]) -> LayerCost:
    return LayerCost(cycles=cycles,
                     actions=actions_from_counts(cfg, counts, tiling_bytes(t),
                                                 macs_required=t.low.required_macs(cfg)),
                     tiles=t.tiles, beats=t.beats, compulsory=t.low.compulsory(cfg))


def direct_cost(cfg: ArrayConfig, t: Tiling) -> LayerCost:
    """The cost of ``t``'s own program (no sharing between tilings; :func:`layer_cost`
    memoises by :func:`program_tiling`)."""
    return _cost(cfg, t, *_counts_and_cycles(cfg, t))


def layer_cost(schedule: LayerSchedule) -> LayerCost:
    """Cycles, actions and bytes of a scheduled layer (requantized int8 outputs); layers with
    equal programs are timed once."""
    cfg, t = schedule.cfg, schedule.tiling
    return _cost(cfg, t, *_program_cost(cfg, program_tiling(t)))
