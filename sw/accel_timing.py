"""Cycle model of the accelerator: when each instruction of a program dispatches and finishes.

A recurrence over the instructions, a constant amount of work each: the same rules the RTL's
controller applies (:class:`sparsa.hw.accelerator.Accelerator`), with the array's tile timing
(:mod:`sparsa.sw.timing`). Streams are ideal: instructions and data always available, the output
always ready. Cycle 0 is the cycle the first instruction dispatches.

Engine rules (``d`` = dispatch cycle):

* in order, at most one instruction per cycle;
* LOAD (``count`` beats): beats in ``d+1 .. d+count``; the next LOAD may dispatch in the cycle of
  the last beat; instructions with a hazard on its rows wait until the cycle after it;
* row readers (PRELOAD, COMPUTE, STORE) read a row in cycle ``c`` and present it from ``c+1``;
  the next row is read in the cycle the presented one is taken; an engine takes its next
  instruction in the cycle its last row is read;
* PRELOAD row ``r`` of tile ``k`` is taken at ``>= swap(k-1) + max(1, r + cols - 2)``; a swap (the
  first beat of a COMPUTE) is taken the cycle after its tile's last weight row;
* results leave the array ``latency`` cycles after their beat and are written at once;
* a COMPUTE waits while two earlier COMPUTEs still have results to write, and while the previous
  one writes rows it touches, unless it accumulates onto exactly those rows (a K chain): then its
  beat ``j`` is read only after row ``j`` was written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sparsa.config import ArrayConfig
from sparsa.isa import Instruction, Opcode

from .timing import array_timing

__all__ = ["ProgramTiming", "program_counts", "program_timing"]

NEVER = -(10**18)


def _overlap(a: int, na: int, b: int, nb: int) -> bool:
    return na > 0 and nb > 0 and a < b + nb and b < a + na


@dataclass(frozen=True)
class ProgramTiming:
    dispatch: list[int]     # dispatch cycle of each instruction
    out_cycles: list[int]   # cycle of each data_out row
    cycles: int             # first dispatch .. last data_out row (or last result written)


@dataclass(frozen=True)
class _Compute:
    """A COMPUTE in flight: its beats are taken in consecutive cycles ``first .. first+count-1``
    (a chain only delays the first one: the rows it waits for are written one per cycle too), and
    result row ``j`` is written in cycle ``first + latency + j``."""

    act: tuple[int, int]    # (base, rows) read
    acc: tuple[int, int]    # (base, rows) written
    first: int
    count: int
    latency: int

    @property
    def last_taken(self) -> int:
        return self.first + self.count - 1

    @property
    def first_write(self) -> int:
        return self.first + self.latency

    @property
    def last_write(self) -> int:
        return self.first + self.latency + self.count - 1


def program_timing(cfg: ArrayConfig, program: Sequence[Instruction], *,
                   trace: bool = True) -> ProgramTiming:
    """Predict ``program``; ``trace=False`` skips the per-row output cycles (long programs)."""
    t = array_timing(cfg)
    rows, cols, latency = cfg.rows, cfg.cols, t.latency
    dispatch: list[int] = []
    out_cycles: list[int] = []
    last_dispatch = -1

    # LOAD engine
    ld_free = 0                 # earliest dispatch of the next LOAD
    ld_last = NEVER             # cycle of the current/last load's last beat
    ld_kind, ld_range = None, (0, 0)
    # PRELOAD engine and the array's weight side
    pre_free = 0
    pre_slot_free = 0           # cycle the weight read register frees (last row taken)
    pre_last_taken = NEVER      # last row of the latest PRELOAD taken
    pre_range = (0, 0)
    last_swap = None            # cycle the latest swap beat was taken
    shadow_ready = None         # cycle from which the next swap may be taken
    # FEED / WRITE
    feed_free = 0
    feed_slot_free = 0          # cycle the act read register frees
    computes: list[_Compute] = []
    # STORE
    st_free = 0
    st_slot_free = 0
    st_last_out = NEVER
    st_range = (0, 0)
    last_write = NEVER

    def pending_at(c: _Compute, cycle: int) -> bool:
        """Whether compute ``c`` still has results to write at ``cycle`` (its descriptor is
        popped in the cycle of its last write)."""
        return cycle <= c.last_write

    for insn in program:
        op = insn.opcode
        d = last_dispatch + 1
        if op in (Opcode.LOAD_ACT, Opcode.LOAD_WEIGHT, Opcode.LOAD_ACC, Opcode.LOAD_SCALE):
            d = max(d, ld_free)
            if op == Opcode.LOAD_ACT and computes:
                latest = computes[-1]
                if _overlap(insn.addr, insn.count, *latest.act):
                    d = max(d, latest.last_taken + 1)
            if op == Opcode.LOAD_WEIGHT and _overlap(insn.addr, insn.count, *pre_range):
                d = max(d, pre_last_taken + 1)
            if op == Opcode.LOAD_ACC:
                if computes:
                    d = max(d, computes[-1].last_write + 1)
                d = max(d, st_last_out + 1)
            if op == Opcode.LOAD_SCALE:
                d = max(d, st_last_out + 1)
            count = 1 if op == Opcode.LOAD_SCALE else insn.count
            if count:
                ld_last = d + count
                ld_free = ld_last
                ld_kind = op
                ld_range = ((insn.acc_addr if op == Opcode.LOAD_ACC else insn.addr), count)
                if op == Opcode.LOAD_SCALE:
                    ld_range = (0, 0)
        elif op == Opcode.PRELOAD:
            d = max(d, pre_free)
            if ld_kind == Opcode.LOAD_WEIGHT and d <= ld_last and \
                    _overlap(insn.addr, rows, *ld_range):
                d = max(d, ld_last + 1)
            read = max(d + 1, pre_slot_free)
            reads, taken = [], []
            for r in range(rows):
                w = read + 1
                if last_swap is not None:
                    w = max(w, last_swap + max(1, r + cols - 2))
                reads.append(read)
                taken.append(w)
                read = w  # the next row is read in the cycle this one is taken
            pre_free = reads[-1]
            pre_slot_free = taken[-1]
            pre_last_taken = taken[-1]
            pre_range = (insn.addr, rows)
            shadow_ready = taken[-1] + 1
        elif op == Opcode.COMPUTE:
            d = max(d, feed_free)
            if ld_kind == Opcode.LOAD_ACC:
                d = max(d, ld_last + 1)
            if ld_kind == Opcode.LOAD_ACT and _overlap(insn.addr, insn.count, *ld_range):
                d = max(d, ld_last + 1)
            if _overlap(insn.acc_addr, insn.count, *st_range):
                d = max(d, st_last_out + 1)
            if len(computes) >= 2:
                d = max(d, computes[-2].last_write + 1)   # at most two pending
            gate = None   # cycle the dependency writes its row 0 (then one row per cycle)
            if computes:
                prev = computes[-1]
                if pending_at(prev, d) and _overlap(insn.acc_addr, insn.count, *prev.acc):
                    chain = insn.accumulate and (insn.acc_addr, insn.count) == prev.acc
                    if not chain:
                        d = max(d, prev.last_write + 1)
                    elif prev.last_write != d:   # popped in the dispatch cycle: no gating
                        gate = prev.first_write
            if insn.count == 0:
                dispatch.append(d)
                last_dispatch = d
                continue
            if shadow_ready is None:
                raise ValueError(f"instruction {len(dispatch)}: COMPUTE without a PRELOAD "
                                 f"since the previous COMPUTE")
            read = max(d + 1, feed_slot_free)
            if gate is not None:
                read = max(read, gate + 1)
            first = max(read + 1, shadow_ready)
            comp = _Compute(act=(insn.addr, insn.count), acc=(insn.acc_addr, insn.count),
                            first=first, count=insn.count, latency=latency)
            last_swap = first
            shadow_ready = None
            # the last row is read in the cycle the one before it is taken
            feed_free = read if insn.count == 1 else first + insn.count - 2
            feed_slot_free = comp.last_taken
            computes.append(comp)
            last_write = max(last_write, comp.last_write)
        elif op == Opcode.STORE:
            d = max(d, st_free)
            if ld_kind == Opcode.LOAD_ACC:
                d = max(d, ld_last + 1)
            for c in computes[-2:]:
                if pending_at(c, d) and _overlap(insn.acc_addr, insn.count, *c.acc):
                    d = max(d, c.last_write + 1)
            if insn.count:
                read = max(d + 1, st_slot_free)   # row j leaves in cycle read + 1 + j
                if trace:
                    out_cycles += range(read + 1, read + 1 + insn.count)
                st_free = read + insn.count - 1 if insn.count > 1 else read
                st_last_out = st_slot_free = read + insn.count
                st_range = (insn.acc_addr, insn.count)
        dispatch.append(d)
        last_dispatch = d
    end = max(st_last_out, last_write, ld_last)
    return ProgramTiming(dispatch=dispatch, out_cycles=out_cycles, cycles=end + 1)


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
