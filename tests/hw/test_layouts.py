"""The pure-Python packers of sparsa.isa produce exactly the bits of the hardware's layouts."""

from __future__ import annotations

import numpy as np
import pytest

from sparsa import isa
from sparsa.config import ArrayConfig
from sparsa.hw import layouts
from sparsa.sim.encode import act_beat

CONFIGS = [ArrayConfig(rows=2, cols=3, n=2, m=4), ArrayConfig(rows=3, cols=2, n=1, m=1),
           ArrayConfig(rows=2, cols=2, n=3, m=8), ArrayConfig(rows=1, cols=4, n=4, m=4)]


def bits(layout, value) -> int:
    return layout.const(value).as_value().value


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.rows}x{c.cols}-{c.n}of{c.m}")
def test_row_packers_match_layouts(cfg, rng):
    acts = rng.integers(-128, 128, cfg.act_vector_width)
    for swap in (False, True):
        assert act_beat(cfg, acts, swap=swap) == bits(
            layouts.act_beat(cfg), {"data": [int(a) for a in acts], "swap": int(swap)})
    values = rng.integers(-128, 128, (cfg.n, cfg.cols))
    indices = rng.integers(0, cfg.m, (cfg.n, cfg.cols)) if cfg.index_width else \
        np.tile(np.arange(cfg.n)[:, None], (1, cfg.cols))
    pes = [{"values": [int(v) for v in values[:, c]],
            **({"indices": [int(i) for i in indices[:, c]]} if cfg.index_width else {})}
           for c in range(cfg.cols)]
    word = isa.pack_weight_row(cfg, values, indices)
    assert word == bits(layouts.weight_row(cfg), pes)
    back_values, back_indices = isa.unpack_weight_row(cfg, word)
    np.testing.assert_array_equal(back_values, values)
    np.testing.assert_array_equal(back_indices, indices)
    psums = rng.integers(-(1 << 31), 1 << 31, cfg.cols)
    word = isa.pack_psum_row(cfg, psums)
    assert word == bits(layouts.psum_row(cfg), [int(p) for p in psums])
    assert isa.unpack_psum_row(cfg, word) == [int(p) for p in psums]
    mult = rng.integers(0, 1 << isa.SCALE_MULT_BITS, cfg.cols)
    shift = rng.integers(0, 1 << isa.SCALE_SHIFT_BITS, cfg.cols)
    word = isa.pack_scale_row(cfg, mult, shift, psums)
    assert word == bits(layouts.scale_row(cfg), [
        {"mult": int(m), "shift": int(s), "bias": int(b)} for m, s, b in zip(
            mult, shift, psums, strict=True)])
    assert isa.unpack_scale_row(cfg, word) == ([int(m) for m in mult], [int(s) for s in shift],
                                               [int(p) for p in psums])


def random_instruction(rng, op: isa.Opcode) -> isa.Instruction:
    """Every field of ``op`` drawn over its whole range (two's complement for y and x)."""
    values = {}
    for name, width in isa.FORMATS[op]:
        lo, hi = ((-(1 << (width - 1)), 1 << (width - 1)) if name in isa.SIGNED_FIELDS
                  else (0, 1 << width))
        values[name] = int(rng.integers(lo, hi))
        if name in ("accumulate", "relu", "raw"):
            values[name] = bool(values[name])
    return isa.Instruction(op, **values)


@pytest.mark.parametrize("op", list(isa.Opcode), ids=lambda op: op.name)
def test_instruction_word_matches_layout(op, rng):
    """``Instruction.encode`` and the hardware's layout agree bit for bit, for random values of
    every field of every opcode, and the layout reads every field back (signed where signed)."""
    layout = layouts.instruction()
    assert layout.size == isa.INSN_BITS
    for _ in range(20):
        insn = random_instruction(rng, op)
        args = {name: int(getattr(insn, name)) for name, _ in isa.FORMATS[op]}
        word = insn.encode()
        assert word == bits(layout, {"opcode": int(op),
                                     **({"args": {op.name.lower(): args}} if args else {})})
        view = layout.from_bits(word)
        assert view.opcode == int(op)
        if args:
            fields = getattr(view.args, op.name.lower())
            assert {name: int(getattr(fields, name)) for name in args} == args
        assert isa.Instruction.decode(word) == insn


def test_instruction_errors():
    with pytest.raises(ValueError, match="count must be an integer"):
        isa.Instruction(isa.Opcode.STORE, count=1 << 16)
    with pytest.raises(ValueError, match="no valid opcode"):
        isa.Instruction.decode(0)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.rows}x{c.cols}-{c.n}of{c.m}")
def test_scratchpad_rows_follow_the_layouts(cfg):
    """ArrayConfig.scratchpad_rows (used by the software without Amaranth) divides each buffer
    by the width of the hardware row it stores."""
    widths = {"act": layouts.act_beat(cfg).size - 1, "weight": layouts.weight_row(cfg).size,
              "acc": layouts.psum_row(cfg).size}
    for name, bits in widths.items():
        kib = getattr(cfg, f"{name}_buffer_kib")
        assert cfg.scratchpad_rows[name] == min(1 << 16, kib * 8192 // bits)
