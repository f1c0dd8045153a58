"""The top's cycle model (:mod:`sparsa.sw.top_timing`) alone, against the closed forms that
:mod:`sparsa.hw.top`'s docstring derives from its rules (a LOAD alone, a STORE alone), and its
input checks. The model against the RTL, cycle for cycle: ``tests/hw/test_top_timing.py``."""

from __future__ import annotations

import random

import pytest

from sparsa import isa
from sparsa.config import ArrayConfig
from sparsa.isa import Instruction, Opcode
from sparsa.sw.accel_timing import STORE_STAGES
from sparsa.sw.top_timing import top_timing

SMALL = dict(act_buffer_kib=1, weight_buffer_kib=1, acc_buffer_kib=1)
CFG = ArrayConfig(rows=2, cols=2, n=2, m=4, axi_data_bits=64, **SMALL)
BUS = CFG.axi_data_bits // 8


def _pieces(nbytes: int, size: int) -> int:
    """Pieces of a row: the multiples of the bus width or the chunk size inside it, plus one."""
    return len({k for k in range(1, nbytes) if k % BUS == 0 or k % size == 0}) + 1


def test_a_load_alone(seed_for, request):
    """A LOAD_WEIGHT of one aligned row (one burst) dispatched at D: first ``data_in`` beat at
    ``D + 3 + L``, last at ``D + 2 + L + p`` (``p`` pieces)."""
    rng = random.Random(seed_for(request.node.nodeid))
    size = isa.data_in_bytes(CFG, Opcode.LOAD_WEIGHT)
    for _ in range(6):
        count, latency = rng.randint(1, 6), rng.randint(1, 30)
        insn = Instruction(Opcode.LOAD_WEIGHT, count=count, dram=0x2000 + BUS * rng.randrange(8))
        t = top_timing(CFG, [insn], latency=latency)
        (d,) = t.dispatch
        assert len(t.data_in) == count
        assert t.data_in[0] == d + 3 + latency
        assert t.data_in[-1] == d + 2 + latency + _pieces(count * size, size)


def test_a_load_of_single_beat_pixels(seed_for, request):
    """A LOAD_ACT of pixels that each fit one aligned bus beat, ``L <= 7`` (eight one-beat
    bursts cover it): every row costs its pieces ``p`` (a row's first beat is captured with the
    previous row's last piece), row ``j``'s chunk at ``D + 2 + L + (j + 1) p``."""
    rng = random.Random(seed_for(request.node.nodeid))
    kp = CFG.k_per_pass
    for _ in range(6):
        channels, pixels, latency = rng.randint(1, min(kp, BUS)), rng.randint(1, 12), \
            rng.randint(1, 7)
        insn = Instruction(Opcode.LOAD_ACT, count=pixels, channels=channels, pixels=pixels,
                           dram=0x2000, stride=BUS * rng.randint(1, 3))
        t = top_timing(CFG, [insn], latency=latency)
        (d,) = t.dispatch
        p = _pieces(channels, kp)
        assert t.data_in == [d + 2 + latency + (j + 1) * p for j in range(pixels)]


def test_a_store_alone(seed_for, request):
    """A STORE of rows that each fit one aligned bus beat, dispatched at D: row ``r`` at
    ``D + 2 + S + r`` (``S`` the core's STORE pipeline stages), completion at
    ``D + 4 + S + count``."""
    rng = random.Random(seed_for(request.node.nodeid))
    for _ in range(6):
        count, raw = rng.randint(1, 12), rng.random() < 0.5
        channels = rng.randint(1, CFG.cols)
        insn = Instruction(Opcode.STORE, count=count, channels=channels, raw=raw,
                           dram=0x2000 + BUS * rng.randrange(8), stride=BUS * rng.randint(1, 3))
        t = top_timing(CFG, [insn], latency=rng.randint(1, 20))
        (d,) = t.dispatch
        assert t.data_out == [d + 2 + STORE_STAGES + r for r in range(count)]
        assert t.store_done == [d + 4 + STORE_STAGES + count]
        assert t.run_cycles == t.store_done[0] + 1


@pytest.mark.parametrize("latency", [0, -1, 1.5, True])
def test_bad_latency(latency):
    with pytest.raises(ValueError, match="latency must be a whole number of cycles >= 1"):
        top_timing(CFG, [Instruction(Opcode.CONFIG)], latency=latency)


@pytest.mark.parametrize("ahead", [0, 1.0, True])
def test_bad_loads_ahead(ahead):
    with pytest.raises(ValueError, match="loads_ahead must be a whole number >= 1"):
        top_timing(CFG, [Instruction(Opcode.CONFIG)], latency=1, loads_ahead=ahead)


def test_a_store_with_no_rows_is_rejected():
    with pytest.raises(ValueError, match="instruction 0: a STORE with no rows is not modelled"):
        top_timing(CFG, [Instruction(Opcode.STORE, count=0, channels=1)], latency=1)
