"""SCALE-Sim topology CSV importer, with SCALE-Sim v3's own conventions.

Two layouts are read (the ones SCALE-Sim ships):

* convolution: ``Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels,
  Num Filter`` then ``Strides`` (or ``Stride height[, Stride width]``);
* GEMM: ``Layer name, M, N, K`` (``M`` rows of the input, ``N`` output columns, ``K`` the reduction
  length).

The leading columns are read by position, as SCALE-Sim's own files spell them loosely ("Layer",
"Num Filters", a second "IFMAP Width"). Columns after them are read by name: ``Batch Size`` (the
input batch; a GEMM's M is multiplied by it, as SCALE-Sim counts its MACs), ``Sparsity`` (an N:M
pattern such as ``2:4``) and, in SCALE-Sim's Resnet50.csv, ``Eh, Ew, e2`` (the expected output
height, width and pixels, checked against ours). An unknown column, or a value under an unnamed
one, is an error: nothing is dropped silently (a field starting with ``#`` after the last column
is a comment). Tab-separated files are read too.

Output size: SCALE-Sim computes ``ceil((H - F + S) / S)`` (``topology_utils.topo_calc_hyperparams``
in SCALE-Sim v3), one more than the floor formula when ``S`` does not divide ``H - F``; sparsa uses
the same, so every layer's M, N and K equal SCALE-Sim's. A layer whose name contains ``DP`` is a
depthwise convolution (SCALE-Sim splits it into one single-channel layer per channel; here it is
one grouped layer, ``groups = Channels``, with the same GEMMs). Every problem raises
:class:`ModelImportError` naming the file, the line and the column.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from sparsa.nm import parse_nm

from .errors import ModelImportError
from .graph import Layer, LayerGraph

__all__ = ["output_size", "read_topology"]

CONV_COLUMNS = ("layer name", "ifmap height", "ifmap width", "filter height", "filter width",
                "channels", "num filter")
GEMM_COLUMNS = ("layer name", "m", "n", "k")
# Named columns after the positional ones: canonical name -> the spellings SCALE-Sim accepts.
NAMED = {
    "stride": ("strides", "stride"),
    "stride_h": ("stride height", "stride h"),
    "stride_w": ("stride width", "stride w"),
    "batch": ("batch size", "batch"),
    "sparsity": ("sparsity", "sparsity ratio"),
    "eh": ("eh",), "ew": ("ew",), "e2": ("e2",),
}
_SPELLING = {spelling: key for key, spellings in NAMED.items() for spelling in spellings}


def output_size(size: int, kernel: int, stride: int) -> int:
    """SCALE-Sim's output size: ``ceil((size - kernel + stride) / stride)``."""
    return -(-(size - kernel + stride) // stride)


def _norm(cell: str) -> str:
    return " ".join(cell.strip().lstrip("\ufeff").lower().split())


@dataclass(frozen=True)
class _Header:
    kind: str                    # "conv" or "gemm"
    positional: int              # leading columns read by position
    named: dict[str, int]        # canonical name -> column index
    unnamed: tuple[int, ...]     # columns with an empty header cell
    width: int


def _header(path: Path, line: int, cells: list[str]) -> _Header:
    names = [_norm(c) for c in cells]
    while names and not names[-1]:
        names.pop()
    if len(names) >= 7 and names[1].startswith("ifmap") and names[3].startswith("filter"):
        kind, positional = "conv", 7
    elif len(names) >= 4 and names[1:4] == ["m", "n", "k"]:
        kind, positional = "gemm", 4
    else:
        raise ModelImportError(
            f"{path}:{line}: unrecognised header {', '.join(names)!r}; expected "
            f"'{', '.join(CONV_COLUMNS)}, strides[, batch size][, sparsity]' or "
            f"'{', '.join(GEMM_COLUMNS)}[, batch size][, sparsity]'")
    named, unnamed = {}, []
    for i, name in enumerate(names[positional:], start=positional):
        if not name:
            unnamed.append(i)
        elif name not in _SPELLING or _SPELLING[name] in named:
            raise ModelImportError(
                f"{path}:{line}: column {name!r} is unknown or repeated; expected after the "
                f"{kind} columns: {', '.join(s for v in NAMED.values() for s in v)}")
        else:
            named[_SPELLING[name]] = i
    if kind == "conv" and "stride" not in named and "stride_h" not in named:
        raise ModelImportError(f"{path}:{line}: a convolution topology needs a 'Strides' column")
    return _Header(kind, positional, named, tuple(unnamed), len(names))


def _positive(path: Path, line: int, column: str, cell: str) -> int:
    text = cell.strip()
    if not re.fullmatch(r"[0-9]+", text) or int(text) < 1:
        raise ModelImportError(f"{path}:{line}: column {column!r}: expected a positive integer, "
                               f"not {text!r}")
    return int(text)


def _cell(cells: list[str], index: int | None) -> str:
    return cells[index].strip() if index is not None and index < len(cells) else ""


def _pattern(path: Path, line: int, text: str) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        n, m = parse_nm(text)
    except ValueError as e:
        raise ModelImportError(f"{path}:{line}: column 'Sparsity': {e}") from None
    return None if n == m else (n, m)


def _optional(path: Path, line: int, h: _Header, cells: list[str], key: str) -> int | None:
    text = _cell(cells, h.named.get(key))
    return _positive(path, line, NAMED[key][0].title(), text) if text else None


def _conv(path: Path, line: int, h: _Header, cells: list[str], name: str, nm, batch: int):
    titles = [c.title() for c in CONV_COLUMNS]
    hh, ww, fh, fw, c, f = (_positive(path, line, titles[i], cells[i]) for i in range(1, 7))
    sh = _optional(path, line, h, cells, "stride") or _optional(path, line, h, cells, "stride_h")
    if sh is None:
        raise ModelImportError(f"{path}:{line}: column 'Strides': expected a positive integer, "
                               "not ''")
    sw = _optional(path, line, h, cells, "stride_w") or sh
    if fh > hh or fw > ww:
        raise ModelImportError(f"{path}:{line}: filter {fh}x{fw} is larger than the input "
                               f"{hh}x{ww} (no padding in SCALE-Sim topologies)")
    ho, wo = output_size(hh, fh, sh), output_size(ww, fw, sw)
    for key, want in (("eh", ho), ("ew", wo), ("e2", ho * wo)):
        given = _optional(path, line, h, cells, key)
        if given is not None and given != want:
            raise ModelImportError(f"{path}:{line}: column {key.title()!r} = {given}, but the "
                                   f"layer's output is {ho}x{wo} ({want})")
    groups = c if "DP" in name else 1
    return Layer(name=name, kind="conv2d", in_shape=(batch, c, hh, ww),
                 out_shape=(batch, f * groups, ho, wo),
                 attrs={"kernel": (fh, fw), "stride": (sh, sw), "padding": (0, 0),
                        "dilation": (1, 1), "groups": groups}, nm=nm)


def _layer(path: Path, line: int, h: _Header, cells: list[str], name: str) -> Layer:
    extra = [c.strip() for c in cells[h.width:] if c.strip() and not c.strip().startswith("#")]
    if extra:   # a "#..." field after the last column is a comment (SCALE-Sim's MobileNets)
        raise ModelImportError(f"{path}:{line}: value {extra[0]!r} after the last of the "
                               f"{h.width} columns the header names")
    if len(cells) < h.positional:
        raise ModelImportError(f"{path}:{line}: expected at least {h.positional} fields, found "
                               f"{len(cells)}")
    for i in h.unnamed:
        if _cell(cells, i):
            raise ModelImportError(f"{path}:{line}: value {_cell(cells, i)!r} in column "
                                   f"{i + 1}, which has no name in the header")
    nm = _pattern(path, line, _cell(cells, h.named.get("sparsity")))
    batch = _optional(path, line, h, cells, "batch") or 1
    if h.kind == "conv":
        return _conv(path, line, h, cells, name, nm, batch)
    m_rows, n_cols, k = (_positive(path, line, col.upper(), cells[i])
                         for i, col in enumerate(GEMM_COLUMNS[1:], start=1))
    return Layer(name=name, kind="linear", in_shape=(batch, m_rows, k),
                 out_shape=(batch, m_rows, n_cols), nm=nm)


def _rows(path: Path) -> list[tuple[int, list[str]]]:
    try:
        text = path.read_text()
    except OSError as e:
        raise ModelImportError(f"cannot read SCALE-Sim topology {str(path)!r}: "
                               f"{e.strerror}") from None
    except UnicodeDecodeError:
        raise ModelImportError(f"{str(path)!r} is not a text file (expected a SCALE-Sim "
                               "topology CSV)") from None
    lines = text.splitlines()
    first = next((t for t in lines if t.strip()), "")
    delimiter = "\t" if "\t" in first and "," not in first else ","
    rows = csv.reader(lines, delimiter=delimiter)
    return [(i + 1, r) for i, r in enumerate(rows) if any(c.strip() for c in r)]


def read_topology(path: str | Path) -> LayerGraph:
    """Read a SCALE-Sim topology CSV into a :class:`LayerGraph` (NCHW shapes)."""
    path = Path(path)
    numbered = _rows(path)
    if not numbered:
        raise ModelImportError(f"{path}: empty SCALE-Sim topology (expected a header line)")
    header = _header(path, *numbered[0])
    layers: list[Layer] = []
    seen: set[str] = set()
    for line, cells in numbered[1:]:
        name = cells[0].strip()
        if not name:
            raise ModelImportError(f"{path}:{line}: column 'Layer Name' is empty")
        unique, suffix = name, 2
        while unique in seen:   # SCALE-Sim files repeat names; keep every layer
            unique, suffix = f"{name}_{suffix}", suffix + 1
        seen.add(unique)
        layers.append(_layer(path, line, header, cells, unique))
    if not layers:
        raise ModelImportError(f"{path}: the topology has a header but no layers")
    return LayerGraph(name=path.stem, layers=tuple(layers), input_shape=layers[0].in_shape,
                      source=str(path))
