"""The STORE path's pipelined requantizer in Amaranth's simulator, alone: random rows with random
gaps, over the whole operand ranges (INT32 extremes, sums that wrap with the bias, every shift the
hardware takes up to the golden model's 62, multipliers 0 .. 65535, both clamps, ReLU, raw),
against :func:`sparsa.nm.requantize` on the wrapped sum; each row comes out exactly
:attr:`Requantizer.LATENCY` (four) cycles after it went in, the cycles in between empty."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from sparsa import isa, nm
from sparsa.config import ArrayConfig
from sparsa.hw.engines import Requantizer

CFG = ArrayConfig(rows=2, cols=3, n=2, m=4)
STAGES = 4          # the class docstring's latency
INT32 = (-(1 << 31), (1 << 31) - 1)


def _wrap(x: np.ndarray) -> np.ndarray:
    return ((x + (1 << 31)) % (1 << 32)) - (1 << 31)


def _wide(rng: np.random.Generator, shape) -> np.ndarray:
    """int32 values: a third at the extremes or next to zero, a third small, a third uniform."""
    pick = rng.integers(0, 3, size=shape)
    extreme = rng.choice([*INT32, 0, 1, -1], size=shape)
    small = rng.integers(-5000, 5000, size=shape)
    return np.where(pick == 0, extreme,
                    np.where(pick == 1, small, rng.integers(*INT32, size=shape)))


def _group(rng: np.random.Generator) -> dict:
    """Rows that share one scale row (the scales change only while the pipeline is empty, as
    the dispatcher holds LOAD_SCALE back while a STORE is busy)."""
    cols, count = CFG.cols, int(rng.integers(1, 8))
    mult = np.where(rng.random(cols) < 0.2, rng.choice([0, 1, 65535], cols),
                    rng.integers(0, 1 << isa.SCALE_MULT_BITS, cols))
    return {"sum": _wide(rng, (count, cols)), "bias": _wide(rng, cols), "mult": mult,
            "shift": rng.integers(0, 63, cols), "relu": rng.random(count) < 0.5,
            "raw": rng.random(count) < 0.25}


def _expected(g: dict, j: int) -> list[int]:
    acc = _wrap(g["sum"][j] + g["bias"])
    if g["raw"][j]:
        return acc.tolist()
    return [int(nm.requantize(np.int64(a), int(mu), int(sh), relu=bool(g["relu"][j]),
                              out_width=CFG.act_width))
            for a, mu, sh in zip(acc, g["mult"], g["shift"], strict=True)]


@pytest.mark.parametrize("gaps", [0.0, 0.5])
def test_requantizer_against_golden(gaps, seed_for, request):
    rng = np.random.default_rng(seed_for(request.node.nodeid))
    groups = [_group(rng) for _ in range(40)]
    dut = Requantizer(CFG)
    sent: list[tuple[int, list[int]]] = []     # (cycle, expected values) per row sent
    seen: list[tuple[int, list[int]]] = []

    async def bench(ctx):
        t = 0

        async def tick(valid: bool):
            nonlocal t
            ctx.set(dut.rows.valid, valid)
            if ctx.get(dut.out.valid):
                seen.append((t, [int(v) for v in ctx.get(dut.out.payload)]))
            t += 1
            await ctx.tick()

        for g in groups:
            for c in range(CFG.cols):
                ctx.set(dut.scales[c].mult, int(g["mult"][c]))
                ctx.set(dut.scales[c].shift, int(g["shift"][c]))
                ctx.set(dut.scales[c].bias, int(g["bias"][c]))
            for j in range(len(g["sum"])):
                while rng.random() < gaps:
                    await tick(False)
                ctx.set(dut.rows.payload, g["sum"][j].tolist())
                ctx.set(dut.relu, bool(g["relu"][j]))
                ctx.set(dut.raw, bool(g["raw"][j]))
                sent.append((t, _expected(g, j)))
                await tick(True)
            for _ in range(STAGES):       # drain before the scales change
                await tick(False)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert [(t + STAGES, v) for t, v in sent] == seen
