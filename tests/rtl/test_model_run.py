"""``sparsa run MODEL --sim native`` for models without trained weights, layer by layer: a
SCALE-Sim topology and a small Hugging Face config on a 4x4 2:4 array (test_native's
configuration, so the native build is shared). Every layer's measured cycles == the cycles the
report's own model gives for it (``build_report``, computed here), counters == predicted, outputs
== torch / a float64 matmul and the golden executor; ``--layers`` runs a subset on the same data;
bad selections, a model without GEMM layers and a layer over the simulator's limit are one clear
error each, before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparsa.cli import main
from sparsa.config import ArrayConfig
from sparsa.models.load import load_graph
from sparsa.sim.model_run import LayersRun
from sparsa.sw.energy import load_table
from sparsa.sw.model_report import build_report, dense_baseline, layer_report
from sparsa.sw.prune import mark_pruned

pytestmark = pytest.mark.rtl

CFG = ArrayConfig(rows=4, cols=4, n=2, m=4, act_buffer_kib=8, weight_buffer_kib=8,
                  acc_buffer_kib=8)
TOPOLOGY = str(Path(__file__).resolve().parents[2] / "examples" / "tiny_convnet.csv")
# A one-layer Mistral-shaped decoder (grouped-query attention: matmuls with groups)
TINY_HF = {"model_type": "mistral", "hidden_size": 64, "intermediate_size": 128,
           "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
           "vocab_size": 100, "max_position_embeddings": 256}


@pytest.fixture
def cfg_file(tmp_path) -> str:
    path = tmp_path / "cfg.json"
    path.write_text(CFG.to_json())
    return str(path)


def _run(tmp_path, model: str, cfg_file: str, *extra: str) -> tuple[int, LayersRun]:
    out = tmp_path / "out"
    code = main(["run", model, "--sim", "native", "--config", cfg_file, "-o", str(out),
                 "--golden-macs", "10000000", *extra])
    return code, LayersRun.from_json((out / "run.json").read_text())


def _check_against_report(result: LayersRun, graph, *, memory: str = "ideal") -> None:
    """Every layer as the report of ``memory`` predicts it ("ideal": its compute cycles, "dram"
    or "axi": its total cycles with that memory model)."""
    report = build_report(graph, CFG, memory="dram" if memory == "ideal" else memory)
    assert result.ok
    for r in result.layers:
        cycles = report.layers[r.index].sparse.cycles
        assert report.layers[r.index].name == r.name
        assert r.measured == r.predicted == (cycles.compute if memory == "ideal"
                                             else cycles.total), r
        assert not r.counter_diffs, r
        assert r.outputs_exact, r
        assert r.golden is True, r
        assert r.gated_macs > 0, r     # 30% zero activations


def test_scalesim_every_layer(tmp_path, cfg_file, seed_for, request, capsys):
    seed = seed_for(request.node.nodeid)
    code, result = _run(tmp_path, TOPOLOGY, cfg_file, "--seed", str(seed))
    assert code == 0
    assert [r.index for r in result.layers] == [0, 1, 2]
    _check_against_report(result, load_graph(TOPOLOGY))
    out = capsys.readouterr().out
    assert f"weights: random int8, seed {seed}, pruned 2:4" in out
    assert "cycles/s on native" in out


def test_a_resnet50_layer(tmp_path, cfg_file, seed_for, request):
    """A real ResNet-50 layer (stage 4's first 1x1 convolution, 2:4-pruned: about 0.8 M cycles
    on this array) on the native RTL: its cycles equal the report's for that layer."""
    seed = str(seed_for(request.node.nodeid))
    out = tmp_path / "out"
    assert main(["run", "resnet50", "--sim", "native", "--config", cfg_file, "-o", str(out),
                 "--layers", "50", "--seed", seed]) == 0
    (layer,) = LayersRun.from_json((out / "run.json").read_text()).layers
    report = build_report(load_graph("resnet50"), CFG).layers[50]
    assert layer.name == report.name
    assert layer.measured == layer.predicted == report.sparse.cycles.compute
    assert layer.measured > 500_000
    assert not layer.counter_diffs
    assert layer.outputs_exact


def test_memory_mapped_every_layer(tmp_path, cfg_file, seed_for, request, monkeypatch):
    """``--memory axi``: each layer's program fetched with its operands from memory (natural
    NHWC layout) by the AXI top, on the native harness: cycles == ``sparsa report --memory
    axi``'s, outputs read back from memory == torch and the golden executor. The topology's
    convs, and a decoder's linear layers and grouped attention matmuls."""
    seed = str(seed_for(request.node.nodeid))
    code, result = _run(tmp_path / "conv", TOPOLOGY, cfg_file, "--seed", seed,
                        "--memory", "axi")
    assert code == 0
    assert [r.index for r in result.layers] == [0, 1, 2]
    _check_against_report(result, load_graph(TOPOLOGY), memory="axi")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = tmp_path / "tiny" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps(TINY_HF))
    code, result = _run(tmp_path / "hf", str(config), cfg_file, "--seq", "8", "--seed", seed,
                        "--layers", "0-5", "--memory", "axi")
    assert code == 0
    _check_against_report(result, load_graph(str(config), seq=8), memory="axi")


def test_a_resnet50_layer_memory_mapped(tmp_path, cfg_file, seed_for, request):
    """A real ResNet-50 layer (stage 4's first 1x1 convolution) on the memory-mapped
    accelerator: its cycles equal ``sparsa report --memory axi``'s for that layer, which are
    more than the core's with ideal streams (the memory's latency is not all hidden)."""
    seed = str(seed_for(request.node.nodeid))
    out = tmp_path / "out"
    assert main(["run", "resnet50", "--sim", "native", "--config", cfg_file, "-o", str(out),
                 "--layers", "50", "--seed", seed, "--memory", "axi"]) == 0
    (layer,) = LayersRun.from_json((out / "run.json").read_text()).layers
    # the report's costing of that one layer (build_report(..., memory="axi") does this for each)
    marked = mark_pruned(load_graph("resnet50"), CFG.n, CFG.m).gemm_layers()[50]
    report = layer_report(marked, CFG, dense_baseline(CFG), load_table(), memory="axi")
    assert layer.name == report.name
    assert layer.measured == layer.predicted == report.sparse.cycles.total
    assert layer.measured > report.sparse.cycles.compute
    assert not layer.counter_diffs
    assert layer.outputs_exact


def test_layers_subset_same_data(tmp_path, cfg_file, seed_for, request):
    """``--layers`` by name and index, with the DRAM memory model; the subset's data equal the
    whole run's (the same gated MACs)."""
    seed = str(seed_for(request.node.nodeid))
    _, whole = _run(tmp_path / "all", TOPOLOGY, cfg_file, "--seed", seed)
    code, part = _run(tmp_path / "part", TOPOLOGY, cfg_file, "--seed", seed, "--layers",
                      "Conv3,1", "--memory", "dram")
    assert code == 0
    assert [r.name for r in part.layers] == ["Conv2", "Conv3"]
    _check_against_report(part, load_graph(TOPOLOGY), memory="dram")
    for r in part.layers:
        assert r.gated_macs == whole.layers[r.index].gated_macs


def test_hf_config(tmp_path, cfg_file, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = tmp_path / "tiny" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps(TINY_HF))
    code, result = _run(tmp_path, str(config), cfg_file, "--seq", "8", "--layers", "2-4,9")
    assert code == 0
    assert [r.index for r in result.layers] == [2, 3, 4, 9]
    assert {r.pattern for r in result.layers} == {"2:4", "dense"}
    _check_against_report(result, load_graph(str(config), seq=8))


@pytest.mark.parametrize(("selection", "words"), [
    ("7", "'7' is not inside the model's GEMM layers 0-2"),
    ("2-1", "'2-1' is not inside"),
    ("Conv1,conv9", "'conv9' is neither a GEMM layer index (0-2)"),
    ("1,,2", "'' is neither"),
])
def test_bad_layers(tmp_path, cfg_file, capsys, selection, words):
    with pytest.raises(SystemExit) as e:
        main(["run", TOPOLOGY, "--sim", "native", "--config", cfg_file, "-o",
              str(tmp_path / "out"), "--layers", selection])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert words in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_no_gemm_layers_and_too_big(tmp_path, cfg_file, capsys):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])
    relu = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])],
                                                  "relu_only", [x], [y])), relu)
    with pytest.raises(SystemExit) as e:
        main(["run", str(relu), "--sim", "native", "--config", cfg_file, "-o",
              str(tmp_path / "out")])
    assert e.value.code == 1
    assert "model 'relu_only' has no GEMM layers" in capsys.readouterr().err
    # Conv1 takes 148,029 cycles on this array (the report's model)
    limit = build_report(load_graph(TOPOLOGY), CFG).layers[0].sparse.cycles.compute - 1
    with pytest.raises(SystemExit) as e:
        main(["run", TOPOLOGY, "--sim", "native", "--config", cfg_file, "-o",
              str(tmp_path / "out"), "--max-cycles", str(limit)])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert f"layer 0 'Conv1': {limit + 1:,} predicted cycles, beyond the simulator's limit of " \
           f"{limit:,}" in err
    assert not (tmp_path / "out").exists()


def test_scalesim_layer_on_cocotb_verilator(tmp_path, cfg_file):
    """The same layer runner inside a cocotb test (one small layer: Python drives the clock)."""
    out = tmp_path / "out"
    code = main(["run", TOPOLOGY, "--sim", "verilator", "--config", cfg_file, "-o", str(out),
                 "--layers", "Conv3"])
    result = LayersRun.from_json((out / "run.json").read_text())
    assert code == 0
    assert [r.name for r in result.layers] == ["Conv3"]
    _check_against_report(result, load_graph(TOPOLOGY))
