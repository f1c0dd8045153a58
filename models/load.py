"""Load a layer graph from a spec string, and save/load graphs with their weights.

``load_graph(spec)`` accepts a zoo name (``sparsa models``), an ``.onnx`` file, a SCALE-Sim
topology ``.csv`` or a graph file written by :func:`save_graph` (``.npz``: the graph as JSON plus
each layer's weight and bias arrays; pruned models are saved this way).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelImportError, UnknownModelError
from .graph import Layer, LayerGraph

__all__ = ["graph_from_json", "graph_to_json", "load_graph", "load_saved", "save_graph"]

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
            "input_shape": list(graph.input_shape),
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
                      input_shape=tuple(data["input_shape"]), source=data["source"])


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
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["__graph__"]))
            arrays = {k: data[k] for k in data.files if k != "__graph__"}
    except (OSError, ValueError, KeyError) as e:
        raise ModelImportError(f"{path}: not a sparsa graph file ({e})") from e
    try:
        return graph_from_json(header, arrays), header.get("meta", {})
    except (KeyError, TypeError, ValueError) as e:
        raise ModelImportError(f"{path}: malformed sparsa graph file ({e})") from e


def load_graph(spec: str) -> LayerGraph:
    """A zoo name, an ``.onnx`` file, a SCALE-Sim ``.csv`` topology or a saved ``.npz`` graph."""
    from . import zoo

    path = Path(spec)
    suffix = path.suffix.lower()
    if suffix in (".onnx", ".csv", ".npz"):
        if not path.is_file():
            raise ModelImportError(f"model file {spec!r} does not exist")
        if suffix == ".onnx":
            from .onnx_import import import_onnx

            return import_onnx(path)
        if suffix == ".csv":
            from .scalesim import read_topology

            return read_topology(path)
        return load_saved(path)[0]
    if spec in zoo.names():
        return zoo.get_graph(spec)
    raise UnknownModelError(f"cannot load model {spec!r}: expected a zoo name "
                            f"({', '.join(zoo.names())}), an .onnx file, a SCALE-Sim .csv "
                            f"topology or a saved sparsa graph (.npz)")
