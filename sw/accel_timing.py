"""Cycle model of the accelerator: when each instruction of a program dispatches and finishes.

A recurrence over the instructions, a constant amount of work each: the same rules the RTL's
controller applies (:class:`sparsa.hw.accelerator.Accelerator`), with the array's tile timing
(:mod:`sparsa.sw.timing`). Instructions are always available. Cycle 0 is the cycle the first
instruction dispatches.

Off-chip memory: with ``dram_bytes_per_cycle=None`` the ``data_in`` stream always holds a beat and
``data_out`` is always ready. With a rate, each stream is a port of that many bytes per cycle,
modelled as a token bucket (:class:`DramPort`, the rule the testbenches' drivers apply cycle by
cycle): a beat of ``B`` bytes (:func:`sparsa.isa.data_in_bytes` / ``data_out_bytes``) can
transfer in a cycle that starts with at least ``B`` bytes of credit; each cycle adds ``rate``
bytes, up to ``cap`` = the largest beat + ``rate`` (the port keeps at most one beat prefetched).
Reads (``data_in``) and writes (``data_out``) are separate ports, as in AXI.

Engine rules (``d`` = dispatch cycle):

* in order, at most one instruction per cycle;
* LOAD (``count`` beats): beats taken from ``d+1`` on, one per cycle at most (ideal: exactly
  ``d+1 .. d+count``); the next LOAD may dispatch in the cycle of the last beat; instructions
  with a hazard on its rows wait until the cycle after it (a STORE waits for a LOAD_SCALE);
* row readers (PRELOAD, COMPUTE, STORE) read a row in cycle ``c`` and present it from ``c+1``;
  the next row is read in the cycle the presented one is taken; an engine takes its next
  instruction in the cycle its last row is read;
* PRELOAD row ``r`` of tile ``k`` is taken at ``>= swap(k-1) + max(1, r + cols - 2)``; a swap (the
  first beat of a COMPUTE) is taken the cycle after its tile's last weight row;
* results leave the array ``latency`` cycles after their beat and are written at once;
* a COMPUTE waits while two earlier COMPUTEs still have results to write, and while the previous
  one writes rows it touches, unless it accumulates onto exactly those rows (a K chain): then its
  beat ``j`` is read only after row ``j`` was written.

:class:`AccelTimer` holds the recurrence's state; :meth:`AccelTimer.key` is that state relative
to the last dispatch, which is all the future depends on (every rule compares times with a later
dispatch cycle plus a bounded offset). Equal keys and equal instructions give equal futures, so
long programs made of repeated blocks are timed by memoising blocks (:mod:`sparsa.sw.layer_model`).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass

from sparsa import isa
from sparsa.config import ArrayConfig
from sparsa.isa import Instruction, Opcode

from .timing import array_timing

__all__ = ["AccelTimer", "DramPort", "ProgramTiming", "beat_bytes", "port_caps",
           "program_counts", "program_timing"]

NEVER = -(10**18)
LOADS = (Opcode.LOAD_ACT, Opcode.LOAD_WEIGHT, Opcode.LOAD_ACC, Opcode.LOAD_SCALE)


def _overlap(a: int, na: int, b: int, nb: int) -> bool:
    return na > 0 and nb > 0 and a < b + nb and b < a + na


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def port_caps(cfg: ArrayConfig, rate: int) -> tuple[int, int]:
    """Credit caps of the ``data_in`` and ``data_out`` ports: the largest beat plus ``rate``."""
    beat_in = max(isa.data_in_bytes(cfg, op) for op in LOADS)
    return beat_in + rate, isa.data_out_bytes(cfg, raw=True) + rate


def beat_bytes(cfg: ArrayConfig, program: Sequence[Instruction]) -> tuple[list[int], list[int]]:
    """Bytes of every ``data_in`` beat and every ``data_out`` row of ``program``, in order."""
    ins: list[int] = []
    outs: list[int] = []
    for i in program:
        if i.opcode in LOADS:
            ins += [isa.data_in_bytes(cfg, i.opcode)] * (1 if i.opcode == Opcode.LOAD_SCALE
                                                          else i.count)
        elif i.opcode == Opcode.STORE:
            outs += [isa.data_out_bytes(cfg, i.raw)] * i.count
    return ins, outs


class DramPort:
    """A token bucket, cycle by cycle (what a testbench's source or sink applies): a beat of
    ``nbytes`` may transfer in a cycle when :meth:`can` says so; :meth:`tick` ends the cycle."""

    def __init__(self, rate: int, cap: int):
        if rate < 1 or cap < rate:
            raise ValueError(f"a DRAM port needs rate >= 1 and cap >= rate, not {rate}, {cap}")
        self.rate, self.cap, self.credit = rate, cap, cap

    def can(self, nbytes: int) -> bool:
        return self.credit >= nbytes

    def tick(self, sent: int = 0) -> None:
        self.credit = min(self.cap, self.credit - sent + self.rate)


class _Port:
    """The same bucket in closed form: credit ``c`` at the start of cycle ``t``, no transfer in
    between; :meth:`beats` places the beats of one LOAD or STORE."""

    __slots__ = ("c", "cap", "rate", "t")

    def __init__(self, rate: int | None, cap: int):
        self.rate, self.cap, self.t, self.c = rate, cap, 0, cap

    def credit_at(self, s: int) -> int:
        return min(self.cap, self.c + self.rate * (s - self.t))

    def beats(self, s: int, count: int, nbytes: int) -> _Beats:
        """``count >= 1`` beats of ``nbytes``, the first offered from cycle ``s`` (not before
        the state's cycle): their cycles; the state moves past the last beat."""
        rate = self.rate
        cs = self.credit_at(s)
        if rate >= nbytes:
            t0 = s + max(0, _ceil_div(nbytes - cs, rate))
            ct0 = min(self.cap, cs + rate * (t0 - s))
            b = _Beats(t0, 1, 0, 0, None)
            self.t, self.c = t0 + count, min(self.cap, ct0 + count * (rate - nbytes))
            return b
        b = _Beats(s, 0, nbytes, cs, rate)
        last = b.at(count - 1)
        self.t, self.c = last + 1, cs + rate * (last + 1 - s) - nbytes * count
        return b


class _Beats:
    """Cycle of beat ``j`` of one transfer: ``base + j`` (``step`` 1), or, when the port is slower
    than the beats, ``s + max(j, ceil((B*(j+1) - c_s) / rate))``."""

    __slots__ = ("base", "cs", "nbytes", "rate", "step")

    def __init__(self, base, step, nbytes, cs, rate):
        self.base, self.step, self.nbytes, self.cs, self.rate = base, step, nbytes, cs, rate

    def at(self, j: int) -> int:
        if self.step:
            return self.base + j
        return self.base + max(j, _ceil_div(self.nbytes * (j + 1) - self.cs, self.rate))


@dataclass(frozen=True)
class ProgramTiming:
    dispatch: list[int]     # dispatch cycle of each instruction
    out_cycles: list[int]   # cycle of each data_out row
    cycles: int             # first dispatch .. last data_out row (or last result written)


class _Compute:
    """A COMPUTE in flight: its beats are taken in consecutive cycles ``first .. first+count-1``
    (a chain only delays the first one: the rows it waits for are written one per cycle too), and
    result row ``j`` is written in cycle ``first + latency + j``."""

    __slots__ = ("acc", "act", "count", "first", "first_write", "last_taken", "last_write")

    def __init__(self, act, acc, first, count, latency):
        self.act, self.acc, self.first, self.count = act, acc, first, count
        self.last_taken = first + count - 1
        self.first_write = first + latency
        self.last_write = first + latency + count - 1


# Times of the recurrence's state (attributes of AccelTimer); None = "never happened".
_TIMES = ("ld_free", "ld_last", "pre_free", "pre_slot_free", "pre_last_taken", "last_swap",
          "shadow_ready", "feed_free", "feed_slot_free", "st_free", "st_slot_free",
          "st_last_out")
_get_times = operator.attrgetter(*_TIMES)


class AccelTimer:
    """The cycle recurrence, one instruction at a time (:meth:`step`)."""

    def __init__(self, cfg: ArrayConfig, *, dram_bytes_per_cycle: int | None = None,
                 trace: bool = False):
        t = array_timing(cfg)
        self.rows, self.cols, self.latency = cfg.rows, cfg.cols, t.latency
        # Times further back than this behave like NEVER in every rule (see key()).
        self.horizon = 2 * (cfg.rows + cfg.cols + t.latency) + 8
        rate = dram_bytes_per_cycle
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int) or rate < 1):
            raise ValueError(f"dram_bytes_per_cycle must be a positive integer or None, "
                             f"not {rate!r}")
        cap_in, cap_out = port_caps(cfg, rate or 1)
        self.din, self.dout = _Port(rate, cap_in), _Port(rate, cap_out)
        self.in_bytes = {op: isa.data_in_bytes(cfg, op) for op in LOADS}
        self.out_bytes = {raw: isa.data_out_bytes(cfg, raw) for raw in (False, True)}
        self.trace = trace
        self.dispatch: list[int] = []
        self.out_cycles: list[int] = []
        self.last_dispatch = -1
        self.end = NEVER            # latest event: a load beat, a result written, an output row
        # LOAD engine
        self.ld_free = 0            # earliest dispatch of the next LOAD
        self.ld_last = NEVER        # cycle of the current/last load's last beat
        self.ld_kind, self.ld_range = None, (0, 0)
        # PRELOAD engine and the array's weight side
        self.pre_free = 0
        self.pre_slot_free = 0      # cycle the weight read register frees (last row taken)
        self.pre_last_taken = NEVER  # last row of the latest PRELOAD taken
        self.pre_range = (0, 0)
        self.last_swap = None       # cycle the latest swap beat was taken
        self.shadow_ready = None    # cycle from which the next swap may be taken
        # FEED / WRITE
        self.feed_free = 0
        self.feed_slot_free = 0     # cycle the act read register frees
        self.computes: list[_Compute] = []   # the last two
        # STORE
        self.st_free = 0
        self.st_slot_free = 0
        self.st_last_out = NEVER
        self.st_range = (0, 0)

    @property
    def cycles(self) -> int:
        return self.end + 1

    # -- the recurrence ----------------------------------------------------------------------

    def step(self, insn: Instruction) -> int:
        """Dispatch one instruction; returns its dispatch cycle."""
        op = insn.opcode
        d = self.last_dispatch + 1
        computes = self.computes
        if op in LOADS:
            d = max(d, self.ld_free)
            if op == Opcode.LOAD_ACT and computes:
                latest = computes[-1]
                if _overlap(insn.addr, insn.count, *latest.act):
                    d = max(d, latest.last_taken + 1)
            if op == Opcode.LOAD_WEIGHT and _overlap(insn.addr, insn.count, *self.pre_range):
                d = max(d, self.pre_last_taken + 1)
            if op == Opcode.LOAD_ACC:
                if computes:
                    d = max(d, computes[-1].last_write + 1)
                d = max(d, self.st_last_out + 1)
            if op == Opcode.LOAD_SCALE:
                d = max(d, self.st_last_out + 1)
            count = 1 if op == Opcode.LOAD_SCALE else insn.count
            if count:
                last = self.din.beats(d + 1, count, self.in_bytes[op]).at(count - 1) \
                    if self.din.rate is not None else d + count
                self.ld_last = self.ld_free = last
                self.end = max(self.end, last)
                self.ld_kind = op
                self.ld_range = ((insn.acc_addr if op == Opcode.LOAD_ACC else insn.addr), count)
                if op == Opcode.LOAD_SCALE:
                    self.ld_range = (0, 0)
        elif op == Opcode.PRELOAD:
            d = max(d, self.pre_free)
            if self.ld_kind == Opcode.LOAD_WEIGHT and d <= self.ld_last and \
                    _overlap(insn.addr, self.rows, *self.ld_range):
                d = max(d, self.ld_last + 1)
            read = max(d + 1, self.pre_slot_free)
            last_swap, cols = self.last_swap, self.cols
            prev_read = read
            for r in range(self.rows):
                w = read + 1
                if last_swap is not None:
                    w = max(w, last_swap + max(1, r + cols - 2))
                prev_read = read
                read = w  # the next row is read in the cycle this one is taken
            self.pre_free = prev_read          # the last row's read
            self.pre_slot_free = self.pre_last_taken = read
            self.pre_range = (insn.addr, self.rows)
            self.shadow_ready = read + 1
        elif op == Opcode.COMPUTE:
            d = max(d, self.feed_free)
            if self.ld_kind == Opcode.LOAD_ACC:
                d = max(d, self.ld_last + 1)
            if self.ld_kind == Opcode.LOAD_ACT and _overlap(insn.addr, insn.count, *self.ld_range):
                d = max(d, self.ld_last + 1)
            if _overlap(insn.acc_addr, insn.count, *self.st_range):
                d = max(d, self.st_last_out + 1)
            if len(computes) >= 2:
                d = max(d, computes[-2].last_write + 1)   # at most two pending
            gate = None   # cycle the dependency writes its row 0 (then one row per cycle)
            if computes:
                prev = computes[-1]
                if d <= prev.last_write and _overlap(insn.acc_addr, insn.count, *prev.acc):
                    chain = insn.accumulate and (insn.acc_addr, insn.count) == prev.acc
                    if not chain:
                        d = max(d, prev.last_write + 1)
                    elif prev.last_write != d:   # popped in the dispatch cycle: no gating
                        gate = prev.first_write
            if insn.count:
                if self.shadow_ready is None:
                    raise ValueError(f"instruction {len(self.dispatch)}: COMPUTE without a "
                                     f"PRELOAD since the previous COMPUTE")
                read = max(d + 1, self.feed_slot_free)
                if gate is not None:
                    read = max(read, gate + 1)
                first = max(read + 1, self.shadow_ready)
                comp = _Compute((insn.addr, insn.count), (insn.acc_addr, insn.count), first,
                                insn.count, self.latency)
                self.last_swap = first
                self.shadow_ready = None
                # the last row is read in the cycle the one before it is taken
                self.feed_free = read if insn.count == 1 else first + insn.count - 2
                self.feed_slot_free = comp.last_taken
                computes.append(comp)
                if len(computes) > 2:
                    del computes[0]
                self.end = max(self.end, comp.last_write)
        elif op == Opcode.STORE:
            d = max(d, self.st_free)
            if self.ld_kind in (Opcode.LOAD_ACC, Opcode.LOAD_SCALE):
                d = max(d, self.ld_last + 1)
            for c in computes:
                if d <= c.last_write and _overlap(insn.acc_addr, insn.count, *c.acc):
                    d = max(d, c.last_write + 1)
            if insn.count:
                n = insn.count
                read = max(d + 1, self.st_slot_free)   # row j is offered from read + 1 + j
                if self.dout.rate is None:
                    if self.trace:
                        self.out_cycles += range(read + 1, read + 1 + n)
                    last, before_last = read + n, read + n - 1
                else:
                    beats = self.dout.beats(read + 1, n, self.out_bytes[insn.raw])
                    if self.trace:
                        self.out_cycles += (beats.at(j) for j in range(n))
                    last, before_last = beats.at(n - 1), beats.at(n - 2) if n > 1 else None
                # the next instruction is taken in the cycle the last row is read
                self.st_free = before_last if n > 1 else read
                self.st_last_out = self.st_slot_free = last
                self.st_range = (insn.acc_addr, n)
                self.end = max(self.end, last)
        else:
            raise ValueError(f"unknown opcode {op!r}")
        if self.trace:
            self.dispatch.append(d)
        self.last_dispatch = d
        return d

    # -- state relative to the last dispatch -------------------------------------------------

    def key(self) -> tuple:
        """The state relative to the last dispatch cycle ``ref``: times older than the horizon
        collapse to one value (every rule compares a time ``x`` with a later dispatch via
        ``x + k >= d`` for a bounded ``k``), and the ports' credit is rolled forward to ``ref``
        (no beat moves before the next dispatch). Not the running ``end``."""
        ref, lo = self.last_dispatch, -self.horizon

        def rel(x):
            if x is None:
                return None
            x -= ref
            return x if x > lo else lo

        times = tuple(map(rel, _get_times(self)))
        comps = tuple((c.act, c.acc, c.count, c.first - ref) for c in self.computes
                      if c.last_write - ref > lo)
        din, dout = self.din, self.dout
        ports = None if din.rate is None else (
            (0, din.credit_at(ref)) if din.t < ref else (din.t - ref, din.c),
            (0, dout.credit_at(ref)) if dout.t < ref else (dout.t - ref, dout.c))
        return (times, comps, ports, self.ld_kind, self.ld_range, self.pre_range,
                self.st_range)

    def restore(self, key: tuple, ref: int) -> None:
        """Set the state to ``key`` with the last dispatch at ``ref`` (a state equivalent to the
        one :meth:`key` was taken from, shifted)."""
        times, comps, ports, self.ld_kind, self.ld_range, self.pre_range, self.st_range = key
        self.last_dispatch = ref
        for name, x in zip(_TIMES, times, strict=True):
            setattr(self, name, None if x is None else x + ref)
        self.computes = [_Compute(act, acc, first + ref, count, self.latency)
                         for act, acc, count, first in comps]
        if ports is not None:
            for port, (t, c) in zip((self.din, self.dout), ports, strict=True):
                port.t, port.c = t + ref, c

    def run(self, program: Sequence[Instruction]) -> None:
        for insn in program:
            self.step(insn)


def program_timing(cfg: ArrayConfig, program: Sequence[Instruction], *, trace: bool = True,
                   dram_bytes_per_cycle: int | None = None) -> ProgramTiming:
    """Predict ``program``; ``trace=False`` skips the per-instruction and per-row cycles.
    ``dram_bytes_per_cycle``: the rate of the ``data_in``/``data_out`` ports (None: ideal)."""
    timer = AccelTimer(cfg, dram_bytes_per_cycle=dram_bytes_per_cycle, trace=trace)
    timer.run(program)
    return ProgramTiming(dispatch=timer.dispatch, out_cycles=timer.out_cycles,
                         cycles=timer.cycles)


def program_counts(cfg: ArrayConfig, program: Sequence[Instruction],
                   data_in_beats: int | None = None) -> dict[str, int]:
    """The activity counters a program must produce (the hardware's ``COUNTERS`` except the
    cycle counts): beats, MACs issued and scratchpad reads/writes, read off the instructions."""
    def total(op: Opcode) -> int:
        return sum(i.count for i in program if i.opcode == op)

    computes = [i for i in program if i.opcode == Opcode.COMPUTE and i.count]
    beats = total(Opcode.COMPUTE)
    loads = total(Opcode.LOAD_ACT) + total(Opcode.LOAD_WEIGHT) + total(Opcode.LOAD_ACC) + \
        sum(1 for i in program if i.opcode == Opcode.LOAD_SCALE)
    counts = {
        "act_beats": beats,
        "macs": beats * cfg.macs_per_cycle,
        "act_reads": beats,
        "act_writes": total(Opcode.LOAD_ACT),
        "weight_reads": cfg.rows * len(computes),
        "weight_writes": total(Opcode.LOAD_WEIGHT),
        "acc_reads": sum(i.count for i in computes if i.accumulate) + total(Opcode.STORE),
        "acc_writes": total(Opcode.LOAD_ACC) + beats,
        "data_in_beats": loads if data_in_beats is None else data_in_beats,
        "data_out_beats": total(Opcode.STORE),
    }
    return counts
