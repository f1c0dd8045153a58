"""The ``sparsa`` command line: ``verilog`` (without --lint) and ``presets``."""

from __future__ import annotations

import json
import os
import re

import pytest

from sparsa.cli import main
from sparsa.cli.common import MARKER
from sparsa.config import PRESETS, ArrayConfig


def verilog_ports(text: str, module: str) -> dict[str, tuple[str, int]]:
    """``name -> (direction, width)`` from the port declarations of ``module`` in ``text``."""
    start = text.index(f"module {module}(")
    body = text[start:text.index("endmodule", start)]
    ports = {}
    for direction, msb, name in re.findall(r"^\s*(input|output)\s+(?:\[(\d+):0\]\s+)?(\w+);",
                                           body, flags=re.MULTILINE):
        ports[name] = (direction, int(msb) + 1 if msb else 1)
    return ports


def array_port_widths(cfg: ArrayConfig) -> dict[str, tuple[str, int]]:
    """What the array's ports must be for ``cfg`` (valid/ready streams)."""
    act = cfg.rows * cfg.m * cfg.act_width + 1  # rows*m activations + swap bit
    psum = cfg.cols * cfg.acc_width
    weight = cfg.cols * cfg.n * (cfg.weight_width + cfg.index_width)
    ports = {"clk": ("input", 1), "rst": ("input", 1)}
    for stream, width, direction in [("act", act, "input"), ("psum_in", psum, "input"),
                                     ("weight", weight, "input"), ("psum", psum, "output")]:
        back = "output" if direction == "input" else "input"
        ports[f"{stream}__payload"] = (direction, width)
        ports[f"{stream}__valid"] = (direction, 1)
        ports[f"{stream}__ready"] = (back, 1)
    # gated products of the beat on psum (0 .. rows*cols*n)
    ports["gated"] = ("output", cfg.macs_per_cycle.bit_length())
    return ports


def manifest_ports(manifest: dict) -> dict[str, tuple[str, int]]:
    ports = {p["name"]: (p["direction"], p["width"]) for p in manifest["ports"]}
    assert len(ports) == len(manifest["ports"]), "duplicate port names"
    return ports


@pytest.mark.parametrize(("args", "cfg"), [
    (["--rows", "2", "--cols", "2", "--nm", "2:4"], ArrayConfig(rows=2, cols=2, n=2, m=4)),
    (["--preset", "tiny", "--cols", "3", "--nm", "1:8"], ArrayConfig(rows=2, cols=3, n=1, m=8)),
    (["--preset", "tiny", "--nm", "1:1"], ArrayConfig(rows=2, cols=2, n=1, m=1)),
])
def test_verilog_array(tmp_path, capsys, args, cfg):
    out = tmp_path / "out"
    assert main(["verilog", *args, "-o", str(out)]) == 0
    verilog, manifest_path = out / "sparsa_array.v", out / "sparsa_array.json"
    assert verilog.is_file()
    assert manifest_path.is_file()
    assert str(verilog) in capsys.readouterr().out

    manifest = json.loads(manifest_path.read_text())
    assert manifest["top"] == "array"
    assert manifest["module"] == "sparsa_array"
    assert ArrayConfig.from_dict(manifest["config"]) == cfg
    assert manifest["config"] == cfg.to_dict()

    expected = array_port_widths(cfg)
    assert manifest_ports(manifest) == expected
    assert manifest_ports(manifest)["act__payload"][1] == cfg.rows * cfg.m * 8 + 1
    assert verilog_ports(verilog.read_text(), "sparsa_array") == expected


def test_verilog_from_config_file(tmp_path):
    conf = tmp_path / "acc.toml"
    conf.write_text('preset = "tiny"\nacc_width = 24\n')
    out = tmp_path / "v"
    assert main(["verilog", "--config", str(conf), "--rows", "1", "-o", str(out)]) == 0
    manifest = json.loads((out / "sparsa_array.json").read_text())
    cfg = PRESETS["tiny"].replace(rows=1, acc_width=24)
    assert manifest["config"] == cfg.to_dict()
    assert manifest_ports(manifest)["psum__payload"] == ("output", cfg.cols * 24)


def test_verilog_pe(tmp_path, capsys):
    out = tmp_path / "pe"
    assert main(["verilog", "--preset", "tiny", "--top", "pe", "-o", str(out)]) == 0
    assert "sparsa_pe.v" in capsys.readouterr().out
    manifest = json.loads((out / "sparsa_pe.json").read_text())
    assert manifest["top"] == "pe"
    assert manifest["module"] == "sparsa_pe"
    cfg = PRESETS["tiny"]
    assert manifest["config"] == cfg.to_dict()
    ports = manifest_ports(manifest)
    assert ports["psum_in"] == ("input", cfg.acc_width)
    assert ports["psum_out"] == ("output", cfg.acc_width)
    assert ports["act_in"] == ("input", cfg.m * cfg.act_width + 1)
    assert ports["act_out"] == ("output", cfg.m * cfg.act_width + 1)
    assert ports["w_data"] == ("input", cfg.n * (cfg.weight_width + cfg.index_width))
    text = (out / "sparsa_pe.v").read_text()
    assert "module sparsa_pe(" in text
    assert verilog_ports(text, "sparsa_pe") == ports


@pytest.mark.parametrize(("args", "named"), [
    (["--nm", "3:6"], "3:6"),
    (["--nm", "5:4"], "5:4"),
    (["--nm", "2-4"], "'2-4'"),
    (["--rows", "0"], "rows"),
    (["--preset", "nope"], "'nope'"),
])
def test_verilog_bad_config_exits_2(tmp_path, capsys, args, named):
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as info:
        main(["verilog", *args, "-o", str(out)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("sparsa: error:")
    assert named in err
    assert not out.exists()


def test_verilog_bad_config_file_exits_2(tmp_path, capsys):
    conf = tmp_path / "bad.toml"
    conf.write_text("rows = [\n")
    with pytest.raises(SystemExit) as info:
        main(["verilog", "--config", str(conf), "-o", str(tmp_path / "o")])
    assert info.value.code == 2
    assert str(conf) in capsys.readouterr().err


def test_verilog_unknown_top_is_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["verilog", "--top", "soc", "-o", str(tmp_path)])
    assert info.value.code == 2
    assert "soc" in capsys.readouterr().err


def test_presets(capsys):
    assert main(["presets"]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert "DRAM B/cycle" in header
    by_name = {line.split()[0]: line for line in lines if line.strip()}
    for name, shape, nm in [("tiny", "2x2", "2:4"), ("default", "8x8", "2:4"),
                            ("dense", "8x8", "1:1")]:
        assert name in by_name
        fields = by_name[name].split()
        assert fields[1] == shape
        assert fields[2] == nm
        assert int(fields[6]) == PRESETS[name].dram_bytes_per_cycle
    assert set(by_name) == set(PRESETS)
    assert max(map(len, lines)) <= 100


def test_no_command_is_usage_error(capsys):
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "usage" in err
    assert "report" in err


def test_output_set_is_replaced_whole_and_readable(tmp_path, monkeypatch):
    """A report directory is replaced whole (an older run's files do not linger), carries the
    marker that allows the next replacement, and its files are 0644 under the usual umask."""
    monkeypatch.chdir(tmp_path)
    topology = tmp_path / "t.csv"
    topology.write_text("Layer name,IFMAP Height,IFMAP Width,Filter Height,Filter Width,"
                        "Channels,Num Filter,Strides,\nconv1,8,8,3,3,4,8,1,\n")
    old_mask = os.umask(0o022)
    try:
        assert main(["report", str(topology), "--format", "md,csv", "-o", "out"]) == 0
        (tmp_path / "out" / "stale.txt").write_text("from an older run")
        assert main(["report", str(topology), "--format", "json", "-o", "out"]) == 0
        assert main(["verilog", "--rows", "2", "--cols", "2", "-o", "rtl"]) == 0
    finally:
        os.umask(old_mask)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [MARKER, "report.json"]
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p != topology]
    assert files
    assert {oct(p.stat().st_mode & 0o777) for p in files} == {"0o644"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_verilog_tops_are_the_exportable_designs():
    from sparsa.cli.hardware import TOPS
    from sparsa.hw.export import TOPS as EXPORTABLE

    assert set(TOPS) == set(EXPORTABLE)


def test_report_states_the_area_of_design_and_baseline(tmp_path, capsys):
    """`sparsa report` carries the area of the N:M array and of its dense baseline, as
    sparsa.hw.area measures them (tests/hw/test_area.py checks those against Yosys)."""
    from sparsa.hw.area import array_area
    from sparsa.sw.report import dense_baseline

    topology = tmp_path / "t.csv"
    topology.write_text("Layer name,IFMAP Height,IFMAP Width,Filter Height,Filter Width,"
                        "Channels,Num Filter,Strides,\nconv1,8,8,3,3,4,8,1,\n")
    cfg = ArrayConfig(rows=2, cols=2, n=2, m=4)
    assert main(["report", str(topology), "--rows", "2", "--cols", "2", "--format",
                 "table,json", "-o", str(tmp_path / "out")]) == 0
    area = json.loads((tmp_path / "out" / "report.json").read_text())["area"]
    assert area["kind"] == "asic"
    design, baseline = area["parts"]["design"], area["parts"]["baseline"]
    assert design["array_kge"] == pytest.approx(array_area(cfg, method="modular").kge)
    assert baseline["array_kge"] == pytest.approx(
        array_area(dense_baseline(cfg), method="modular").kge)
    assert design["array_kge"] > baseline["array_kge"]   # 2:4's index multiplexers cost area
    for total, parts in ((area["design"], design), (area["baseline"], baseline)):
        assert total == pytest.approx(parts["array_kge"] + parts["logic_kge"]
                                      + parts["sram_kge"])
    assert f"area {area['design']:,.1f} kGE" in capsys.readouterr().out
    assert main(["report", str(topology), "--format", "json", "--area", "none", "-o",
                 str(tmp_path / "none")]) == 0
    assert json.loads((tmp_path / "none" / "report.json").read_text())["area"] == {}


def test_warnings_are_one_line_each(tmp_path, capsys):
    """Quiet losses are said: M larger than a layer's K when pruning, 2:4 weights on 1:4
    hardware, an empty config file (one line each, and the command still succeeds)."""
    pruned = tmp_path / "p.npz"
    assert main(["prune", "digits_mlp", "--nm", "1:256", "-o", str(pruned)]) == 0
    err = capsys.readouterr().err
    assert "sparsa: warning: M = 256 is larger than K of 2 layer(s): fc1 (K=64), fc2 (K=128)" \
        in err
    assert main(["prune", "digits_mlp", "--nm", "2:4", "-o", str(pruned)]) == 0
    capsys.readouterr()
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert main(["report", str(pruned), "--config", str(empty), "--nm", "1:4", "--area", "none",
                 "--format", "json", "-o", str(tmp_path / "r")]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines()
             if line.startswith("sparsa: warning:")]
    assert any("sets nothing" in line for line in lines)
    assert any("2 of 2 pruned layers (2:4) cannot run sparse on 1:4 hardware" in line
               for line in lines)
