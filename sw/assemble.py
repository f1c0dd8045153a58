"""From the scheduler's program to accelerator instructions and data beats.

:func:`block_instructions` walks the operations :func:`sparsa.sw.schedule.iter_block_ops` yields
for each block of a tiled layer, gives every operation its scratchpad addresses and walk fields
and turns it into :mod:`sparsa.isa` instructions (with STOREs deferred, see there);
:func:`assemble_layer` packs the layer's real int8 data into ``data_in`` beats beside them, and
the cost model (:mod:`sparsa.sw.cost`) costs the same instructions. Pure Python/NumPy: no
Amaranth.

Data, in the order the instructions consume it:

* activations: NHWC pixel rows (:mod:`sparsa.im2col`), ``C_blocks`` rows of ``K_pass``
  channels per pixel, the last block zero-padded; a LOAD_ACT carries whole pixels (a sliced
  layer's, one channel block of each);
* weights: the tile of (K pass, column tile), K pass = (kernel offset, channel block, phase):
  the weights of the block's channels at that offset (zero for padded channels and for channels
  of another group: block-diagonal), packed N:M, or for a dense layer on sparse hardware the
  phase's lanes with fixed indices (:func:`weight_tile`);
* LOAD_SCALE rows: the column tile's multipliers, shifts and biases (zero for padded columns).

Scratchpad allocation (:class:`~sparsa.sw.tiling.Tiling`): activation rows by
:meth:`~sparsa.sw.tiling.Tiling.act_base` and :meth:`~sparsa.sw.tiling.Tiling.slice_base` (the
activation modes of :mod:`sparsa.sw.tiling`), weight slots of ``rows`` rows as the operations
name them, and one accumulator region of ``p_block`` rows per column tile of the block, in two
sets that alternate between consecutive blocks or one (:attr:`~sparsa.sw.tiling.Tiling.
acc_sets`). The hardware checks the hazards between engines (activation regions by
their tags); the allocation only keeps a region alive until the last instruction that reads it
has been issued, which these rules do.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from sparsa import im2col, isa, nm
from sparsa.config import ADDR_BITS, ArrayConfig
from sparsa.isa import Instruction, Opcode
from sparsa.models.graph import Gemm

from . import timing
from .accel_timing import ADDRESS_FIELDS, TIMED_FIELDS
from .lower import Lowering
from .memory_layout import LayerMemory, addressed_program
from .ops import Compute, LoadActs, LoadWeights, Op, PreloadWeights, Store
from .schedule import Block, BlockWalk, Tiling, iter_blocks, load_plan, schedule_gemm

__all__ = ["AssembledGemm", "AssembledLayer", "assemble_gemm", "assemble_layer",
           "block_instructions", "block_view", "gemm_instructions", "host_input", "layer_weights",
           "program_pairs", "shifted", "store_delay", "timing_view", "view_key", "weight_tile"]

_MASK = (1 << ADDR_BITS) - 1


@dataclass(frozen=True)
class AssembledLayer:
    """Instructions and data of one layer, and where each STORE's rows belong."""

    program: list[Instruction]
    data_in: list[int]
    stores: list[tuple[slice, slice]]   # (output pixels, output columns) of each STORE
    tiling: Tiling
    p: int
    cols: int
    memory: LayerMemory | None = None   # in_memory: where the program and tensors live

    def collect(self, rows: list[np.ndarray]) -> np.ndarray:
        """Reassemble the ``data_out`` rows into the ``(P, cols)`` result (P in ``(n, oy, ox)``
        order)."""
        out = np.zeros((self.p, self.cols), dtype=np.int64)
        at = 0
        for p_sl, c_sl in self.stores:
            n = p_sl.stop - p_sl.start
            block = np.array(rows[at:at + n], dtype=np.int64).reshape(n, -1)
            out[p_sl, c_sl] = block[:, : c_sl.stop - c_sl.start]
            at += n
        if at != len(rows):
            raise ValueError(f"expected {at} output rows, got {len(rows)}")
        return out


AssembledGemm = AssembledLayer

# Instructions repeat (a few addresses, a few counts): build each distinct one once.
_insn = functools.lru_cache(maxsize=1 << 16)(Instruction)


@functools.lru_cache(maxsize=1 << 16)
def timing_view(insn: Instruction) -> Instruction:
    """``insn`` with only the fields the cycle model reads
    (:data:`sparsa.sw.accel_timing.TIMED_FIELDS`, and the scratchpad addresses its hazards are
    worked out from, :data:`~sparsa.sw.accel_timing.ADDRESS_FIELDS`; the others, the im2col
    walk's and activation addresses, only decide which rows are read). A LOAD_WEIGHT's
    ``phase`` becomes 1 for any dense phase: the rules read only whether its beats are values
    only."""
    names = TIMED_FIELDS[insn.opcode] + ADDRESS_FIELDS.get(insn.opcode, ())
    fields = {f: getattr(insn, f) for f in names}
    if "phase" in fields:
        fields["phase"] = min(fields["phase"], 1)
    return Instruction(insn.opcode, **fields)


def view_key(tiling: Tiling, block: Block) -> tuple:
    """Everything the timing views of :func:`block_instructions` depend on besides the tiling
    and the carried stores (the im2col walk's fields and activation addresses aside)."""
    t, i = tiling, block.index
    if t.sliced:    # every slice is loaded alike: by this block's and the next block's sizes
        nxt = t.block_beats(t.locate(i + 1)[2]) if i + 1 < t.blocks else None
        loads: tuple = ("sliced", t.block_beats(block.p_block), nxt)
    else:
        plan = load_plan(t, block, t.block_tile_count(block.col_block))
        loads = tuple((slot, op.pixels, op.tag) for slot in sorted(plan) for op in plan[slot])
    weights = None if t.weights_resident else t.weight_loads_before(i) % 2
    cols = block.col_block if t.low.groups > 1 else t.block_cols(block.col_block)
    # what the block's index reaches besides: its accumulator set, and its hazard tags (a
    # sliced layer's: its first slice's; the other slices' and the next block's follow)
    tag = t.slice_load(i, 0) % 2 if t.sliced else t.block_tag(i)
    return (t.block_beats(block.p_block), block.p_block == 0, cols, i % t.acc_sets, tag,
            i == 0, loads, weights)


# A STORE (with its LOAD_SCALE) waiting to be emitted: (instruction, its operation, COMPUTEs
# emitted since).
Held = tuple[Instruction, Op, int]


def _acc_base(t: Tiling, block: Block, col_tile: int) -> int:
    """The first accumulator row of ``col_tile``'s results in ``block`` (in the block's
    accumulator set)."""
    return ((block.index % t.acc_sets) * t.col_block + col_tile % t.col_block) * t.p_block


def _store_insns(cfg: ArrayConfig, t: Tiling, block: Block, op: Store, raw: bool, relu: bool,
                 view: bool) -> Iterator[tuple[Instruction, Op]]:
    """A STORE operation's instructions: its LOAD_SCALE (when it loads one), then the STORE
    (``view``: their timing views)."""
    if op.scale:
        yield _insn(Opcode.LOAD_SCALE), op
    columns = 0 if view else min(cfg.cols, t.low.cols - op.col_tile * cfg.cols)
    yield _insn(Opcode.STORE, acc_addr=_acc_base(t, block, op.col_tile), count=op.beats,
                raw=raw, relu=relu and not view, channels=columns), op


def _natural(cfg: ArrayConfig, walk: BlockWalk, start: int, stop: int, raw: bool, relu: bool,
             view: bool) -> Iterator[tuple[Instruction, Op]]:
    """The instructions of the block's tiles ``start .. stop - 1`` in the scheduler's operation
    order (``view``: their timing views)."""
    t, block = walk.t, walk.block
    rows, cb = cfg.rows, t.c_blocks
    kp, channels = cfg.k_per_pass, t.low.geom.channels

    for op in walk.ops(start, stop):
        kind = type(op)
        if kind is Compute:
            walk_fields = () if view else tuple(im2col.compute_fields(
                cfg, t.walk_geom, base=op.base, first=op.first,
                offset=divmod(op.offset, t.walk_geom.kernel[1]),
                block=0 if t.sliced else op.block).items())
            yield _compute(_acc_base(t, block, op.col_tile), op.beats, op.accumulate, op.tag,
                           walk_fields), op
        elif kind is PreloadWeights:
            yield _insn(Opcode.PRELOAD, addr=op.slot * rows), op
        elif kind is LoadWeights:
            phase = t.low.load_phase(op.k_pass)    # a view: whether values only
            yield _insn(Opcode.LOAD_WEIGHT, addr=op.slot * rows, count=rows,
                        phase=min(phase, 1) if view else phase), op
        elif kind is Store:
            yield from _store_insns(cfg, t, block, op, raw, relu, view)
        elif kind is LoadActs:
            if op.slice is None:
                base, rows_px, real = t.act_base(op.block), cb, channels
            else:
                base, rows_px = t.slice_base(op.block, op.slice), 1
                real = min(kp, channels - op.slice * kp)
            addr = 0 if view else \
                ((base + op.first * rows_px) & _MASK) % cfg.scratchpad_rows["act"]
            insn = _insn(Opcode.LOAD_ACT, addr=addr, count=op.pixels * rows_px, channels=real,
                         tag=op.tag, pixels=op.pixels)
            yield (timing_view(insn) if view else insn), op
        else:
            yield (_insn(Opcode.CONFIG) if view else
                   im2col.config_instruction(cfg, t.walk_geom)), op


@functools.lru_cache(maxsize=1 << 16)
def _compute(acc_addr: int, count: int, accumulate: bool, tag: int,
             walk: tuple[tuple[str, int], ...]) -> Instruction:
    return Instruction(Opcode.COMPUTE, acc_addr=acc_addr, count=count, accumulate=accumulate,
                       tag=tag, **dict(walk))


class _Deferral:
    """The deferred STOREs of :func:`block_instructions`: :meth:`push` passes the block's
    instructions in their natural order and emits them, each held STORE (with its LOAD_SCALE)
    where it is due. :attr:`held` holds ``(instruction, operation, COMPUTEs pushed when it
    was held)``, oldest first (so the COMPUTEs since, :meth:`carried`, never increase along
    it); :attr:`computes` counts the COMPUTEs pushed (and tiles skipped)."""

    def __init__(self, cfg: ArrayConfig, tiling: Tiling, carry: tuple[Held, ...]):
        self.computes = 0
        self.held = [(i, o, -n) for i, o, n in carry]
        self.delay, self.space, self.limit = store_delay(cfg, tiling)
        self.since = self.space     # tiles since the last STORE was emitted
        self.emitted = False        # this tile's chance to emit one has passed

    def carried(self) -> tuple[Held, ...]:
        """The held instructions with the COMPUTEs since each was held."""
        return tuple((i, o, self.computes - at) for i, o, at in self.held)

    def push(self, insn: Instruction, op: Op, out: list[tuple[Instruction, Op]]) -> None:
        if insn.opcode in (Opcode.LOAD_SCALE, Opcode.STORE):
            self.held.append((insn, op, self.computes))
            return
        if insn.opcode in (Opcode.PRELOAD, Opcode.LOAD_ACT) and self.held and not self.emitted:
            out += self.due()
        out.append((insn, op))
        if insn.opcode == Opcode.COMPUTE:
            self.computes += 1
            self.since, self.emitted = self.since + 1, False

    def due(self) -> list[tuple[Instruction, Op]]:
        """The tile's check (at its first PRELOAD or LOAD_ACT): the held instructions due
        now, no longer held (the oldest ones: those held ``limit - 1`` COMPUTEs or more, else
        the oldest STORE with its LOAD_SCALE once ``delay - 1`` and ``space`` allow)."""
        held, done = self.held, self.computes
        if done - held[0][2] >= self.limit - 1:
            due = [h for h in held if done - h[2] >= self.limit - 1]
        elif done - held[0][2] >= self.delay - 1 and self.since >= self.space:
            due = [h for h in held[:2] if h[1] is held[0][1]]   # its LOAD_SCALE and STORE
        else:
            due = []
        if due:
            self.held = held[len(due):]
            self.since = 0
        self.emitted = True
        return [(i, o) for i, o, _ in due]

    def quiet(self) -> int:
        """Tiles that can pass, from a tile's start, before a STORE is due (each tile checks
        once, at its first PRELOAD or LOAD_ACT; the held STOREs and ``since`` count its COMPUTE
        after): the tiles' checks with ``n`` and ``since`` grown by one each."""
        if not self.held:
            return 1 << 62
        n = self.computes - self.held[0][2]     # the oldest: the most COMPUTEs since held
        return min(max(0, self.limit - 1 - n), max(0, self.delay - 1 - n, self.space - self.since))

    def skip(self, tiles: int) -> None:
        """As :meth:`push` of ``tiles`` tiles that hold no STORE and emit none (at most
        :meth:`quiet`)."""
        self.computes += tiles
        self.since, self.emitted = self.since + tiles, False


def block_instructions(cfg: ArrayConfig, tiling: Tiling, block: Block, *,
                       carry: tuple[Held, ...] = (), raw: bool = False, relu: bool = False,
                       view: bool = False
                       ) -> tuple[list[tuple[Instruction, Op]], tuple[Held, ...]]:
    """The instructions of one block, each with the scheduler operation it comes from, and the
    stores still held at its end (pass them as ``carry`` to the next block; emit them after the
    last block). ``view``: the instructions' timing views (:func:`timing_view`), without the
    walk's fields and activation addresses (what the cost model times).

    Deferred stores: the controller dispatches in order, and a STORE waits until its results
    are written (``latency`` cycles after the tile's last beat) and the STORE before it has
    left (its LOAD_SCALE waits for that too), holding up every instruction behind it. So each
    tile's LOAD_SCALE + STORE is emitted later, after a later tile's weight load and before its
    activation chunk and PRELOAD (the LOAD engine takes the scale row first): no earlier than
    the ``delay``-th tile after
    its own, at most one per PRELOAD and ``space`` tiles apart, and at the latest before the
    ``limit``-th (:func:`store_delay`). The tiles in between stream while its results drain,
    and the PRELOAD behind the STORE only needs the shadow bank. The program order of every
    scratchpad region's writer and readers is unchanged (a STORE still precedes the next
    COMPUTE on its accumulator rows), so the hardware's interlocks keep the results exact."""
    out: list[tuple[Instruction, Op]] = []
    deferral = _Deferral(cfg, tiling, carry)
    walk = BlockWalk(tiling, block)
    for insn, op in _natural(cfg, walk, 0, walk.count, raw, relu, view):
        deferral.push(insn, op, out)
    return out, deferral.carried()


def _regular(cfg: ArrayConfig, walk: BlockWalk):
    """``(start, stop) ->`` the view instructions of the block's tiles ``start .. stop - 1``
    when they only load weights, preload and compute (no activation load, no STORE held or
    emitted), as :func:`_natural` gives them, without walking their
    operations."""
    t, block, rows = walk.t, walk.block, cfg.rows
    tiles, load, w_slot = walk.tiles, walk.load, walk.w_slot
    slots: dict[int, tuple[Instruction, ...]] = {}
    values = int(t.low.values_only)     # a view's LOAD_WEIGHT phase: whether values only
    computes: dict[tuple[int, int], Instruction] = {}

    def tile(s: int) -> tuple[Instruction, ...]:
        _, c, _, b = tiles[s]
        accumulate = s > walk.first_at[c]
        got = computes.get((c, b, accumulate))
        if got is None:
            tag = t.slice_load(block.index, b) % 2 if t.sliced else walk.tag
            got = computes[c, b, accumulate] = _compute(
                _acc_base(t, block, c), walk.beats, accumulate, tag, ())
        slot = w_slot(s)
        weights = slots.get(slot)
        if weights is None:
            weights = slots[slot] = (
                (_insn(Opcode.LOAD_WEIGHT, addr=slot * rows, count=rows, phase=values),)
                if load else ()
            ) + (_insn(Opcode.PRELOAD, addr=slot * rows),)
        return (*weights, got)

    def regular(start: int, stop: int) -> list[Instruction]:
        return [i for s in range(start, stop) for i in tile(s)]

    return regular


# A view segment: instructions repeated ``count`` times, the weight scratchpad addresses (of
# LOAD_WEIGHT and PRELOAD) moved by ``step`` more in each repetition.
Segment = tuple[list[Instruction], int, int]


def shifted(insns: list[Instruction], step: int) -> list[Instruction]:
    """``insns`` with their weight scratchpad addresses (LOAD_WEIGHT, PRELOAD) moved by
    ``step``."""
    if not step:
        return insns
    return [_insn(Opcode.LOAD_WEIGHT, addr=i.addr + step, count=i.count, phase=i.phase)
            if i.opcode is Opcode.LOAD_WEIGHT else _insn(Opcode.PRELOAD, addr=i.addr + step)
            if i.opcode is Opcode.PRELOAD else i for i in insns]


def _pair_span(t: Tiling, walk: BlockWalk) -> tuple[int, int, int] | None:
    """A sliced layer's channel blocks that repeat two by two: ``(per, first, stop)``, the
    tiles of a channel block and the channel blocks ``first .. stop - 1`` (None: too few).

    Without groups and with one kernel offset, channel block ``b`` is ``per`` consecutive
    tiles (its K passes' phases x the column tiles). Its view depends on ``b`` only through:
    whether it is the first (its first pass does not accumulate) or the last (its STOREs, the
    next block's first slice); its tag, ``b``'s parity; and the slice it loads, ``b + 1``
    (placed alike in every channel block, real channels ``k_per_pass`` unless it is the last
    one, partial). So channel blocks from 1 to the one loading the last full slice repeat
    with period two, the weight slots moved."""
    if not t.sliced or t.low.groups > 1 or t.low.offsets != 1:
        return None
    per = walk.count // t.c_blocks
    full = t.low.geom.channels % t.cfg.k_per_pass == 0
    stop = t.c_blocks - (1 if full else 2)     # loads slice stop - 1 + 1: full
    return (per, 1, stop) if stop - 1 >= 6 else None


def _walked(cfg: ArrayConfig, walk: BlockWalk, deferral: _Deferral, start: int, stop: int,
            raw: bool) -> list[Instruction]:
    """The view instructions of tiles ``start .. stop - 1``, walked, the STOREs deferred."""
    pairs: list[tuple[Instruction, Op]] = []
    for insn, op in _natural(cfg, walk, start, stop, raw, False, True):
        deferral.push(insn, op, pairs)
    return [i for i, _ in pairs]


def _tiles(cfg: ArrayConfig, walk: BlockWalk, deferral: _Deferral, start: int, stop: int,
           raw: bool, regular) -> list[Instruction]:
    """:func:`_walked`, the tiles without an activation load (nor the program's CONFIG) read
    as :func:`_regular` gives them and their STOREs (with LOAD_SCALEs) from
    :meth:`~sparsa.sw.schedule.BlockWalk.store`, without walking their operations."""
    t, plan, last, tiles = walk.t, walk.plan, walk.last, walk.tiles
    out: list[tuple[Instruction, Op | None]] = []
    tail = stop == walk.count and stop in plan     # the loads after the block's last COMPUTE
    for s in range(start, stop):
        if s in plan or s == walk.block.index == 0:    # walked (the last: with the tail)
            out += [(i, None) for i in _walked(cfg, walk, deferral, s, s + 1, raw)]
            tail = tail and s + 1 < stop
            continue
        for insn in regular(s, s + 1):
            deferral.push(insn, None, out)
        k, c, _, _ = tiles[s]
        if last[c] == k:
            for insn, op in _store_insns(cfg, t, walk.block, walk.store(s), raw, False, True):
                deferral.push(insn, op, out)
    if tail:
        out += [(i, None) for i in _walked(cfg, walk, deferral, stop, stop, raw)]
    return [i for i, _ in out]


def _paired(cfg: ArrayConfig, walk: BlockWalk, deferral: _Deferral, s: int,
            span: tuple[int, int, int], raw: bool, regular) -> Segment:
    """The segment of the channel block pairs from tile ``s`` (a channel block's first, no
    STORE held) to the end of :func:`_pair_span`: the first pair walked."""
    per, _, stop = span
    reps = (stop - s // per) // 2
    insns: list[Instruction] = []
    at = s
    for load in [*sorted(x for x in walk.plan if s <= x < s + 2 * per), s + 2 * per]:
        insns += regular(at, load)      # no STORE held nor met: nothing to defer
        deferral.skip(load - at)
        if load < s + 2 * per:
            insns += _walked(cfg, walk, deferral, load, load + 1, raw)
        at = load + 1
    deferral.skip(2 * per * (reps - 1))
    return insns, reps, 2 * per * cfg.rows if walk.t.weights_resident else 0


def block_view(cfg: ArrayConfig, tiling: Tiling, block: Block, *, carry: tuple[Held, ...] = (),
               raw: bool = False) -> tuple[list[Segment], tuple[Held, ...]]:
    """:func:`block_instructions` with ``view=True`` as segments: repetition ``r`` of a segment
    ``(insns, count, step)`` is ``shifted(insns, r * step)``, and the repetitions of all
    segments one after the other are its instructions.

    A block's tiles are K pass rows of its column tiles. Between the tiles that differ (a
    column tile's first and last K pass, an activation load, a held STORE due, a sliced
    layer's next channel block) tiles only load weights, preload and compute, and any row's
    worth of them (from any column tile) repeats the one before with the weight slots moved
    (resident: by the row's tiles; two alternating slots: not at all, over an even number of
    tiles): such a stretch is walked once per run, and the tiles after its last whole
    repetition are the first ones of it, moved. A sliced layer's middle channel blocks repeat
    two by two (:func:`_pair_span`) once no STORE is held: walked once."""
    t, cb = tiling, block.col_block
    walk = BlockWalk(t, block)
    ncols, count = t.block_cols(cb), walk.count
    if t.low.groups > 1 or count < 4 * ncols:
        pairs, held = block_instructions(cfg, t, block, carry=carry, raw=raw, view=True)
        return [([i for i, _ in pairs], 1, 0)], held
    unit = ncols if t.weights_resident or ncols % 2 == 0 else 2 * ncols    # tiles
    step = unit * cfg.rows if t.weights_resident else 0
    per_tile = 3 if walk.load else 2        # LOAD_WEIGHT, PRELOAD, COMPUTE
    # walked: the last K pass's tiles (each holds a STORE) and the ones with loads; cut at:
    # those, the second K pass (the first does not accumulate) and a sliced layer's channel
    # blocks (their tags alternate)
    special = {*range(count - ncols, count), *walk.plan}
    marks = sorted({*special, ncols, count} | ({
        s for s in range(ncols, count, ncols) if walk.tiles[s][3] != walk.tiles[s - 1][3]}
        if t.sliced else set()))
    span = _pair_span(t, walk)
    deferral = _Deferral(cfg, t, carry)
    out: list[Segment] = []
    plain: list[Instruction] = []
    regular = _regular(cfg, walk)

    s = 0
    while s < count:
        quiet = deferral.quiet()
        if span and not deferral.held and s % span[0] == 0 and \
                span[1] <= s // span[0] <= span[2] - 6:
            if plain:
                out.append((plain, 1, 0))
                plain = []
            out.append(_paired(cfg, walk, deferral, s, span, raw, regular))
            s += 2 * span[0] * out[-1][1]
            continue
        if not quiet and s not in special:    # a tile that emits held instructions
            insns = regular(s, s + 1)
            plain += [*insns[:-2], *(i for i, _ in deferral.due()), *insns[-2:]]
            deferral.skip(1)
            s += 1
            continue
        if s in special:
            stop = s + 1
            while stop < count and stop in special:
                stop += 1
            plain += _tiles(cfg, walk, deferral, s, stop, raw, regular)
            s = stop
            continue
        end = min(marks[bisect.bisect_right(marks, s)], s + quiet)
        reps = (end - s) // unit
        deferral.skip(end - s)
        if reps < 3:
            plain += regular(s, end)
            s = end
            continue
        if plain:
            out.append((plain, 1, 0))
            plain = []
        insns = regular(s, s + unit)
        out.append((insns, reps, step))
        rest = end - s - reps * unit    # tiles of one more, partial, repetition
        if rest:
            plain = shifted(insns[:rest * per_tile], reps * step)
        s = end
    if plain:
        out.append((plain, 1, 0))
    return out, deferral.carried()


@functools.lru_cache(maxsize=256)
def store_delay(cfg: ArrayConfig, t: Tiling) -> tuple[int, int, int]:
    """``(delay, space, limit)`` of the deferred STOREs, in tiles. ``delay``: enough for the
    results to be written and the STORE before to leave (``latency + rows`` cycles, in tiles of
    ``p_block`` beats, at least two); ``space``: a STORE's rows and its LOAD_SCALE take ``p_block
    + 4`` cycles, a tile ``max(p_block, tile period)``; ``limit``: the next COMPUTE on its
    accumulator rows (the first pass of the column tile using the same region one block later
    with one accumulator set, two blocks later with two), so program order keeps every region's
    reads before its next writes."""
    fixed = timing.array_timing(cfg)
    delay = 2 + -(-(fixed.latency + cfg.rows) // t.p_block)
    space = -(-(t.p_block + 4) // max(t.p_block, fixed.tile_period))
    limit = 1 << 30
    sets, pbs = t.acc_sets, t.p_blocks

    def tiles(index: int) -> tuple:
        return t.block_tiles(t.locate(index)[1])

    def position(index: int, last: bool) -> dict[int, int]:
        """Region of each column tile of block ``index`` -> its first (or last) tile."""
        out: dict[int, int] = {}
        for i, (_, c, _, _) in enumerate(tiles(index)):
            if last or c % t.col_block not in out:
                out[c % t.col_block] = i
        return out

    # blocks of a column block have equal tiles, and without groups so have all column blocks
    # of a size: their first and last blocks show every case
    cbs = range(t.col_blocks) if t.low.groups > 1 else {0, t.col_blocks - 2, t.col_blocks - 1}
    for k in {i for cb in cbs if cb >= 0 for i in (cb * pbs, cb * pbs + pbs - 1)}:
        if k + sets >= t.blocks:
            continue
        between = sum(len(tiles(i)) for i in range(k + 1, k + sets))
        firsts = position(k + sets, last=False)
        for region, last in position(k, last=True).items():
            if region in firsts:
                limit = min(limit, len(tiles(k)) - last + between + firsts[region])
    return min(delay, limit), space, limit


def program_pairs(cfg: ArrayConfig, tiling: Tiling, *, raw: bool,
                   relu: bool) -> Iterator[tuple[Instruction, Op]]:
    carry: tuple[Held, ...] = ()
    for block in iter_blocks(tiling):
        pairs, carry = block_instructions(cfg, tiling, block, carry=carry, raw=raw, relu=relu)
        yield from pairs
    for insn, op, _ in carry:
        yield insn, op


def gemm_instructions(cfg: ArrayConfig, tiling: Tiling, *, raw: bool = False,
                      relu: bool = False) -> Iterator[Instruction]:
    """The whole instruction stream of a tiled layer (no data)."""
    for insn, _ in program_pairs(cfg, tiling, raw=raw, relu=relu):
        yield insn


# ---- data ------------------------------------------------------------------------------------

def _host_im2col(x: np.ndarray, low: Lowering) -> np.ndarray:
    """NHWC ``x`` -> the ``(P, groups * K_g)`` im2col matrix, K in (group, i, j, channel)
    order."""
    src = low.source
    n, _, _, c = x.shape
    (kh, kw), (sh, sw), (ph, pw), (ho, wo) = src.kernel, src.stride, src.padding, src.out_size
    h, w = src.in_size
    pad = np.zeros((n, max(h + ph, (ho - 1) * sh + kh), max(w + pw, (wo - 1) * sw + kw), c),
                   dtype=np.int64)
    pad[:, ph:ph + h, pw:pw + w] = x
    taps = np.stack([pad[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
                     for i in range(kh) for j in range(kw)], axis=3)   # (n, ho, wo, taps, c)
    g = low.groups
    taps = taps.reshape(n * ho * wo, kh * kw, g, c // g).transpose(0, 2, 1, 3)
    return taps.reshape(n * ho * wo, -1)


def host_input(low: Lowering, x: np.ndarray) -> np.ndarray:
    """The tensor the accelerator reads for the layer's input ``x`` (NHWC for a conv, ``(P,
    K)`` otherwise): NHWC for the on-chip im2col, the pixels a strided 1x1 conv reads, or the
    host's im2col matrix; ``(pixels, channels)`` for a linear lowering."""
    x = np.asarray(x, dtype=np.int64)
    src = low.source
    if src is not None:
        if x.shape[1:3] != src.in_size:
            raise ValueError(f"expected an NHWC input of {src.in_size[0]}x{src.in_size[1]} "
                             f"pixels, not shape {x.shape}")
        if src.kernel == (1, 1) and src.padding == (0, 0):
            x = x[:, ::src.stride[0], ::src.stride[1]]
        else:
            x = _host_im2col(x, low)
    x = x.reshape(-1, x.shape[-1])
    if low.how == "matmul" and x.shape[1] < low.geom.channels:     # K padded to whole blocks
        x = np.pad(x, ((0, 0), (0, low.geom.channels - x.shape[1])))
    if x.shape != (low.geom.in_pixels, low.geom.channels):
        raise ValueError(f"the layer's input must have {low.geom.in_pixels} pixels of "
                         f"{low.geom.channels} channels, not shape {x.shape}")
    return x


def layer_weights(cfg: ArrayConfig, low: Lowering, w: np.ndarray) -> list[np.ndarray]:
    """``w`` ``(groups, K_g, cols_g)`` (K in the layer's (i, j, channel) order) -> for each
    stacked GEMM (one unless the layer stacks them) ``(offsets, C_blocks * K_pass, col_tiles *
    cols)``: per kernel offset, input channel x output channel, block-diagonal over the
    groups, zero-padded."""
    w = np.asarray(w, dtype=np.int64)
    g, offsets = low.groups, low.offsets
    cin_g, cout_g = low.geom.channels // g, low.cols // g
    if low.how == "matmul" and w.ndim == 3 and w.shape[1] < cin_g:   # K padded to whole blocks
        w = np.pad(w, ((0, 0), (0, cin_g - w.shape[1]), (0, 0)))
    if w.shape != (g * low.stack, offsets * cin_g, cout_g):
        raise ValueError(f"weights must have shape {(g * low.stack, offsets * cin_g, cout_g)} "
                         f"(groups, K, columns), not {w.shape}")
    out = []
    for s in range(low.stack):
        full = np.zeros((offsets, low.c_blocks(cfg) * cfg.k_per_pass,
                         -(-low.cols // cfg.cols) * cfg.cols), dtype=np.int64)
        for k in range(g):
            full[:, k * cin_g:(k + 1) * cin_g, k * cout_g:(k + 1) * cout_g] = \
                w[s * g + k].reshape(offsets, cin_g, cout_g)
        out.append(full)
    return out


def weight_tile(cfg: ArrayConfig, low: Lowering, wfull: np.ndarray, col_tile: int,
                k_pass: int) -> nm.CompressedNM:
    """The packed tile of (K pass, column tile) from :func:`layer_weights`'s array (a dense
    layer's phase: :func:`sparsa.nm.pack_phase`)."""
    kp, cols, n, m = cfg.k_per_pass, cfg.cols, cfg.n, cfg.m
    offset, block = divmod(k_pass // low.phases, low.c_blocks(cfg))
    phase = k_pass % low.phases
    tile = wfull[offset, block * kp:(block + 1) * kp, col_tile * cols:(col_tile + 1) * cols]
    if low.phases == 1:
        return nm.pack_nm(tile, n, m)
    return nm.pack_phase(tile, n, m, phase)


def _scale_row(cfg: ArrayConfig, col_tile: int, bias, multiplier, shift) -> int:
    sl = slice(col_tile * cfg.cols, (col_tile + 1) * cfg.cols)
    pad = cfg.cols - len(bias[sl])
    return isa.pack_scale_row(cfg, np.pad(multiplier[sl], (0, pad)),
                              np.pad(shift[sl], (0, pad)), np.pad(bias[sl], (0, pad)))


def assemble_layer(cfg: ArrayConfig, tiling: Tiling, x: np.ndarray, w: np.ndarray, *,
                   bias: np.ndarray | None = None, multiplier: np.ndarray | None = None,
                   shift: np.ndarray | None = None, raw: bool = False,
                   relu: bool = False, in_memory: bool = False) -> AssembledLayer:
    """``requantize(conv(x, w) + bias)`` (or the raw sums) of the tiled layer for its int8
    input ``x`` (NHWC for a conv, ``(P, K)`` otherwise) and weights ``w`` ``(groups, K_g,
    cols_g)`` (``Layer.gemm_weight``'s layout); the result's rows are output pixels in ``(n,
    oy, ox)`` order, its columns all groups' output channels. ``in_memory``: every LOAD and
    STORE addresses its tensor in memory (:mod:`sparsa.sw.memory_layout`)."""
    low = tiling.low
    xs = host_input(low, x)
    wfull = layer_weights(cfg, low, w)
    c_total = low.cols
    bias = np.zeros(c_total, np.int64) if bias is None else np.asarray(bias, np.int64).ravel()
    multiplier = np.ones(c_total, np.int64) if multiplier is None else \
        np.asarray(multiplier).ravel()
    shift = np.zeros(c_total, np.int64) if shift is None else np.asarray(shift).ravel()
    if low.nm_tiles and low.pruned:
        for wg in np.asarray(w):
            nm.check_nm(wg, cfg.n, cfg.m)
    kp, cb = cfg.k_per_pass, tiling.c_blocks
    rows = np.zeros((xs.shape[0], cb * kp), dtype=np.int64)
    rows[:, :xs.shape[1]] = xs
    program: list[Instruction] = []
    data: list[int] = []
    stores: list[tuple[slice, slice]] = []
    pairs = list(program_pairs(cfg, tiling, raw=raw, relu=relu))
    memory = None
    if in_memory:
        addressed, memory = addressed_program(cfg, tiling, pairs, raw=raw)
        pairs = list(zip(addressed, (op for _, op in pairs), strict=True))
    for insn, op in pairs:
        program.append(insn)
        if insn.opcode == Opcode.LOAD_ACT:
            chunk = rows[op.first:op.first + op.pixels]
            if op.slice is not None:
                chunk = chunk[:, op.slice * kp:(op.slice + 1) * kp]
            data += [isa.pack_act_row(cfg, r) for r in chunk.reshape(-1, kp)]
        elif insn.opcode == Opcode.LOAD_WEIGHT:
            packed = weight_tile(cfg, low, wfull[op.group], op.col_tile, op.k_pass)
            data += [isa.pack_weight_row(cfg, packed.values[r]) if insn.phase else
                     isa.pack_weight_row(cfg, packed.values[r], packed.indices[r])
                     for r in range(cfg.rows)]
        elif insn.opcode == Opcode.LOAD_SCALE:
            data.append(_scale_row(cfg, op.col_tile, bias, multiplier, shift))
        elif insn.opcode == Opcode.STORE:
            start, first_col = op.first, op.col_tile * cfg.cols
            stores.append((slice(start, start + op.beats),
                           slice(first_col, min(first_col + cfg.cols, c_total))))
    return AssembledLayer(program=program, data_in=data, stores=stores, tiling=tiling,
                          p=low.geom.p, cols=c_total, memory=memory)


def assemble_gemm(cfg: ArrayConfig, x: np.ndarray, w: np.ndarray, *, sparse: bool,
                  bias: np.ndarray | None = None, multiplier: np.ndarray | None = None,
                  shift: np.ndarray | None = None, raw: bool = False,
                  relu: bool = False) -> AssembledLayer:
    """A linear layer: ``requantize(X . W + bias)`` (or the raw sums) for int8 ``x`` ``(P, K)``
    and ``w`` ``(K, C)``; ``sparse``: ``w`` satisfies the hardware's N:M pattern, else it runs
    dense (phases on sparse hardware)."""
    x, w = np.asarray(x, dtype=np.int64), np.asarray(w, dtype=np.int64)
    p, k = x.shape
    if w.ndim != 2 or w.shape[0] != k:
        raise ValueError(f"weights must have K = {k} rows, not shape {w.shape}")
    if sparse:
        nm.check_nm(w, cfg.n, cfg.m)
    tiling = schedule_gemm(Gemm(p=p, k=k, cols=w.shape[1]), cfg, sparse=sparse)
    return assemble_layer(cfg, tiling, x, w[None], bias=bias, multiplier=multiplier,
                          shift=shift, raw=raw, relu=relu)
