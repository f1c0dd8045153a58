"""SCALE-Sim topology CSV importer."""

from __future__ import annotations

import pytest

from sparsa.models.errors import ModelImportError
from sparsa.models.scalesim import read_topology

HEADER = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, " \
         "Num Filter, Strides,"


def write(tmp_path, text, name="net.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_conv_topology(tmp_path):
    path = write(tmp_path, f"{HEADER}\nConv1,224,224,7,7,3,64,2,\n"
                           "Conv2, 56, 56, 3, 3, 64, 64, 1,\n")
    graph = read_topology(path)
    assert graph.name == "net"
    assert [layer.name for layer in graph] == ["Conv1", "Conv2"]
    c1, c2 = graph.layers
    assert c1.out_shape == (1, 64, (224 - 7) // 2 + 1, (224 - 7) // 2 + 1)
    assert c2.out_shape == (1, 64, 54, 54)
    gemm = c1.gemm
    assert (gemm.p, gemm.k, gemm.cols) == (109 * 109, 7 * 7 * 3, 64)
    assert c1.nm is None


def test_sparsity_column_and_gemm_layout(tmp_path):
    path = write(tmp_path, f"{HEADER} Sparsity,\nA,8,8,3,3,4,6,1,2:4,\nB,8,8,1,1,4,6,1,4:4,\n")
    a, b = read_topology(path).layers
    assert a.nm == (2, 4)
    assert b.nm is None  # 4:4 is dense
    g = read_topology(write(tmp_path, "Layer Name, M, N, K,\nfc, 10, 20, 30,\n", "g.csv")).layers[0]
    assert (g.gemm.p, g.gemm.cols, g.gemm.k) == (10, 20, 30)


@pytest.mark.parametrize(("body", "match"), [
    ("Conv1,224,224,7,7,3,64,\n", r"net\.csv:2: expected 8 fields"),
    ("Conv1,224,224,7,7,3,x,2,\n", r"net\.csv:2: column 'Num Filter': expected a positive "
                                   r"integer, not 'x'"),
    ("Conv1,224,224,7,7,3,0,2,\n", r"net\.csv:2: column 'Num Filter'"),
    ("Conv1,4,4,7,7,3,8,1,\n", r"net\.csv:2: filter 7x7 is larger than the input 4x4"),
    ("", r"net\.csv: the topology has a header but no layers"),
])
def test_malformed(tmp_path, body, match):
    with pytest.raises(ModelImportError, match=match):
        read_topology(write(tmp_path, f"{HEADER}\n{body}"))


def test_bad_header_and_missing_file(tmp_path):
    with pytest.raises(ModelImportError, match=r"bad\.csv:1: unrecognised header"):
        read_topology(write(tmp_path, "a,b,c\n1,2,3\n", "bad.csv"))
    with pytest.raises(ModelImportError, match="cannot read SCALE-Sim topology"):
        read_topology(tmp_path / "missing.csv")
    with pytest.raises(ModelImportError, match=r"column 'Sparsity'"):
        read_topology(write(tmp_path, f"{HEADER} Sparsity,\nA,8,8,3,3,4,6,1,5:4,\n", "s.csv"))
