"""Hugging Face configs: a config.json written here (or its directory) builds on the meta device
with nothing downloaded; batch and seq reach the graph and its metadata; a missing or broken
config is one error naming the file."""

from __future__ import annotations

import json

import pytest

from sparsa.models.errors import ModelImportError
from sparsa.models.hf_config import config_path, import_hf_config
from sparsa.models.load import load_graph

# A two-layer Mistral-shaped decoder: 8 query heads sharing 2 key/value heads (GQA).
TINY = {"model_type": "mistral", "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 2,
        "vocab_size": 100, "max_position_embeddings": 256}


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def write(path, data) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data) if isinstance(data, dict) else data)
    return str(path)


def test_directory_and_file_give_the_same_graph(tmp_path):
    write(tmp_path / "tiny" / "config.json", TINY)
    a = load_graph(str(tmp_path / "tiny"), batch=2, seq=16)
    b = load_graph(str(tmp_path / "tiny" / "config.json"), batch=2, seq=16)
    assert [(x.name, x.gemm) for x in a.gemm_layers()] == \
        [(x.name, x.gemm) for x in b.gemm_layers()]
    assert a.name == "tiny"
    assert a.source.startswith("hf:")
    assert a.meta == {"batch": 2, "seq": 16, "heads": 8, "kv_heads": 2, "head_dim": 8,
                      "decoder_layers": 2, "causal": True, "lm_head": "lm_head"}
    k_proj = next(x for x in a.gemm_layers() if x.name.endswith("k_proj"))
    assert (k_proj.gemm.p, k_proj.gemm.k, k_proj.gemm.cols) == (32, 64, 2 * 8)
    scores = next(x for x in a.gemm_layers() if x.kind == "matmul")
    assert (scores.gemm.groups, scores.gemm.p, scores.gemm.k, scores.gemm.cols) == \
        (2 * 8, 16, 8, 16)


def test_any_json_file_name_is_a_config(tmp_path):
    path = write(tmp_path / "my_model.json", TINY)
    assert config_path(path) is not None
    assert import_hf_config(path, seq=4).meta["seq"] == 4


def test_a_vision_config_takes_batch(tmp_path):
    vit = {"model_type": "vit", "hidden_size": 32, "num_hidden_layers": 1,
           "num_attention_heads": 2, "intermediate_size": 64, "image_size": 32,
           "patch_size": 16}
    g = load_graph(write(tmp_path / "vit" / "config.json", vit), batch=3)
    assert g.input_shape == (3, 3, 32, 32)
    assert "seq" not in g.meta
    with pytest.raises(ModelImportError, match="image model"):
        load_graph(str(tmp_path / "vit"), seq=16)


@pytest.mark.parametrize(("text", "words"), [
    ("{not json", ["config.json", "JSON"]),
    ("[1, 2]", ["config.json", "model_type"]),
    (json.dumps({"hidden_size": 4}), ["config.json", "model_type"]),
    (json.dumps({"model_type": "no_such_architecture"}), ["config.json", "no_such_architecture"]),
    (json.dumps({**TINY, "num_attention_heads": 7}), ["config.json"]),
])
def test_broken_configs_are_one_error_naming_the_file(tmp_path, text, words):
    path = write(tmp_path / "m" / "config.json", text)
    for spec in (path, str(tmp_path / "m")):
        with pytest.raises(ModelImportError) as err:
            load_graph(spec)
        message = str(err.value)
        assert "\n" not in message
        for word in words:
            assert word in message


def test_missing_config_and_empty_directory(tmp_path):
    with pytest.raises(ModelImportError, match=r"config\.json.*does not exist"):
        load_graph(str(tmp_path / "gone" / "config.json"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelImportError, match=r"holds no config\.json"):
        load_graph(str(tmp_path / "empty"))


def test_fixed_shape_files_refuse_seq(tmp_path):
    path = write(tmp_path / "t.csv", "Layer name,IFMAP Height,IFMAP Width,Filter Height,"
                                     "Filter Width,Channels,Num Filter,Strides,\n"
                                     "c,8,8,3,3,4,8,1,\n")
    with pytest.raises(ModelImportError, match="fixed shapes"):
        load_graph(path, seq=64)


@pytest.mark.parametrize(("config", "kv_heads"), [
    ({"model_type": "falcon", "new_decoder_architecture": True, "num_kv_heads": 2}, 2),
    ({"model_type": "gemma", "num_key_value_heads": 1, "head_dim": 32,
      "intermediate_size": 128}, 1),
])
def test_key_value_heads_under_other_names(tmp_path, config, kv_heads):
    data = {"hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4,
            "vocab_size": 100, "max_position_embeddings": 64, **config}
    g = load_graph(write(tmp_path / "m" / "config.json", data), seq=8)
    assert g.meta["kv_heads"] == kv_heads
    assert g.meta["head_dim"] == config.get("head_dim", 16)


def test_an_encoder_is_not_causal(tmp_path):
    bert = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 64, "vocab_size": 100}
    assert load_graph(write(tmp_path / "b" / "config.json", bert), seq=8).meta["causal"] is False


# A Mixtral-shaped mixture of experts: 3 experts, 2 per token (so routing cannot be even).
MIXTRAL = {"model_type": "mixtral", "hidden_size": 64, "intermediate_size": 96,
           "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 2,
           "vocab_size": 100, "max_position_embeddings": 256, "num_local_experts": 3,
           "num_experts_per_tok": 2}


def test_mixture_of_experts_config(tmp_path):
    """Every expert is a layer running the tokens routed to it (balanced: 2 x 5 tokens x 2
    experts each = 20 pairs over 3 experts = 7, 7, 6); the MACs equal the model's formula."""
    b, s, h, inter, e, k, heads, kv, vocab = 2, 5, 64, 96, 3, 2, 8, 2, 100
    g = load_graph(write(tmp_path / "mix" / "config.json", MIXTRAL), batch=b, seq=s)
    assert (g.meta["experts"], g.meta["top_k"], g.meta["causal"]) == (3, 2, True)
    assert "routing assumed balanced" in g.source
    for layer in range(2):
        for proj, k_in, cols in (("gate_up_proj", h, 2 * inter), ("down_proj", inter, h)):
            got = [x for x in g.gemm_layers() if x.name.startswith(f"model.layers.{layer}.")
                   and x.name.endswith(proj)]
            assert [x.name for x in got] == [f"model.layers.{layer}.mlp.experts.{i}.{proj}"
                                             for i in range(e)]
            assert [(x.gemm.p, x.gemm.k, x.gemm.cols) for x in got] == \
                [(7, k_in, cols), (7, k_in, cols), (6, k_in, cols)]
            assert [x.attrs["expert"] for x in got] == [0, 1, 2]
    t, head_dim = b * s, h // heads
    per_layer = (2 * t * h * h + 2 * t * h * kv * head_dim      # q, o; k, v
                 + 2 * b * heads * s * s * head_dim             # scores and context
                 + t * h * e                                     # router
                 + t * k * (h * 2 * inter + inter * h))         # the routed experts
    assert g.macs == 2 * per_layer + t * h * vocab


def test_mixture_of_experts_with_a_shared_expert(tmp_path):
    """Qwen2-MoE: the shared expert runs every token, the 6 routed experts share 2 x 5 = 10
    (token, expert) pairs: 2, 2, 2, 2, 1, 1."""
    qwen = {"model_type": "qwen2_moe", "hidden_size": 64, "moe_intermediate_size": 32,
            "shared_expert_intermediate_size": 96, "num_hidden_layers": 1,
            "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 100,
            "num_experts": 6, "num_experts_per_tok": 2, "decoder_sparse_step": 1}
    g = load_graph(write(tmp_path / "q" / "config.json", qwen), seq=5)
    shared = [x.gemm.p for x in g.gemm_layers() if ".shared_expert." in x.name]
    routed = [x.gemm.p for x in g.gemm_layers() if x.name.endswith("down_proj")
              and ".experts." in x.name]
    assert shared == [5, 5, 5]
    assert routed == [2, 2, 2, 2, 1, 1]
