"""The ISA v2 instruction word (:mod:`sparsa.isa`): every opcode's fields round-trip through
``encode``/``decode`` at random values and at their limits, every field sits where
:data:`~sparsa.isa.FORMATS` puts it (bits counted here, after the 4-bit opcode), and bad
instructions and words are clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from sparsa.isa import FORMATS, INSN_BITS, OPCODE_BITS, SIGNED_FIELDS, Instruction, Opcode

FLAGS = {"accumulate", "relu", "raw"}


def field_range(name: str, bits: int) -> tuple[int, int]:
    if name in SIGNED_FIELDS:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def random_instruction(op: Opcode, rng: np.random.Generator, *, extreme: bool = False
                       ) -> Instruction:
    values = {}
    for name, bits in FORMATS[op]:
        lo, hi = field_range(name, bits)
        value = int(rng.choice([lo, hi])) if extreme else int(rng.integers(lo, hi + 1))
        values[name] = bool(value) if name in FLAGS else value
    return Instruction(op, **values)


@pytest.mark.parametrize("op", list(Opcode), ids=lambda op: op.name)
def test_round_trip_every_opcode(op, rng):
    for k in range(200):
        insn = random_instruction(op, rng, extreme=k % 4 == 0)
        word = insn.encode()
        assert 0 <= word < 1 << INSN_BITS
        assert word & ((1 << OPCODE_BITS) - 1) == op
        assert Instruction.decode(word) == insn


@pytest.mark.parametrize("op", list(Opcode), ids=lambda op: op.name)
def test_fields_sit_where_formats_say(op):
    """One field at a time set to all ones: exactly its bits are set, at the running offset
    after the opcode (negative signed fields as two's complement)."""
    shift = OPCODE_BITS
    for name, bits in FORMATS[op]:
        value = True if name in FLAGS else (-1 if name in SIGNED_FIELDS else (1 << bits) - 1)
        word = Instruction(op, **{name: value}).encode()
        assert word == int(op) | (((1 << bits) - 1) << shift), name
        shift += bits
    assert shift <= INSN_BITS


def test_bad_instructions_are_clear_errors():
    with pytest.raises(ValueError, match="LOAD_WEIGHT has no field channels"):
        Instruction(Opcode.LOAD_WEIGHT, channels=3)
    with pytest.raises(ValueError, match="LOAD_ACT has no relu flag"):
        Instruction(Opcode.LOAD_ACT, relu=True)
    with pytest.raises(ValueError, match=r"COMPUTE: y must be an integer in \[-32768, 32767\]"):
        Instruction(Opcode.COMPUTE, y=40000)
    with pytest.raises(ValueError, match=r"CONFIG: stride_x must be an integer in \[0, 7\]"):
        Instruction(Opcode.CONFIG, stride_x=8)
    with pytest.raises(ValueError, match=r"COMPUTE: i must be an integer in \[0, 15\]"):
        Instruction(Opcode.COMPUTE, i=16)
    with pytest.raises(ValueError, match="tag must be an integer in"):
        Instruction(Opcode.LOAD_ACT, tag=2)
    with pytest.raises(ValueError, match="accumulate must be a bool"):
        Instruction(Opcode.COMPUTE, accumulate=2)
    with pytest.raises(ValueError, match=r"count must be an integer, not 1\.5"):
        Instruction(Opcode.STORE, count=1.5)
    with pytest.raises(ValueError, match="opcode must be an Opcode"):
        Instruction(6)


def test_bad_words_are_clear_errors():
    for code in (0, *range(max(Opcode) + 1, 1 << OPCODE_BITS)):
        with pytest.raises(ValueError, match="has no valid opcode"):
            Instruction.decode(code)
    top = OPCODE_BITS + sum(bits for _, bits in FORMATS[Opcode.STORE])
    with pytest.raises(ValueError, match="bits above STORE's fields are set"):
        Instruction.decode(int(Opcode.STORE) | 1 << top)
