"""Cycle model of the accelerator: when each instruction of a program dispatches and finishes.

A recurrence over the instructions, a constant amount of work each: the same rules the RTL's
controller applies (:class:`sparsa.hw.accelerator.Accelerator`), with the array's tile timing
(:mod:`sparsa.sw.timing`). Instructions are always available. Cycle 0 is the cycle the first
instruction dispatches.

Off-chip memory: with ``dram_bytes_per_cycle=None`` the ``data_in`` stream always holds a beat and
``data_out`` is always ready. With a rate, each stream is a port of that many bytes per cycle,
modelled as a token bucket (:mod:`sparsa.sw.dram_port`; :class:`DramPort` is the rule the
testbenches' drivers apply cycle by cycle): a beat of ``B`` bytes can transfer in a cycle that
starts with at least ``B`` bytes of credit; each cycle adds ``rate`` bytes, up to ``cap`` = the
largest beat + ``rate`` (the port keeps at most one beat prefetched). A LOAD_ACT row costs its
real channels only (:func:`sparsa.isa.act_row_bytes`), so its beats vary in size; the other
beats are :func:`sparsa.isa.data_in_bytes` / ``data_out_bytes``. Reads (``data_in``) and writes
(``data_out``) are separate ports, as in AXI.

Engine rules (``d`` = dispatch cycle):

* in order, at most one instruction per cycle; CONFIG uses no engine and has no hazard;
* LOAD (``count`` beats): beats taken from ``d+1`` on, one per cycle at most (ideal: exactly
  ``d+1 .. d+count``); the next LOAD may dispatch in the cycle of the last beat; instructions
  with a hazard on its rows wait until the cycle after it (a STORE waits for a LOAD_SCALE);
* activation hazard tags: a LOAD_ACT waits while the feed engine is busy (until the last beat of
  the latest COMPUTE is taken) if that COMPUTE has the LOAD_ACT's tag; a COMPUTE waits while a
  LOAD_ACT of its tag is writing;
* row readers (PRELOAD, COMPUTE) read a row in cycle ``c`` and present it from ``c+1``;
  the next row is read in the cycle the presented one is taken; an engine takes its next
  instruction in the cycle its last row is read (a COMPUTE's padding beats are issued like
  rows, without reading);
* STORE reads its rows ahead through a pipelined requantizer into an output FIFO: a row read in
  cycle ``c`` is offered from ``c + 1 + STORE_STAGES``, and row ``j`` is read only once row
  ``j - STORE_CREDITS`` is output (:func:`_store`); it takes its next instruction in the cycle
  its last row is read;
* PRELOAD row ``r`` of tile ``k`` is taken at ``>= swap(k-1) + max(1, r + cols - 2)``; a swap (the
  first beat of a COMPUTE) is taken the cycle after its tile's last weight row;
* results leave the array ``latency`` cycles after their beat and are written at once;
* a COMPUTE waits while two earlier COMPUTEs still have results to write, and while the previous
  one writes rows it touches, unless it accumulates onto exactly those rows (a K chain): then its
  beat ``j`` is read only after row ``j`` was written.

**State.** :class:`TimerState` is frozen: one frozen dataclass per engine (:class:`LoadEngine`,
:class:`PreloadEngine`, :class:`FeedEngine`, :class:`StoreEngine`), the results in flight
(:class:`InFlight`) and the two ports (:class:`~sparsa.sw.dram_port.Port`). Each opcode has one
rule (:data:`RULES`): a pure function from the state and the instruction, as the rules read it
(:class:`Timed`), to the next state.

**Addresses.** The rules compare an instruction's scratchpad rows only with those of earlier
instructions fixed by program order (the latest PRELOAD, LOAD with beats, STORE with rows, the
last two COMPUTEs with beats), so the comparisons are worked out before timing, once per
program (:func:`annotate`, :class:`Addresses`): a :class:`Timed` holds their outcomes instead of
the addresses, and the state holds no address. Tiles that differ only in their weight slot or
accumulator region (a block's resident weights, its column tiles) time alike.

Fields that hold a cycle are marked (:func:`cycle`); :meth:`AccelTimer.key` is the state,
flattened into a tuple, with every such field made relative to the last dispatch, which is all
the future depends on (every rule compares times with a later dispatch cycle plus a bounded
offset), and :meth:`AccelTimer.restore` rebuilds it shifted back: both are derived from the
dataclasses, so a new field is part of the key by construction. Equal keys and equal timed
instructions give equal futures, so long programs made of repeated blocks are timed by
memoising blocks (:mod:`sparsa.sw.cost`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from typing import NamedTuple

from sparsa import isa
from sparsa.config import ArrayConfig
from sparsa.isa import LOADS, Instruction, Opcode

from .dram_port import DramPort, Port, Sizes, transfer
from .timing import array_timing

__all__ = ["ADDRESS_FIELDS", "RULES", "TIMED_FIELDS", "AccelTimer", "Addresses", "DramPort",
           "FeedEngine", "InFlight", "LoadEngine", "PreloadEngine", "ProgramTiming", "StoreEngine",
           "Timed", "TimerState", "annotate", "annotate_all", "beat_bytes", "cycle", "port_caps",
           "program_counts", "program_timing"]

NEVER = -(10**18)


def _overlap(a: int, na: int, b: int, nb: int) -> bool:
    return na > 0 and nb > 0 and a < b + nb and b < a + na


def port_caps(cfg: ArrayConfig, rate: int) -> tuple[int, int]:
    """Credit caps of the ``data_in`` and ``data_out`` ports: the largest beat plus ``rate``."""
    beat_in = max(isa.data_in_bytes(cfg, op) for op in LOADS)
    return beat_in + rate, isa.data_out_bytes(cfg, raw=True) + rate


@functools.lru_cache(maxsize=1024)
def _in_sizes(cfg: ArrayConfig, opcode: Opcode, channels: int, phase: int = 0) -> Sizes:
    """Bytes of the ``data_in`` beats of a LOAD (periodic per pixel for a LOAD_ACT of pixels of
    ``channels`` channels; a phase LOAD_WEIGHT's values only)."""
    if opcode == Opcode.LOAD_WEIGHT and phase:
        return Sizes.uniform(isa.weight_values_bytes(cfg))
    if opcode == Opcode.LOAD_ACT:
        blocks = isa.act_rows_per_pixel(cfg, channels)
        return Sizes(isa.act_row_bytes(cfg, channels, 0),
                     isa.act_row_bytes(cfg, channels, blocks - 1), blocks)
    return Sizes.uniform(isa.data_in_bytes(cfg, opcode))


def beat_bytes(cfg: ArrayConfig, program: Sequence[Instruction]) -> tuple[list[int], list[int]]:
    """Bytes of every ``data_in`` beat and every ``data_out`` row of ``program``, in order."""
    ins: list[int] = []
    outs: list[int] = []
    for i in program:
        if i.opcode in LOADS:
            sizes = _in_sizes(cfg, i.opcode, i.channels, i.phase)
            ins += [sizes.size(j) for j in range(1 if i.opcode == Opcode.LOAD_SCALE
                                                 else i.count)]
        elif i.opcode == Opcode.STORE:
            outs += [isa.data_out_bytes(cfg, i.raw)] * i.count
    return ins, outs


@dataclass(frozen=True)
class ProgramTiming:
    dispatch: list[int]     # dispatch cycle of each instruction
    out_cycles: list[int]   # cycle of each data_out row
    cycles: int             # first dispatch .. last data_out row (or last result written)


# ---- the state: frozen, one dataclass per engine ---------------------------------------------

def cycle(default: int | None = None):
    """A field that holds a cycle (None: never happened): shifted by :meth:`AccelTimer.key` and
    :meth:`AccelTimer.restore`."""
    return field(default=default, metadata={"cycle": True})


@dataclass(frozen=True)
class LoadEngine:
    free: int = cycle(0)        # earliest dispatch of the next LOAD
    last: int = cycle(NEVER)    # cycle of the latest LOAD's last beat
    kind: Opcode | None = None  # the latest LOAD with beats
    tag: int = 0                # its activation tag (LOAD_ACT)


@dataclass(frozen=True)
class PreloadEngine:
    """The PRELOAD engine and the array's weight side."""

    free: int = cycle(0)
    slot_free: int = cycle(0)           # the weight read register frees (last row taken)
    last_taken: int = cycle(NEVER)      # last row of the latest PRELOAD taken
    last_swap: int | None = cycle()     # the latest swap beat was taken
    shadow_ready: int | None = cycle()  # the next swap may be taken from here (None: no PRELOAD)


@dataclass(frozen=True)
class FeedEngine:
    free: int = cycle(0)
    slot_free: int = cycle(0)           # the act read register frees
    busy_until: int = cycle(NEVER)      # the latest beat is taken (busy until then)
    tag: int = 0                        # the latest COMPUTE's tag


@dataclass(frozen=True)
class InFlight:
    """A COMPUTE whose results are being written: its row ``j`` in cycle ``first_write + j``
    (its beats are taken in consecutive cycles: a chain only delays the first one, the rows it
    waits for are written one per cycle too)."""

    count: int
    first_write: int = cycle(0)

    @property
    def last_write(self) -> int:
        return self.first_write + self.count - 1


# Register stages from a STORE's accumulator read to ``data_out`` (the requantizer's four and
# the output FIFO), and the rows it may have read and not yet output: the RTL's
# ``sparsa.hw.engines.STORE_STAGES`` and ``STORE_CREDITS`` (the exactness tests hold them equal).
STORE_STAGES = 5
STORE_CREDITS = STORE_STAGES + 2


@dataclass(frozen=True)
class StoreEngine:
    """The STORE engine: the earliest dispatch of the next STORE (the latest one's last row is
    read) and the output handshakes of the last :data:`STORE_CREDITS` rows, ``last_out`` the
    latest (row ``j`` of a STORE is read only once row ``j - STORE_CREDITS`` is output)."""

    free: int = cycle(0)
    out7: int = cycle(NEVER)
    out6: int = cycle(NEVER)
    out5: int = cycle(NEVER)
    out4: int = cycle(NEVER)
    out3: int = cycle(NEVER)
    out2: int = cycle(NEVER)
    last_out: int = cycle(NEVER)

    @property
    def outs(self) -> tuple[int, ...]:
        """The last :data:`STORE_CREDITS` handshakes, oldest first."""
        return (self.out7, self.out6, self.out5, self.out4, self.out3, self.out2,
                self.last_out)


assert len(StoreEngine().outs) == STORE_CREDITS


@dataclass(frozen=True)
class TimerState:
    last_dispatch: int = cycle(-1)
    load: LoadEngine = LoadEngine()
    preload: PreloadEngine = PreloadEngine()
    feed: FeedEngine = FeedEngine()
    writes: tuple[InFlight, ...] = ()   # the last two COMPUTEs with beats
    store: StoreEngine = StoreEngine()
    din: Port | None = None             # the data_in / data_out ports (None: ideal)
    dout: Port | None = None


def _with(obj, **changes):
    """``dataclasses.replace`` without its per-call introspection (the rules' hot path; the
    states have no ``__post_init__``)."""
    new = object.__new__(type(obj))
    new.__dict__.update(obj.__dict__, **changes)
    return new


def _new(cls, **values):
    """``cls(**values)`` for a state class, every field given (the rules' hot path)."""
    new = object.__new__(cls)
    new.__dict__.update(values)
    return new


# How each field of a state class is keyed (:func:`_flatten`).
_VALUE, _CYCLE, _STATE, _STATES = range(4)


@functools.cache
def _plan(cls) -> tuple[tuple[str, int], ...]:
    """Each field of a state class and what it holds: a cycle, maybe a state (its default is a
    state or None), a tuple of states (its default is a tuple), or a plain value."""
    def kind(f) -> int:
        if f.metadata.get("cycle"):
            return _CYCLE
        if isinstance(f.default, tuple):
            return _STATES
        return _STATE if f.default is None or is_dataclass(f.default) else _VALUE
    return tuple((f.name, kind(f)) for f in fields(cls))


def _flatten(obj, delta: int, floor: int | None, out: list) -> None:
    """Append ``obj``'s fields in order to ``out``, every cycle moved by ``delta`` (None stays
    None; at least ``floor``); a nested state after its class, a tuple of states after its
    length (what :func:`_unflatten` reads back)."""
    values = obj.__dict__
    for name, kind in _plan(type(obj)):
        value = values[name]
        if kind == _CYCLE:
            if value is not None:
                value += delta
                if floor is not None and value < floor:
                    value = floor
            out.append(value)
        elif kind == _STATES:
            out.append(len(value))
            for v in value:
                out.append(type(v))
                _flatten(v, delta, floor, out)
        elif kind == _STATE and hasattr(value, "__dataclass_fields__"):
            out.append(type(value))
            _flatten(value, delta, floor, out)
        else:
            out.append(value)


def _unflatten(cls, items: tuple, at: int, delta: int):
    """The ``cls`` state :func:`_flatten` put at ``items[at:]``, every cycle moved by
    ``delta``; and the position after it."""
    values = {}
    for name, kind in _plan(cls):
        value = items[at]
        at += 1
        if kind == _CYCLE:
            if value is not None:
                value += delta
        elif kind == _STATES:
            states = []
            for _ in range(value):
                state, at = _unflatten(items[at], items, at + 1, delta)
                states.append(state)
            value = tuple(states)
        elif kind == _STATE and isinstance(value, type):
            value, at = _unflatten(value, items, at, delta)
        values[name] = value
    return _new(cls, **values), at


# ---- what the rules read of an instruction: its timed fields and its address hazards ------

# The instruction fields the rules read, per opcode, besides the scratchpad addresses (the
# others, such as the im2col walk's, only decide which rows are read).
TIMED_FIELDS: dict[Opcode, tuple[str, ...]] = {
    Opcode.LOAD_ACT: ("count", "channels", "tag"),
    Opcode.LOAD_WEIGHT: ("count", "phase"),
    Opcode.LOAD_ACC: ("count",),
    Opcode.LOAD_SCALE: (),
    Opcode.PRELOAD: (),
    Opcode.COMPUTE: ("count", "accumulate", "tag"),
    Opcode.STORE: ("count", "raw"),
    Opcode.CONFIG: (),
}
# The address fields the hazards are worked out from (:func:`annotate`).
ADDRESS_FIELDS: dict[Opcode, tuple[str, ...]] = {
    Opcode.LOAD_WEIGHT: ("addr",), Opcode.PRELOAD: ("addr",), Opcode.COMPUTE: ("acc_addr",),
    Opcode.STORE: ("acc_addr",),
}


class Timed(NamedTuple):
    """An instruction as the rules read it: its :data:`TIMED_FIELDS`, and instead of its
    scratchpad addresses the hazards they raise with earlier instructions. Which earlier
    instruction a rule compares addresses with (the latest PRELOAD, the latest LOAD with beats,
    the latest STORE with rows, the last two COMPUTEs with beats) is fixed by program order, not
    by timing, so the hazards are worked out once per program (:func:`annotate`) and
    instructions that agree on a :class:`Timed` time alike whatever their addresses. A new
    field a rule reads goes here, into :data:`TIMED_FIELDS` and into :func:`annotate` (a test
    checks the three agree)."""

    opcode: Opcode
    count: int = 0
    channels: int = 0
    tag: int = 0
    accumulate: bool = False
    raw: bool = False
    on_preload: bool = False  # LOAD_WEIGHT: its rows overlap the latest PRELOAD's
    on_load: bool = False     # PRELOAD: the latest LOAD with beats is a LOAD_WEIGHT of its rows
    on_store: bool = False    # COMPUTE: its rows overlap the latest STORE's
    on_last: bool = False     # COMPUTE, STORE: overlap the latest COMPUTE's rows
    chain: bool = False       # COMPUTE: accumulates onto exactly the latest COMPUTE's rows
    on_before: bool = False   # STORE: overlaps the rows of the COMPUTE before the latest
    phase: int = 0            # LOAD_WEIGHT: a dense phase's + 1 (values-only beats), else 0


class Addresses(NamedTuple):
    """The scratchpad rows ``(base, count)`` the hazards compare with: of the latest LOAD with
    beats if it is a LOAD_WEIGHT, the latest PRELOAD, the latest STORE with rows and the last two
    COMPUTEs with beats."""

    weight_load: tuple[int, int] = (0, 0)
    preload: tuple[int, int] = (0, 0)
    store: tuple[int, int] = (0, 0)
    writes: tuple[tuple[int, int], ...] = ()


def annotate(rows: int, at: Addresses, insn: Instruction) -> tuple[Timed, Addresses]:
    """``insn`` as the rules read it after the instructions that left ``at``, and the addresses
    after it (``rows``: the array's, a PRELOAD's row count)."""
    op, count = insn.opcode, insn.count
    weight_load, preload, store, writes = at
    if op == Opcode.COMPUTE:
        own, last = (insn.acc_addr, count), writes[-1] if writes else (0, 0)
        timed = Timed(op, count, 0, insn.tag, insn.accumulate, False, False, False,
                      _overlap(*own, *store), _overlap(*own, *last),
                      insn.accumulate and own == last)
        return timed, (Addresses(weight_load, preload, store, (*writes[-1:], own)) if count
                       else at)
    if op == Opcode.PRELOAD:
        own = (insn.addr, rows)
        return (Timed(op, 0, 0, 0, False, False, False, _overlap(*own, *weight_load)),
                Addresses(weight_load, own, store, writes))
    if op == Opcode.LOAD_WEIGHT:
        own = (insn.addr, count)
        timed = Timed(op, count, 0, 0, False, False, _overlap(*own, *preload),
                      phase=insn.phase)
        return timed, (Addresses(own, preload, store, writes) if count else at)
    if op in LOADS:
        timed = Timed(op, count, insn.channels, insn.tag)
        return timed, (Addresses((0, 0), preload, store, writes)
                       if count or op == Opcode.LOAD_SCALE else at)
    if op == Opcode.STORE:
        own, w = (insn.acc_addr, count), ((0, 0), (0, 0), *writes)
        timed = Timed(op, count, 0, 0, False, insn.raw, False, False, False,
                      _overlap(*own, *w[-1]), False, _overlap(*own, *w[-2]))
        return timed, (Addresses(weight_load, preload, own, writes) if count else at)
    return Timed(op), at


def annotate_all(rows: int, at: Addresses, program: Sequence[Instruction]
                 ) -> tuple[tuple[Timed, ...], Addresses]:
    """:func:`annotate` over ``program``: its timed instructions and the addresses after it."""
    out = []
    for insn in program:
        timed, at = annotate(rows, at, insn)
        out.append(timed)
    return tuple(out), at


# ---- the rules: one per opcode, (params, state, instruction) -> next state -----------------

@dataclass(frozen=True)
class Params:
    """What the rules read besides the state: the configuration and the ports' rate."""

    cfg: ArrayConfig
    rows: int
    cols: int
    latency: int
    rate: int | None
    caps: tuple[int, int]
    # Hooks for a model that owns the memory port (:mod:`sparsa.sw.top_timing`); None: the
    # ports above. ``arrivals(d, count)``: the cycle of the last data_in beat of the LOAD being
    # timed, dispatched at ``d``; ``outputs(d, offer, count)``: the handshake cycles of the
    # STORE's rows (an object with ``at(j)``), dispatched at ``d``, its first row offered from
    # ``offer`` and each later one the cycle after the previous handshake.
    arrivals: Callable[[int, int], int] | None = None
    outputs: Callable[[int, int, int], object] | None = None
    # The beat sizes of each kind of LOAD met so far (:func:`_in_sizes` of this configuration,
    # looked up without hashing it at every LOAD).
    sizes: dict = field(default_factory=dict, compare=False, repr=False)


class Event(NamedTuple):
    """A rule's result: the next state (its ``last_dispatch`` is the dispatch cycle), the latest
    event it schedules (a load beat, a result written, an output row; NEVER for none) and the
    cycles of its output rows (a STORE's, when traced)."""

    state: TimerState
    end: int = NEVER
    outs: tuple[int, ...] = ()


def _in_beats(p: Params, s: TimerState, insn: Instruction, first: int, count: int
              ) -> tuple[int, Port | None]:
    """Cycle of the last of ``count`` data_in beats offered from ``first``, and the port."""
    if p.arrivals is not None:
        return p.arrivals(first - 1, count), s.din
    if p.rate is None:
        return first + count - 1, None
    port = s.din
    kind = (insn.opcode, insn.channels, insn.phase)
    sizes = p.sizes.get(kind)
    if sizes is None:
        sizes = p.sizes[kind] = _in_sizes(p.cfg, *kind)
    last, t, c = _load_beats(p.rate, p.caps[0], port.credit_at(first, p.rate, p.caps[0]), count,
                             sizes)
    return first + last, _new(Port, t=first + t, c=c)


@functools.lru_cache(maxsize=4096)
def _load_beats(rate: int, cap: int, credit: int, count: int, sizes: Sizes
                ) -> tuple[int, int, int]:
    """A LOAD's beats offered from cycle 0 with ``credit``: the last one's cycle, and the port
    after it (cached: blocks repeat the same loads from the same credit)."""
    beats, port = transfer(Port(0, credit), 0, count, sizes, rate, cap)
    return beats.at(count - 1), port.t, port.c


def _load(p: Params, s: TimerState, insn: Timed, trace: bool) -> Event:
    op, ld = insn.opcode, s.load
    d = max(s.last_dispatch + 1, ld.free)
    if op == Opcode.LOAD_ACT and s.feed.tag == insn.tag:
        d = max(d, s.feed.busy_until + 1)
    if op == Opcode.LOAD_WEIGHT and insn.on_preload:
        d = max(d, s.preload.last_taken + 1)
    if op == Opcode.LOAD_ACC:
        if s.writes:
            d = max(d, s.writes[-1].last_write + 1)
        d = max(d, s.store.last_out + 1)
    if op == Opcode.LOAD_SCALE:
        d = max(d, s.store.last_out + 1)
    count = 1 if op == Opcode.LOAD_SCALE else insn.count
    if not count:
        return Event(_with(s, last_dispatch=d))
    last, din = _in_beats(p, s, insn, d + 1, count)
    load = _new(LoadEngine, free=last, last=last, kind=op, tag=insn.tag)
    return Event(_with(s, last_dispatch=d, load=load, din=din or s.din), end=last)


def _preload(p: Params, s: TimerState, insn: Timed, trace: bool) -> Event:
    """Row ``r`` is read in cycle ``x_r`` (``x_0 = read``) and taken in ``x_{r+1} = max(x_r + 1,
    swap + max(1, r + cols - 2))``, so ``x_k = max(read + k, swap + k - 1 + max(1, cols - 2))``
    (the bound's slope in ``r`` is at most 1: its largest term is the first row's)."""
    pre, ld = s.preload, s.load
    d = max(s.last_dispatch + 1, pre.free)
    if insn.on_load and d <= ld.last:
        d = max(d, ld.last + 1)
    read = max(d + 1, pre.slot_free)
    rows, swap = p.rows, pre.last_swap
    if swap is None:
        taken, prev = read + rows, read + rows - 1
    else:
        lag = swap - 1 + max(1, p.cols - 2)
        taken = max(read + rows, lag + rows)
        prev = max(read + rows - 1, lag + rows - 1) if rows > 1 else read
    # the next row is read in the cycle the one before it is taken
    pre = _with(pre, free=prev, slot_free=taken, last_taken=taken, shadow_ready=taken + 1)
    return Event(_with(s, last_dispatch=d, preload=pre))


def _compute_dispatch(s: TimerState, insn: Timed) -> tuple[int, int | None]:
    """A COMPUTE's dispatch cycle, and the cycle its chain dependency writes its row 0 (then one
    row per cycle; None: no gating)."""
    d = max(s.last_dispatch + 1, s.feed.free)
    ld = s.load
    if ld.kind == Opcode.LOAD_ACC or (ld.kind == Opcode.LOAD_ACT and ld.tag == insn.tag):
        d = max(d, ld.last + 1)
    if insn.on_store:
        d = max(d, s.store.last_out + 1)
    if len(s.writes) >= 2:
        d = max(d, s.writes[-2].last_write + 1)   # at most two pending
    if s.writes:
        prev = s.writes[-1]
        if d <= prev.last_write and insn.on_last:
            if not insn.chain:
                d = max(d, prev.last_write + 1)
            elif prev.last_write != d:   # a K chain; popped in the dispatch cycle: no gating
                return d, prev.first_write
    return d, None


def _compute(p: Params, s: TimerState, insn: Timed, trace: bool) -> Event:
    d, gate = _compute_dispatch(s, insn)
    feed, pre = s.feed, s.preload
    if not insn.count:
        return Event(_with(s, last_dispatch=d, feed=_with(feed, tag=insn.tag)))
    if pre.shadow_ready is None:
        raise ValueError("COMPUTE without a PRELOAD since the previous COMPUTE")
    read = max(d + 1, feed.slot_free)
    if gate is not None:
        read = max(read, gate + 1)
    first = max(read + 1, pre.shadow_ready)      # the swap beat is taken
    last_taken = first + insn.count - 1
    done = _new(InFlight, count=insn.count, first_write=first + p.latency)
    # the last row is read in the cycle the one before it is taken
    feed = _new(FeedEngine, free=read if insn.count == 1 else last_taken - 1,
                slot_free=last_taken, busy_until=max(feed.busy_until, last_taken), tag=insn.tag)
    return Event(_with(s, last_dispatch=d, feed=feed, writes=(*s.writes[-1:], done),
                       preload=_with(pre, last_swap=first, shadow_ready=None)),
                 end=done.last_write)


class _Ideal:
    """Beats of an ideal stream: one per cycle from ``first``."""

    def __init__(self, first: int):
        self.first = first

    def at(self, j: int) -> int:
        return self.first + j


def _store(p: Params, s: TimerState, insn: Timed, trace: bool) -> Event:
    """Row ``j`` (``j`` counted over all STOREs' rows, handshake ``h_j``) is read in cycle
    ``r_j = max(r_{j-1} + 1, h_{j-C} + 1)`` (C = :data:`STORE_CREDITS`; a STORE's first row from
    ``d + 1``) and offered from ``max(r_j + 1 + STORE_STAGES, h_{j-1} + 1)``. As ``C`` is two
    more than the stages, only the first row's offer is not the cycle after the previous
    handshake: ``max(d + 2 + STORE_STAGES, h_{-1} + 1)``; and as ``h_j - j`` never decreases,
    the last row is read in ``max(d + n, h_{n-1-C} + 1)``."""
    st = s.store
    d = max(s.last_dispatch + 1, st.free)
    if s.load.kind in (Opcode.LOAD_ACC, Opcode.LOAD_SCALE):
        d = max(d, s.load.last + 1)
    # the COMPUTE before the latest, then the latest (both with beats)
    for w, hit in zip(s.writes, (insn.on_before, insn.on_last)[2 - len(s.writes):],
                      strict=True):
        if d <= w.last_write and hit:
            d = max(d, w.last_write + 1)
    n = insn.count
    if not n:
        return Event(_with(s, last_dispatch=d))
    offer = max(d + 2 + STORE_STAGES, st.last_out + 1)
    if p.outputs is not None:
        beats, dout = p.outputs(d, offer, n), s.dout
    elif p.rate is None:
        beats, dout = _Ideal(offer), None
    else:
        beats, dout = transfer(s.dout, offer, n,
                               Sizes.uniform(isa.data_out_bytes(p.cfg, insn.raw)), p.rate,
                               p.caps[1])
    at = beats.at
    k = n - 1 - STORE_CREDITS
    # the next STORE is taken in the cycle the last row is read
    free = max(d + n, (at(k) if k >= 0 else st.outs[k]) + 1)
    outs = (*st.outs, *(at(j) for j in range(max(0, n - STORE_CREDITS), n)))
    st = _new(StoreEngine, free=free, out7=outs[-7], out6=outs[-6], out5=outs[-5],
              out4=outs[-4], out3=outs[-3], out2=outs[-2], last_out=outs[-1])
    return Event(_with(s, last_dispatch=d, store=st, dout=dout), end=outs[-1],
                 outs=tuple(at(j) for j in range(n)) if trace else ())


def _config(p: Params, s: TimerState, insn: Timed, trace: bool) -> Event:
    return Event(_with(s, last_dispatch=s.last_dispatch + 1))


Rule = Callable[[Params, TimerState, Timed, bool], Event]
RULES: dict[Opcode, Rule] = {
    Opcode.LOAD_ACT: _load, Opcode.LOAD_WEIGHT: _load, Opcode.LOAD_ACC: _load,
    Opcode.LOAD_SCALE: _load, Opcode.PRELOAD: _preload, Opcode.COMPUTE: _compute,
    Opcode.STORE: _store, Opcode.CONFIG: _config,
}
assert set(RULES) == set(Opcode)


# ---- the timer ------------------------------------------------------------------------------

class AccelTimer:
    """The cycle recurrence, one instruction at a time (:meth:`step`) over a frozen
    :class:`TimerState` (:attr:`state`). ``end`` is the latest event so far (not part of the
    state: callers may reset it to time a part of a program)."""

    def __init__(self, cfg: ArrayConfig, *, dram_bytes_per_cycle: int | None = None,
                 trace: bool = False):
        t = array_timing(cfg)
        rate = dram_bytes_per_cycle
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int) or rate < 1):
            raise ValueError(f"dram_bytes_per_cycle must be a positive integer or None, "
                             f"not {rate!r}")
        caps = port_caps(cfg, rate or 1)
        self.params = Params(cfg=cfg, rows=cfg.rows, cols=cfg.cols, latency=t.latency,
                             rate=rate, caps=caps)
        # Times further back than this behave like NEVER in every rule (see key()).
        self.horizon = 2 * (cfg.rows + cfg.cols + t.latency) + 8
        self.state = TimerState() if rate is None else \
            TimerState(din=Port(0, caps[0]), dout=Port(0, caps[1]))
        self.trace = trace
        self.addresses = Addresses()    # what the next instruction's hazards compare with
        self._keyed: TimerState | None = None   # the state key() was last taken of, and its key
        self._key: tuple | None = None
        self.dispatch: list[int] = []
        self.out_cycles: list[int] = []
        self.end = NEVER            # latest event: a load beat, a result written, an output row
        self.steps = 0              # instructions dispatched

    @property
    def last_dispatch(self) -> int:
        return self.state.last_dispatch

    @property
    def cycles(self) -> int:
        return self.end + 1

    def step(self, insn: Instruction) -> int:
        """Dispatch one instruction; returns its dispatch cycle."""
        if insn.opcode not in RULES:
            raise ValueError(f"unknown opcode {insn.opcode!r}")
        timed, self.addresses = annotate(self.params.rows, self.addresses, insn)
        return self.step_timed(timed)

    def step_timed(self, insn: Timed) -> int:
        """Dispatch one instruction given as the rules read it (:func:`annotate`)."""
        try:
            event = RULES[insn.opcode](self.params, self.state, insn, self.trace)
        except ValueError as e:
            raise ValueError(f"instruction {self.steps}: {e}") from None
        self.steps += 1
        self.state = event.state
        if event.end > self.end:
            self.end = event.end
        if self.trace:
            self.dispatch.append(event.state.last_dispatch)
            self.out_cycles += event.outs
        return event.state.last_dispatch

    def run(self, program: Sequence[Instruction]) -> None:
        for insn in program:
            self.step(insn)

    def run_timed(self, program: Sequence[Timed]) -> None:
        """:meth:`step_timed` over ``program`` (the cost model's inner loop)."""
        if self.trace:
            for insn in program:
                self.step_timed(insn)
            return
        params, state, end = self.params, self.state, self.end
        try:
            for insn in program:
                event = RULES[insn.opcode](params, state, insn, False)
                state = event.state
                if event.end > end:
                    end = event.end
                self.steps += 1
        except ValueError as e:
            raise ValueError(f"instruction {self.steps}: {e}") from None
        finally:
            self.state, self.end = state, end

    # -- state relative to the last dispatch -------------------------------------------------

    def key(self) -> tuple:
        """The state relative to the last dispatch cycle ``ref``, as a flat hashable tuple:
        times older than the horizon collapse to one value (every rule compares a time ``x``
        with a later dispatch via ``x + k >= d`` for a bounded ``k``), results written before it
        are dropped, results still being written keep their exact start, and the ports' credit
        is rolled forward to ``ref`` (no beat moves before the next dispatch). Not the running
        ``end``, nor the :class:`Addresses` (program-order facts: :attr:`addresses`). Derived
        from the state's dataclasses: a new field is part of the key by construction."""
        s, p = self.state, self.params
        if self._keyed is s:
            return self._key
        ref, lo = s.last_dispatch, -self.horizon
        ports = {}
        for name, cap in (("din", p.caps[0]), ("dout", p.caps[1])):
            port = getattr(s, name)
            if port is not None and port.t < ref:
                ports[name] = _new(Port, t=ref, c=port.credit_at(ref, p.rate, cap))
        out: list = []
        _flatten(_with(s, writes=(), **ports), -ref, lo, out)
        # A write still in flight keeps its exact start: its last row's cycle is derived from
        # it (first_write + count - 1), so clamping it would move that row into the future.
        writes: list = []
        for w in s.writes:
            if w.last_write - ref > lo:
                _flatten(w, -ref, None, writes)
        key = (tuple(out), tuple(writes))
        self._keyed, self._key = s, key
        return key

    def restore(self, key: tuple, ref: int) -> None:
        """Set the state to ``key`` with the last dispatch at ``ref`` (a state equivalent to the
        one :meth:`key` was taken from, shifted; the addresses are left as they are)."""
        state, _ = _unflatten(TimerState, key[0], 0, ref)
        writes, at = [], 0
        while at < len(key[1]):
            write, at = _unflatten(InFlight, key[1], at, ref)
            writes.append(write)
        self.state = _with(state, writes=tuple(writes))
        self._keyed, self._key = self.state, key   # key() of a restored state is its key


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
    cycle counts): beats, MACs issued and scratchpad reads/writes, read off the instructions
    (``act_reads`` counts every beat fed, padding beats of the im2col walk included)."""
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
