"""Cycles and action counts of a scheduled layer, from the accelerator's own models.

The layer's instructions are the ones ``sparsa run`` sends to the RTL
(:func:`sparsa.sw.assemble.block_instructions`); their cycles come from the instruction-level
cycle model (:mod:`sparsa.sw.accel_timing`) that the RTL tests match cycle for cycle, and their
action counts from the activity counters the hardware must show
(:func:`sparsa.sw.accel_timing.program_counts`, also matched against the RTL).

Cycles (array clock cycles, from the first dispatch to the last output row):

* ``compute``: with ideal streams (``data_in`` always holding a beat, ``data_out`` always ready);
* ``stall``: the cycles added when ``data_in`` and ``data_out`` are DRAM ports of
  ``dram_bytes_per_cycle`` each (token buckets, see :mod:`~sparsa.sw.accel_timing`).

``total = compute + stall``. A layer's program can have millions of instructions (an LLM's
projections), but it is made of blocks (:func:`sparsa.sw.schedule.iter_blocks`) that repeat;
:func:`program_cycles` times each block once per (cycle-model state relative to its start,
block instructions) and replays the result, which is exact because the model is invariant under
a shift in time (:meth:`AccelTimer.key`). Tests compare it with the plain instruction-by-
instruction recurrence.

Action counts (:class:`Actions`, per layer) are the counters turned into bytes of each row kind:
an activation row is ``rows * m`` activations, a weight row ``cols * n`` values plus their
indices, an accumulator row ``cols`` sums; off-chip bytes are those of the ``data_in`` beats and
``data_out`` rows (:func:`sparsa.isa.data_in_bytes`), padding and the zero slots of dense layers
on sparse hardware included, because that is what the RTL moves.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

from sparsa import isa
from sparsa.config import ArrayConfig
from sparsa.isa import Opcode
from sparsa.models.graph import Gemm

from .accel_timing import NEVER, AccelTimer, program_counts
from .assemble import block_instructions, block_key
from .schedule import LayerSchedule, Tiling, iter_blocks

__all__ = ["Actions", "Cycles", "LayerCost", "actions_from_counts", "block_runs", "direct_cost",
           "layer_cost",
           "program_cycles", "program_tiling", "tiling_counts"]


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

    @property
    def dram_bytes(self) -> int:
        return (self.dram_act_bytes + self.dram_weight_bytes + self.dram_metadata_bytes
                + self.dram_acc_bytes + self.dram_scale_bytes + self.dram_out_bytes)

    __add__ = _add


@dataclass(frozen=True)
class LayerCost:
    cycles: Cycles
    actions: Actions
    tiles: int = 0
    beats: int = 0

    __add__ = _add


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def weight_row_split(cfg: ArrayConfig) -> tuple[int, int]:
    """Bytes of a weight row's values and of its index metadata (together one ``data_in``
    beat)."""
    values = _ceil_div(cfg.cols * cfg.n * cfg.weight_width, 8)
    return values, isa.data_in_bytes(cfg, Opcode.LOAD_WEIGHT) - values


def actions_from_counts(cfg: ArrayConfig, counts: dict[str, int], *, raw: bool = False,
                        macs_required: int = 0) -> Actions:
    """The energy model's action counts from the accelerator's activity counters
    (:data:`sparsa.hw.accelerator.COUNTERS` names) of a program whose STOREs are all ``raw`` or
    all requantized."""
    act_row = isa.data_in_bytes(cfg, Opcode.LOAD_ACT)
    acc_row = isa.data_in_bytes(cfg, Opcode.LOAD_ACC)
    w_values, w_meta = weight_row_split(cfg)
    acc_loads = counts["acc_writes"] - counts["act_beats"]
    scale_loads = (counts["data_in_beats"] - counts["act_writes"] - counts["weight_writes"]
                   - acc_loads)
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
        dram_act_bytes=counts["act_writes"] * act_row,
        dram_weight_bytes=counts["weight_writes"] * w_values,
        dram_metadata_bytes=counts["weight_writes"] * w_meta,
        dram_acc_bytes=acc_loads * acc_row,
        dram_scale_bytes=scale_loads * isa.data_in_bytes(cfg, Opcode.LOAD_SCALE),
        dram_out_bytes=counts["data_out_beats"] * isa.data_out_bytes(cfg, raw),
    )


def _required_macs(t: Tiling, cfg: ArrayConfig) -> int:
    g = t.gemm
    k = _ceil_div(g.k, cfg.m) * cfg.n if t.sparse else g.k
    return g.groups * g.p * g.cols * min(k, g.k)


def _chunks(program: tuple, interned: dict[tuple, int]) -> tuple[tuple[int, tuple], ...]:
    """Split a block's instructions after each COMPUTE (about one tile each); every distinct
    chunk gets a small id, the memo key of the timing."""
    out, start = [], 0
    for i, insn in enumerate(program):
        if insn.opcode == Opcode.COMPUTE or i == len(program) - 1:
            chunk = program[start:i + 1]
            out.append((interned.setdefault(chunk, len(interned)), chunk))
            start = i + 1
    return tuple(out)


def _block_programs(cfg: ArrayConfig, t: Tiling, raw: bool):
    """(key, instructions, chunks) of each block in program order, then of the stores still
    held at the end; each distinct (block, carried stores) is built once."""
    built: dict[tuple, tuple] = {}
    interned: dict[tuple, int] = {}
    block_ids: dict[tuple, int] = {}
    carry: tuple = ()
    carry_key: tuple = ()
    for block in iter_blocks(t):
        key = (block_key(t, block), carry_key)
        got = built.get(key)
        if got is None:
            pairs, carry = block_instructions(cfg, t, block, carry=carry, raw=raw)
            prog = tuple(i for i, _ in pairs)
            chunks = _chunks(prog, interned)
            bid = block_ids.setdefault(tuple(c for c, _ in chunks), len(block_ids))
            got = built[key] = (prog, (bid, chunks), carry,
                                tuple((i, seen) for i, _, seen in carry))
        carry, carry_key = got[2], got[3]
        yield key, got[0], got[1]
    tail = tuple(i for i, _, _ in carry)
    chunks = _chunks(tail, interned)
    yield ("end", tail), tail, (block_ids.setdefault(tuple(c for c, _ in chunks),
                                                     len(block_ids)), chunks)


def _runs(blocks: list) -> list[tuple[tuple, int]]:
    """A :func:`_block_programs` list as ``(unit, count)``: ``unit`` (one block, or two that
    alternate, as scratchpad slots do) repeated ``count`` times. Equal blocks share their
    instruction tuple, so identity decides."""
    progs = [b[1] for b in blocks]
    out: list[tuple[tuple, int]] = []
    i, n = 0, len(progs)
    while i < n:
        a = progs[i]
        b = progs[i + 1] if i + 1 < n else None
        if b is a:
            j = i + 2
            while j < n and progs[j] is a:
                j += 1
            out.append(((blocks[i],), j - i))
        elif i + 3 < n and progs[i + 2] is a and progs[i + 3] is b:
            j = i + 4
            while j + 1 < n and progs[j] is a and progs[j + 1] is b:
                j += 2
            out.append(((blocks[i], blocks[i + 1]), (j - i) // 2))
        else:
            j = i + 1
            out.append(((blocks[i],), 1))
        i = j
    return out


def block_runs(cfg: ArrayConfig, t: Tiling, *, raw: bool = False) -> list[tuple[tuple, int]]:
    """The tiling's blocks as runs of repeated units (what :func:`program_cycles` skips)."""
    return _runs(list(_block_programs(cfg, t, raw)))


# A run of equal units looks for a repeating state among its first units only.
PERIOD_SEARCH = 64


def _repeat(timer: AccelTimer, step, count: int) -> int:
    """Run ``step`` (one unit of blocks, returning its latest event) ``count`` times; the
    latest event.

    Once the timer's state relative to the last dispatch (:meth:`AccelTimer.key`, the memo key
    that makes replay exact) repeats, the blocks between the two equal states repeat exactly,
    shifted in time, so the remaining whole periods are skipped in one step."""
    seen: dict[tuple, tuple[int, int]] = {}
    latest: list[int] = []
    end, i = NEVER, 0
    while i < count:
        if i < PERIOD_SEARCH and seen is not None:
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
    return end


def program_cycles(cfg: ArrayConfig, t: Tiling, *, dram_bytes_per_cycle: int | None = None,
                   raw: bool = False, blocks: list | None = None) -> int:
    """Cycles of the tiling's whole program (first dispatch .. last event), block-memoised and
    with runs of equal blocks skipped once periodic (:func:`_repeat`); ``blocks``: the
    (key, instructions) list of :func:`_block_programs`, if already built."""
    timer = AccelTimer(cfg, dram_bytes_per_cycle=dram_bytes_per_cycle)
    memo: dict[tuple, tuple] = {}
    end = NEVER

    def advance(key, run) -> int:
        """One memoised step: ``run()`` from the current state (returning the latest event),
        or replay a recorded one; returns the latest event's cycle."""
        ref = timer.last_dispatch
        state = (timer.key(), key)
        hit = memo.get(state)
        if hit is None:
            last = run()
            hit = memo[state] = (timer.key(), timer.last_dispatch - ref, last - ref)
        else:
            timer.restore(hit[0], ref + hit[1])
        return ref + hit[2]

    def run_insns(chunk) -> int:
        timer.end = NEVER
        timer.run(chunk)
        return timer.end

    def run_chunks(chunks) -> int:
        return max(advance(("chunk", cid), lambda chunk=chunk: run_insns(chunk))
                   for cid, chunk in chunks)

    def run_unit(unit) -> int:
        return max(advance(("block", bid), lambda chunks=chunks: run_chunks(chunks))
                   for _, _, (bid, chunks) in unit if chunks)

    blocks = blocks if blocks is not None else list(_block_programs(cfg, t, raw))
    for unit, count in _runs(blocks):
        if any(chunks for _, _, (_, chunks) in unit):
            end = max(end, _repeat(timer, lambda unit=unit: run_unit(unit), count))
    return end + 1


def tiling_counts(cfg: ArrayConfig, t: Tiling, *, raw: bool = False,
                  blocks: list | None = None) -> dict[str, int]:
    """The activity counters of the tiling's whole program (sums over blocks)."""
    per_block: dict[tuple, dict[str, int]] = {}
    total: dict[str, int] = {}
    blocks = blocks if blocks is not None else list(_block_programs(cfg, t, raw))
    for unit, count in _runs(blocks):
        for bkey, prog, _ in unit:
            counts = per_block.get(bkey)
            if counts is None:
                counts = per_block[bkey] = program_counts(cfg, prog)
            for name, value in counts.items():
                total[name] = total.get(name, 0) + value * count
    return total


def program_tiling(t: Tiling) -> Tiling:
    """``t`` with what its program does not depend on blanked: the exact K and column count
    (the instructions see only passes, column tiles, P blocks and groups) and the DRAM byte
    sizes of partial passes. Tilings with equal program tilings have equal programs, so equal
    cycles and counters; the memo key of :func:`layer_cost` (an LLM's decode steps, whose
    attention GEMMs grow by one token a step, share most programs)."""
    return dataclasses.replace(t, gemm=Gemm(p=t.gemm.p, k=1, cols=1, groups=t.gemm.groups),
                               k_slots=0, act_pass_bytes=0, act_last_pass_bytes=0)


def direct_cost(cfg: ArrayConfig, t: Tiling) -> LayerCost:
    """The cost of ``t``'s own program, with its multiplies required (no sharing between
    tilings; :func:`layer_cost` memoises by :func:`program_tiling`)."""
    blocks = list(_block_programs(cfg, t, raw=False))
    compute = program_cycles(cfg, t, blocks=blocks)
    total = program_cycles(cfg, t, dram_bytes_per_cycle=cfg.dram_bytes_per_cycle,
                           blocks=blocks)
    counts = tiling_counts(cfg, t, blocks=blocks)
    return LayerCost(cycles=Cycles(compute=compute, stall=total - compute),
                     actions=actions_from_counts(cfg, counts,
                                                 macs_required=_required_macs(t, cfg)),
                     tiles=t.tiles, beats=t.beats)


_program_cost = functools.lru_cache(maxsize=4096)(direct_cost)


def _tiling_cost(cfg: ArrayConfig, t: Tiling) -> LayerCost:
    cost = _program_cost(cfg, program_tiling(t))
    return dataclasses.replace(cost, actions=dataclasses.replace(
        cost.actions, macs_required=_required_macs(t, cfg)))


def layer_cost(schedule: LayerSchedule) -> LayerCost:
    """Cycles and actions of a scheduled layer (requantized int8 outputs); layers of the same
    shape and tiling are costed once."""
    return _tiling_cost(schedule.cfg, schedule.tiling)
