"""Graphs on disk: JSON (shapes only, the zoo's trace cache) and ``.npz`` (the graph as JSON plus
each layer's weight and bias arrays; pruned models and the demo artifacts are saved this way), and
the cache directory they live in.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from sparsa import files

from .errors import ModelImportError
from .graph import Layer, LayerGraph

__all__ = ["cache_dir", "graph_from_json", "graph_to_json", "load_saved", "save_graph"]


def cache_dir() -> Path:
    """Where sparsa caches traced graphs and demo-model artifacts (``$SPARSA_CACHE_DIR``,
    default ``~/.cache/sparsa``)."""
    return files.cache_dir()

_FORMAT = "sparsa-graph/1"


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def graph_to_json(graph: LayerGraph) -> dict:
    """The graph without weights as a JSON-able dict."""
    return {"format": _FORMAT, "name": graph.name, "source": graph.source,
            "input_shape": list(graph.input_shape), "graph_meta": _jsonable(dict(graph.meta)),
            "layers": [{"name": lay.name, "kind": lay.kind, "in_shape": list(lay.in_shape),
                        "out_shape": list(lay.out_shape), "attrs": _jsonable(dict(lay.attrs)),
                        "nm": list(lay.nm) if lay.nm else None} for lay in graph.layers]}


def graph_from_json(data: dict, arrays: dict[str, np.ndarray] | None = None) -> LayerGraph:
    """Inverse of :func:`graph_to_json`; ``arrays`` maps ``"<i>.weight"``/``"<i>.bias"``."""
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        raise ModelImportError(f"not a sparsa graph (format {_FORMAT!r} expected)")
    arrays = arrays or {}
    layers = []
    for i, d in enumerate(data["layers"]):
        layers.append(Layer(name=d["name"], kind=d["kind"], in_shape=tuple(d["in_shape"]),
                            out_shape=tuple(d["out_shape"]), attrs=_tuples(d["attrs"]),
                            weight=arrays.get(f"{i}.weight"), bias=arrays.get(f"{i}.bias"),
                            nm=tuple(d["nm"]) if d["nm"] else None))
    return LayerGraph(name=data["name"], layers=tuple(layers),
                      input_shape=tuple(data["input_shape"]), source=data["source"],
                      meta=dict(data.get("graph_meta") or {}))


def save_graph(graph: LayerGraph, path: str | Path, *, meta: dict | None = None) -> Path:
    """Write ``graph`` with its weights to an ``.npz`` file (``meta``: extra JSON, e.g. the demo
    model it came from)."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    for i, lay in enumerate(graph.layers):
        if lay.weight is not None:
            arrays[f"{i}.weight"] = np.asarray(lay.weight)
        if lay.bias is not None:
            arrays[f"{i}.bias"] = np.asarray(lay.bias)
    header = dict(graph_to_json(graph), meta=meta or {})
    np.savez(path, __graph__=np.array(json.dumps(header)), **arrays)
    return path


def load_saved(path: str | Path) -> tuple[LayerGraph, dict]:
    """Read a file written by :func:`save_graph`: the graph and its ``meta`` dict."""
    path = Path(path)
    if path.is_dir():
        raise ModelImportError(f"{str(path)!r} is a directory, not a sparsa graph file (.npz)")
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as data:
            header = json.loads(str(data["__graph__"]))
            arrays = {k: data[k] for k in data.files if k != "__graph__"}
    except FileNotFoundError:
        raise ModelImportError(f"model file {str(path)!r} does not exist") from None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        reason = "no '__graph__' entry" if isinstance(e, KeyError) else type(e).__name__
        raise ModelImportError(f"{str(path)!r} is not a sparsa graph file (expected an .npz "
                               f"written by 'sparsa prune': {reason})") from None
    try:
        return graph_from_json(header, arrays), header.get("meta", {})
    except (KeyError, TypeError, ValueError) as e:
        raise ModelImportError(f"{path}: malformed sparsa graph file ({e})") from e
