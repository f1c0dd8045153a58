"""The golden program executor on ISA v2 programs, without RTL: random convolutions (on-chip
im2col with padding and strides, P blocks in two tagged regions, grouped/depthwise, dense phases)
equal a direct convolution in NumPy; GEMMs equal a dense matmul; every COMPUTE's beats are the
input pixels computed directly from the pass; ``gated_macs`` equals an independent count; bad
programs are ProgramErrors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sparsa import im2col, isa
from sparsa.config import ArrayConfig
from sparsa.isa import Instruction, Opcode
from sparsa.sim.golden_accel import GoldenAccelerator, ProgramError
from sparsa.sim.programs import direct_conv, random_conv_program, random_gemm_program

SMALL = dict(act_buffer_kib=1, weight_buffer_kib=1, acc_buffer_kib=1)
CONFIGS = {
    "2x2-2of4": ArrayConfig(rows=2, cols=2, n=2, m=4, **SMALL),
    "2x3-1of4": ArrayConfig(rows=2, cols=3, n=1, m=4, **SMALL),
    "3x2-1of1": ArrayConfig(rows=3, cols=2, n=1, m=1, **SMALL),
    "2x2-2of8": ArrayConfig(rows=2, cols=2, n=2, m=8, **SMALL),
    "1x4-3of4": ArrayConfig(rows=1, cols=4, n=3, m=4, **SMALL),
}


def check_outputs(cfg, prog, outputs) -> None:
    requant_ref, raw_ref = prog.reference(cfg.acc_width, cfg.act_width)
    requant, raw = prog.collect(outputs, cfg.cols)
    np.testing.assert_array_equal(raw, raw_ref)
    np.testing.assert_array_equal(requant, requant_ref)


@pytest.mark.parametrize("name", CONFIGS)
def test_conv_programs_equal_the_direct_convolution(name, rng):
    cfg = CONFIGS[name]
    kinds = {"dense": 0, "grouped": 0, "blocks": 0}
    for k in range(20):   # every kind of program in every draw of seeds
        prog = random_conv_program(cfg, rng, zero_fraction=float(rng.choice([0.0, 0.4])),
                                   dense=(None, True, False, None)[k % 4],
                                   grouped=(None, False, True, True)[k % 4],
                                   max_beats=2 if k % 2 else None)
        check_outputs(cfg, prog, GoldenAccelerator(cfg).run(prog.program, prog.data_in))
        kinds["dense"] += prog.dense
        kinds["grouped"] += prog.groups > 1
        kinds["blocks"] += sum(i.opcode == Opcode.LOAD_ACT for i in prog.program) > 1
    assert all(kinds.values()), kinds   # the draw covers every kind of program


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("order", ["k_inner", "cols_inner"])
def test_gemm_programs_equal_the_matmul(name, order, rng):
    cfg = CONFIGS[name]
    for _ in range(5):
        prog = random_gemm_program(cfg, rng, order=order)
        check_outputs(cfg, prog, GoldenAccelerator(cfg).run(prog.program, prog.data_in))


def direct_beats(cfg, prog, p) -> np.ndarray:
    """The activations of pass ``p`` from the image, pixel by pixel (not the walk)."""
    g = prog.geometry
    (h, w), (sh, sw), (ph, pw), kp = g.in_size, g.stride, g.padding, cfg.k_per_pass
    ho, wo = g.out_size
    beats = np.zeros((p.count, kp), dtype=np.int64)
    for k, q in enumerate(range(p.first, p.first + p.count)):
        n, oy, ox = q // (ho * wo), q // wo % ho, q % wo
        y, x = oy * sh - ph + p.offset[0], ox * sw - pw + p.offset[1]
        if 0 <= y < h and 0 <= x < w:
            chans = prog.x[n, y, x, p.block * kp:(p.block + 1) * kp]
            beats[k, :len(chans)] = chans
    return beats


def gated(beats: np.ndarray, packed, m: int) -> int:
    """Products whose selected activation is zero, by loops over beats, groups, slots, columns."""
    count = 0
    groups, n, cols = packed.indices.shape
    for beat in beats:
        for g in range(groups):
            for s in range(n):
                for c in range(cols):
                    count += beat[g * m + packed.indices[g, s, c]] == 0
    return int(count)


@pytest.mark.parametrize("name", ["2x2-2of4", "3x2-1of1", "1x4-3of4"])
def test_beats_and_gated_macs_are_the_direct_ones(name, rng):
    """Step the executor instruction by instruction: each COMPUTE's beats (padding beats zero)
    equal the pixels of its pass, and ``gated_macs`` the count over those beats and tiles."""
    cfg = CONFIGS[name]
    for _ in range(6):
        prog = random_conv_program(cfg, rng, zero_fraction=0.3, max_computes=40)
        golden = GoldenAccelerator(cfg)
        beats = iter(prog.data_in)
        passes = iter(prog.passes)
        expected_gated = 0
        for insn in prog.program:
            if insn.opcode == Opcode.COMPUTE:
                p = next(passes)
                direct = direct_beats(cfg, prog, p)
                np.testing.assert_array_equal(golden.beats(insn), direct)
                expected_gated += gated(direct, p.weights, cfg.m)
            takes = {Opcode.LOAD_SCALE: 1}.get(insn.opcode, insn.count) \
                if insn.opcode in (Opcode.LOAD_ACT, Opcode.LOAD_WEIGHT, Opcode.LOAD_ACC,
                                   Opcode.LOAD_SCALE) else 0
            golden.run([insn], [next(beats) for _ in range(takes)])
        assert golden.gated_macs == expected_gated


def test_tags_do_not_change_the_results(rng):
    cfg = CONFIGS["2x2-2of4"]
    prog = random_conv_program(cfg, rng)
    flipped = [dataclasses.replace(i, tag=1 - i.tag) if i.opcode in (
        Opcode.LOAD_ACT, Opcode.COMPUTE) else i for i in prog.program]
    out = GoldenAccelerator(cfg).run(prog.program, prog.data_in)
    assert all(np.array_equal(a, b) for a, b in zip(
        out, GoldenAccelerator(cfg).run(flipped, prog.data_in), strict=True))


def test_direct_conv_on_a_hand_example():
    """A 3x3 image, 2x2 kernel of ones, stride 1, padding 1 on every side (a 4x4 output): each
    output is the sum of the pixels its window covers; stride 2 keeps every other one."""
    x = np.arange(1, 10).reshape(1, 3, 3, 1)
    ones = np.ones((2, 2, 1, 1), dtype=np.int64)
    sums = [[1, 3, 5, 3], [5, 12, 16, 9], [11, 24, 28, 15], [7, 15, 17, 9]]
    assert direct_conv(x, ones, (1, 1), (1, 1))[0, :, :, 0].tolist() == sums
    assert direct_conv(x, ones, (2, 2), (1, 1))[0, :, :, 0].tolist() == [[1, 5], [11, 28]]


# ---- bad programs -----------------------------------------------------------------------------

CFG = CONFIGS["2x2-2of4"]   # K_pass 8


def linear(p: int, k: int) -> tuple[Instruction, dict]:
    geom = im2col.linear_geometry(p, k)
    return (im2col.config_instruction(CFG, geom),
            im2col.compute_fields(CFG, geom, base=0, first=0, offset=(0, 0), block=0))


def test_compute_before_config_is_an_error():
    _, walk = linear(4, 8)
    prog = [Instruction(Opcode.LOAD_WEIGHT, count=2), Instruction(Opcode.PRELOAD),
            Instruction(Opcode.COMPUTE, count=4, **walk)]
    data = [isa.pack_weight_row(CFG, [[0, 0]] * 2, [[0, 0], [1, 1]])] * 2
    with pytest.raises(ProgramError, match="COMPUTE before any CONFIG"):
        GoldenAccelerator(CFG).run(prog, data)


def test_walked_rows_beyond_the_scratchpad_are_errors():
    """An activation scratchpad of 85 rows (not a power of two): a walk reaching row 100 of the
    7-bit read port is an error, naming the row."""
    cfg = ArrayConfig(rows=3, cols=2, n=1, m=4, **SMALL)       # 96-bit rows
    assert cfg.scratchpad_rows["act"] == 85
    geom = im2col.linear_geometry(20, 12)
    walk = im2col.compute_fields(cfg, geom, base=90, first=0, offset=(0, 0), block=0)
    prog = [im2col.config_instruction(cfg, geom), Instruction(Opcode.LOAD_WEIGHT, count=3),
            Instruction(Opcode.PRELOAD), Instruction(Opcode.COMPUTE, count=20, **walk)]
    data = [isa.pack_weight_row(cfg, [[0, 0]], [[0, 0]])] * 3
    with pytest.raises(ProgramError, match="reaches row 90, beyond the act scratchpad"):
        GoldenAccelerator(cfg).run(prog, data)


@pytest.mark.parametrize(("count", "channels", "message"), [
    (4, 0, "channels must be at least 1, not 0"),
    (3, 9, "count 3 is not a whole number of pixels of 9 channels"),
])
def test_bad_load_act_is_an_error(count, channels, message):
    prog = [Instruction(Opcode.LOAD_ACT, count=count, channels=channels)]
    with pytest.raises(ProgramError, match=message):
        GoldenAccelerator(CFG).run(prog, [0] * count)
