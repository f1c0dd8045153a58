"""The native Verilator backend (sim.native): random GEMM and conv programs on the compiled
harness, with ideal streams and with DRAM ports. Outputs == the golden executor == the program's
independent reference (a dense matmul, a direct convolution); every dispatch cycle, every
output row's cycle and the total == the cycle model (sw.accel_timing.program_timing, same DRAM
rate); counters == program_counts, gated_macs == the golden executor's. One real network
(the digits CNN) through ``sparsa run --sim native`` with per-layer cycles == the report's."""

from __future__ import annotations

import numpy as np
import pytest

from sparsa.cli import main
from sparsa.config import ArrayConfig
from sparsa.sim.golden_accel import GoldenAccelerator
from sparsa.sim.infer import ModelRun
from sparsa.sim.native import NativeAccelerator, Pace, build
from sparsa.sim.programs import random_conv_program, random_gemm_program
from sparsa.sw.accel_timing import program_counts, program_timing

pytestmark = pytest.mark.rtl

SMALL = dict(act_buffer_kib=1, weight_buffer_kib=1, acc_buffer_kib=1)
CONFIGS = {
    "2x2-2of4-d1": ArrayConfig(rows=2, cols=2, n=2, m=4, pipeline_depth=1, **SMALL),
    "3x2-dense-d2": ArrayConfig(rows=3, cols=2, n=1, m=1, pipeline_depth=2, **SMALL),
    # test_run's configuration: the digits CNN fits its scratchpads
    "4x4-2of4": ArrayConfig(rows=4, cols=4, n=2, m=4, act_buffer_kib=8, weight_buffer_kib=8,
                            acc_buffer_kib=8),
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def native(request) -> NativeAccelerator:
    """One executable per configuration (cached across sessions by content)."""
    return NativeAccelerator(CONFIGS[request.param])


def _programs(cfg: ArrayConfig, rng: np.random.Generator):
    yield random_gemm_program(cfg, rng, order="k_inner", zero_fraction=0.4,
                              max_beats=4 * (cfg.rows + cfg.cols))
    yield random_gemm_program(cfg, rng, order="cols_inner", zero_fraction=0.4)
    for _ in range(2):
        yield random_conv_program(cfg, rng, zero_fraction=0.4, max_computes=60,
                                  max_compute_beats=300)


@pytest.mark.parametrize("rate", [None, 1, 5, 40])
def test_random_programs(native, rate, seed_for, request):
    cfg = native.cfg
    rng = np.random.default_rng(seed_for(request.node.nodeid))
    native.dram_bytes_per_cycle = rate
    for prog in _programs(cfg, rng):
        run = native.run_program(prog.program, prog.data_in)
        golden = GoldenAccelerator(cfg)
        golden_out = golden.run(prog.program, prog.data_in)
        assert len(run.outputs) == len(golden_out)
        for got, want in zip(run.outputs, golden_out, strict=True):
            np.testing.assert_array_equal(got, want)
        requant_ref, raw_ref = prog.reference(cfg.acc_width, cfg.act_width)
        requant, raw = prog.collect(run.outputs, cfg.cols)
        np.testing.assert_array_equal(raw, raw_ref)
        np.testing.assert_array_equal(requant, requant_ref)
        expected = {**program_counts(cfg, prog.program, len(prog.data_in)),
                    "gated_macs": golden.gated_macs}
        assert {k: run.counters[k] for k in expected} == expected
        predicted = program_timing(cfg, prog.program, dram_bytes_per_cycle=rate)
        assert run.dispatch == predicted.dispatch
        assert run.out_cycles == predicted.out_cycles
        assert run.cycles == predicted.cycles
        if rate == 1:   # a port slower than the beats costs cycles over ideal streams
            assert run.cycles > program_timing(cfg, prog.program).cycles


def test_batch_with_random_stalls(native, seed_for, request):
    """Programs batched into one harness process, each once paced by random idle,
    backpressure of 0.9 and above and stalls of up to hundreds of cycles, once ideal: outputs ==
    golden and counters == predicted counts in both; the ideal runs keep every cycle of the cycle
    model (the reset between batched programs is complete); the stalls cost cycles."""
    cfg = native.cfg
    rng = np.random.default_rng(seed_for(request.node.nodeid))
    native.dram_bytes_per_cycle = None
    progs = list(_programs(cfg, rng))[1:]
    paces = [Pace(idle=0.5, backpressure=0.95, stall=0.01, stall_max=400, seed=1),
             Pace(backpressure=0.9, stall=0.03, stall_max=200, seed=2),
             Pace(idle=0.8, backpressure=0.97, seed=3)]
    runs = [(p.program, p.data_in) for p in progs]
    results = native.execute_batch(runs + runs, paces + [None] * len(runs))
    for i, result in enumerate(results):
        prog, run = progs[i % len(progs)], result.run
        golden = GoldenAccelerator(cfg)
        golden_out = golden.run(prog.program, prog.data_in)
        assert len(run.outputs) == len(golden_out)
        for got, want in zip(run.outputs, golden_out, strict=True):
            np.testing.assert_array_equal(got, want)
        expected = {**program_counts(cfg, prog.program, len(prog.data_in)),
                    "gated_macs": golden.gated_macs}
        assert {k: run.counters[k] for k in expected} == expected
        predicted = program_timing(cfg, prog.program)
        if i < len(progs):
            assert run.cycles > predicted.cycles
        else:
            assert run.dispatch == predicted.dispatch
            assert run.out_cycles == predicted.out_cycles
            assert run.cycles == predicted.cycles


def test_timeout_and_bad_input(native, seed_for, request):
    cfg = native.cfg
    rng = np.random.default_rng(seed_for(request.node.nodeid))
    prog = random_gemm_program(cfg, rng, order="k_inner")
    short = NativeAccelerator(cfg, max_cycles=5)
    with pytest.raises(TimeoutError, match="not finished in 5 cycles"):
        short.run_program(prog.program, prog.data_in)
    with pytest.raises(ValueError, match="data_in beats"):
        native.run_program(prog.program, prog.data_in[:-1])


def test_build_is_cached(native):
    binary = native.binary
    stamp = binary.stat().st_mtime_ns
    assert build(native.cfg) == binary
    assert binary.stat().st_mtime_ns == stamp


@pytest.mark.parametrize("memory", ["ideal", "axi"])
def test_digits_cnn_native(tmp_path, memory):
    """``sparsa run --sim native``: outputs bit-exact with the golden integer network, every
    layer's measured cycles == the report's cycle model, counters == predicted counts. With
    ``--memory axi`` the memory-mapped accelerator fetches every layer's program and tensors
    from memory (the classifier's raw int32 rows included)."""
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(CONFIGS["4x4-2of4"].to_json())
    code = main(["run", "digits_cnn", "--sim", "native", "--images", "10", "--config",
                 str(cfg_file), "-o", str(tmp_path / "out"), "--memory", memory])
    result = ModelRun.from_json((tmp_path / "out" / "run.json").read_text())
    assert code == 0
    assert result.bit_exact
    assert result.accuracy == result.golden_accuracy
    assert len(result.layers) == 4
    for layer in result.layers:
        assert layer.measured == layer.predicted, layer
        assert layer.counters_match, layer
        assert layer.gated_macs == layer.gated_predicted > 0, layer
