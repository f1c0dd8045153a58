"""Load a layer graph from a spec string: a zoo name (``sparsa models``), an ``.onnx`` file, a
SCALE-Sim topology ``.csv`` or a graph file written by :func:`~sparsa.models.store.save_graph`
(``.npz``; pruned models are saved this way).
"""

from __future__ import annotations

from pathlib import Path

from . import zoo
from .errors import ModelImportError, UnknownModelError
from .graph import LayerGraph
from .store import load_saved

__all__ = ["load_graph"]

SUFFIXES = (".onnx", ".csv", ".npz")


def load_graph(spec: str) -> LayerGraph:
    """A zoo name, an ``.onnx`` file, a SCALE-Sim ``.csv`` topology or a saved ``.npz`` graph."""
    path = Path(spec)
    suffix = path.suffix.lower()
    if suffix in SUFFIXES:
        if path.is_dir():
            raise ModelImportError(f"model {spec!r} is a directory, not a {suffix} file")
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
