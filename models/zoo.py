"""The model zoo: real architectures defined by ``transformers`` (built on the meta device, so no
weights are downloaded or allocated) and the demo models trained on scikit-learn's digits.

Traced graphs are cached on disk under ``$SPARSA_CACHE_DIR`` (default ``~/.cache/sparsa``), keyed
by model name, batch, input shape and :data:`CACHE_VERSION`; a stale or corrupt entry is rebuilt.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .demo import DEMOS, demo_graph
from .errors import ModelImportError, UnknownModelError
from .graph import LayerGraph
from .store import cache_dir, graph_from_json, graph_to_json

__all__ = ["CACHE_VERSION", "get_graph", "names"]

CACHE_VERSION = "2"


def _vision(model_fn: Callable[[], Any], size: int) -> Callable[[int], tuple[Any, tuple]]:
    def build(batch: int) -> tuple[Any, tuple]:
        import torch

        with torch.device("meta"):
            model = model_fn()
        return model, (torch.empty(batch, 3, size, size, device="meta"),)
    return build


def _text(model_fn: Callable[[], Any], seq: int) -> Callable[[int], tuple[Any, tuple]]:
    def build(batch: int) -> tuple[Any, tuple]:
        import torch

        with torch.device("meta"):
            model = model_fn()
        return model, (torch.zeros(batch, seq, dtype=torch.long, device="meta"),)
    return build


def _resnet50() -> Any:
    from transformers import ResNetConfig, ResNetForImageClassification

    # The config defaults are ResNet-50's layers; the head is ImageNet's 1000 classes.
    return ResNetForImageClassification(ResNetConfig(num_labels=1000))


def _mobilenet_v2() -> Any:
    from transformers import MobileNetV2Config, MobileNetV2ForImageClassification

    return MobileNetV2ForImageClassification(MobileNetV2Config(num_labels=1000))


def _vit_b16() -> Any:
    from transformers import ViTConfig, ViTForImageClassification

    # ViT-B/16 at 224x224 with the 1000-class head.
    return ViTForImageClassification(ViTConfig(num_labels=1000, attn_implementation="eager"))


def _bert_base() -> Any:
    from transformers import BertConfig, BertModel

    return BertModel(BertConfig(attn_implementation="eager"), add_pooling_layer=True)


def _gpt2() -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(attn_implementation="eager"))


def _llama2_7b() -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    # Llama-2-7B: 32 decoder layers, d=4096, 32 heads (no GQA), SwiGLU 11008, vocab 32000.
    config = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=32, vocab_size=32000,
                         max_position_embeddings=4096, attn_implementation="eager")
    return LlamaForCausalLM(config)


_SEQ = 128
_BUILDERS: dict[str, tuple[Callable[[int], tuple[Any, tuple]], str]] = {
    "resnet50": (_vision(_resnet50, 224), "3x224x224"),
    "mobilenet_v2": (_vision(_mobilenet_v2, 224), "3x224x224"),
    "vit_b16": (_vision(_vit_b16, 224), "3x224x224"),
    "bert_base": (_text(_bert_base, _SEQ), f"seq{_SEQ}"),
    "gpt2": (_text(_gpt2, _SEQ), f"seq{_SEQ}"),
    "llama2_7b": (_text(_llama2_7b, _SEQ), f"seq{_SEQ}"),
}


def names() -> list[str]:
    """Names accepted by :func:`get_graph`."""
    return [*_BUILDERS, *DEMOS]


def _cache_path(name: str, batch: int, shape: str) -> Path:
    return cache_dir() / "graphs" / f"{name}-b{batch}-{shape}-v{CACHE_VERSION}.json"


def _trace(name: str, batch: int) -> LayerGraph:
    from .torch_import import import_module

    build, _ = _BUILDERS[name]
    model, inputs = build(batch)
    model.eval()
    graph = import_module(model, inputs, name=name)
    return LayerGraph(name=name, layers=graph.layers, input_shape=graph.input_shape,
                      source=f"zoo:{name} (transformers {type(model).__name__}, meta device)")


def get_graph(name: str, *, batch: int = 1, cache: bool = True) -> LayerGraph:
    """The layer graph of zoo model ``name`` for ``batch`` inputs.

    Transformer-library models carry shapes only (meta device); the demo models carry their
    trained weights (trained on first use, then loaded from the cache directory).
    """
    if name not in names():
        raise UnknownModelError(f"unknown model {name!r}; expected one of {', '.join(names())}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ModelImportError(f"batch must be a positive integer, not {batch!r}")
    if name in DEMOS:
        return demo_graph(name, batch=batch)

    path = _cache_path(name, batch, _BUILDERS[name][1])
    if cache and path.is_file():
        try:
            return graph_from_json(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError, OSError):
            pass  # stale or corrupt: rebuild below
    graph = _trace(name, batch)
    if cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(graph_to_json(graph)))
            tmp.replace(path)
        except OSError:
            pass  # a read-only cache is not an error
    return graph
