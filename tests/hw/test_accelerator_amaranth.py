"""The accelerator in Amaranth's simulator: random GEMM programs, RTL == golden program
executor == an independent dense computation; activity counters == counts derived from the
program."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Fragment

from sparsa.config import ArrayConfig
from sparsa.hw.accelerator import COUNTERS, Accelerator
from sparsa.isa import Opcode
from sparsa.sim.accel_driver import COUNTER_LAYOUT, decode_counters
from sparsa.sim.accel_sim import run_program
from sparsa.sim.golden_accel import GoldenAccelerator
from sparsa.sim.programs import random_gemm_program
from sparsa.sw.accel_timing import program_timing

SMALL = dict(act_buffer_kib=1, weight_buffer_kib=1, acc_buffer_kib=1)
CONFIGS = {
    "2x2-2of4": ArrayConfig(rows=2, cols=2, n=2, m=4, **SMALL),
    "2x3-1of4": ArrayConfig(rows=2, cols=3, n=1, m=4, **SMALL),
    "3x2-1of1": ArrayConfig(rows=3, cols=2, n=1, m=1, **SMALL),
    "2x2-2of8-d2": ArrayConfig(rows=2, cols=2, n=2, m=8, pipeline_depth=2, **SMALL),
}


def split_outputs(prog, outputs, cols):
    """STOREs come in (requantized, raw) pairs per column tile: reassemble full matrices."""
    stores = [i for i in prog.program if i.opcode == Opcode.STORE]
    chunks, start = [], 0
    for st in stores:
        chunks.append(np.array(outputs[start:start + st.count]))
        start += st.count
    requant = np.concatenate(chunks[0::2], axis=1)
    raw = np.concatenate(chunks[1::2], axis=1)
    return requant, raw


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("order", ["k_inner", "cols_inner"])
@pytest.mark.parametrize(("idle", "backpressure"), [(0.0, 0.0), (0.3, 0.4)])
def test_random_gemm_programs(name, order, idle, backpressure, seed_for, request):
    cfg = CONFIGS[name]
    rng = np.random.default_rng(seed_for(request.node.nodeid))
    prog = random_gemm_program(cfg, rng, order=order, zero_fraction=0.4)
    golden = GoldenAccelerator(cfg)
    golden_out = golden.run(prog.program, prog.data_in)
    requant_ref, raw_ref = prog.reference(cfg.acc_width, cfg.act_width)
    g_requant, g_raw = split_outputs(prog, golden_out, cfg.cols)
    np.testing.assert_array_equal(g_raw, raw_ref)
    np.testing.assert_array_equal(g_requant, requant_ref)

    run = run_program(cfg, prog.program, prog.data_in, seed=int(rng.integers(1 << 31)),
                      idle=idle, backpressure=backpressure)
    r_requant, r_raw = split_outputs(prog, run.outputs, cfg.cols)
    np.testing.assert_array_equal(r_raw, raw_ref)
    np.testing.assert_array_equal(r_requant, requant_ref)

    # Activity counters against counts read off the program.
    computes = [i for i in prog.program if i.opcode == Opcode.COMPUTE]
    stores = [i for i in prog.program if i.opcode == Opcode.STORE]
    beats = sum(i.count for i in computes)
    c = run.counters
    assert c["act_beats"] == beats
    assert c["macs"] == beats * cfg.rows * cfg.cols * cfg.n
    assert c["act_reads"] == beats
    assert c["weight_reads"] == cfg.rows * len(computes)
    assert c["acc_reads"] == sum(i.count for i in computes if i.accumulate) + \
        sum(i.count for i in stores)
    loads = {op: sum(i.count for i in prog.program if i.opcode == op)
             for op in (Opcode.LOAD_ACT, Opcode.LOAD_WEIGHT, Opcode.LOAD_ACC)}
    assert c["act_writes"] == loads[Opcode.LOAD_ACT]
    assert c["weight_writes"] == loads[Opcode.LOAD_WEIGHT]
    assert c["acc_writes"] == loads[Opcode.LOAD_ACC] + beats
    assert c["data_in_beats"] == len(prog.data_in)
    assert c["data_out_beats"] == sum(i.count for i in stores)
    # Zero gating: the RTL's counter == the golden executor's count from the data.
    assert c["gated_macs"] == golden.gated_macs > 0


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
        run = run_program(cfg, prog.program, prog.data_in)
        predicted = program_timing(cfg, prog.program)
        assert run.dispatch == predicted.dispatch
        assert run.out_cycles == predicted.out_cycles
        assert run.cycles == predicted.cycles


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("rate", [1, 3, 8, 40])
def test_cycle_model_dram_ports(name, rate, seed_for, request):
    """``data_in`` and ``data_out`` paced by DRAM ports of ``rate`` bytes per cycle (token
    buckets, beats of several sizes): outputs still equal golden, and the cycle model with the
    same rate predicts every dispatch, every output row and the total exactly."""
    cfg = CONFIGS[name]
    rng = np.random.default_rng(seed_for(request.node.nodeid))
    for order in ("k_inner", "cols_inner"):
        prog = random_gemm_program(cfg, rng, order=order, max_beats=4 * (cfg.rows + cfg.cols))
        run = run_program(cfg, prog.program, prog.data_in, dram_bytes_per_cycle=rate)
        golden_out = GoldenAccelerator(cfg).run(prog.program, prog.data_in)
        assert all(np.array_equal(a, b) for a, b in zip(run.outputs, golden_out, strict=True))
        predicted = program_timing(cfg, prog.program, dram_bytes_per_cycle=rate)
        assert run.dispatch == predicted.dispatch
        assert run.out_cycles == predicted.out_cycles
        assert run.cycles == predicted.cycles
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
