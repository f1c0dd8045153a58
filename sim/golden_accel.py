"""Golden model of the accelerator: executes instructions one by one on NumPy scratchpads.

Bit-exact with :class:`sparsa.hw.accelerator.Accelerator` (what it computes, not when): data
rows are decoded with the packers of :mod:`sparsa.isa`, GEMMs use :func:`nm.gemm_nm`,
requantization :func:`nm.requantize`, and a COMPUTE's beats are the rows of the on-chip im2col
walk (:func:`sparsa.im2col.walk`, under the latest CONFIG), zeros for a padding beat. Hazard tags
only order the hardware's engines; they do not change what is computed. No Amaranth import.

It also counts ``gated_macs``, the hardware's counter of that name, from the data: per COMPUTE
beat, PE and slot, the products whose selected activation (the activation at the slot's index in
its group of the beat) is zero, whatever the weight. Padding is data like any other: zero K
lanes, padding beats of the walk (all zeros), the zero slots of dense phases and zero-padded
columns select zeros too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from sparsa import im2col, isa, nm
from sparsa.config import ArrayConfig
from sparsa.isa import LOADS, Instruction, Opcode

from .memory_image import load_rows, store_rows

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


def _ceil_log2(n: int) -> int:
    return max(0, (n - 1).bit_length())


@dataclass
class GoldenAccelerator:
    cfg: ArrayConfig
    depths: dict[str, int] = field(init=False)   # cfg.scratchpad_rows
    act: np.ndarray = field(init=False)
    weight: list = field(init=False)
    acc: np.ndarray = field(init=False)
    shadow: tuple[np.ndarray, np.ndarray] | None = field(default=None, init=False)
    config: Instruction | None = field(default=None, init=False)   # the latest CONFIG
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
        beats = iter(data_in)
        out: list[np.ndarray] = []

        def take(insn: Instruction) -> int:
            try:
                return next(beats)
            except StopIteration:
                raise ProgramError(f"{insn.opcode.name}: data_in ran out of beats") from None

        rules = {
            Opcode.LOAD_ACT: lambda insn: self._load_act(insn, take),
            Opcode.LOAD_WEIGHT: lambda insn: self._load_weight(insn, take),
            Opcode.LOAD_ACC: lambda insn: self._load_acc(insn, take),
            Opcode.LOAD_SCALE: lambda insn: self._load_scale(insn, take),
            Opcode.PRELOAD: self._preload,
            Opcode.CONFIG: self._config,
            Opcode.COMPUTE: self._compute,
            Opcode.STORE: lambda insn: out.extend(self._store(insn)),
        }
        for insn in program:
            rule = rules.get(insn.opcode)
            if rule is None:  # pragma: no cover - Opcode is exhaustive
                raise ProgramError(f"unknown opcode {insn.opcode!r}")
            rule(insn)
        return out

    def run_in_memory(self, program: Iterable[Instruction], memory: bytearray) -> None:
        """Execute ``program`` with its operands in ``memory`` (:mod:`sparsa.isa`'s operands in
        memory, as the memory-mapped accelerator moves them): each LOAD reads its rows from
        ``memory``, each STORE writes its rows into it."""
        for insn in program:
            rows = load_rows(self.cfg, insn, memory) if insn.opcode in LOADS else ()
            out = self.run([insn], rows)
            if insn.opcode == Opcode.STORE:
                store_rows(self.cfg, insn, out, memory)

    # -- one method per opcode ------------------------------------------------------------------

    def _load_act(self, insn: Instruction, take) -> None:
        if insn.channels < 1:
            raise ProgramError(f"LOAD_ACT: channels must be at least 1, not {insn.channels}")
        blocks = isa.act_rows_per_pixel(self.cfg, insn.channels)
        if insn.count % blocks:
            raise ProgramError(f"LOAD_ACT: count {insn.count} is not a whole number of pixels "
                               f"of {insn.channels} channels ({blocks} rows each)")
        for r in self._rows("act", insn.addr, insn.count, insn):
            self.act[r] = isa.unpack_act_row(self.cfg, take(insn))

    def _load_weight(self, insn: Instruction, take) -> None:
        for r in self._rows("weight", insn.addr, insn.count, insn):
            beat = take(insn)
            if insn.phase and not self.cfg.is_dense:    # values only, the phase's indices
                if insn.phase > -(-self.cfg.m // self.cfg.n):
                    raise ValueError(f"LOAD_WEIGHT: phase {insn.phase} is beyond the "
                                     f"{-(-self.cfg.m // self.cfg.n)} dense phases of "
                                     f"{self.cfg.nm} (0: rows with their indices)")
                beat = isa.phase_weight_row(self.cfg, beat, insn.phase)
            self.weight[r] = isa.unpack_weight_row(self.cfg, beat)

    def _load_acc(self, insn: Instruction, take) -> None:
        for r in self._rows("acc", insn.acc_addr, insn.count, insn):
            self.acc[r] = isa.unpack_psum_row(self.cfg, take(insn))

    def _load_scale(self, insn: Instruction, take) -> None:
        mult, shift, bias = isa.unpack_scale_row(self.cfg, take(insn))
        self.mult, self.shift, self.bias = np.array(mult), np.array(shift), np.array(bias)

    def _preload(self, insn: Instruction) -> None:
        if self.shadow is not None:
            raise ProgramError("PRELOAD while the previously preloaded tile was never "
                               "computed (the array would wait forever)")
        rows = [self.weight[r] for r in self._rows("weight", insn.addr, self.cfg.rows, insn)]
        if any(r is None for r in rows):
            raise ProgramError(f"PRELOAD reads weight rows {insn.addr}.."
                               f"{insn.addr + self.cfg.rows - 1}, not all of them loaded")
        values = np.array([r[0] for r in rows], dtype=np.int64)   # (rows, n, cols)
        indices = np.array([r[1] for r in rows], dtype=np.int64)
        self.shadow = (values, indices)

    def _config(self, insn: Instruction) -> None:
        self.config = insn

    def beats(self, insn: Instruction) -> np.ndarray:
        """The activation beats of a COMPUTE ``(count, rows*m)``: the rows of the im2col walk
        under the latest CONFIG, zeros for padding beats."""
        if self.config is None:
            raise ProgramError("COMPUTE before any CONFIG (the im2col walk has no geometry)")
        depth = self.depths["act"]
        rows = list(im2col.walk(self.config, insn, _ceil_log2(depth)))
        bad = [r for r in rows if r is not None and r >= depth]
        if bad:
            raise ProgramError(f"COMPUTE: the walk from row {insn.addr} reaches row {bad[0]}, "
                               f"beyond the act scratchpad ({depth} rows)")
        acts = np.zeros((len(rows), self.cfg.act_vector_width), dtype=np.int64)
        read = [k for k, r in enumerate(rows) if r is not None]
        acts[read] = self.act[[rows[k] for k in read]]
        return acts

    def _compute(self, insn: Instruction) -> None:
        if self.config is None:
            raise ProgramError("COMPUTE before any CONFIG (the im2col walk has no geometry)")
        if insn.count == 0:
            return
        if self.shadow is None:
            raise ProgramError("COMPUTE without a PRELOAD since the previous COMPUTE "
                               "(the array would wait for weights forever)")
        cfg = self.cfg
        acts = self.beats(insn)
        rows = list(self._rows("acc", insn.acc_addr, insn.count, insn))
        values, indices = self.shadow
        self.shadow = None
        packed = nm.CompressedNM(values=values, indices=indices, n=cfg.n, m=cfg.m,
                                 k=cfg.k_per_pass)
        self.gated_macs += zero_selected(acts, packed)
        psum = self.acc[rows] if insn.accumulate else None
        self.acc[rows] = nm.gemm_nm(acts, packed, psum, act_width=cfg.act_width,
                                    weight_width=cfg.weight_width, acc_width=cfg.acc_width)

    def _store(self, insn: Instruction) -> list[np.ndarray]:
        cfg = self.cfg
        rows = self.acc[list(self._rows("acc", insn.acc_addr, insn.count, insn))]
        rows = nm.wrap(rows + self.bias, cfg.acc_width)
        if insn.raw:
            return list(rows.copy())
        return list(nm.requantize(rows, self.mult, self.shift, relu=insn.relu,
                                  out_width=cfg.act_width))
