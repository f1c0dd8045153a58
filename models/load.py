"""Load a layer graph from a spec string: a zoo name (``sparsa models``), an ``.onnx`` file, a
SCALE-Sim topology ``.csv``, a Hugging Face ``config.json`` (or a model directory holding one) or
a graph file written by :func:`~sparsa.models.store.save_graph` (``.npz``; pruned models are
saved this way).

``batch`` and ``seq`` set the workload of the models that are traced here (zoo transformer models
and Hugging Face configs; image models take ``batch`` only). Files with fixed shapes (ONNX,
SCALE-Sim, saved graphs) keep their own, and asking for another batch or sequence length is an
error rather than silently ignored.
"""

from __future__ import annotations

from pathlib import Path

from . import zoo
from .errors import ModelImportError, UnknownModelError
from .graph import LayerGraph
from .store import load_saved

__all__ = ["load_graph"]

SUFFIXES = (".onnx", ".csv", ".npz")


def _fixed_shape_file(path: Path, spec: str) -> LayerGraph:
    suffix = path.suffix.lower()
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


def load_graph(spec: str, *, batch: int = 1, seq: int | None = None) -> LayerGraph:
    """A zoo name, an ``.onnx`` file, a SCALE-Sim ``.csv`` topology, a Hugging Face config or a
    saved ``.npz`` graph, traced for ``batch`` x ``seq`` where the model is traced here."""
    from .hf_config import config_path, import_hf_config

    zoo.check_positive(batch, "batch")
    if seq is not None:
        zoo.check_positive(seq, "seq")
    path = Path(spec)
    if path.suffix.lower() in SUFFIXES:
        if batch != 1 or seq is not None:
            raise ModelImportError(f"{spec!r} has the fixed shapes of its file; batch and seq "
                                   "apply to zoo models and Hugging Face configs only")
        return _fixed_shape_file(path, spec)
    if config_path(spec) is not None:
        return import_hf_config(spec, batch=batch, seq=seq)
    if spec in zoo.names():
        return zoo.get_graph(spec, batch=batch, seq=seq)
    if path.is_dir():
        raise ModelImportError(f"model directory {spec!r} holds no config.json")
    raise UnknownModelError(f"cannot load model {spec!r}: expected a zoo name "
                            f"({', '.join(zoo.names())}), an .onnx file, a SCALE-Sim .csv "
                            f"topology, a Hugging Face config.json (or its directory) or a "
                            f"saved sparsa graph (.npz)")
