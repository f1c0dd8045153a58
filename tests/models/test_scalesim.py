"""SCALE-Sim topology CSV importer."""

from __future__ import annotations

import math

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
    # SCALE-Sim's ceil((H - F + S) / S): 219 / 2 -> 110, one more than floor((H - F) / S) + 1
    assert c1.out_shape == (1, 64, 110, 110)
    assert c2.out_shape == (1, 64, 54, 54)
    gemm = c1.gemm
    assert (gemm.p, gemm.k, gemm.cols) == (110 * 110, 7 * 7 * 3, 64)
    assert c1.nm is None


@pytest.mark.parametrize(("h", "f", "s"), [(224, 7, 2), (56, 3, 1), (57, 3, 2), (13, 13, 4),
                                           (227, 11, 4), (9, 2, 3)])
def test_output_size_is_scalesims(tmp_path, h, f, s):
    """Against SCALE-Sim v3's formula written out: ceil((h - f + s) / s)."""
    layer = read_topology(write(tmp_path, f"{HEADER}\nL,{h},{h},{f},{f},2,3,{s},\n")).layers[0]
    want = math.ceil((h - f + s) / s)
    assert layer.out_shape[2:] == (want, want)
    assert layer.gemm.p == want * want


def test_named_columns_batch_strides_checks_and_comments(tmp_path):
    text = ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
            "Num Filter, Stride height, Stride width, Batch Size, Sparsity,\n"
            "a,8,10,3,3,4,6,1,2,4,1:4,\n"
            "b_DP,8,8,3,3,16,1,1,1,,,#dw\n")
    a, dw = read_topology(write(tmp_path, text)).layers
    assert a.in_shape == (4, 4, 8, 10)
    assert a.out_shape == (4, 6, 6, 5)          # widths: ceil((10 - 3 + 2) / 2) = 5
    assert a.gemm.p == 4 * 6 * 5
    assert a.nm == (1, 4)
    assert (dw.gemm.groups, dw.gemm.k, dw.gemm.cols, dw.gemm.p) == (16, 9, 1, 36)
    checked = (f"{HEADER},,Eh,Ew,e2\nConv1,224,224,7,7,3,64,2,,,110,110,12100\n")
    assert read_topology(write(tmp_path, checked, "e.csv")).layers[0].gemm.p == 12100
    with pytest.raises(ModelImportError, match=r"column 'Eh' = 109, but the layer's output is "
                                               r"110x110"):
        read_topology(write(tmp_path, checked.replace(",110,110,", ",109,110,"), "e2.csv"))
    gemm = read_topology(write(tmp_path, "Layer,M,N,K,Batch Size,\nfc,10,20,30,3,\n",
                               "g.csv")).layers[0]
    assert (gemm.gemm.p, gemm.gemm.k, gemm.gemm.cols) == (30, 30, 20)
    tabs = HEADER.replace(", ", "\t").rstrip(",") + "\nc\t8\t8\t3\t3\t4\t6\t1\n"
    assert read_topology(write(tmp_path, tabs, "t.csv")).layers[0].out_shape == (1, 6, 6, 6)


@pytest.mark.parametrize(("text", "match"), [
    (f"{HEADER} Colour,\nA,8,8,3,3,4,6,1,red,\n", r"column 'colour' is unknown"),
    (f"{HEADER},Batch Size,\nA,8,8,3,3,4,6,1,5,1,\n", r"value '5' in column 9, which has no "
                                                       r"name"),
    (f"{HEADER}\nA,8,8,3,3,4,6,1,1,\n", r"value '1' after the last of the 8 columns"),
    (f"{HEADER} Batch Size,\nA,8,8,3,3,4,6,1,0,\n", r"column 'Batch Size'"),
    ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
     "Num Filter,\nA,8,8,3,3,4,6,\n", r"needs a 'Strides' column"),
])
def test_extra_columns_never_dropped_silently(tmp_path, text, match):
    with pytest.raises(ModelImportError, match=match):
        read_topology(write(tmp_path, text))


def test_sparsity_column_and_gemm_layout(tmp_path):
    path = write(tmp_path, f"{HEADER} Sparsity,\nA,8,8,3,3,4,6,1,2:4,\nB,8,8,1,1,4,6,1,4:4,\n")
    a, b = read_topology(path).layers
    assert a.nm == (2, 4)
    assert b.nm is None  # 4:4 is dense
    g = read_topology(write(tmp_path, "Layer Name, M, N, K,\nfc, 10, 20, 30,\n", "g.csv")).layers[0]
    assert (g.gemm.p, g.gemm.cols, g.gemm.k) == (10, 20, 30)


@pytest.mark.parametrize(("body", "match"), [
    ("Conv1,224,224,\n", r"net\.csv:2: expected at least 7 fields"),
    ("Conv1,224,224,7,7,3,64,\n", r"net\.csv:2: column 'Strides'"),
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
