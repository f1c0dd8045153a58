"""Programs in memory (sparsa.sim.memory_image) and the golden executor on them: a linked
program run with its operands in memory stores exactly the rows the stream program sends out;
the activations sit in memory as the NHWC pixels of the input, unpadded; bad programs and
configurations get one clear error."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from sparsa.config import ArrayConfig
from sparsa.isa import Instruction, Opcode
from sparsa.sim.golden_accel import GoldenAccelerator
from sparsa.sim.memory_image import PROG_BASE, link
from sparsa.sim.programs import random_conv_program, random_gemm_program

SMALL = dict(act_buffer_kib=1, weight_buffer_kib=1, acc_buffer_kib=1)
CONFIGS = {
    "2x2-2of4": ArrayConfig(rows=2, cols=2, n=2, m=4, **SMALL),
    "2x3-1of1": ArrayConfig(rows=2, cols=3, n=1, m=1, **SMALL),
    "1x4-2of8-acc48": ArrayConfig(rows=1, cols=4, n=2, m=8, acc_width=48, **SMALL),
}


def reader(memory: bytearray):
    return lambda addr, n: bytes(memory[addr:addr + n])


def programs(cfg, rng):
    for k in range(6):
        yield random_gemm_program(cfg, rng, order=("k_inner", "cols_inner")[k % 2])
        yield random_conv_program(cfg, rng, grouped=bool(k % 3 == 0), max_computes=40)


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("shuffle", [False, True])
def test_program_in_memory_stores_what_the_stream_program_sends(name, shuffle, rng):
    cfg = CONFIGS[name]
    for prog in programs(cfg, rng):
        mp = link(cfg, prog.program, prog.data_in, rng=rng if shuffle else None)
        memory = mp.image()
        GoldenAccelerator(cfg).run_in_memory(mp.program, memory)
        expected = GoldenAccelerator(cfg).run(prog.program, prog.data_in)
        stores = [i for i in prog.program if i.opcode == Opcode.STORE]
        per_row = [s for s in stores for _ in range(s.count)]
        cut = [row[:insn.channels] for insn, row in zip(per_row, expected, strict=True)]
        got = mp.read_outputs(cfg, reader(memory))
        assert len(got) == len(cut)
        for g, e in zip(got, cut, strict=True):
            np.testing.assert_array_equal(g, e)
        # the program words come first, and the linked program only adds memory fields
        assert mp.segments[0][0] == PROG_BASE
        assert mp.prog_len == 16 * len(prog.program)
        for a, b in zip(prog.program, mp.program, strict=True):
            assert dataclasses.replace(b, dram=0, stride=0, pixels=a.pixels) == a
        spans = sorted((addr, addr + len(data)) for addr, data in mp.segments)
        assert all(e <= s for (_, e), (s, _) in itertools.pairwise(spans))


def test_activations_sit_in_memory_as_nhwc_pixels(rng):
    cfg = CONFIGS["2x2-2of4"]
    prog = random_gemm_program(cfg, rng, order="k_inner")
    mp = link(cfg, prog.program, prog.data_in, rng=rng)
    memory = mp.image()
    load = next(i for i in mp.program if i.opcode == Opcode.LOAD_ACT)
    assert load.pixels == prog.x.shape[0]
    assert load.channels == prog.x.shape[1]
    for p, pixel in enumerate(prog.x):
        at = load.dram + p * load.stride
        stored = np.frombuffer(bytes(memory[at:at + load.channels]), dtype=np.int8)
        np.testing.assert_array_equal(stored, pixel)


def test_bad_programs_get_one_clear_error():
    cfg = CONFIGS["2x2-2of4"]
    store = Instruction(Opcode.STORE, count=1)
    with pytest.raises(ValueError, match="STORE: channels must be 1 to 2"):
        link(cfg, [store], [])
    with pytest.raises(ValueError, match="data_in ends inside"):
        link(cfg, [Instruction(Opcode.LOAD_WEIGHT, count=2)], [1])
    with pytest.raises(ValueError, match="rows that no LOAD takes"):
        link(cfg, [], [1])
    with pytest.raises(ValueError, match="act_width 4 and acc_width 32 must be multiples of 8"):
        link(cfg.replace(act_width=4, weight_width=4), [], [])
    padded = Instruction(Opcode.LOAD_ACT, count=1, channels=3, pixels=1)
    with pytest.raises(ValueError, match="beyond its 3 channels"):
        link(cfg, [padded], [(1 << 32) - 1])
