import json

import numpy as np
import pytest

from sparsa.models import zoo
from sparsa.models.errors import ModelImportError, UnknownModelError
from sparsa.models.load import load_graph
from sparsa.models.store import load_saved, save_graph


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    path = tmp_path_factory.getbasetemp() / "sparsa-cache"
    monkeypatch.setenv("SPARSA_CACHE_DIR", str(path))
    return path


def test_names():
    assert set(zoo.names()) >= {"resnet50", "mobilenet_v2", "vit_b16", "bert_base", "gpt2",
                                "llama2_7b", "digits_mlp", "digits_cnn"}


def test_unknown_model_lists_names():
    with pytest.raises(UnknownModelError, match="resnet50") as info:
        zoo.get_graph("resnet51")
    assert "resnet51" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_bert_base_and_cache(cache):
    g = zoo.get_graph("bert_base")
    d, f, layers, seq = 768, 3072, 12, 128
    linears = [lay for lay in g if lay.kind == "linear"]
    assert len(linears) == layers * 6 + 1  # q, k, v, out, up, down per layer + pooler
    want = layers * seq * (4 * d * d + 2 * d * f) + layers * 2 * 12 * seq * seq * 64 + d * d
    assert g.macs == want
    files = list((cache / "graphs").glob("bert_base-*.json"))
    assert len(files) == 1
    assert zoo.get_graph("bert_base") == g  # from the cache
    files[0].write_text("{corrupt")
    assert zoo.get_graph("bert_base") == g  # rebuilt
    assert json.loads(files[0].read_text())["name"] == "bert_base"


def test_resnet50():
    g = zoo.get_graph("resnet50", cache=False)
    convs = [lay for lay in g if lay.kind == "conv2d"]
    assert len(convs) == 53
    first = convs[0]
    assert first.in_shape == (1, 3, 224, 224)
    assert first.out_shape == (1, 64, 112, 112)
    assert first.gemm.k == 7 * 7 * 3
    assert 4.0e9 < g.macs < 4.2e9  # ResNet-50 is ~4.1 GMACs at 224x224


def test_demo_graph_and_saved_roundtrip(tmp_path):
    g = zoo.get_graph("digits_mlp", batch=4)
    assert g.input_shape == (4, 64)
    assert [lay.kind for lay in g] == ["linear", "act", "linear", "act", "linear"]
    assert g.layers[0].weight.shape == (128, 64)
    path = save_graph(g, tmp_path / "m.npz", meta={"x": 1})
    back, meta = load_saved(path)
    assert meta == {"x": 1}
    assert back == g
    for a, b in zip(back.layers, g.layers, strict=True):
        if a.weight is not None:
            np.testing.assert_array_equal(a.weight, b.weight)
    assert load_graph(str(path)) == g
    assert load_graph("digits_mlp").input_shape == (1, 64)


def test_load_graph_errors(tmp_path):
    with pytest.raises(UnknownModelError, match=r"nope.*onnx.*csv"):
        load_graph("nope")
    with pytest.raises(ModelImportError, match="does not exist"):
        load_graph(str(tmp_path / "missing.onnx"))
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"junk")
    with pytest.raises(ModelImportError, match=r"junk\.npz"):
        load_graph(str(junk))
    with pytest.raises(ModelImportError, match="batch"):
        zoo.get_graph("gpt2", batch=0)


def test_seq_and_batch_reach_the_graph_and_the_cache_key(cache):
    g = zoo.get_graph("gpt2", batch=2, seq=16)
    assert g.meta == {"batch": 2, "seq": 16, "heads": 12, "kv_heads": 12, "head_dim": 64,
                      "decoder_layers": 12, "causal": True, "lm_head": "lm_head"}
    assert zoo.get_graph("bert_base", seq=8).meta["causal"] is False
    assert g.input_shape == (2, 16)
    c_attn = next(x for x in g.gemm_layers() if x.name.endswith("c_attn"))
    assert c_attn.gemm.p == 2 * 16
    names = {p.name for p in (cache / "graphs").iterdir()}
    assert f"gpt2-b2-seq16-v{zoo.CACHE_VERSION}.json" in names
    again = zoo.get_graph("gpt2", batch=2, seq=16)      # from the cache, meta included
    assert again.meta == g.meta
    assert zoo.get_graph("gpt2", batch=2, seq=8).gemm_layers()[0].gemm.p == 2 * 8
    assert zoo.get_graph("digits_mlp", batch=3).meta == {"batch": 3}
    with pytest.raises(ModelImportError, match="seq"):
        zoo.get_graph("gpt2", seq=0)
    for name in ("resnet50", "digits_cnn"):
        with pytest.raises(ModelImportError, match="not a text model"):
            zoo.get_graph(name, seq=16)


def test_llama3_8b_has_grouped_query_attention():
    """Its config (traced graphs are checked on the tiny GQA configs of test_hf_config)."""
    assert "llama3_8b" in zoo.names()
    assert zoo.is_text("llama3_8b")
    config = zoo.transformers_config("llama3_8b")
    assert (config.num_attention_heads, config.num_key_value_heads) == (32, 8)
    assert (config.hidden_size, config.intermediate_size, config.vocab_size) == \
        (4096, 14336, 128256)
