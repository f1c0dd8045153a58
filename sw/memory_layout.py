"""A layer's program with its operands where a compiler puts them: every LOAD and STORE of the
assembler's program (:func:`sparsa.sw.assemble.program_pairs`) given the memory address of the
tensor rows it moves, so the program the memory-mapped accelerator (:mod:`sparsa.hw.top`) runs,
and its cycle model (:mod:`sparsa.sw.top_timing`) times, is the one a real deployment would run.

Memory, from :data:`PROG_BASE` up, each region starting on a 4 KiB page (:data:`PAGE`):

* the program, 16-byte words;
* the input activations in their natural layout: the ``(pixels, channels)`` matrix the layer
  reads (:func:`sparsa.sw.assemble.host_input`: NHWC for the on-chip im2col, the pixels a
  strided 1x1 conv reads, the host's im2col matrix for the stem-like layers it keeps), one
  pixel of ``channels`` values every ``channels`` bytes. A LOAD_ACT reads a run of consecutive
  pixels (a sliced layer's LOAD_ACT one channel block of each), so an input pixel crosses the
  bus once per LOAD_ACT that needs it, and never as an im2col row;
* the weights: each weight tile (stacked GEMM, column tile, K pass) once, ``rows`` packed N:M
  rows back to back (a dense phase's values only), in the order of their first LOAD_WEIGHT (a
  tile loaded again is read from the same place);
* the scale rows, one per column tile, in the order of their first LOAD_SCALE;
* the output in its natural layout: ``(pixels, columns)`` int8 (int32 when raw), a STORE
  writing its column tile of ``beats`` consecutive output pixels, one row every
  ``columns`` values.

Addresses are the only change: every other field, and so the core's timing and every counter,
is the assembler's. Pure Python, no data: :func:`sparsa.sim.memory_image.place` lays the
layer's data out at these addresses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

from sparsa import isa
from sparsa.config import ArrayConfig
from sparsa.isa import INSN_BYTES, Instruction, Opcode

from .ops import LoadActs, LoadWeights, Op, Store
from .tiling import Tiling

__all__ = ["PAGE", "PROG_BASE", "LayerMemory", "addressed_program", "layer_memory"]

PROG_BASE = 0x1000      # the program's first word (address 0 stays unused)
PAGE = 4096


def _page(n: int) -> int:
    return -(-n // PAGE) * PAGE


@dataclass(frozen=True)
class LayerMemory:
    """Where a layer's program and tensors live (byte addresses, see the module)."""

    prog_base: int
    prog_len: int           # bytes
    act_base: int
    act_stride: int         # bytes between input pixels
    weight_base: int
    scale_base: int
    out_base: int
    out_stride: int         # bytes between output pixels
    size: int               # bytes the layer spans


def _weight_row(cfg: ArrayConfig, tiling: Tiling) -> int:
    """Bytes of a weight row in memory (values only for dense phases: :mod:`sparsa.isa`)."""
    phase = int(tiling.low.values_only)
    return isa.row_bytes(cfg, Instruction(Opcode.LOAD_WEIGHT, phase=phase))


def layer_memory(cfg: ArrayConfig, tiling: Tiling, instructions: int, *, raw: bool,
                 weight_tiles: int, scale_rows: int) -> LayerMemory:
    """The regions of a layer of ``instructions`` instructions that loads ``weight_tiles``
    distinct weight tiles and ``scale_rows`` distinct scale rows."""
    low = tiling.low
    act_stride = low.geom.channels * cfg.act_width // 8
    out_stride = low.cols * (cfg.acc_width if raw else cfg.act_width) // 8
    weight_tile = cfg.rows * _weight_row(cfg, tiling)
    prog_len = instructions * INSN_BYTES
    act = _page(PROG_BASE + prog_len)
    weights = _page(act + low.geom.in_pixels * act_stride)
    scales = _page(weights + weight_tiles * weight_tile)
    out = _page(scales + scale_rows * isa.data_in_bytes(cfg, Opcode.LOAD_SCALE))
    size = out + tiling.low.geom.p * out_stride
    if size > min(1 << isa.DRAM_BITS, 1 << cfg.axi_addr_bits):
        raise ValueError(f"the layer spans {size:,} bytes of memory, more than the "
                         f"{min(isa.DRAM_BITS, cfg.axi_addr_bits)}-bit addresses reach")
    return LayerMemory(PROG_BASE, prog_len, act, act_stride, weights, scales, out, out_stride,
                       size)


def _keys(pairs: list[tuple[Instruction, Op]]) -> tuple[dict, dict]:
    """The weight tiles and scale rows in the order of their first load, numbered."""
    tiles: dict[tuple[int, int, int], int] = {}
    scales: dict[int, int] = {}
    for insn, op in pairs:
        if insn.opcode == Opcode.LOAD_WEIGHT:
            tiles.setdefault((op.group, op.col_tile, op.k_pass), len(tiles))
        elif insn.opcode == Opcode.LOAD_SCALE:
            scales.setdefault(op.col_tile, len(scales))
    return tiles, scales


def _address(cfg: ArrayConfig, mem: LayerMemory, insn: Instruction, op: Op, tiles: dict,
             scales: dict) -> Instruction:
    opcode = insn.opcode
    if opcode == Opcode.LOAD_ACT:
        assert isinstance(op, LoadActs)
        slice_at = 0 if op.slice is None else op.slice * cfg.k_per_pass * cfg.act_width // 8
        return dataclasses.replace(insn, dram=mem.act_base + op.first * mem.act_stride + slice_at,
                                   stride=mem.act_stride)
    if opcode == Opcode.LOAD_WEIGHT:
        assert isinstance(op, LoadWeights)
        tile = cfg.rows * isa.row_bytes(cfg, insn)
        return dataclasses.replace(
            insn, dram=mem.weight_base + tiles[op.group, op.col_tile, op.k_pass] * tile)
    if opcode == Opcode.LOAD_SCALE:
        assert isinstance(op, Store)
        row = isa.data_in_bytes(cfg, Opcode.LOAD_SCALE)
        return dataclasses.replace(insn, dram=mem.scale_base + scales[op.col_tile] * row)
    if opcode == Opcode.STORE:
        assert isinstance(op, Store)
        bits = cfg.acc_width if insn.raw else cfg.act_width
        column = op.col_tile * cfg.cols * bits // 8
        return dataclasses.replace(insn, dram=mem.out_base + op.first * mem.out_stride + column,
                                   stride=mem.out_stride)
    if opcode in isa.LOADS:
        raise ValueError(f"{opcode.name}: the assembler emits no such load to place")
    return insn


def addressed_program(cfg: ArrayConfig, tiling: Tiling, pairs: Iterable[tuple[Instruction, Op]],
                      *, raw: bool) -> tuple[list[Instruction], LayerMemory]:
    """The instructions of ``pairs`` (the assembler's, with their operations) with every LOAD's
    and STORE's ``dram`` and ``stride`` set as the module lays the layer out, and the layout."""
    pairs = list(pairs)
    tiles, scales = _keys(pairs)
    mem = layer_memory(cfg, tiling, len(pairs), raw=raw, weight_tiles=len(tiles),
                       scale_rows=len(scales))
    return [_address(cfg, mem, insn, op, tiles, scales) for insn, op in pairs], mem

