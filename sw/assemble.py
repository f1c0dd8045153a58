"""From the scheduler's program to accelerator instructions and data beats.

:func:`assemble_gemm` walks the operations :func:`sparsa.sw.schedule.iter_program` yields for a
tiled GEMM (the same program the cost model costs), gives every tile a scratchpad address and
turns each operation into :mod:`sparsa.isa` instructions, packing the layer's real int8 data into
``data_in`` beats. Pure Python/NumPy: no Amaranth.

Scratchpad allocation:

* activations: every (P block, K pass) region resident when the tiling keeps activations
  resident, else two slots that alternate;
* weights: every (column tile, K pass) tile resident when the tiling keeps weights resident, else
  two alternating slots;
* accumulators: one region per column tile of the current column block, two sets alternating
  between P blocks so that a STORE overlaps the next block's COMPUTEs.

The hardware checks the hazards between engines; the allocation only has to keep a region alive
until the last instruction that reads it has been issued, which these rules do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparsa import isa
from sparsa.config import ArrayConfig
from sparsa.isa import Instruction, Opcode
from sparsa.models.graph import Gemm
from sparsa.sim import golden

from .program import Compute, LoadActs, LoadWeights, PreloadWeights, Store
from .schedule import ScheduleError, Tiling, iter_program, schedule_gemm

__all__ = ["AssembledGemm", "assemble_gemm"]


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
        golden.check_nm(w, cfg.n, cfg.m)
        xk, wk = x, w
    else:
        xk, wk = golden.expand_dense_acts(x, cfg.n, cfg.m), golden.expand_dense_weights(
            w, cfg.n, cfg.m)
    tiling = schedule_gemm(Gemm(p=p, k=k, cols=c_total), cfg, sparse=sparse)
    kp, rows, cols = cfg.k_per_pass, cfg.rows, cfg.cols
    passes = tiling.passes
    xp = np.zeros((p, passes * kp), np.int64)
    xp[:, : xk.shape[1]] = xk
    wp = np.zeros((passes * kp, tiling.col_tiles * cols), np.int64)
    wp[: wk.shape[0], :c_total] = wk
    depth = cfg.scratchpad_rows

    def region(kind: str, index: int, size: int, resident: bool, count: int) -> int:
        slots = count if resident else 2
        if slots * size > depth[kind]:
            raise ScheduleError(f"{slots} {kind} regions of {size} rows do not fit the {kind} "
                                f"scratchpad ({depth[kind]} rows)")
        return (index % slots) * size

    program: list[Instruction] = []
    data: list[int] = []
    stores: list[tuple[slice, slice]] = []
    act_at: dict[tuple[int, int], int] = {}
    weight_at: dict[tuple[int, int], int] = {}
    loads = {"act": 0, "weight": 0}
    for op in iter_program(tiling):
        if isinstance(op, LoadActs):
            index = op.p_block * passes + op.k_pass if tiling.acts_resident else loads["act"]
            base = region("act", index, tiling.p_block, tiling.acts_resident,
                          tiling.p_blocks * passes)
            loads["act"] += 1
            act_at[(op.p_block, op.k_pass)] = base
            start = op.p_block * tiling.p_block
            block = xp[start:start + op.beats, op.k_pass * kp:(op.k_pass + 1) * kp]
            program.append(Instruction(Opcode.LOAD_ACT, addr=base, count=op.beats))
            data += [isa.pack_act_row(cfg, row) for row in block]
        elif isinstance(op, LoadWeights):
            # Resident weights stay for the P blocks of one column block.
            index = (op.col_tile % tiling.col_block) * passes + op.k_pass \
                if tiling.weights_resident else loads["weight"]
            base = region("weight", index, rows, tiling.weights_resident,
                          tiling.col_block * passes)
            loads["weight"] += 1
            weight_at[(op.col_tile, op.k_pass)] = base
            tile = wp[op.k_pass * kp:(op.k_pass + 1) * kp, op.col_tile * cols:
                      (op.col_tile + 1) * cols]
            packed = golden.pack_nm(tile, cfg.n, cfg.m)
            program.append(Instruction(Opcode.LOAD_WEIGHT, addr=base, count=rows))
            data += [isa.pack_weight_row(cfg, packed.values[r], packed.indices[r])
                     for r in range(rows)]
        elif isinstance(op, PreloadWeights):
            program.append(Instruction(Opcode.PRELOAD,
                                       addr=weight_at[(op.col_tile, op.k_pass)]))
        elif isinstance(op, Compute | Store):
            c_in_block = op.col_tile % tiling.col_block
            acc = region("acc", op.p_block * tiling.col_block + c_in_block, tiling.p_block,
                         True, 2 * tiling.col_block)
            if isinstance(op, Compute):
                program.append(Instruction(Opcode.COMPUTE, addr=act_at[(op.p_block, op.k_pass)],
                                           acc_addr=acc, count=op.beats,
                                           accumulate=op.accumulate))
            else:
                sl = slice(op.col_tile * cols, (op.col_tile + 1) * cols)
                pad = cols - len(bias[sl])
                program.append(Instruction(Opcode.LOAD_SCALE))
                data.append(isa.pack_scale_row(
                    cfg, np.pad(multiplier[sl], (0, pad)), np.pad(shift[sl], (0, pad)),
                    np.pad(bias[sl], (0, pad))))
                program.append(Instruction(Opcode.STORE, acc_addr=acc, count=op.beats,
                                           raw=raw, relu=relu))
                start = op.p_block * tiling.p_block
                stores.append((slice(start, start + op.beats),
                               slice(sl.start, min(sl.stop, c_total))))
    return AssembledGemm(program=program, data_in=data, stores=stores, tiling=tiling, p=p,
                         cols=c_total)
