"""End to end: the 2:4-pruned int8 digits CNN runs every GEMM layer on the accelerator.

Outputs bit-exact with the golden integer model (sw.quant.forward_int), measured cycles ==
predicted cycles for every layer, activity counters == the counts predicted from the program,
including ``gated_macs`` (zero-gated MACs) == the count predicted from the layer's data.
"""

from __future__ import annotations

import pytest

from sparsa.cli import main
from sparsa.config import ArrayConfig
from sparsa.sim.infer import ModelRun

# A small accelerator keeps the Verilator build short; the schedule adapts to its buffers.
CFG = ArrayConfig(rows=4, cols=4, n=2, m=4, act_buffer_kib=8, weight_buffer_kib=8,
                  acc_buffer_kib=8)


def _run(tmp_path, sim: str, images: int) -> ModelRun:
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(CFG.to_json())
    code = main(["run", "digits_cnn", "--sim", sim, "--images", str(images), "--config",
                 str(cfg_file), "-o", str(tmp_path / "out")])
    result = ModelRun.from_json((tmp_path / "out" / "run.json").read_text())
    assert code == 0
    return result


def _check(result: ModelRun) -> None:
    assert result.bit_exact
    assert result.accuracy == result.golden_accuracy
    assert len(result.layers) == 4   # conv, conv, linear, linear
    for layer in result.layers:
        assert layer.measured == layer.predicted, layer
        assert layer.counters_match, layer
        assert layer.gated_macs == layer.gated_predicted > 0, layer
        assert layer.energy_gated_pj < layer.energy_pj
    print(f"{result.backend}: accuracy {result.accuracy:.2%} on {result.images} images, "
          f"{result.measured} cycles")


def test_digits_cnn_golden(tmp_path):
    _check(_run(tmp_path, "golden", 30))


@pytest.mark.rtl
def test_digits_cnn_verilator(tmp_path):
    _check(_run(tmp_path, "verilator", 10))


@pytest.mark.rtl
def test_digits_cnn_pyverilator(tmp_path):
    _check(_run(tmp_path, "pyverilator", 3))
