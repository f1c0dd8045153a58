"""sim.fuzz: the shrinker reduces an injected failure (a fake backend that corrupts one output
row whenever a STORE follows an overwriting COMPUTE) to a 1-minimal reproducer that replays,
and does the same with that fault on top of the native harness; a tiny fuzz run on the native
harness passes against golden, counts and the cycle model."""

from __future__ import annotations

import contextlib
import dataclasses
import functools

import numpy as np
import pytest

from sparsa.config import ArrayConfig
from sparsa.isa import Opcode
from sparsa.sim import fuzz
from sparsa.sim.accel_driver import AccelRun
from sparsa.sim.golden_accel import GoldenAccelerator
from sparsa.sw.accel_timing import program_counts, program_timing

CFG = ArrayConfig(rows=2, cols=2, n=2, m=4, pipeline_depth=1, act_buffer_kib=1,
                  weight_buffer_kib=1, acc_buffer_kib=1)   # test_native's first configuration


def _trigger(program) -> bool:
    """A STORE after a COMPUTE that overwrote its accumulators."""
    computes = [n for n, i in enumerate(program) if i.opcode == Opcode.COMPUTE and
                not i.accumulate]
    return bool(computes) and any(i.opcode == Opcode.STORE for i in program[computes[0]:])


def fake_runner(cfg, cases, *, fault: bool = True):
    """A backend that is right (golden outputs, predicted counts and cycles) except, with
    ``fault``, for one output row off by one when the program has a COMPUTE that overwrites its
    accumulators."""
    out = []
    for case in cases:
        golden = GoldenAccelerator(cfg)
        rows = golden.run(case.program, case.data_in)
        timing = program_timing(cfg, case.program, dram_bytes_per_cycle=case.rate)
        if fault and _trigger(case.program) and rows:
            rows[-1] = rows[-1] + 1
        out.append(AccelRun(outputs=rows, cycles=timing.cycles, dispatch=timing.dispatch,
                            out_cycles=timing.out_cycles,
                            counters={**program_counts(cfg, case.program, len(case.data_in)),
                                      "gated_macs": golden.gated_macs}))
    return out


def _failing_case(rng) -> fuzz.Case:
    for _ in range(100):
        case = fuzz.tile_program(CFG, rng, tiles=12)
        if _trigger(case.program):
            case.pace = fuzz.Pace(backpressure=0.9, seed=1)
            return case
    raise AssertionError("no tile batch with an overwriting COMPUTE")


def test_shrinker_reduces_injected_failure(tmp_path, node_seed):
    case = _failing_case(np.random.default_rng(node_seed))
    assert fuzz.check(CFG, case, fake_runner(CFG, [case])[0])
    assert not fuzz.check(CFG, case, fake_runner(CFG, [case], fault=False)[0])   # the fake's doing
    small = fuzz.shrink(CFG, case, fake_runner)
    problems = fuzz.check(CFG, small, fake_runner(CFG, [small])[0])
    assert [p.split(":")[0] for p in problems] == ["outputs"]
    assert _trigger(small.program)
    assert small.pace is None                      # ideal streams suffice
    assert len(small.program) <= 7 < len(case.program)
    ops = [i.opcode for i in small.program]
    assert ops.count(Opcode.COMPUTE) == 1
    assert ops[-1] == Opcode.STORE
    for i in range(len(small.program)):            # 1-minimal: every instruction is needed
        units = fuzz._units(small)
        fewer = fuzz._from_units(small, units[:i] + units[i + 1:])
        if fuzz.reads_unwritten(fewer.program):
            continue
        with contextlib.suppress(fuzz.ProgramError):   # or no longer a valid program
            assert not fuzz.check(CFG, fewer, fake_runner(CFG, [fewer])[0])
    path = tmp_path / "repro.json"
    cmd = fuzz.save_repro(path, CFG, small, problems, node_seed, len(case.program))
    assert f"-m sparsa.sim.fuzz --replay {path}" in cmd
    assert fuzz.replay(path, runner=fake_runner) == problems
    assert fuzz.replay(path, runner=functools.partial(fake_runner, fault=False)) == []


@pytest.mark.rtl
def test_tiny_fuzz_run(node_seed):
    """Two tile batches and two GEMM/conv programs per job, on the native harness: no
    mismatch, every tile counted."""
    stats = fuzz.Stats()
    for job in range(3):
        stats.add(fuzz.run_job("2x2-2of4-d1", fuzz.job_seed(node_seed, "tiny", job), 2, 2, 10,
                               runner=fuzz.NativeRunner(), cfg=CFG))
    assert stats.programs == 12
    assert stats.tiles >= 60
    assert stats.mismatches == []


def _corrupting(runner):
    """``runner`` with the fake's fault: the last output row off by one after an overwriting
    COMPUTE."""
    def run(cfg, cases):
        results = runner(cfg, cases)
        return [dataclasses.replace(r, outputs=[*r.outputs[:-1], r.outputs[-1] + 1])
                if _trigger(c.program) and not isinstance(r, Exception) and r.outputs else r
                for c, r in zip(cases, results, strict=True)]
    return run


@pytest.mark.rtl
def test_shrinker_on_native(tmp_path, node_seed):
    """The same injected fault on top of the native harness (every candidate its own harness
    process): shrunk to at most 7 instructions at ideal pacing, and the reproducer replays on
    the harness with the fault, and passes without it."""
    native = fuzz.NativeRunner()
    runner = _corrupting(native)
    case = _failing_case(np.random.default_rng(node_seed))
    assert not fuzz.check(CFG, case, native(CFG, [case])[0])
    small = fuzz.shrink(CFG, case, runner)
    problems = fuzz.check(CFG, small, runner(CFG, [small])[0])
    assert [p.split(":")[0] for p in problems] == ["outputs"]
    assert small.pace is None
    assert len(small.program) <= 7 < len(case.program)
    path = tmp_path / "repro.json"
    fuzz.save_repro(path, CFG, small, problems, node_seed, len(case.program))
    assert fuzz.replay(path, runner=runner) == problems
    assert fuzz.replay(path) == []
