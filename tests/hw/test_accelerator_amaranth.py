"""The accelerator in Amaranth's simulator: random GEMM and convolution programs (ISA v2: on-chip
im2col, hazard tags, K chains, dense phases), RTL == golden program executor == an independent
computation (a dense matmul, a direct convolution); activity counters == the counts the cycle
model reads off the program; dispatch and output cycles == the cycle model."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Fragment

from sparsa.config import ArrayConfig
from sparsa.hw.accelerator import COUNTERS, Accelerator
from sparsa.sim.accel_driver import COUNTER_LAYOUT, decode_counters
from sparsa.sim.accel_sim import run_program
from sparsa.sim.golden_accel import GoldenAccelerator
from sparsa.sim.programs import random_conv_program, random_gemm_program
from sparsa.sw.accel_timing import program_counts, program_timing

SMALL = dict(act_buffer_kib=1, weight_buffer_kib=1, acc_buffer_kib=1)
CONFIGS = {
    "2x2-2of4": ArrayConfig(rows=2, cols=2, n=2, m=4, **SMALL),
    "2x3-1of4": ArrayConfig(rows=2, cols=3, n=1, m=4, **SMALL),
    "3x2-1of1": ArrayConfig(rows=3, cols=2, n=1, m=1, **SMALL),
    "2x2-2of8-d2": ArrayConfig(rows=2, cols=2, n=2, m=8, pipeline_depth=2, **SMALL),
}


def check_run(cfg, prog, run) -> None:
    """Outputs == golden executor == the program's independent reference; counters == the
    program's counts (``gated_macs``: the golden executor's count from the data, nonzero when
    some activation is zero on dense hardware, where every activation is selected)."""
    golden = GoldenAccelerator(cfg)
    golden_out = golden.run(prog.program, prog.data_in)
    requant_ref, raw_ref = prog.reference(cfg.acc_width, cfg.act_width)
    for outputs, who in ((golden_out, "golden"), (run.outputs, "RTL")):
        requant, raw = prog.collect(outputs, cfg.cols)
        np.testing.assert_array_equal(raw, raw_ref, err_msg=f"{who} raw sums")
        np.testing.assert_array_equal(requant, requant_ref, err_msg=f"{who} requantized")
    expected = {**program_counts(cfg, prog.program, len(prog.data_in)),
                "gated_macs": golden.gated_macs}
    for name, value in expected.items():
        assert run.counters[name] == value, f"counter {name}: RTL {run.counters[name]}, " \
                                            f"expected {value}"
    if cfg.n == cfg.m and (prog.x == 0).any():
        assert golden.gated_macs > 0


def check_cycles(cfg, prog, run, rate: int | None = None) -> None:
    predicted = program_timing(cfg, prog.program, dram_bytes_per_cycle=rate)
    assert run.dispatch == predicted.dispatch
    assert run.out_cycles == predicted.out_cycles
    assert run.cycles == predicted.cycles


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("order", ["k_inner", "cols_inner"])
@pytest.mark.parametrize(("idle", "backpressure"), [(0.0, 0.0), (0.3, 0.4)])
def test_random_gemm_programs(name, order, idle, backpressure, seed_for, request):
    cfg = CONFIGS[name]
    rng = np.random.default_rng(seed_for(request.node.nodeid))
    prog = random_gemm_program(cfg, rng, order=order, zero_fraction=0.4)
    run = run_program(cfg, prog.program, prog.data_in, seed=int(rng.integers(1 << 31)),
                      idle=idle, backpressure=backpressure)
    check_run(cfg, prog, run)
    if idle == backpressure == 0:
        check_cycles(cfg, prog, run)


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize(("idle", "backpressure"), [(0.0, 0.0), (0.3, 0.4)])
def test_random_conv_programs(name, idle, backpressure, seed_for, request):
    """Convolutions with on-chip im2col (padding, strides, P blocks in two tagged regions with
    the next block's load among this block's COMPUTEs, grouped/depthwise, dense phases)."""
    cfg = CONFIGS[name]
    rng = np.random.default_rng(seed_for(request.node.nodeid))
    for _ in range(2):
        prog = random_conv_program(cfg, rng, zero_fraction=0.4, max_computes=60,
                                   max_compute_beats=300)
        run = run_program(cfg, prog.program, prog.data_in, seed=int(rng.integers(1 << 31)),
                          idle=idle, backpressure=backpressure)
        check_run(cfg, prog, run)
        if idle == backpressure == 0:
            check_cycles(cfg, prog, run)


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("order", ["k_inner", "cols_inner"])
def test_cycle_model(name, order, seed_for, request):
    """The accelerator's cycle model (sw.accel_timing) predicts every instruction's dispatch
    cycle, every output row's cycle and the total exactly, for random programs with short and
    long beat counts (short ones stall K chains on unwritten accumulator rows)."""
    cfg = CONFIGS[name]
    rng = np.random.default_rng(seed_for(request.node.nodeid))
    for _ in range(6):
        prog = random_gemm_program(cfg, rng, order=order,
                                   max_beats=4 * (cfg.rows + cfg.cols))
        check_cycles(cfg, prog, run_program(cfg, prog.program, prog.data_in))


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("rate", [1, 3, 8, 40])
def test_cycle_model_dram_ports(name, rate, seed_for, request):
    """``data_in`` and ``data_out`` paced by DRAM ports of ``rate`` bytes per cycle (token
    buckets, beats of several sizes: activation rows cost their real channels only): outputs
    still equal golden, and the cycle model with the same rate predicts every dispatch, every
    output row and the total exactly."""
    cfg = CONFIGS[name]
    rng = np.random.default_rng(seed_for(request.node.nodeid))
    progs = [random_gemm_program(cfg, rng, order=order, max_beats=4 * (cfg.rows + cfg.cols))
             for order in ("k_inner", "cols_inner")]
    progs.append(random_conv_program(cfg, rng, max_computes=30, max_compute_beats=150))
    for prog in progs:
        run = run_program(cfg, prog.program, prog.data_in, dram_bytes_per_cycle=rate)
        golden_out = GoldenAccelerator(cfg).run(prog.program, prog.data_in)
        assert all(np.array_equal(a, b) for a, b in zip(run.outputs, golden_out, strict=True))
        check_cycles(cfg, prog, run, rate)
        # a port slower than the beats must cost cycles over ideal streams
        if rate == 1:
            assert run.cycles > program_timing(cfg, prog.program).cycles


def test_assembled_layer_on_rtl(rng):
    """A scheduled, assembled GEMM (sparse and dense) on the RTL: result == reference, cycles
    == the cycle model."""
    from sparsa import nm
    from sparsa.sim.stimulus import random_nm_weights
    from sparsa.sw.assemble import assemble_gemm

    cfg = CONFIGS["2x2-2of4"]
    for sparse in (True, False):
        p, k, c = 23, 21, 5
        w = random_nm_weights(rng, k, c, cfg.n, cfg.m) if sparse else rng.integers(-128, 128,
                                                                                   (k, c))
        x = rng.integers(-128, 128, (p, k))
        asm = assemble_gemm(cfg, x, w, sparse=sparse, raw=True)
        run = run_program(cfg, asm.program, asm.data_in)
        np.testing.assert_array_equal(asm.collect(run.outputs), nm.gemm_dense(x, w))
        assert run.cycles == program_timing(cfg, asm.program).cycles


def test_counter_layout_is_the_port_layout():
    """The drivers decode the flat ``counters`` port with the port's own layout."""
    dut = Accelerator(CONFIGS["2x2-2of4"])
    assert dut.signature.members["counters"].shape == COUNTER_LAYOUT
    Fragment.get(dut, None)   # elaborated, as every component must be
    raw = sum(i << (32 * i) for i in range(len(COUNTERS)))
    assert decode_counters(raw) == {name: i for i, name in enumerate(COUNTERS)}
