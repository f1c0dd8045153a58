"""The model zoo: real architectures defined by ``transformers`` (built on the meta device, so no
weights are downloaded or allocated) and the demo models trained on scikit-learn's digits.

Traced graphs are cached on disk under ``$SPARSA_CACHE_DIR`` (default ``~/.cache/sparsa``), keyed
by model name, batch, image size or sequence length and :data:`CACHE_VERSION`; a stale or
corrupt entry is rebuilt.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .demo import DEMOS, demo_graph
from .errors import ModelImportError, UnknownModelError
from .graph import LayerGraph
from .store import cache_dir, graph_from_json, graph_to_json

__all__ = ["CACHE_VERSION", "check_positive", "get_graph", "is_text", "names",
           "transformers_config"]

CACHE_VERSION = "6"


def _resnet50() -> tuple[Any, Any]:
    from transformers import ResNetConfig, ResNetForImageClassification

    # The config defaults are ResNet-50's layers; the head is ImageNet's 1000 classes.
    config = ResNetConfig(num_labels=1000, image_size=224)
    return config, ResNetForImageClassification


def _mobilenet_v2() -> tuple[Any, Any]:
    from transformers import MobileNetV2Config, MobileNetV2ForImageClassification

    return MobileNetV2Config(num_labels=1000), MobileNetV2ForImageClassification


def _vit_b16() -> tuple[Any, Any]:
    from transformers import ViTConfig, ViTForImageClassification

    # ViT-B/16 at 224x224 with the 1000-class head.
    return (ViTConfig(num_labels=1000, attn_implementation="eager"), ViTForImageClassification)


def _bert_base() -> tuple[Any, Any]:
    from transformers import BertConfig, BertModel

    return BertConfig(attn_implementation="eager"), lambda c: BertModel(c, add_pooling_layer=True)


def _gpt2() -> tuple[Any, Any]:
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2Config(attn_implementation="eager"), GPT2LMHeadModel


def _llama2_7b() -> tuple[Any, Any]:
    from transformers import LlamaConfig, LlamaForCausalLM

    # Llama-2-7B: 32 decoder layers, d=4096, 32 heads (no GQA), SwiGLU 11008, vocab 32000.
    return LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=32, vocab_size=32000,
                       max_position_embeddings=4096, attn_implementation="eager"), \
        LlamaForCausalLM


def _llama3_8b() -> tuple[Any, Any]:
    from transformers import LlamaConfig, LlamaForCausalLM

    # Llama-3-8B: 32 decoder layers, d=4096, 32 query heads sharing 8 key/value heads (GQA),
    # SwiGLU 14336, vocab 128256.
    return LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
                       max_position_embeddings=8192, rope_theta=500000.0,
                       attn_implementation="eager"), LlamaForCausalLM


# name -> (config and model class factory, input size of vision models or None for text).
_BUILDERS: dict[str, tuple[Callable[[], tuple[Any, Any]], int | None]] = {
    "resnet50": (_resnet50, 224),
    "mobilenet_v2": (_mobilenet_v2, 224),
    "vit_b16": (_vit_b16, 224),
    "bert_base": (_bert_base, None),
    "gpt2": (_gpt2, None),
    "llama2_7b": (_llama2_7b, None),
    "llama3_8b": (_llama3_8b, None),
}


def transformers_config(name: str) -> Any:
    """The ``transformers`` config zoo model ``name`` is built from."""
    if name not in _BUILDERS:
        raise UnknownModelError(f"{name!r} is not a transformers model of the zoo "
                                f"({', '.join(_BUILDERS)})")
    return _BUILDERS[name][0]()[0]


def is_text(name: str) -> bool:
    """Whether zoo model ``name`` takes token sequences (and so ``seq``)."""
    return name in _BUILDERS and _BUILDERS[name][1] is None


def names() -> list[str]:
    """Names accepted by :func:`get_graph`."""
    return [*_BUILDERS, *DEMOS]


def _cache_path(name: str, batch: int, seq: int | None) -> Path:
    size = _BUILDERS[name][1]
    shape = f"3x{size}x{size}" if size else f"seq{seq}"
    return cache_dir() / "graphs" / f"{name}-b{batch}-{shape}-v{CACHE_VERSION}.json"


def _trace(name: str, batch: int, seq: int | None) -> LayerGraph:
    import torch

    from .hf_config import trace_config

    factory, size = _BUILDERS[name]
    config, model_cls = factory()
    if size:
        config.image_size = size
    with torch.device("meta"):
        model = model_cls(config)
    return trace_config(config, model, name=name, batch=batch, seq=seq,
                        source=f"zoo:{name} (transformers {type(model).__name__}, meta device)")


def check_positive(value: Any, what: str) -> int:
    """``value`` when it is a positive integer, else a :class:`ModelImportError` naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelImportError(f"{what} must be a positive integer, not {value!r}")
    return value


def get_graph(name: str, *, batch: int = 1, seq: int | None = None,
              cache: bool = True) -> LayerGraph:
    """The layer graph of zoo model ``name`` for ``batch`` inputs of ``seq`` tokens (text
    models only; default :data:`~sparsa.models.hf_config.DEFAULT_SEQ`).

    Transformer-library models carry shapes only (meta device); the demo models carry their
    trained weights (trained on first use, then loaded from the cache directory).
    """
    from .hf_config import DEFAULT_SEQ

    if name not in names():
        raise UnknownModelError(f"unknown model {name!r}; expected one of {', '.join(names())}")
    check_positive(batch, "batch")
    if seq is not None:
        check_positive(seq, "seq")
        if not is_text(name):
            raise ModelImportError(f"{name} is not a text model: seq applies to text models "
                                   "only (use batch)")
    if name in DEMOS:
        graph = demo_graph(name, batch=batch)
        return dataclasses.replace(graph, meta={**graph.meta, "batch": batch})
    seq = (DEFAULT_SEQ if seq is None else seq) if is_text(name) else None
    path = _cache_path(name, batch, seq)
    if cache and path.is_file():
        try:
            cached = graph_from_json(json.loads(path.read_text()))
            if cached.meta.get("batch") == batch:
                return cached
        except (ValueError, KeyError, TypeError, OSError):
            pass  # stale or corrupt: rebuild below
    graph = _trace(name, batch, seq)
    if cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(graph_to_json(graph)))
            tmp.replace(path)
        except OSError:
            pass  # a read-only cache is not an error
    return graph
