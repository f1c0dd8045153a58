"""The accelerator's instruction set, defined once.

Pure Python (no Amaranth): the encoder here is what the scheduler's programs are serialised with,
what the golden model executes and what the testbenches feed; ``sparsa.hw.layouts.instruction``
builds the hardware's ``data.StructLayout`` from :data:`FIELDS`, so both agree bit for bit
(fields packed from the least significant bit in the order listed).

=============  ==================================================================================
opcode         meaning
=============  ==================================================================================
LOAD_ACT       ``count`` beats of ``data_in`` -> activation scratchpad rows ``addr ..``
LOAD_WEIGHT    ``count`` beats -> weight scratchpad rows ``addr ..`` (one PE row each)
LOAD_ACC       ``count`` beats -> accumulator rows ``acc_addr ..`` (e.g. biases)
LOAD_SCALE     one beat -> per-column bias, requantization multiplier and shift
PRELOAD        weight scratchpad rows ``addr .. addr+rows-1`` -> the PEs' shadow bank
COMPUTE        activation rows ``addr ..`` (``count`` beats) through the array, the first one
               swapping in the preloaded weights; ``accumulate``: add accumulator rows
               ``acc_addr ..`` through ``psum_in``, else start from zero; results overwrite
               accumulator rows ``acc_addr ..``
STORE          accumulator rows ``acc_addr ..`` (``count``) plus the column biases (wrapping)
               -> ``data_out``: requantized to the activation width (``relu`` clamps at
               zero), or the raw sums with ``raw``
=============  ==================================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from .config import ADDR_BITS

__all__ = ["FIELDS", "INSN_BITS", "SCALE_MULT_BITS", "SCALE_SHIFT_BITS", "Instruction", "Opcode",
           "data_in_bytes", "data_out_bytes", "pack_act_row", "pack_psum_row", "pack_scale_row",
           "pack_weight_row",
           "unpack_act_row", "unpack_psum_row", "unpack_scale_row", "unpack_weight_row"]


class Opcode(IntEnum):
    LOAD_ACT = 1
    LOAD_WEIGHT = 2
    LOAD_ACC = 3
    LOAD_SCALE = 4
    PRELOAD = 5
    COMPUTE = 6
    STORE = 7


# (name, bits), least significant first.
FIELDS: tuple[tuple[str, int], ...] = (
    ("opcode", 3),
    ("accumulate", 1),
    ("relu", 1),
    ("raw", 1),
    ("addr", ADDR_BITS),
    ("acc_addr", ADDR_BITS),
    ("count", ADDR_BITS),
)
INSN_BITS = sum(bits for _, bits in FIELDS)

# Requantization parameters per output column (LOAD_SCALE beat): multiplier, then shift.
SCALE_MULT_BITS = 16
SCALE_SHIFT_BITS = 6


@dataclass(frozen=True)
class Instruction:
    opcode: Opcode
    addr: int = 0
    acc_addr: int = 0
    count: int = 0
    accumulate: bool = False
    relu: bool = False
    raw: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.opcode, Opcode):
            raise ValueError(f"opcode must be an Opcode, not {self.opcode!r}")
        for name, bits in FIELDS[4:]:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
                raise ValueError(f"{self.opcode.name}: {name} must be an integer in "
                                 f"[0, {(1 << bits) - 1}], not {value!r}")

    def encode(self) -> int:
        word, shift = 0, 0
        for name, bits in FIELDS:
            word |= int(getattr(self, name)) << shift
            shift += bits
        return word

    @classmethod
    def decode(cls, word: int) -> Instruction:
        values, shift = {}, 0
        for name, bits in FIELDS:
            values[name] = (word >> shift) & ((1 << bits) - 1)
            shift += bits
        try:
            opcode = Opcode(values.pop("opcode"))
        except ValueError:
            raise ValueError(f"instruction word {word:#x} has no valid opcode") from None
        for flag in ("accumulate", "relu", "raw"):
            values[flag] = bool(values[flag])
        return cls(opcode=opcode, **values)


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


def pack_weight_row(cfg, values, indices) -> int:
    """One PE row: for each of ``cols`` PEs, ``n`` values then (sparse hardware) ``n`` indices;
    ``values``/``indices`` are ``[n][cols]``."""
    word, shift = 0, 0
    for c in range(cfg.cols):
        for j in range(cfg.n):
            word |= (int(values[j][c]) & ((1 << cfg.weight_width) - 1)) << shift
            shift += cfg.weight_width
        for j in range(cfg.n if cfg.index_width else 0):
            word |= (int(indices[j][c]) & ((1 << cfg.index_width) - 1)) << shift
            shift += cfg.index_width
    return word


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


# ---- off-chip bytes per beat: what one data_in / data_out row costs the DRAM port ------------

def data_in_bytes(cfg, opcode: Opcode) -> int:
    """Bytes of one ``data_in`` beat of a LOAD: the row it writes, in its own layout."""
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
