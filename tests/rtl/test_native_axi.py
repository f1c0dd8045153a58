"""The native AXI backend (sim.native_axi): the Verilated memory-mapped accelerator with its memory
in C++. Random GEMM and conv programs linked into memory (random offsets and gaps) end with the
whole memory == the golden executor's run on the same image and the counters == the cycle
model's program_counts (gated_macs == the golden executor's, insns_fetched == the program's
length, the AXI beat counters == the C++ memory's own counts), and run_cycles == the top's cycle
model (sw.top_timing). The protocol checks flag made-up bad traffic. Against the Python memory model
in Amaranth's simulator (sim.axi_memory.run_top, same program and latency): the same run_cycles,
the same cycles from start to irq, the same memory and counters, cycle for cycle. Bad runs fail
with one clear message."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from sparsa.config import ArrayConfig
from sparsa.hw.top import ALL_COUNTERS, AxiAccelerator
from sparsa.sim.axi_memory import run_top
from sparsa.sim.golden_accel import GoldenAccelerator
from sparsa.sim.memory_image import link
from sparsa.sim.native_axi import PAD_BYTES, NativeAxiAccelerator, build
from sparsa.sim.programs import random_conv_program, random_gemm_program
from sparsa.sw.accel_timing import program_counts
from sparsa.sw.top_timing import top_timing

pytestmark = pytest.mark.rtl

SMALL = dict(act_buffer_kib=1, weight_buffer_kib=1, acc_buffer_kib=1)
CONFIGS = {
    "2x2-2of4-axi64": ArrayConfig(rows=2, cols=2, n=2, m=4, axi_data_bits=64, **SMALL),
    "2x3-1of1-axi128": ArrayConfig(rows=2, cols=3, n=1, m=1, axi_data_bits=128, **SMALL),
}
LATENCIES = (1, 12)


@pytest.fixture(scope="module", params=list(CONFIGS))
def cfg(request) -> ArrayConfig:
    return CONFIGS[request.param]


@pytest.fixture(scope="module")
def native(cfg) -> NativeAxiAccelerator:
    """One executable per configuration (cached across sessions by content)."""
    return NativeAxiAccelerator(cfg)


def _programs(cfg: ArrayConfig, rng: np.random.Generator):
    yield random_gemm_program(cfg, rng, order="k_inner", zero_fraction=0.4)
    yield random_gemm_program(cfg, rng, order="cols_inner", zero_fraction=0.4)
    for _ in range(3):
        yield random_conv_program(cfg, rng, zero_fraction=0.4, max_computes=60,
                                  max_compute_beats=300)


def _golden(cfg: ArrayConfig, mp) -> tuple[bytearray, dict[str, int]]:
    """The memory after the golden executor's run on the image, and the counts predicted for
    the program (the top's run_cycles excepted, and the core's cycles, counted since reset)."""
    memory = mp.image() + bytearray(PAD_BYTES)
    golden = GoldenAccelerator(cfg)
    golden.run_in_memory(mp.program, memory)
    counts = {**program_counts(cfg, mp.program), "gated_macs": golden.gated_macs,
              "insns_fetched": len(mp.program)}
    return memory, counts


def _differing(got: bytearray, want: bytearray) -> str:
    changed = [a for a in range(len(want)) if got[a] != want[a]]
    return f"{len(changed)} bytes differ from golden, first at {changed[0]:#x}" if changed else ""


@pytest.mark.parametrize("latency", LATENCIES)
def test_random_programs_match_golden(native, latency, seed_for, request):
    cfg = native.cfg
    rng = np.random.default_rng(seed_for(request.node.nodeid))
    native.latency = latency
    for prog in _programs(cfg, rng):
        mp = link(cfg, prog.program, prog.data_in, rng=rng)
        run = native.run(mp)
        memory, counts = _golden(cfg, mp)
        assert len(run.memory) == len(memory)
        assert not _differing(run.memory, memory), _differing(run.memory, memory)
        rows = GoldenAccelerator(cfg).run(mp.program, prog.data_in)
        assert len(run.outputs) == len(rows)
        for got, row in zip(run.outputs, rows, strict=True):
            np.testing.assert_array_equal(got, row[:len(got)])
        assert {k: run.counters[k] for k in counts} == counts
        assert (run.counters["axi_read_beats"], run.counters["axi_write_beats"]) == \
            (run.read_beats, run.write_beats)
        assert set(run.counters) == set(ALL_COUNTERS)
        assert 0 < run.run_cycles <= run.cycles < run.simulated
        timing = top_timing(cfg, mp.program, latency=latency, prog_base=mp.prog_base)
        assert run.run_cycles == timing.run_cycles


@pytest.mark.parametrize("latency", LATENCIES)
def test_cycles_match_the_python_memory(native, latency, seed_for, request):
    """The C++ memory model against sim.axi_memory.AxiMemory (pause 0), cycle for cycle."""
    cfg = native.cfg
    rng = np.random.default_rng(seed_for(request.node.nodeid))
    native.latency = latency
    programs = [random_gemm_program(cfg, rng, order="k_inner", zero_fraction=0.4),
                random_conv_program(cfg, rng, zero_fraction=0.4, max_computes=20,
                                    max_compute_beats=100)]
    for prog in programs:
        mp = link(cfg, prog.program, prog.data_in, rng=rng)
        run = native.run(mp)
        image = mp.image() + bytearray(PAD_BYTES)
        ref = run_top(AxiAccelerator(cfg), image, prog_base=mp.prog_base, prog_len=mp.prog_len,
                      latency=latency)
        assert not ref.axi.errors
        assert (run.run_cycles, run.cycles) == (ref.counters["run_cycles"], ref.cycles)
        assert run.memory == ref.memory
        # "cycles" counts from reset: the harness resets the model, Amaranth's starts reset
        assert {k: v for k, v in run.counters.items() if k != "cycles"} == \
            {k: v for k, v in ref.counters.items() if k != "cycles"}
        assert (run.read_beats, run.write_beats) == (ref.axi.read_beats, ref.axi.write_beats)


def test_bad_runs_fail_with_one_message(native, seed_for, request):
    cfg = native.cfg
    rng = np.random.default_rng(seed_for(request.node.nodeid))
    prog = random_gemm_program(cfg, rng, order="k_inner")
    mp = link(cfg, prog.program, prog.data_in)
    with pytest.raises(RuntimeError, match=r"timed out after 40 cycles"):
        NativeAxiAccelerator(cfg, max_cycles=40).run(mp)
    # the memory ends where the image does: a burst reads beyond it
    with pytest.raises(RuntimeError, match=r"broke the AXI protocol.*ends beyond the memory"):
        native.run_image(mp.image()[:mp.size - 1], prog_base=mp.prog_base,
                         prog_len=mp.prog_len)
    with pytest.raises(ValueError, match="latency must be an integer of at least 1 cycle"):
        NativeAxiAccelerator(cfg, latency=0)


def test_protocol_checks_flag_bad_traffic(native):
    """The harness's checks on made-up traffic (``--protocol-selftest``: the scenarios are in
    axi_harness.cpp), one violation of each rule of sim.axi_memory.AxiMemory."""
    proc = subprocess.run([str(native.binary), "--protocol-selftest"], capture_output=True,
                          text=True, check=True)
    expected = ["ar: valid dropped before ready (cycle 1)",
                "aw: payload changed before ready (cycle 3)",
                "aw: valid dropped before ready (cycle 4)",
                "ar: burst 0xff0 + 2 beats (cycle 5): crosses 4 KiB",
                "ar: burst 0 + 257 beats (cycle 6): more than 256 beats",
                "ar: burst 0x300 + 1 beats (cycle 7): size 3 is not the bus width",
                "ar: burst 0x400 + 1 beats (cycle 7): burst type 0 is not INCR",
                "ar: burst 0x1ff0 + 2 beats (cycle 7): ends beyond the memory",
                "ar: burst 0x308 + 1 beats (cycle 7): address not bus-aligned",
                "w: wlast 1 with 2 beats left (cycle 9)",
                "w: beat with no byte enabled (cycle 11)"]
    lines = proc.stdout.splitlines()
    for message in expected:
        assert message in lines, f"{message!r} not flagged: {lines}"


def test_build_is_cached(native):
    binary = native.binary
    stamp = binary.stat().st_mtime_ns
    assert build(native.cfg) == binary
    assert binary.stat().st_mtime_ns == stamp
