"""SCALE-Sim topology CSV importer.

Two layouts are read (the ones SCALE-Sim v3 ships):

* convolution: ``Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels,
  Num Filter, Strides,`` and optionally ``Sparsity`` (an N:M pattern such as ``2:4``);
* GEMM: ``Layer name, M, N, K,`` (``M`` rows of the input, ``N`` output columns, ``K`` the reduction
  length), optionally ``Sparsity``.

Rows end with a comma (an empty last field). There is no padding: the output size is
``(H - Fh) // S + 1``. Every problem raises :class:`ModelImportError` naming the file, the line and
the column.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from .errors import ModelImportError
from .graph import Layer, LayerGraph

__all__ = ["read_topology"]

CONV_COLUMNS = ("layer name", "ifmap height", "ifmap width", "filter height", "filter width",
                "channels", "num filter", "strides")
GEMM_COLUMNS = ("layer name", "m", "n", "k")
SPARSITY_COLUMN = "sparsity"


def _norm(cell: str) -> str:
    return " ".join(cell.strip().lower().split())


def _strip_trailing_empty(cells: list[str]) -> list[str]:
    while cells and not cells[-1].strip():
        cells = cells[:-1]
    return cells


def _positive(path: Path, line: int, column: str, cell: str) -> int:
    text = cell.strip()
    if not re.fullmatch(r"[0-9]+", text) or int(text) < 1:
        raise ModelImportError(f"{path}:{line}: column {column!r}: expected a positive integer, "
                               f"not {text!r}")
    return int(text)


def _pattern(path: Path, line: int, cell: str) -> tuple[int, int] | None:
    text = cell.strip()
    if not text:
        return None
    match = re.fullmatch(r"([0-9]+)\s*:\s*([0-9]+)", text)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise ModelImportError(f"{path}:{line}: column 'Sparsity': expected an N:M pattern with "
                               f"1 <= N <= M such as '2:4', not {text!r}")
    n, m = int(match[1]), int(match[2])
    return None if n == m else (n, m)


def read_topology(path: str | Path) -> LayerGraph:
    """Read a SCALE-Sim topology CSV into a :class:`LayerGraph` (batch 1, NCHW shapes)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ModelImportError(f"cannot read SCALE-Sim topology {str(path)!r}: "
                               f"{e.strerror}") from None
    rows = list(csv.reader(text.splitlines()))
    numbered = [(i + 1, r) for i, r in enumerate(rows) if any(c.strip() for c in r)]
    if not numbered:
        raise ModelImportError(f"{path}: empty SCALE-Sim topology (expected a header line)")
    header_line, header = numbered[0]
    header = [_norm(c).lstrip("\ufeff") for c in _strip_trailing_empty(header)]
    # SCALE-Sim reads columns by position; its own files spell the header loosely
    # ("Layer", "Num Filters", a second "IFMAP Width"), so only the shape of the header is checked.
    if len(header) >= 8 and header[1].startswith("ifmap") and header[3].startswith("filter"):
        kind, width = "conv", 8
    elif len(header) >= 4 and header[1:4] == ["m", "n", "k"]:
        kind, width = "gemm", 4
    else:
        raise ModelImportError(
            f"{path}:{header_line}: unrecognised header {', '.join(header)!r}; expected "
            f"'{', '.join(CONV_COLUMNS)}[, sparsity]' or '{', '.join(GEMM_COLUMNS)}[, sparsity]'")
    has_sparsity = len(header) > width and header[width] == SPARSITY_COLUMN
    header = header[:width + 1] if has_sparsity else header[:width]
    base = header[:width]
    names = [c.title() for c in header]
    layers: list[Layer] = []
    seen: set[str] = set()
    for line, raw in numbered[1:]:
        cells = _strip_trailing_empty(raw)[:len(header)]
        if len(cells) != len(header) and not (has_sparsity and len(cells) == len(header) - 1):
            raise ModelImportError(f"{path}:{line}: expected {len(header)} fields "
                                   f"({', '.join(names)}), found {len(cells)}")
        name = cells[0].strip()
        if not name:
            raise ModelImportError(f"{path}:{line}: column 'Layer Name' is empty")
        if name in seen:  # SCALE-Sim files repeat names; keep every layer, make names unique
            suffix = 2
            while f"{name}_{suffix}" in seen:
                suffix += 1
            name = f"{name}_{suffix}"
        seen.add(name)
        values = [_positive(path, line, names[i], cells[i]) for i in range(1, len(base))]
        nm = _pattern(path, line, cells[len(base)]) if len(cells) > len(base) else None
        if kind == "conv":
            h, w, fh, fw, c, f, s = values
            if fh > h or fw > w:
                raise ModelImportError(f"{path}:{line}: filter {fh}x{fw} is larger than the "
                                       f"input {h}x{w} (no padding in SCALE-Sim topologies)")
            ho, wo = (h - fh) // s + 1, (w - fw) // s + 1
            layers.append(Layer(name=name, kind="conv2d", in_shape=(1, c, h, w),
                                out_shape=(1, f, ho, wo),
                                attrs={"kernel": (fh, fw), "stride": (s, s), "padding": (0, 0),
                                       "dilation": (1, 1), "groups": 1}, nm=nm))
        else:
            m_rows, n_cols, k = values
            layers.append(Layer(name=name, kind="linear", in_shape=(m_rows, k),
                                out_shape=(m_rows, n_cols), nm=nm))
    if not layers:
        raise ModelImportError(f"{path}: the topology has a header but no layers")
    first = layers[0]
    return LayerGraph(name=path.stem, layers=tuple(layers), input_shape=first.in_shape,
                      source=str(path))
