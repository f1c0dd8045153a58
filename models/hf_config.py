"""Hugging Face configs -> :class:`~sparsa.models.graph.LayerGraph`, on the meta device.

A local ``config.json`` (or a model directory holding one) is read with the standard library,
turned into a config object with ``transformers.AutoConfig.for_model`` and a model with
``AutoModelForCausalLM.from_config`` (``AutoModel.from_config`` for models without a causal-LM
head) under ``torch.device("meta")``: no weights are allocated and nothing is downloaded. The
model is traced with eager attention, so attention scores and context appear as ``matmul``
layers. Text models take ``batch x seq`` token ids; vision models (configs with ``image_size``)
``batch`` images. A decoder's attention is marked causal (``meta["causal"]``: its attention
modules' ``is_causal``). Mixture-of-experts models trace with their experts made traceable and
routed evenly (:mod:`sparsa.models.moe`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from .errors import ModelImportError
from .graph import LayerGraph

__all__ = ["DEFAULT_SEQ", "config_path", "import_hf_config", "trace_config", "transformer_meta"]

DEFAULT_SEQ = 128


def config_path(spec: str | Path) -> Path | None:
    """The ``config.json`` that ``spec`` names (the file itself or a directory holding one), or
    ``None`` when ``spec`` is not a Hugging Face config."""
    path = Path(spec)
    if path.is_dir() and (path / "config.json").is_file():
        return path / "config.json"
    if path.suffix.lower() == ".json" and (path.is_file() or path.name == "config.json"):
        return path
    return None


def _why(e: BaseException) -> str:
    """An exception as one line: its type and its message with whitespace collapsed."""
    return f"{type(e).__name__}: {' '.join(str(e).split())}"


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelImportError(f"Hugging Face config {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelImportError(f"{path}: not a readable JSON Hugging Face config "
                               f"({_why(e)})") from None
    if not isinstance(data, dict) or not isinstance(data.get("model_type"), str):
        raise ModelImportError(f"{path}: not a Hugging Face config (expected a JSON object with "
                               "a 'model_type' string, e.g. \"llama\")")
    return data


def _config(path: Path) -> Any:
    from transformers import AutoConfig

    data = _read(path)
    fields = {k: v for k, v in data.items() if k != "model_type"}
    try:
        return AutoConfig.for_model(data["model_type"], **fields)
    except Exception as e:  # unknown model_type (ValueError), bad field types (TypeError, ...)
        raise ModelImportError(f"{path}: transformers cannot build this config "
                               f"({_why(e)})") from None


def _model(config: Any, path: str) -> Any:
    import torch
    from transformers import AutoModel, AutoModelForCausalLM

    config._attn_implementation = "eager"
    errors = []
    for auto in (AutoModelForCausalLM, AutoModel):
        try:
            with torch.device("meta"):
                return auto.from_config(config)
        except ValueError as e:  # this Auto class has no model for the config's type
            errors.append(_why(e))
        except Exception as e:
            raise ModelImportError(f"{path}: building the model failed "
                                   f"({_why(e)})") from None
    raise ModelImportError(f"{path}: no transformers model for this config ({errors[-1]})")


def transformer_meta(config: Any, *, batch: int, seq: int | None) -> dict[str, Any]:
    """The workload and attention shapes of a transformers config (see ``LayerGraph.meta``)."""
    meta: dict[str, Any] = {"batch": batch}
    if seq is not None:
        meta["seq"] = seq
    heads = getattr(config, "num_attention_heads", None)
    hidden = getattr(config, "hidden_size", None)
    if isinstance(heads, int) and isinstance(hidden, int) and heads > 0:
        kv = (getattr(config, "num_key_value_heads", None) or getattr(config, "num_kv_heads", None)
              or (1 if getattr(config, "multi_query", False) else heads))
        meta.update(heads=heads, kv_heads=int(kv),
                    head_dim=int(getattr(config, "head_dim", None) or hidden // heads),
                    decoder_layers=int(getattr(config, "num_hidden_layers", 0) or 0))
    return meta


def _inputs(config: Any, batch: int, seq: int | None) -> tuple[tuple, int | None]:
    import torch

    size = getattr(config, "image_size", None)
    if size is not None and not hasattr(config, "vocab_size"):
        if seq is not None:
            raise ModelImportError(f"{type(config).__name__} is an image model: seq applies to "
                                   "text models only (use batch)")
        h, w = (size, size) if isinstance(size, int) else size
        channels = int(getattr(config, "num_channels", 3))
        return (torch.empty(batch, channels, h, w, device="meta"),), None
    seq = DEFAULT_SEQ if seq is None else seq
    return (torch.zeros(batch, seq, dtype=torch.long, device="meta"),), seq


def trace_config(config: Any, model: Any, *, name: str, batch: int, seq: int | None,
                 source: str) -> LayerGraph:
    """Trace ``model`` (built from ``config`` on the meta device) for ``batch`` x ``seq``."""
    from .moe import expert_attrs, route_experts
    from .torch_import import import_module

    inputs, seq = _inputs(config, batch, seq)
    model.eval()
    stand_ins = route_experts(model)
    graph = import_module(model, inputs, name=name)
    meta = transformer_meta(config, batch=batch, seq=seq)
    if "heads" in meta:
        meta["causal"] = _causal(model, config)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    head_name = next((n for n, m in model.named_modules() if m is head), None) if head else None
    if head_name:
        meta["lm_head"] = head_name     # the LM head: prefill needs only the last token's logits
    layers = graph.layers
    if stand_ins:
        experts = expert_attrs(stand_ins)
        layers = tuple(dataclasses.replace(x, attrs=experts[x.name]) if x.name in experts else x
                       for x in layers)
        first = next(iter(experts.values()))
        meta.update(experts=first["experts"], top_k=first["top_k"])
        source += (f"; mixture of experts: top-{first['top_k']} of {first['experts']} experts "
                   "per token, routing assumed balanced (each expert gets floor or ceil of "
                   "tokens x top-k / experts tokens)")
    return LayerGraph(name=name, layers=layers, input_shape=graph.input_shape,
                      source=source, meta=meta)


def _causal(model: Any, config: Any) -> bool:
    """Whether the model's self-attention is causal (each token sees only those before it):
    its attention modules' ``is_causal`` flags, else the config's ``is_decoder``."""
    flags = [m.is_causal for m in model.modules() if isinstance(getattr(m, "is_causal", None),
                                                                 bool)]
    return all(flags) if flags else bool(getattr(config, "is_decoder", False))


def import_hf_config(spec: str | Path, *, batch: int = 1, seq: int | None = None) -> LayerGraph:
    """The layer graph of the model a local Hugging Face config describes (shapes only)."""
    path = config_path(spec)
    if path is None:
        raise ModelImportError(f"{str(spec)!r} is neither a config.json file nor a directory "
                               "holding one")
    config = _config(path)
    model = _model(config, str(path))
    name = path.parent.name if path.name == "config.json" and path.parent.name else path.stem
    return trace_config(config, model, name=name or config.model_type, batch=batch, seq=seq,
                        source=f"hf:{path} (transformers {type(model).__name__}, meta device)")
