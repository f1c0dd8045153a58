"""Golden model of the accelerator: executes instructions one by one on NumPy scratchpads.

Bit-exact with :class:`sparsa.hw.accelerator.Accelerator` (what it computes, not when): data
rows are decoded with the packers of :mod:`sparsa.isa`, GEMMs use :func:`nm.gemm_nm`,
requantization :func:`nm.requantize`. No Amaranth import.

It also counts ``gated_macs``, the hardware's counter of that name, from the data: per COMPUTE
beat, PE and slot, the products whose selected activation (the activation at the slot's index in
its group of the scratchpad row) is zero, whatever the weight. Padding is data like any other:
zero K lanes, the zero slots of dense virtual groups and zero-padded columns select zeros too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from sparsa import isa, nm
from sparsa.config import ArrayConfig
from sparsa.isa import Instruction, Opcode

__all__ = ["GoldenAccelerator", "ProgramError", "zero_selected"]


def zero_selected(acts: np.ndarray, packed: nm.CompressedNM) -> int:
    """How many of the products of ``acts`` ``(P, K)`` with ``packed`` select a zero
    activation: over every row, group, slot and column."""
    p = acts.shape[0]
    groups = acts.reshape(p, packed.groups, packed.m)
    zeros = np.count_nonzero(groups == 0, axis=0)                  # (groups, m)
    g = np.arange(packed.groups)[:, None, None]
    return int(zeros[g, packed.indices].sum())


class ProgramError(ValueError):
    """The program cannot run: bad address, missing data, COMPUTE without PRELOAD..."""


@dataclass
class GoldenAccelerator:
    cfg: ArrayConfig
    depths: dict[str, int] = field(init=False)   # cfg.scratchpad_rows
    act: np.ndarray = field(init=False)
    weight: list = field(init=False)
    acc: np.ndarray = field(init=False)
    shadow: tuple[np.ndarray, np.ndarray] | None = field(default=None, init=False)
    mult: np.ndarray = field(init=False)
    shift: np.ndarray = field(init=False)
    bias: np.ndarray = field(init=False)
    gated_macs: int = field(default=0, init=False)   # products with a zero selected activation

    def __post_init__(self) -> None:
        cfg = self.cfg
        self.depths = cfg.scratchpad_rows
        self.act = np.zeros((self.depths["act"], cfg.act_vector_width), dtype=np.int64)
        self.weight = [None] * self.depths["weight"]
        self.acc = np.zeros((self.depths["acc"], cfg.cols), dtype=np.int64)
        self.mult = np.zeros(cfg.cols, dtype=np.int64)
        self.shift = np.zeros(cfg.cols, dtype=np.int64)
        self.bias = np.zeros(cfg.cols, dtype=np.int64)

    def _rows(self, name: str, base: int, count: int, insn: Instruction) -> range:
        if base + count > self.depths[name]:
            raise ProgramError(f"{insn.opcode.name}: rows {base}..{base + count - 1} exceed the "
                               f"{name} scratchpad ({self.depths[name]} rows)")
        return range(base, base + count)

    def run(self, program: Iterable[Instruction], data_in: Sequence[int]) -> list[np.ndarray]:
        """Execute ``program`` consuming ``data_in`` beats; return the ``data_out`` rows."""
        cfg = self.cfg
        beats = iter(data_in)
        out: list[np.ndarray] = []

        def take(insn: Instruction) -> int:
            try:
                return next(beats)
            except StopIteration:
                raise ProgramError(f"{insn.opcode.name}: data_in ran out of beats") from None

        for insn in program:
            op = insn.opcode
            if op == Opcode.LOAD_ACT:
                for r in self._rows("act", insn.addr, insn.count, insn):
                    self.act[r] = isa.unpack_act_row(cfg, take(insn))
            elif op == Opcode.LOAD_WEIGHT:
                for r in self._rows("weight", insn.addr, insn.count, insn):
                    self.weight[r] = isa.unpack_weight_row(cfg, take(insn))
            elif op == Opcode.LOAD_ACC:
                for r in self._rows("acc", insn.acc_addr, insn.count, insn):
                    self.acc[r] = isa.unpack_psum_row(cfg, take(insn))
            elif op == Opcode.LOAD_SCALE:
                mult, shift, bias = isa.unpack_scale_row(cfg, take(insn))
                self.mult, self.shift, self.bias = np.array(mult), np.array(shift), np.array(bias)
            elif op == Opcode.PRELOAD:
                if self.shadow is not None:
                    raise ProgramError("PRELOAD while the previously preloaded tile was never "
                                       "computed (the array would wait forever)")
                rows = [self.weight[r] for r in self._rows("weight", insn.addr, cfg.rows, insn)]
                if any(r is None for r in rows):
                    raise ProgramError(f"PRELOAD reads weight rows {insn.addr}.."
                                       f"{insn.addr + cfg.rows - 1}, not all of them loaded")
                values = np.array([r[0] for r in rows], dtype=np.int64)   # (rows, n, cols)
                indices = np.array([r[1] for r in rows], dtype=np.int64)
                self.shadow = (values, indices)
            elif op == Opcode.COMPUTE:
                if insn.count == 0:
                    continue
                if self.shadow is None:
                    raise ProgramError("COMPUTE without a PRELOAD since the previous COMPUTE "
                                       "(the array would wait for weights forever)")
                values, indices = self.shadow
                self.shadow = None
                packed = nm.CompressedNM(values=values, indices=indices, n=cfg.n, m=cfg.m,
                                             k=cfg.k_per_pass)
                acts = self.act[list(self._rows("act", insn.addr, insn.count, insn))]
                self.gated_macs += zero_selected(acts, packed)
                rows = list(self._rows("acc", insn.acc_addr, insn.count, insn))
                psum = self.acc[rows] if insn.accumulate else None
                self.acc[rows] = nm.gemm_nm(acts, packed, psum, act_width=cfg.act_width,
                                                weight_width=cfg.weight_width,
                                                acc_width=cfg.acc_width)
            elif op == Opcode.STORE:
                rows = self.acc[list(self._rows("acc", insn.acc_addr, insn.count, insn))]
                rows = nm.wrap(rows + self.bias, cfg.acc_width)
                if insn.raw:
                    out.extend(rows.copy())
                else:
                    out.extend(nm.requantize(rows, self.mult, self.shift, relu=insn.relu,
                                                 out_width=cfg.act_width))
            else:  # pragma: no cover - Opcode is exhaustive
                raise ProgramError(f"unknown opcode {op!r}")
        return out
