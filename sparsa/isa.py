"""The accelerator's instruction set, defined once.

Pure Python (no Amaranth): the encoder here is what the scheduler's programs are serialised with,
what the golden model executes and what the testbenches feed; ``sparsa.hw.layouts.instruction``
builds the hardware's layout from :data:`FORMATS`, so both agree bit for bit. An instruction is
:data:`INSN_BITS` = 128 bits (one beat of a 128-bit AXI port): a 4-bit opcode, then the opcode's
own fields packed from the least significant bit in the order listed (the rest is zero).

=============  ==================================================================================
opcode         meaning
=============  ==================================================================================
LOAD_ACT       ``count`` beats of ``data_in`` -> activation scratchpad rows ``addr ..``. A row is
               one pixel's block of ``K_pass = rows * m`` channels (NHWC, see
               :mod:`sparsa.im2col`); the tensor has ``channels`` channels per pixel, so ``count``
               is a multiple of ``ceil(channels / K_pass)`` and the off-chip bytes of a row are its
               real channels only (:func:`act_row_bytes`). ``tag``: the hazard tag (below).
LOAD_WEIGHT    ``count`` beats -> weight scratchpad rows ``addr ..`` (one PE row each).
               ``phase`` > 0: the rows of dense phase ``phase - 1`` (:func:`sparsa.nm.
               pack_phase`, a dense layer on N:M hardware): each beat holds the values only
               (:func:`pack_weight_row` without indices) and the loader writes that phase's
               fixed indices (:func:`sparsa.nm.phase_indices`), so no index metadata crosses
               the bus
LOAD_ACC       ``count`` beats -> accumulator rows ``acc_addr ..`` (e.g. biases)
LOAD_SCALE     one beat -> per-column bias, requantization multiplier and shift
PRELOAD        weight scratchpad rows ``addr .. addr+rows-1`` -> the PEs' shadow bank
CONFIG         the im2col geometry of the COMPUTEs that follow (:mod:`sparsa.im2col`): input
               ``height`` x ``width``, output ``out_h`` x ``out_w``, strides, top/left padding
               and the address steps ``step_x``, ``wrap_y``, ``wrap_n``
COMPUTE        ``count`` beats through the array, the first one swapping in the preloaded
               weights. Beat ``k`` is the activation row the im2col walk reaches after ``k``
               steps from the first beat (scratchpad row ``addr``, input pixel ``(y, x)``,
               output pixel ``(oy, ox)``, kernel offset ``(i, j)``), or zeros where the input
               pixel lies in the padding. ``accumulate``: add accumulator rows ``acc_addr ..``
               through ``psum_in``, else start from zero; results overwrite accumulator rows
               ``acc_addr ..``. ``tag``: the hazard tag of the activation rows it reads.
STORE          accumulator rows ``acc_addr ..`` (``count``) plus the column biases (wrapping)
               -> ``data_out``: requantized to the activation width (``relu`` clamps at
               zero), or the raw sums with ``raw``
=============  ==================================================================================

**Operands in memory** (the memory-mapped accelerator, :mod:`sparsa.hw.top`, moves them over its
AXI port; the stream-fed core ignores these fields). ``dram`` is a byte address, of any alignment.

- LOAD_ACT reads ``pixels`` pixels (``count / ceil(channels / K_pass)``, :func:`check_load_act`):
  pixel ``p`` is ``channels`` values
  (``ceil(channels * act_width / 8)`` bytes, NHWC) at ``dram + p * stride``, cut into the LOAD's
  scratchpad rows of ``K_pass`` values, the last one of each pixel zero-filled. A slice of a wider
  tensor's channels is ``dram`` at the slice's first channel with ``stride`` the pixel's bytes.
- LOAD_WEIGHT, LOAD_ACC and LOAD_SCALE read ``count`` (LOAD_SCALE: one) rows packed back to back
  from ``dram``, each of :func:`row_bytes` (its scratchpad row's bytes, :func:`data_in_bytes`; a
  phase LOAD_WEIGHT's values only), the bits of :func:`pack_weight_row`, :func:`pack_psum_row`
  or :func:`pack_scale_row` little-endian.
- STORE writes ``count`` rows: the first ``channels`` columns of each, ``act_width / 8`` bytes
  (requantized) or ``acc_width / 8`` bytes (``raw``) each, little-endian, row ``r`` at
  ``dram + r * stride``: an NHWC output whose column tile starts ``dram`` bytes in.

**Activation hazard tags.** A COMPUTE's rows are a walk over an image, not a contiguous range, so
the controller orders activation loads and reads by a one-bit tag instead of by addresses: a
LOAD_ACT waits while the feed engine still reads rows for a COMPUTE of the same tag, and a COMPUTE
waits while a LOAD_ACT of the same tag is writing. The assembler gives every activation region a
tag so that a load never writes rows that a COMPUTE of the other tag may still read (consecutive
P blocks alternate tags: the next block's activations load while this block computes).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import IntEnum

from .config import ADDR_BITS
from .nm import phase_indices

__all__ = ["DRAM_BITS", "FORMATS", "INSN_BITS", "INSN_BYTES", "LOADS", "OPCODE_BITS",
           "PHASE_BITS", "SCALE_MULT_BITS", "SCALE_SHIFT_BITS", "SIGNED_FIELDS", "STRIDE_BITS",
           "Instruction", "Opcode", "act_row_bytes", "act_rows_per_pixel", "check_load_act",
           "data_in_bytes", "data_out_bytes", "pack_act_row", "pack_psum_row", "pack_scale_row",
           "pack_weight_row", "phase_weight_row", "row_bytes",
           "unpack_act_row", "unpack_psum_row", "unpack_scale_row", "unpack_weight_row",
           "weight_values_bytes"]


class Opcode(IntEnum):
    LOAD_ACT = 1
    LOAD_WEIGHT = 2
    LOAD_ACC = 3
    LOAD_SCALE = 4
    PRELOAD = 5
    COMPUTE = 6
    STORE = 7
    CONFIG = 8


INSN_BITS = 128
INSN_BYTES = INSN_BITS // 8      # an instruction word in memory
OPCODE_BITS = 4
OFFSET_BITS = 4      # kernel offsets i, j: kernels up to 16 x 16
STEP_BITS = 3        # strides and top/left padding: up to 7
DRAM_BITS = 32       # byte addresses in memory (zero-extended to a wider AXI address)
PHASE_BITS = 8       # a LOAD_WEIGHT's dense phase + 1 (0: the rows carry their indices)
STRIDE_BITS = 24     # bytes between the DRAM rows of a LOAD_ACT or a STORE
A, D, S = ADDR_BITS, DRAM_BITS, STRIDE_BITS

# Fields of each opcode, (name, bits), least significant first after the opcode.
FORMATS: dict[Opcode, tuple[tuple[str, int], ...]] = {
    Opcode.LOAD_ACT: (("addr", A), ("count", A), ("channels", A), ("tag", 1), ("dram", D),
                     ("stride", S), ("pixels", A)),
    Opcode.LOAD_WEIGHT: (("addr", A), ("count", A), ("dram", D), ("phase", PHASE_BITS)),
    Opcode.LOAD_ACC: (("acc_addr", A), ("count", A), ("dram", D)),
    Opcode.LOAD_SCALE: (("dram", D),),
    Opcode.PRELOAD: (("addr", A),),
    Opcode.COMPUTE: (("addr", A), ("acc_addr", A), ("count", A), ("y", A), ("x", A),
                     ("oy", A), ("ox", A), ("i", OFFSET_BITS), ("j", OFFSET_BITS),
                     ("accumulate", 1), ("tag", 1)),
    Opcode.STORE: (("acc_addr", A), ("count", A), ("relu", 1), ("raw", 1), ("channels", A),
                   ("dram", D), ("stride", S)),
    Opcode.CONFIG: (("height", A), ("width", A), ("out_h", A), ("out_w", A), ("step_x", A),
                    ("wrap_y", A), ("wrap_n", A), ("stride_y", STEP_BITS),
                    ("stride_x", STEP_BITS), ("pad_y", STEP_BITS), ("pad_x", STEP_BITS)),
}
# The opcodes that move data in (through ``data_in``, or over the AXI port from ``dram``).
LOADS = (Opcode.LOAD_ACT, Opcode.LOAD_WEIGHT, Opcode.LOAD_ACC, Opcode.LOAD_SCALE)
# Two's complement fields (input pixel coordinates of a COMPUTE's first beat).
SIGNED_FIELDS = frozenset({"y", "x"})
_FLAGS = frozenset({"accumulate", "relu", "raw"})
assert all(OPCODE_BITS + sum(b for _, b in f) <= INSN_BITS for f in FORMATS.values())

# Requantization parameters per output column (LOAD_SCALE beat): multiplier, then shift.
SCALE_MULT_BITS = 16
SCALE_SHIFT_BITS = 6


@dataclass(frozen=True)
class Instruction:
    """One instruction; fields its opcode does not have (:data:`FORMATS`) must stay zero."""

    opcode: Opcode
    addr: int = 0
    acc_addr: int = 0
    count: int = 0
    accumulate: bool = False
    relu: bool = False
    raw: bool = False
    tag: int = 0
    channels: int = 0
    y: int = 0
    x: int = 0
    oy: int = 0
    ox: int = 0
    i: int = 0
    j: int = 0
    height: int = 0
    width: int = 0
    out_h: int = 0
    out_w: int = 0
    step_x: int = 0
    wrap_y: int = 0
    wrap_n: int = 0
    stride_y: int = 0
    stride_x: int = 0
    pad_y: int = 0
    pad_x: int = 0
    dram: int = 0
    stride: int = 0
    pixels: int = 0
    phase: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.opcode, Opcode):
            raise ValueError(f"opcode must be an Opcode, not {self.opcode!r}")
        own = _OWN[self.opcode]
        for name in _OPERANDS:
            value = getattr(self, name)
            if type(value) is int and value == 0:
                continue    # valid in every field (most of them: the cost model builds many)
            if name in _FLAGS:
                if not isinstance(value, bool) and value not in (0, 1):
                    raise ValueError(f"{self.opcode.name}: {name} must be a bool, "
                                     f"not {value!r}")
                if value and name not in own:
                    raise ValueError(f"{self.opcode.name} has no {name} flag")
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{self.opcode.name}: {name} must be an integer, "
                                 f"not {value!r}")
            if name not in own:
                if value:
                    raise ValueError(f"{self.opcode.name} has no field {name} "
                                     f"(given {value})")
                continue
            bits = own[name]
            lo, hi = ((-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if name in SIGNED_FIELDS
                      else (0, (1 << bits) - 1))
            if not lo <= value <= hi:
                raise ValueError(f"{self.opcode.name}: {name} must be an integer in "
                                 f"[{lo}, {hi}], not {value!r}")

    def encode(self) -> int:
        word, shift = int(self.opcode), OPCODE_BITS
        for name, bits in FORMATS[self.opcode]:
            word |= (int(getattr(self, name)) & ((1 << bits) - 1)) << shift
            shift += bits
        return word

    @classmethod
    def decode(cls, word: int) -> Instruction:
        try:
            opcode = Opcode(word & ((1 << OPCODE_BITS) - 1))
        except ValueError:
            raise ValueError(f"instruction word {word:#x} has no valid opcode") from None
        values, shift = {}, OPCODE_BITS
        for name, bits in FORMATS[opcode]:
            v = (word >> shift) & ((1 << bits) - 1)
            if name in SIGNED_FIELDS and v >> (bits - 1):
                v -= 1 << bits
            values[name] = bool(v) if name in _FLAGS else v
            shift += bits
        if word >> shift:
            raise ValueError(f"instruction word {word:#x}: bits above {opcode.name}'s fields "
                             f"are set")
        return cls(opcode=opcode, **values)


# Instruction's fields after the opcode, and each opcode's field widths by name (its checks).
_OPERANDS = tuple(f.name for f in fields(Instruction))[1:]
_OWN = {op: dict(fmt) for op, fmt in FORMATS.items()}


# ---- data rows: one beat of data_in / data_out, bit-compatible with sparsa.hw.layouts --------

def _pack(values, bits: int) -> int:
    word, mask = 0, (1 << bits) - 1
    for i, v in enumerate(values):
        word |= (int(v) & mask) << (i * bits)
    return word


def _unpack(word: int, bits: int, count: int, *, signed: bool) -> list[int]:
    out = []
    for i in range(count):
        v = (int(word) >> (i * bits)) & ((1 << bits) - 1)
        if signed and v >> (bits - 1):
            v -= 1 << bits
        out.append(v)
    return out


def pack_act_row(cfg, acts) -> int:
    """``rows * m`` activations (row r of the array takes elements r*m .. r*m+m-1)."""
    if len(acts) != cfg.act_vector_width:
        raise ValueError(f"an activation row has {cfg.act_vector_width} values, not {len(acts)}")
    return _pack(acts, cfg.act_width)


def unpack_act_row(cfg, word: int) -> list[int]:
    return _unpack(word, cfg.act_width, cfg.act_vector_width, signed=True)


def pack_weight_row(cfg, values, indices=None) -> int:
    """One PE row: for each of ``cols`` PEs, ``n`` values then (sparse hardware) ``n`` indices;
    ``values``/``indices`` are ``[n][cols]``. ``indices=None``: the values only (a phase
    LOAD_WEIGHT's row, :func:`weight_values_bytes`)."""
    word, shift = 0, 0
    n, ww = cfg.n, cfg.weight_width    # properties: read them once
    iw = cfg.index_width if indices is not None else 0
    for c in range(cfg.cols):
        for j in range(n):
            word |= (int(values[j][c]) & ((1 << ww) - 1)) << shift
            shift += ww
        for j in range(n if iw else 0):
            word |= (int(indices[j][c]) & ((1 << iw) - 1)) << shift
            shift += iw
    return word


def weight_values_bytes(cfg) -> int:
    """Bytes of a phase LOAD_WEIGHT's row: the ``n`` values of each of ``cols`` PEs."""
    return -(-cfg.cols * cfg.n * cfg.weight_width // 8)


def phase_weight_row(cfg, word: int, phase: int) -> int:
    """The scratchpad row a LOAD_WEIGHT of ``phase`` (> 0) writes for beat ``word``."""
    per_pe = cfg.n * cfg.weight_width
    pes = [_unpack(int(word) >> (c * per_pe), cfg.weight_width, cfg.n, signed=True)
           for c in range(cfg.cols)]
    fixed = phase_indices(cfg.n, cfg.m, phase - 1)
    return pack_weight_row(cfg, [[pe[j] for pe in pes] for j in range(cfg.n)],
                           [[fixed[j]] * cfg.cols for j in range(cfg.n)])


def row_bytes(cfg, insn: Instruction) -> int:
    """Bytes in memory of one row of a LOAD other than LOAD_ACT (:func:`data_in_bytes`; a phase
    LOAD_WEIGHT's values only)."""
    if insn.opcode == Opcode.LOAD_WEIGHT and insn.phase:
        return weight_values_bytes(cfg)
    return data_in_bytes(cfg, insn.opcode)


def unpack_weight_row(cfg, word: int) -> tuple[list[list[int]], list[list[int]]]:
    """Inverse of :func:`pack_weight_row` (dense hardware: indices ``0..n-1``)."""
    values = [[0] * cfg.cols for _ in range(cfg.n)]
    indices = [[j] * cfg.cols for j in range(cfg.n)]
    per_pe = cfg.n * (cfg.weight_width + cfg.index_width)
    for c in range(cfg.cols):
        pe = int(word) >> (c * per_pe)
        vals = _unpack(pe, cfg.weight_width, cfg.n, signed=True)
        idx = _unpack(pe >> (cfg.n * cfg.weight_width), cfg.index_width, cfg.n, signed=False) \
            if cfg.index_width else list(range(cfg.n))
        for j in range(cfg.n):
            values[j][c], indices[j][c] = vals[j], idx[j]
    return values, indices


def pack_psum_row(cfg, psums) -> int:
    if len(psums) != cfg.cols:
        raise ValueError(f"an accumulator row has {cfg.cols} values, not {len(psums)}")
    return _pack(psums, cfg.acc_width)


def unpack_psum_row(cfg, word: int) -> list[int]:
    return _unpack(word, cfg.acc_width, cfg.cols, signed=True)


def pack_scale_row(cfg, multipliers, shifts, biases=None) -> int:
    """Per output column: a ``SCALE_MULT_BITS`` multiplier, a ``SCALE_SHIFT_BITS`` shift and an
    ``acc_width`` bias (two's complement)."""
    word, pos = 0, 0
    lo, hi = -(1 << (cfg.acc_width - 1)), (1 << (cfg.acc_width - 1)) - 1
    for c in range(cfg.cols):
        mult, sh = int(multipliers[c]), int(shifts[c])
        bias = 0 if biases is None else int(biases[c])
        if not (0 <= mult < 1 << SCALE_MULT_BITS and 0 <= sh < 1 << SCALE_SHIFT_BITS):
            raise ValueError(f"column {c}: multiplier {mult} / shift {sh} do not fit "
                             f"{SCALE_MULT_BITS} / {SCALE_SHIFT_BITS} unsigned bits")
        if not lo <= bias <= hi:
            raise ValueError(f"column {c}: bias {bias} does not fit {cfg.acc_width} bits")
        field = mult | (sh << SCALE_MULT_BITS) | (
            (bias & ((1 << cfg.acc_width) - 1)) << (SCALE_MULT_BITS + SCALE_SHIFT_BITS))
        word |= field << pos
        pos += SCALE_MULT_BITS + SCALE_SHIFT_BITS + cfg.acc_width
    return word


def unpack_scale_row(cfg, word: int) -> tuple[list[int], list[int], list[int]]:
    """``(multipliers, shifts, biases)`` of a LOAD_SCALE beat."""
    width = SCALE_MULT_BITS + SCALE_SHIFT_BITS + cfg.acc_width
    fields = _unpack(word, width, cfg.cols, signed=False)
    biases = [_unpack(f >> (SCALE_MULT_BITS + SCALE_SHIFT_BITS), cfg.acc_width, 1,
                      signed=True)[0] for f in fields]
    return ([f & ((1 << SCALE_MULT_BITS) - 1) for f in fields],
            [(f >> SCALE_MULT_BITS) & ((1 << SCALE_SHIFT_BITS) - 1) for f in fields], biases)


def check_load_act(cfg, insn: Instruction) -> None:
    """A LOAD_ACT's ``count`` must be its ``pixels`` times the rows of a pixel (the scratchpad's
    row count and the DMA's pixel count describe the same transfer)."""
    if insn.opcode != Opcode.LOAD_ACT:
        raise ValueError(f"{insn.opcode.name} is not a LOAD_ACT")
    if insn.count != insn.pixels * act_rows_per_pixel(cfg, insn.channels):
        raise ValueError(f"LOAD_ACT: count {insn.count} is not pixels {insn.pixels} x "
                         f"{act_rows_per_pixel(cfg, insn.channels)} rows per pixel of "
                         f"{insn.channels} channels")


# ---- off-chip bytes per beat: what one data_in / data_out row costs the DRAM port ------------

def act_rows_per_pixel(cfg, channels: int) -> int:
    """Scratchpad rows one pixel of ``channels`` channels takes: ``ceil(channels / K_pass)``."""
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels must be a positive integer, not {channels!r}")
    return -(-channels // cfg.k_per_pass)


def act_row_bytes(cfg, channels: int, row: int) -> int:
    """Off-chip bytes of row ``row`` (0-based, within a LOAD_ACT) of a tensor with ``channels``
    channels per pixel: the real channels of its block only (the DMA zero-fills the rest)."""
    block = row % act_rows_per_pixel(cfg, channels)
    real = min(cfg.k_per_pass, channels - block * cfg.k_per_pass)
    return -(-real * cfg.act_width // 8)


def data_in_bytes(cfg, opcode: Opcode) -> int:
    """Bytes of one ``data_in`` beat of a LOAD, the row it writes in its own layout (a LOAD_ACT
    row at most: :func:`act_row_bytes` gives the bytes of each)."""
    rows = cfg.row_bits
    bits = {
        Opcode.LOAD_ACT: rows["act"],
        Opcode.LOAD_WEIGHT: rows["weight"],
        Opcode.LOAD_ACC: rows["acc"],
        Opcode.LOAD_SCALE: cfg.cols * (SCALE_MULT_BITS + SCALE_SHIFT_BITS + cfg.acc_width),
    }
    if opcode not in bits:
        raise ValueError(f"{Opcode(opcode).name} takes no data_in beats")
    return -(-bits[opcode] // 8)


def data_out_bytes(cfg, raw: bool) -> int:
    """Bytes of one ``data_out`` row of a STORE: ``cols`` requantized activations, or ``cols``
    accumulator-wide sums with ``raw``."""
    return -(-cfg.cols * (cfg.acc_width if raw else cfg.act_width) // 8)
