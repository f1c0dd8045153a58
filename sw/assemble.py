"""From the scheduler's program to accelerator instructions and data beats.

:func:`block_instructions` walks the operations :func:`sparsa.sw.schedule.iter_block_ops` yields
for each block of a tiled GEMM, gives every tile a scratchpad address and turns each operation into
:mod:`sparsa.isa` instructions (with STOREs deferred, see there); :func:`assemble_gemm` packs the
layer's real int8 data into ``data_in`` beats beside them, and the cost model
(:mod:`sparsa.sw.cost`) costs the same instructions. Pure Python/NumPy: no Amaranth.

Scratchpad allocation:

* activations: every (P block, K pass) region resident when the tiling keeps activations
  resident, else two slots that alternate;
* weights: every (column tile, K pass) tile resident when the tiling keeps weights resident, else
  two alternating slots;
* accumulators: one region per column tile of the current column block, two sets alternating
  between consecutive blocks so that a STORE overlaps the next block's COMPUTEs.

The hardware checks the hazards between engines; the allocation only has to keep a region alive
until the last instruction that reads it has been issued, which these rules do.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from sparsa import isa, nm
from sparsa.config import ArrayConfig
from sparsa.isa import Instruction, Opcode
from sparsa.models.graph import Gemm

from .ops import Compute, LoadActs, LoadWeights, Op, PreloadWeights, Store
from .schedule import Block, ScheduleError, Tiling, iter_block_ops, iter_blocks, schedule_gemm

__all__ = ["AssembledGemm", "assemble_gemm", "block_instructions", "block_key",
           "gemm_instructions"]


@dataclass(frozen=True)
class AssembledGemm:
    """Instructions and data of one GEMM, and where each STORE's rows belong."""

    program: list[Instruction]
    data_in: list[int]
    stores: list[tuple[slice, slice]]   # (P rows, output columns) of each STORE, in order
    tiling: Tiling
    p: int
    cols: int

    def collect(self, rows: list[np.ndarray]) -> np.ndarray:
        """Reassemble the ``data_out`` rows into the ``(P, cols)`` result."""
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


# Instructions repeat (a few addresses, a few counts): build each distinct one once.
_insn = functools.lru_cache(maxsize=1 << 16)(Instruction)


def _region(depths: dict[str, int], kind: str, index: int, size: int, resident: bool,
            count: int) -> int:
    """Base row of region ``index`` of ``size`` rows: ``count`` regions when resident, else two
    alternating slots."""
    slots = count if resident else 2
    depth = depths[kind]
    if slots * size > depth:
        raise ScheduleError(f"{slots} {kind} regions of {size} rows do not fit the {kind} "
                            f"scratchpad ({depth} rows)")
    return (index % slots) * size


def block_key(tiling: Tiling, block: Block) -> tuple:
    """Everything :func:`block_instructions` depends on besides the tiling and the carried
    stores: blocks with equal keys have equal instructions."""
    t, cb, pb = tiling, block.col_block, block.p_block
    load_acts = cb == 0 or not t.acts_resident
    load_weights = pb == 0 or not t.weights_resident
    return (t.block_beats(pb), t.block_cols(cb), load_acts,
            pb if t.acts_resident else block.act_loads % 2, load_weights,
            None if t.weights_resident else block.weight_loads % 2, block.index % 2)


# A STORE (with its LOAD_SCALE) waiting to be emitted: (instruction, its operation, whether a
# COMPUTE has been emitted since).
Held = tuple[Instruction, Op, bool]


def _natural(cfg: ArrayConfig, t: Tiling, block: Block, raw: bool,
             relu: bool) -> Iterator[tuple[Instruction, Op]]:
    """The block's instructions in the scheduler's operation order."""
    rows, passes, depths = cfg.rows, t.passes, cfg.scratchpad_rows
    act_loads, weight_loads = block.act_loads, block.weight_loads

    def act_base(p_block: int, k: int, load: int) -> int:
        index = p_block * passes + k if t.acts_resident else load
        return _region(depths, "act", index, t.p_block, t.acts_resident, t.p_blocks * passes)

    def weight_base(col_tile: int, k: int, load: int) -> int:
        # Resident weights stay for the P blocks of one column block.
        index = (col_tile % t.col_block) * passes + k if t.weights_resident else load
        return _region(depths, "weight", index, rows, t.weights_resident, t.col_block * passes)

    def acc_base(col_tile: int) -> int:
        # consecutive blocks alternate between two sets, so a block's stores overlap the next
        return _region(depths, "acc", (block.index % 2) * t.col_block + col_tile % t.col_block,
                       t.p_block, True, 2 * t.col_block)

    act_at: dict[int, int] = {}
    weight_at: dict[tuple[int, int], int] = {}
    for op in iter_block_ops(t, block):
        if isinstance(op, LoadActs):
            act_at[op.k_pass] = act_base(op.p_block, op.k_pass, act_loads)
            act_loads += 1
            yield _insn(Opcode.LOAD_ACT, addr=act_at[op.k_pass], count=op.beats), op
        elif isinstance(op, LoadWeights):
            weight_at[(op.col_tile, op.k_pass)] = weight_base(op.col_tile, op.k_pass,
                                                              weight_loads)
            weight_loads += 1
            yield _insn(Opcode.LOAD_WEIGHT, addr=weight_at[(op.col_tile, op.k_pass)],
                        count=rows), op
        elif isinstance(op, PreloadWeights):
            # weights loaded in an earlier block are resident: their address is fixed
            addr = weight_at.get((op.col_tile, op.k_pass))
            if addr is None:
                addr = weight_base(op.col_tile, op.k_pass, 0)
            yield _insn(Opcode.PRELOAD, addr=addr), op
        elif isinstance(op, Compute):
            addr = act_at.get(op.k_pass)
            if addr is None:   # resident activations loaded by the first column block
                addr = act_base(op.p_block, op.k_pass, 0)
            yield _insn(Opcode.COMPUTE, addr=addr, acc_addr=acc_base(op.col_tile),
                        count=op.beats, accumulate=op.accumulate), op
        elif isinstance(op, Store):
            yield _insn(Opcode.LOAD_SCALE), op
            yield _insn(Opcode.STORE, acc_addr=acc_base(op.col_tile), count=op.beats,
                        raw=raw, relu=relu), op


def block_instructions(cfg: ArrayConfig, tiling: Tiling, block: Block, *,
                       carry: tuple[Held, ...] = (), raw: bool = False, relu: bool = False
                       ) -> tuple[list[tuple[Instruction, Op]], tuple[Held, ...]]:
    """The instructions of one block, each with the scheduler operation it comes from, and the
    stores still held at its end (pass them as ``carry`` to the next block; emit them after the
    last block).

    Deferred stores: the controller dispatches in order, and a STORE waits until its results
    are written (``latency`` cycles after the tile's last beat), holding up every instruction
    behind it. So each tile's LOAD_SCALE + STORE is emitted later: after the next tile's COMPUTE
    and the weight load that follows it, just before the PRELOAD of the tile after next. Tile
    ``t+1`` then streams while ``t``'s results drain, and the PRELOAD behind the STORE only
    needs the shadow bank, which ``t+1``'s swap has freed. The program order of every
    scratchpad region's writer and readers is unchanged (accumulator sets alternate between
    blocks), so the hardware's interlocks keep the results exact."""
    out: list[tuple[Instruction, Op]] = []
    held = list(carry)
    for insn, op in _natural(cfg, tiling, block, raw, relu):
        if insn.opcode in (Opcode.LOAD_SCALE, Opcode.STORE):
            held.append((insn, op, False))
            continue
        if insn.opcode == Opcode.PRELOAD and held and held[0][2]:
            out += [(i, o) for i, o, seen in held if seen]
            held = [h for h in held if not h[2]]
        out.append((insn, op))
        if insn.opcode == Opcode.COMPUTE:
            held = [(i, o, True) for i, o, _ in held]
    return out, tuple(held)


def _program_pairs(cfg: ArrayConfig, tiling: Tiling, *, raw: bool,
                   relu: bool) -> Iterator[tuple[Instruction, Op]]:
    carry: tuple[Held, ...] = ()
    for block in iter_blocks(tiling):
        pairs, carry = block_instructions(cfg, tiling, block, carry=carry, raw=raw, relu=relu)
        yield from pairs
    for insn, op, _ in carry:
        yield insn, op


def gemm_instructions(cfg: ArrayConfig, tiling: Tiling, *, raw: bool = False,
                      relu: bool = False) -> Iterator[Instruction]:
    """The whole instruction stream of a tiled GEMM (no data)."""
    for insn, _ in _program_pairs(cfg, tiling, raw=raw, relu=relu):
        yield insn


def assemble_gemm(cfg: ArrayConfig, x: np.ndarray, w: np.ndarray, *, sparse: bool,
                  bias: np.ndarray | None = None, multiplier: np.ndarray | None = None,
                  shift: np.ndarray | None = None, raw: bool = False,
                  relu: bool = False) -> AssembledGemm:
    """``requantize(X . W + bias)`` (or the raw sums) for int8 ``x`` ``(P, K)`` and ``w``
    ``(K, C)``; ``sparse``: ``w`` satisfies the hardware's N:M pattern, else it runs dense as
    virtual groups."""
    x, w = np.asarray(x, dtype=np.int64), np.asarray(w, dtype=np.int64)
    p, k = x.shape
    if w.shape[0] != k:
        raise ValueError(f"weights must have K = {k} rows, not shape {w.shape}")
    c_total = w.shape[1]
    bias = np.zeros(c_total, np.int64) if bias is None else np.asarray(bias, np.int64)
    multiplier = np.ones(c_total, np.int64) if multiplier is None else np.asarray(multiplier)
    shift = np.zeros(c_total, np.int64) if shift is None else np.asarray(shift)
    if sparse:
        nm.check_nm(w, cfg.n, cfg.m)
        xk, wk = x, w
    else:
        xk, wk = nm.expand_dense_acts(x, cfg.n, cfg.m), nm.expand_dense_weights(
            w, cfg.n, cfg.m)
    tiling = schedule_gemm(Gemm(p=p, k=k, cols=c_total), cfg, sparse=sparse)
    kp, rows, cols = cfg.k_per_pass, cfg.rows, cfg.cols
    passes = tiling.passes
    xp = np.zeros((p, passes * kp), np.int64)
    xp[:, : xk.shape[1]] = xk
    wp = np.zeros((passes * kp, tiling.col_tiles * cols), np.int64)
    wp[: wk.shape[0], :c_total] = wk

    program: list[Instruction] = []
    data: list[int] = []
    stores: list[tuple[slice, slice]] = []
    for insn, op in _program_pairs(cfg, tiling, raw=raw, relu=relu):
        program.append(insn)
        if insn.opcode == Opcode.LOAD_ACT:
            start = op.p_block * tiling.p_block
            rows_x = xp[start:start + op.beats, op.k_pass * kp:(op.k_pass + 1) * kp]
            data += [isa.pack_act_row(cfg, row) for row in rows_x]
        elif insn.opcode == Opcode.LOAD_WEIGHT:
            tile = wp[op.k_pass * kp:(op.k_pass + 1) * kp, op.col_tile * cols:
                      (op.col_tile + 1) * cols]
            packed = nm.pack_nm(tile, cfg.n, cfg.m)
            data += [isa.pack_weight_row(cfg, packed.values[r], packed.indices[r])
                     for r in range(rows)]
        elif insn.opcode == Opcode.LOAD_SCALE:
            sl = slice(op.col_tile * cols, (op.col_tile + 1) * cols)
            pad = cols - len(bias[sl])
            data.append(isa.pack_scale_row(
                cfg, np.pad(multiplier[sl], (0, pad)), np.pad(shift[sl], (0, pad)),
                np.pad(bias[sl], (0, pad))))
        elif insn.opcode == Opcode.STORE:
            start, first_col = op.p_block * tiling.p_block, op.col_tile * cols
            stores.append((slice(start, start + op.beats),
                           slice(first_col, min(first_col + cols, c_total))))
    return AssembledGemm(program=program, data_in=data, stores=stores, tiling=tiling, p=p,
                         cols=c_total)
