"""Random accelerator programs for tests: a GEMM tiled by hand into instructions + data beats.

Two loop orders: ``k_inner`` (for each column tile all K passes back to back: accumulation
chains on the same accumulator rows) and ``cols_inner`` (for each K pass all column tiles:
consecutive COMPUTEs write different rows). Weights are N:M (or dense hardware), activations
over the full int8 range; scales random, so STORE exercises requantization and ReLU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparsa import isa, nm
from sparsa.config import ArrayConfig
from sparsa.isa import Instruction, Opcode

from .stimulus import random_acts, random_nm_weights

__all__ = ["GemmProgram", "gemm_program", "random_gemm_program"]


@dataclass(frozen=True)
class GemmProgram:
    program: list[Instruction]
    data_in: list[int]
    x: np.ndarray
    w: np.ndarray
    psum0: np.ndarray       # initial accumulators (LOAD_ACC), zero when the first pass overwrites
    bias: np.ndarray        # per column, added by STORE
    mult: np.ndarray
    shift: np.ndarray
    relu: bool

    def reference(self, acc_width: int, act_width: int) -> tuple[np.ndarray, np.ndarray]:
        """Independent expectation: (requantized, raw) = dense matmul + initial accumulators +
        bias, wrapped."""
        raw = nm.gemm_dense(self.x, self.w, self.psum0 + self.bias[None, :],
                                acc_width=acc_width)
        return nm.requantize(raw, self.mult, self.shift, relu=self.relu,
                                 out_width=act_width), raw


def gemm_program(cfg: ArrayConfig, rng: np.random.Generator, *, p: int, passes: int,
                 col_tiles: int, order: str = "k_inner", load_acc: bool = True,
                 relu: bool = False, zero_fraction: float = 0.0) -> GemmProgram:
    """``load_acc``: start from random accumulators loaded with LOAD_ACC (every pass
    accumulates); otherwise the first K pass overwrites. ``zero_fraction``: activations set to
    zero at random (ReLU-like activation sparsity, for the zero-gating counter)."""
    if order not in ("k_inner", "cols_inner"):
        raise ValueError(f"order must be 'k_inner' or 'cols_inner', not {order!r}")
    kp, cols = cfg.k_per_pass, cfg.cols
    k = kp * passes - (int(rng.integers(0, cfg.m)) if passes > 1 else 0)
    w = random_nm_weights(rng, k, cols * col_tiles, cfg.n, cfg.m, width=cfg.weight_width)
    x = random_acts(rng, p, k, width=cfg.act_width)
    if zero_fraction:
        x = np.where(rng.random(x.shape) < zero_fraction, 0, x)
    b = rng.integers(-(1 << 31), 1 << 31, size=cols * col_tiles)
    psum0 = rng.integers(-(1 << 31), 1 << 31, size=(p, cols * col_tiles)) if load_acc else \
        np.zeros((p, cols * col_tiles), dtype=np.int64)
    mult = rng.integers(1, 1 << 15, size=cols * col_tiles)
    shift = rng.integers(8, 24, size=cols * col_tiles)
    xp = np.zeros((p, passes * kp), dtype=np.int64)
    xp[:, :k] = x
    wp = np.zeros((passes * kp, cols * col_tiles), dtype=np.int64)
    wp[:k] = w

    prog: list[Instruction] = []
    data: list[int] = []
    # Activation rows of pass j at j*p; weight tile (c, j) at (c*passes + j)*rows;
    # accumulators of column tile c at c*p.
    prog.append(Instruction(Opcode.LOAD_ACT, addr=0, count=passes * p))
    for j in range(passes):
        data += [isa.pack_act_row(cfg, row) for row in xp[:, j * kp:(j + 1) * kp]]
    if load_acc:
        prog.append(Instruction(Opcode.LOAD_ACC, acc_addr=0, count=col_tiles * p))
        for c in range(col_tiles):
            data += [isa.pack_psum_row(cfg, row) for row in psum0[:, c * cols:(c + 1) * cols]]
    for c in range(col_tiles):
        for j in range(passes):
            packed = nm.pack_nm(wp[j * kp:(j + 1) * kp, c * cols:(c + 1) * cols],
                                    cfg.n, cfg.m)
            prog.append(Instruction(Opcode.LOAD_WEIGHT, addr=(c * passes + j) * cfg.rows,
                                    count=cfg.rows))
            data += [isa.pack_weight_row(cfg, packed.values[r], packed.indices[r])
                     for r in range(cfg.rows)]
    steps = [(c, j) for c in range(col_tiles) for j in range(passes)] if order == "k_inner" \
        else [(c, j) for j in range(passes) for c in range(col_tiles)]
    for c, j in steps:
        prog.append(Instruction(Opcode.PRELOAD, addr=(c * passes + j) * cfg.rows))
        prog.append(Instruction(Opcode.COMPUTE, addr=j * p, acc_addr=c * p, count=p,
                                accumulate=load_acc or j > 0))
    for c in range(col_tiles):
        prog.append(Instruction(Opcode.LOAD_SCALE))
        sl = slice(c * cols, (c + 1) * cols)
        data.append(isa.pack_scale_row(cfg, mult[sl], shift[sl], b[sl]))
        prog.append(Instruction(Opcode.STORE, acc_addr=c * p, count=p, relu=relu))
        prog.append(Instruction(Opcode.STORE, acc_addr=c * p, count=p, raw=True))
    return GemmProgram(program=prog, data_in=data, x=x, w=w, psum0=psum0, bias=b, mult=mult,
                       shift=shift, relu=relu)


def random_gemm_program(cfg: ArrayConfig, rng: np.random.Generator, *, order: str,
                        max_beats: int | None = None, zero_fraction: float = 0.0
                        ) -> GemmProgram:
    """A :func:`gemm_program` of random size (1-3 K passes, 1-2 column tiles, up to
    ``max_beats`` rows, default three times rows + cols) that fits the scratchpads, with random
    ReLU and accumulator initialisation."""
    depth = cfg.scratchpad_rows
    passes = int(rng.integers(1, 4))
    col_tiles = int(rng.integers(1, 3))
    if col_tiles * passes * cfg.rows > depth["weight"]:
        col_tiles = passes = 1
    limit = min(max_beats or 3 * (cfg.rows + cfg.cols), depth["act"] // passes,
                depth["acc"] // col_tiles)
    if limit < 1:
        raise ValueError(f"the scratchpads of {cfg} cannot hold a single-beat program")
    return gemm_program(cfg, rng, p=int(rng.integers(1, limit + 1)), passes=passes,
                        col_tiles=col_tiles, order=order, relu=bool(rng.integers(0, 2)),
                        load_acc=bool(rng.integers(0, 2)), zero_fraction=zero_fraction)
