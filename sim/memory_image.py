"""A program in memory: what the host writes before it starts the memory-mapped accelerator
(:mod:`sparsa.hw.top`), and where it reads the results back.

:func:`link` takes a stream program, the instructions and the ``data_in`` rows of their LOADs
(what the stream-fed core and :class:`~sparsa.sim.golden_accel.GoldenAccelerator` take), and lays
it out in memory the way :mod:`sparsa.isa` describes operands in memory:

- the instruction words, 16 bytes each, little-endian, at :attr:`MemoryProgram.prog_base`;
- each LOAD's operand in a region of its own: a LOAD_ACT's pixels of ``channels`` values each
  (the zero-filled channels of a pixel's last scratchpad row are not stored), one pixel every
  ``stride`` bytes; the rows of a LOAD_WEIGHT, LOAD_ACC or LOAD_SCALE back to back;
- each STORE's output rows, ``channels`` columns each, one row every ``stride`` bytes.

Every LOAD and STORE gets its ``dram`` (and ``stride``, and a LOAD_ACT its ``pixels``) filled in.
With ``rng``, regions start at random byte offsets and rows are spaced by a random gap, so the
DMA's unaligned rows and strides are exercised; without it, regions are 64-byte aligned and rows
dense. A LOAD's data lives once per LOAD here (a compiler shares a tensor between the LOADs
that read it; the transfers are the same either way).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from sparsa import isa
from sparsa.config import ArrayConfig
from sparsa.isa import INSN_BYTES, LOADS, Instruction, Opcode
from sparsa.sw.memory_layout import LayerMemory

__all__ = ["PROG_BASE", "MemoryProgram", "OutputRegion", "link", "load_rows", "place",
           "store_rows"]

PROG_BASE = 0x1000          # where link() puts the program (address 0 stays unused)
_ALIGN = 64


def _values_bytes(values, bits: int) -> bytes:
    return b"".join(int(v).to_bytes(bits // 8, "little", signed=True) for v in values)


def _bytes_values(raw: bytes, bits: int) -> list[int]:
    n = bits // 8
    return [int.from_bytes(raw[i:i + n], "little", signed=True) for i in range(0, len(raw), n)]


def _element_bits(cfg: ArrayConfig, insn: Instruction) -> int:
    """Bits of one value of a LOAD_ACT pixel or a STORE row in memory."""
    return cfg.acc_width if insn.opcode == Opcode.STORE and insn.raw else cfg.act_width


@dataclass(frozen=True)
class OutputRegion:
    """Where one STORE's rows land: row ``r`` at ``dram + r * stride``, ``channels`` values of
    ``acc_width`` (``raw``) or ``act_width`` bits each."""

    dram: int
    stride: int
    count: int
    channels: int
    raw: bool


@dataclass(frozen=True)
class MemoryProgram:
    program: tuple[Instruction, ...]
    segments: tuple[tuple[int, bytes], ...]     # (address, bytes) to write before starting
    prog_base: int
    prog_len: int
    outputs: tuple[OutputRegion, ...]           # one per STORE, in program order
    size: int                                   # bytes of memory the program spans

    def read_outputs(self, cfg: ArrayConfig, read: Callable[[int, int], bytes]
                     ) -> list[np.ndarray]:
        """The STOREd rows read back with ``read(address, nbytes)``, in program order: like the
        golden executor's ``data_out`` rows, each cut to its STORE's ``channels`` columns."""
        rows = []
        for out in self.outputs:
            bits = cfg.acc_width if out.raw else cfg.act_width
            for r in range(out.count):
                raw = read(out.dram + r * out.stride, out.channels * bits // 8)
                rows.append(np.array(_bytes_values(raw, bits), dtype=np.int64))
        return rows

    def image(self) -> bytearray:
        """The memory the host writes: :attr:`size` bytes, zero where nothing is placed."""
        memory = bytearray(self.size)
        for addr, data in self.segments:
            memory[addr:addr + len(data)] = data
        return memory


class _Layout:
    """A bump allocator over memory, with the random offsets and gaps :func:`link` describes."""

    def __init__(self, start: int, rng: np.random.Generator | None):
        self.top, self.rng = start, rng
        self.segments: list[tuple[int, bytes]] = []

    def gap(self) -> int:
        return 0 if self.rng is None else int(self.rng.integers(0, 8))

    def region(self, nbytes: int) -> int:
        base = -(-self.top // _ALIGN) * _ALIGN
        if self.rng is not None:
            base += int(self.rng.integers(0, _ALIGN))
        self.top = base + nbytes
        return base

    def rows(self, rows: Sequence[bytes], stride: int) -> int:
        base = self.region(stride * (len(rows) - 1) + len(rows[-1]) if rows else 0)
        for r, data in enumerate(rows):
            self.segments.append((base + r * stride, data))
        return base


def _pixels(cfg: ArrayConfig, insn: Instruction, rows: Sequence[int]) -> list[bytes]:
    """A LOAD_ACT's rows as pixels of ``channels`` values (the zero fill dropped)."""
    per = isa.act_rows_per_pixel(cfg, insn.channels)
    kp, out = cfg.k_per_pass, []
    for p in range(len(rows) // per):
        values = []
        for b in range(per):
            row = isa.unpack_act_row(cfg, rows[p * per + b])
            real = min(kp, insn.channels - b * kp)
            if any(row[real:]):
                raise ValueError(f"LOAD_ACT row {p * per + b} holds values beyond its "
                                 f"{insn.channels} channels (memory holds the real ones only)")
            values += row[:real]
        out.append(_values_bytes(values, cfg.act_width))
    return out


def load_rows(cfg: ArrayConfig, insn: Instruction, memory: bytes | bytearray) -> list[int]:
    """The ``data_in`` rows a LOAD with its operand in ``memory`` delivers (the inverse of
    :func:`link`'s layout, as :mod:`sparsa.isa` defines it)."""
    if insn.opcode == Opcode.LOAD_ACT:
        isa.check_load_act(cfg, insn)
        kp, size = cfg.k_per_pass, insn.channels * cfg.act_width // 8
        rows = []
        for p in range(insn.pixels):
            at = insn.dram + p * insn.stride
            values = _bytes_values(memory[at:at + size], cfg.act_width)
            for b in range(isa.act_rows_per_pixel(cfg, insn.channels)):
                block = values[b * kp:(b + 1) * kp]
                rows.append(isa.pack_act_row(cfg, block + [0] * (kp - len(block))))
        return rows
    if insn.opcode not in LOADS:
        raise ValueError(f"{insn.opcode.name} loads nothing")
    nbytes = isa.row_bytes(cfg, insn)
    return [int.from_bytes(memory[insn.dram + r * nbytes:insn.dram + (r + 1) * nbytes], "little")
            for r in range(_load_count(insn))]


def store_rows(cfg: ArrayConfig, insn: Instruction, rows: Sequence[Sequence[int]],
               memory: bytearray) -> None:
    """Write a STORE's ``data_out`` rows into ``memory``: the first ``channels`` columns of
    each, one row every ``stride`` bytes from ``dram``."""
    bits = _element_bits(cfg, insn)
    for r, row in enumerate(rows):
        data = _values_bytes(list(row)[:insn.channels], bits)
        at = insn.dram + r * insn.stride
        memory[at:at + len(data)] = data


def _load_count(insn: Instruction) -> int:
    """``data_in`` rows a LOAD takes."""
    return 1 if insn.opcode == Opcode.LOAD_SCALE else insn.count


def _load(cfg: ArrayConfig, insn: Instruction, rows: Sequence[int], mem: _Layout
          ) -> Instruction:
    if insn.opcode == Opcode.LOAD_ACT:
        pixels = _pixels(cfg, insn, rows)
        stride = insn.channels * cfg.act_width // 8 + mem.gap()
        loaded = dataclasses.replace(insn, dram=mem.rows(pixels, stride), stride=stride,
                                     pixels=len(pixels))
        isa.check_load_act(cfg, loaded)
        return loaded
    nbytes = isa.row_bytes(cfg, insn)
    block = b"".join(int(r).to_bytes(nbytes, "little") for r in rows)
    return dataclasses.replace(insn, dram=mem.rows([block], len(block)))


def _store(cfg: ArrayConfig, insn: Instruction, mem: _Layout) -> tuple[Instruction, OutputRegion]:
    if not 1 <= insn.channels <= cfg.cols:
        raise ValueError(f"STORE: channels must be 1 to {cfg.cols} (the columns it writes), "
                         f"not {insn.channels}")
    row = insn.channels * (cfg.acc_width if insn.raw else cfg.act_width) // 8
    stride = row + mem.gap()
    dram = mem.region(stride * (insn.count - 1) + row if insn.count else 0)
    out = OutputRegion(dram, stride, insn.count, insn.channels, insn.raw)
    return dataclasses.replace(insn, dram=dram, stride=stride), out


def link(cfg: ArrayConfig, program: Sequence[Instruction], data_in: Sequence[int], *,
         rng: np.random.Generator | None = None) -> MemoryProgram:
    """Lay ``program`` and its ``data_in`` rows out in memory (see the module)."""
    if cfg.act_width % 8 or cfg.acc_width % 8:
        raise ValueError(f"operands in memory need whole bytes: act_width {cfg.act_width} and "
                         f"acc_width {cfg.acc_width} must be multiples of 8")
    prog_len = len(program) * INSN_BYTES
    mem = _Layout(PROG_BASE + prog_len, rng)
    rows, linked, outputs = iter(data_in), [], []
    for insn in program:
        if insn.opcode in LOADS:
            taken = [next(rows, None) for _ in range(_load_count(insn))]
            if None in taken:
                raise ValueError(f"data_in ends inside {insn}")
            insn = _load(cfg, insn, taken, mem)
        elif insn.opcode == Opcode.STORE:
            insn, out = _store(cfg, insn, mem)
            outputs.append(out)
        linked.append(insn)
    if next(rows, None) is not None:
        raise ValueError("data_in has rows that no LOAD takes")
    words = b"".join(i.encode().to_bytes(INSN_BYTES, "little") for i in linked)
    size = mem.top
    if size > min(1 << isa.DRAM_BITS, 1 << cfg.axi_addr_bits):
        raise ValueError(f"the program spans {size} bytes, more than the {cfg.axi_addr_bits}-bit "
                         f"AXI address (and {isa.DRAM_BITS}-bit dram fields) reach")
    return MemoryProgram(program=tuple(linked), segments=((PROG_BASE, words), *mem.segments),
                         prog_base=PROG_BASE, prog_len=prog_len, outputs=tuple(outputs),
                         size=size)


def _operand(cfg: ArrayConfig, insn: Instruction, rows: Sequence[int]
             ) -> tuple[np.ndarray, np.ndarray]:
    """A LOAD's rows as ``(addresses, bytes)``, where its ``dram`` (and ``stride``) put them."""
    if insn.opcode != Opcode.LOAD_ACT:
        nbytes = isa.row_bytes(cfg, insn)
        data = b"".join(int(r).to_bytes(nbytes, "little") for r in rows)
        return insn.dram + np.arange(len(data)), np.frombuffer(data, np.uint8)
    isa.check_load_act(cfg, insn)
    size = insn.channels * cfg.act_width // 8
    row_bytes = cfg.k_per_pass * cfg.act_width // 8
    raw = b"".join(int(r).to_bytes(row_bytes, "little") for r in rows)
    per = isa.act_rows_per_pixel(cfg, insn.channels)
    pixels = np.frombuffer(raw, np.uint8).reshape(insn.pixels, per * row_bytes)
    if pixels[:, size:].any():
        raise ValueError(f"LOAD_ACT at 0x{insn.dram:x} holds values beyond its "
                         f"{insn.channels} channels (memory holds the real ones only)")
    at = insn.dram + insn.stride * np.arange(insn.pixels)[:, None] + np.arange(size)
    return at.ravel(), pixels[:, :size].ravel()


def place(cfg: ArrayConfig, program: Sequence[Instruction], data_in: Sequence[int],
          memory: LayerMemory) -> MemoryProgram:
    """A program whose LOADs and STOREs already address memory (the assembler's ``in_memory``
    layout, :mod:`sparsa.sw.memory_layout`) with its ``data_in`` rows written where they
    load from. A tensor several LOADs read is written once; LOADs of the same bytes that
    disagree are an error (the program and its data do not match)."""
    if cfg.act_width % 8 or cfg.acc_width % 8:
        raise ValueError(f"operands in memory need whole bytes: act_width {cfg.act_width} and "
                         f"acc_width {cfg.acc_width} must be multiples of 8")
    image = np.zeros(memory.size, np.uint8)
    written = np.zeros(memory.size, bool)
    rows, outputs = iter(data_in), []
    for insn in program:
        if insn.opcode in LOADS:
            taken = [next(rows, None) for _ in range(_load_count(insn))]
            if None in taken:
                raise ValueError(f"data_in ends inside {insn}")
            at, data = _operand(cfg, insn, taken)
            if np.any(written[at] & (image[at] != data)):
                raise ValueError(f"{insn.opcode.name} at 0x{insn.dram:x} loads bytes that an "
                                 f"earlier LOAD of the same address saw otherwise")
            image[at], written[at] = data, True
        elif insn.opcode == Opcode.STORE:
            outputs.append(OutputRegion(insn.dram, insn.stride, insn.count, insn.channels,
                                        insn.raw))
    if next(rows, None) is not None:
        raise ValueError("data_in has rows that no LOAD takes")
    words = b"".join(i.encode().to_bytes(INSN_BYTES, "little") for i in program)
    image[memory.prog_base:memory.prog_base + len(words)] = np.frombuffer(words, np.uint8)
    return MemoryProgram(program=tuple(program), segments=((0, image.tobytes()),),
                         prog_base=memory.prog_base, prog_len=len(words),
                         outputs=tuple(outputs), size=memory.size)
