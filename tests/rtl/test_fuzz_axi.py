"""sim.fuzz_axi, the AXI campaign of ``make fuzz``: with a fake backend that is right (the golden
memory, the predicted counters, top_timing's run_cycles) but for an injected fault, a mismatch
is caught, shrunk to a 1-minimal reproducer at latency 1 and a dense layout (or at its latency,
when the fault needs it), written by the campaign's report and replayed; the same fault on top
of the native AXI harness is shrunk and replays there; a handful of random programs on the
native harness (two configurations, random latencies and layouts) pass all three checks."""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
import pytest

from sparsa.config import ArrayConfig
from sparsa.isa import Opcode
from sparsa.sim import fuzz, fuzz_axi
from sparsa.sim.golden_accel import GoldenAccelerator
from sparsa.sim.native_axi import PAD_BYTES, AxiNativeResult
from sparsa.sw.accel_timing import program_counts
from sparsa.sw.top_timing import top_timing

SMALL = dict(act_buffer_kib=1, weight_buffer_kib=1, acc_buffer_kib=1)
CONFIGS = {   # test_native_axi's: their executables are shared
    "2x2-2of4-axi64": ArrayConfig(rows=2, cols=2, n=2, m=4, axi_data_bits=64, **SMALL),
    "2x3-1of1-axi128": ArrayConfig(rows=2, cols=3, n=1, m=1, axi_data_bits=128, **SMALL),
}
CFG = CONFIGS["2x2-2of4-axi64"]


def _trigger(program) -> bool:
    """A STORE after a COMPUTE that overwrote its accumulators (sim.fuzz's test's fault)."""
    computes = [n for n, i in enumerate(program) if i.opcode == Opcode.COMPUTE and
                not i.accumulate]
    return bool(computes) and any(i.opcode == Opcode.STORE for i in program[computes[0]:])


def _corrupt(mp, result):
    """``result`` with the first byte of the last STORE's rows flipped, if ``mp`` triggers."""
    if isinstance(result, Exception) or not _trigger(mp.program):
        return result
    memory = bytearray(result.memory)
    memory[mp.outputs[-1].dram] ^= 0x01
    return dataclasses.replace(result, memory=memory)


def fake_runner(cfg, mp, latency, *, fault: str | None = "memory"):
    """Right (golden memory, predicted counters and run_cycles) except for ``fault``: "memory"
    (:func:`_corrupt`) or "cycles" (run_cycles one more at a latency of 10 or more, when the
    program has a STORE)."""
    memory = mp.image() + bytearray(PAD_BYTES)
    golden = GoldenAccelerator(cfg)
    golden.run_in_memory(mp.program, memory)
    run_cycles = top_timing(cfg, mp.program, latency=latency, prog_base=mp.prog_base).run_cycles
    if fault == "cycles" and latency >= 10 and any(i.opcode == Opcode.STORE for i in mp.program):
        run_cycles += 1
    counters = {**program_counts(cfg, mp.program), "gated_macs": golden.gated_macs,
                "insns_fetched": len(mp.program), "axi_read_beats": 0, "axi_write_beats": 0}
    result = AxiNativeResult(memory=memory, outputs=[], counters=counters, status=0,
                             run_cycles=run_cycles, cycles=run_cycles, simulated=run_cycles,
                             read_beats=0, write_beats=0, seconds=0.0, cpu_seconds=0.0)
    return _corrupt(mp, result) if fault == "memory" else result


def _failing_case(rng, *, tiles: int = 12) -> fuzz_axi.AxiCase:
    for _ in range(100):
        case = fuzz.tile_program(CFG, rng, tiles=tiles)
        if _trigger(case.program):
            return fuzz_axi.AxiCase(case.program, case.data_in, latency=23,
                                    layout=int(rng.integers(0, 2**63)))
    raise AssertionError("no tile batch with an overwriting COMPUTE")


def _kinds(problems) -> list[str]:
    return [p.split(":")[0] for p in problems]


def _assert_one_minimal(case, runner) -> None:
    """Every instruction of ``case`` is needed for it to fail."""
    for i in range(len(case.program)):
        units = fuzz._units(case)
        fewer = fuzz._from_units(case, units[:i] + units[i + 1:])
        if fuzz.reads_unwritten(fewer.program):
            continue
        with contextlib.suppress(fuzz.ProgramError):   # or no longer a valid program
            assert not fuzz_axi.run_case(CFG, fewer, runner)[2]


def test_injected_memory_fault_is_caught_shrunk_and_replayed(tmp_path, node_seed, capsys):
    case = _failing_case(np.random.default_rng(node_seed))
    clean = dataclasses.replace(case)
    assert not fuzz_axi.run_case(CFG, clean, lambda c, m, lat: fake_runner(c, m, lat,
                                                                           fault=None))[2]
    stats = fuzz_axi.AxiStats()
    stats.mismatches.append(("small", node_seed, 0, case,
                             fuzz_axi.run_case(CFG, case, fake_runner)[2]))
    assert _kinds(stats.mismatches[0][4]) == ["memory"]
    [cmd] = fuzz_axi.report_mismatches(stats, tmp_path, fake_runner, configs={"small": CFG})
    path = tmp_path / f"axi-repro-{node_seed}-0.json"
    assert cmd.endswith(f"-m sparsa.sim.fuzz_axi --replay {path}")
    assert "MISMATCH on small" in capsys.readouterr().out
    problems = fuzz_axi.replay(path, runner=fake_runner)
    assert _kinds(problems) == ["memory"]
    assert fuzz_axi.replay(path, runner=lambda c, m, lat: fake_runner(c, m, lat,
                                                                      fault=None)) == []
    small = fuzz_axi.shrink(CFG, case, fake_runner)
    assert (small.latency, small.layout) == (1, None)   # neither is needed for this fault
    assert len(small.program) <= 7 < len(case.program)
    ops = [i.opcode for i in small.program]
    assert ops.count(Opcode.COMPUTE) == 1
    assert ops[-1] == Opcode.STORE
    _assert_one_minimal(small, fake_runner)
    assert len(fuzz_axi.load_repro(path)[1].program) == len(small.program)
    assert fuzz.main(["--replay", str(path)]) == 2      # the core's replay names the right one
    assert "python -m sparsa.sim.fuzz_axi --replay" in capsys.readouterr().err


def test_a_fault_that_needs_its_latency_keeps_it(node_seed):
    def runner(cfg, mp, latency):
        return fake_runner(cfg, mp, latency, fault="cycles")

    case = _failing_case(np.random.default_rng(node_seed))
    small = fuzz_axi.shrink(CFG, case, runner)
    assert _kinds(fuzz_axi.run_case(CFG, small, runner)[2]) == ["cycles"]
    assert small.latency == 23
    assert small.layout is None
    assert [i.opcode for i in small.program] == [Opcode.LOAD_ACC, Opcode.STORE]


@pytest.mark.rtl
def test_tiny_axi_fuzz_run(node_seed):
    """Six random programs on each of two configurations on the native AXI harness: no
    mismatch, each at its own latency and layout."""
    stats = fuzz_axi.AxiStats()
    runner = fuzz_axi.AxiRunner()
    for name, cfg in CONFIGS.items():
        stats.add(fuzz_axi.run_axi_job(name, fuzz.job_seed(node_seed, name, 0), 6, 8,
                                       runner=runner, cfg=cfg))
    assert stats.programs == 12
    assert stats.per_config == dict.fromkeys(CONFIGS, 6)
    assert stats.mismatches == []
    assert stats.tiles > 0
    assert stats.cycles > 0
    assert len(stats.latencies) > 1


@pytest.mark.rtl
def test_shrinker_on_native_axi(tmp_path, node_seed):
    """The memory fault on top of the native AXI harness (every candidate its own harness
    process): shrunk, and the reproducer replays on the harness with the fault and passes
    without it."""
    native = fuzz_axi.AxiRunner()

    def runner(cfg, mp, latency):
        return _corrupt(mp, native(cfg, mp, latency))

    case = _failing_case(np.random.default_rng(node_seed), tiles=4)
    assert not fuzz_axi.run_case(CFG, case, native)[2]
    small = fuzz_axi.shrink(CFG, case, runner)
    problems = fuzz_axi.run_case(CFG, small, runner)[2]
    assert _kinds(problems) == ["memory"]
    assert (small.latency, small.layout) == (1, None)
    assert len(small.program) <= 7 < len(case.program)
    path = tmp_path / "repro.json"
    fuzz_axi.save_repro(path, CFG, small, problems, node_seed, len(case.program))
    assert fuzz_axi.replay(path, runner=runner) == problems
    assert fuzz_axi.replay(path) == []


def test_bad_input_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FUZZ_SCALE", "lots")
    assert fuzz_axi.main(["--seed", "1"]) == 2
    assert "not scale 'lots'" in capsys.readouterr().err
    assert fuzz_axi.main(["--configs", "4x4-dense-d1-axi32,9x9-axi512", "--scale", "1"]) == 2
    assert "unknown configuration '9x9-axi512', expected one of 4x4-dense-d1-axi32" in \
        capsys.readouterr().err
    core = tmp_path / "core.json"
    core.write_text('{"config": {}, "program": []}')
    for path in (tmp_path / "missing.json", core):
        assert fuzz_axi.main(["--replay", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert "is not a readable reproducer of sparsa.sim.fuzz_axi" in err


def test_a_mismatch_that_no_longer_fails_is_saved_unshrunk(tmp_path, node_seed, capsys):
    """(The tree changed during the campaign.) No shrinking towards some other failure."""
    case = _failing_case(np.random.default_rng(node_seed))
    problems = fuzz_axi.run_case(CFG, case, fake_runner)[2]
    stats = fuzz_axi.AxiStats(mismatches=[("small", node_seed, 3, case, problems)])

    def fixed(cfg, mp, latency):
        return fake_runner(cfg, mp, latency, fault=None)

    assert fuzz_axi.shrink(CFG, case, fixed) is case
    fuzz_axi.report_mismatches(stats, tmp_path, fixed, configs={"small": CFG})
    assert "PASSES when rerun now" in capsys.readouterr().out
    path = tmp_path / f"axi-repro-{node_seed}-3.json"
    assert len(fuzz_axi.load_repro(path)[1].program) == len(case.program)
    assert fuzz_axi.replay(path, runner=fake_runner) == problems


def test_undefined_programs_are_no_reproducers():
    """A program ending with a PRELOAD no COMPUTE takes: the hardware reads the weight rows,
    the cycle models count nothing (the shrinker must not drift there)."""
    case = _failing_case(np.random.default_rng(0))
    ops = [i.opcode for i in case.program]
    last = len(ops) - 1 - ops[::-1].index(Opcode.COMPUTE)
    assert not fuzz.undefined(case.program)
    assert fuzz.undefined(case.program[:last])
    assert not fuzz.undefined([i for i in case.program[:last] if i.opcode != Opcode.PRELOAD])
