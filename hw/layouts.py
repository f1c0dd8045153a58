"""Data layouts of the array's ports, derived from :class:`~sparsa.config.ArrayConfig` only.

Testbenches pack and unpack stream payloads with these same layouts (``layout.const(...)``), so no
bit offset is ever written by hand.
"""

from __future__ import annotations

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from sparsa import isa
from sparsa.config import ArrayConfig

__all__ = ["COUNTER_BITS", "act_beat", "counters", "data_in_width", "instruction",
           "instruction_args", "pe_act",
           "pe_weights", "psum_row", "scale_row", "weight_row"]

COUNTER_BITS = 32   # every activity counter is this wide and wraps


def counters(names) -> data.StructLayout:
    """A bank of activity counters, one ``COUNTER_BITS``-bit field per name, in order: the
    accelerator's ``counters`` port and what the CSR block shows."""
    return data.StructLayout({name: unsigned(COUNTER_BITS) for name in names})


def pe_weights(cfg: ArrayConfig) -> data.StructLayout:
    """What one PE stores per bank: ``n`` values and, for sparse hardware, ``n`` indices."""
    fields = {"values": data.ArrayLayout(signed(cfg.weight_width), cfg.n)}
    if cfg.index_width:
        fields["indices"] = data.ArrayLayout(unsigned(cfg.index_width), cfg.n)
    return data.StructLayout(fields)


def pe_act(cfg: ArrayConfig) -> data.StructLayout:
    """What travels between PEs of a row: ``m`` activations and the weight bank they use."""
    return data.StructLayout({
        "data": data.ArrayLayout(signed(cfg.act_width), cfg.m),
        "bank": unsigned(1),
    })


def act_beat(cfg: ArrayConfig) -> data.StructLayout:
    """One beat of the array's ``act`` stream: ``rows * m`` activations (row ``r`` of the array
    takes elements ``r*m .. r*m+m-1``) and ``swap``: this beat starts a new weight tile (the
    shadow weights become active for it and every later beat)."""
    return data.StructLayout({
        "data": data.ArrayLayout(signed(cfg.act_width), cfg.act_vector_width),
        "swap": unsigned(1),
    })


def weight_row(cfg: ArrayConfig) -> data.ArrayLayout:
    """One beat of the ``weight`` stream: the compressed weights of one PE row (``cols`` PEs).
    A tile is ``rows`` beats, row 0 first; they fill the shadow bank."""
    return data.ArrayLayout(pe_weights(cfg), cfg.cols)


def psum_row(cfg: ArrayConfig) -> data.ArrayLayout:
    """One beat of ``psum_in`` / ``psum``: ``cols`` accumulators."""
    return data.ArrayLayout(signed(cfg.acc_width), cfg.cols)


def instruction_args(op: isa.Opcode) -> data.StructLayout:
    """The fields of opcode ``op`` (:data:`sparsa.isa.FORMATS`, LSB first; ``y``/``x``
    signed)."""
    return data.StructLayout({name: signed(bits) if name in isa.SIGNED_FIELDS else unsigned(bits)
                              for name, bits in isa.FORMATS[op]})


def instruction() -> data.FlexibleLayout:
    """An instruction word (:data:`sparsa.isa.INSN_BITS` bits), from the one definition in
    :mod:`sparsa.isa`: ``opcode`` in the low :data:`~sparsa.isa.OPCODE_BITS` bits, then ``args``,
    a union of the opcodes' fields (:func:`instruction_args`), each named after its opcode in
    lower case (``args.compute.acc_addr``; none for an opcode without fields: a zero-width
    signal is not valid Verilog)."""
    args = data.UnionLayout({op.name.lower(): instruction_args(op) for op in isa.Opcode
                             if isa.FORMATS[op]})
    return data.FlexibleLayout(isa.INSN_BITS, {
        "opcode": data.Field(unsigned(isa.OPCODE_BITS), 0),
        "args": data.Field(args, isa.OPCODE_BITS),
    })


def scale_row(cfg: ArrayConfig) -> data.ArrayLayout:
    """Per output column: requantization multiplier and shift, and the bias (LOAD_SCALE)."""
    return data.ArrayLayout(data.StructLayout({
        "mult": unsigned(isa.SCALE_MULT_BITS),
        "shift": unsigned(isa.SCALE_SHIFT_BITS),
        "bias": signed(cfg.acc_width),
    }), cfg.cols)


def data_in_width(cfg: ArrayConfig) -> int:
    """Bits per ``data_in`` beat: the widest scratchpad row (or the scale row)."""
    return max(act_beat(cfg).size - 1, weight_row(cfg).size, psum_row(cfg).size,
               scale_row(cfg).size)
