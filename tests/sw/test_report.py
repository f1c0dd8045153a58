"""`sparsa report` end to end on a SCALE-Sim CSV, and its error paths."""

from __future__ import annotations

import csv
import json
import re

import pytest

from sparsa.cli import main
from sparsa.config import ArrayConfig
from sparsa.models.scalesim import read_topology
from sparsa.sw.prune import PrunePolicy
from sparsa.sw.report import build_report, dense_baseline

TOPOLOGY = """\
Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, \
Strides,
conv1, 18, 18, 3, 3, 8, 16, 1,
conv2, 16, 16, 3, 3, 16, 32, 2,
fc, 1, 1, 1, 1, 128, 10, 1,
"""


@pytest.fixture
def topology(tmp_path):
    path = tmp_path / "tiny.csv"
    path.write_text(TOPOLOGY)
    return path


def test_report_writes_every_format(topology, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["report", str(topology), "--rows", "4", "--cols", "4", "--nm", "1:4",
                 "--format", "table,md,csv,json,png", "-o", str(out)]) == 0
    for name in ("report.md", "report.csv", "report.json", "cycles.png", "energy.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "cycles.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "conv2" in printed
    assert "speedup" in printed
    data = json.loads((out / "report.json").read_text())
    layers = data["layers"]
    assert [x["name"] for x in layers] == ["conv1", "conv2", "fc"]
    # GEMM shapes from the CSV, computed here independently: P = Ho*Wo, K = C*kh*kw
    assert layers[1]["gemm"] == {"p": 7 * 7, "k": 16 * 9, "cols": 32, "groups": 1}
    totals = data["totals"]
    for side in ("sparse", "dense"):
        assert totals[side]["cycles"]["total"] == sum(x[side]["cycles"]["total"] for x in layers)
        assert totals[side]["dram_bytes"] == sum(x[side]["dram_bytes"] for x in layers)
    for key in ("energy_pj", "dense_energy_pj"):
        assert totals[key]["total"] == pytest.approx(sum(x[key]["total"] for x in layers))
        parts = {k: v for k, v in totals[key].items() if k != "total"}
        assert totals[key]["total"] == pytest.approx(sum(parts.values()))
    assert totals["speedup"] == pytest.approx(totals["dense"]["cycles"]["total"]
                                              / totals["sparse"]["cycles"]["total"])
    assert totals["macs"] == sum(x["gemm"]["p"] * x["gemm"]["k"] * x["gemm"]["cols"]
                                 for x in layers)
    rows = list(csv.DictReader((out / "report.csv").read_text().splitlines()))
    assert [r["layer"] for r in rows] == ["conv1", "conv2", "fc"]
    assert "| total |" in (out / "report.md").read_text()


def test_dense_baseline_same_multipliers(topology):
    cfg = ArrayConfig(rows=4, cols=4, n=2, m=4, dram_bytes_per_cycle=1 << 16)
    base = dense_baseline(cfg)
    assert (base.n, base.m, base.multipliers) == (2, 2, cfg.multipliers)
    every = PrunePolicy(keep_first_conv=False, keep_classifier=False)
    report = build_report(read_topology(topology), cfg, policy=every)
    # every layer is taken as 2:4: at most M/N faster
    for layer in report.layers:
        assert layer.pattern == "2:4"
        assert layer.speedup <= 2.0 + 1e-9
        assert layer.dense_passes >= layer.passes
    assert 1.0 < report.speedup <= 2.0
    shortfalls = [report.shortfall(x) for x in report.layers if x.speedup < 0.97 * 2]
    assert all(shortfalls)  # every shortfall has a reason


@pytest.mark.parametrize(("argv", "match"), [
    (["report", "no_such_model_xyz"], "no_such_model_xyz"),
    (["report", "{csv}", "--rows", "0"], "rows must be a positive integer"),
    (["report", "{csv}", "--format", "pdf"], "--format"),
    (["report", "{bad}"], r"bad\.csv:2"),
    (["report", "{csv}", "--rows", "64", "--cols", "64", "--config", "{cfgfile}"],
     "weight_buffer_kib=1"),
])
def test_bad_inputs(topology, tmp_path, capsys, argv, match):
    bad = tmp_path / "bad.csv"
    bad.write_text(TOPOLOGY.splitlines()[0] + "\nconv1, 18, 18, 3, 3\n")
    cfgfile = tmp_path / "c.toml"
    cfgfile.write_text("weight_buffer_kib = 1\n")
    argv = [a.format(csv=topology, bad=bad, cfgfile=cfgfile) for a in argv]
    with pytest.raises(SystemExit) as exc:
        main([*argv, "-o", str(tmp_path / "o"), "--format", argv[argv.index("--format") + 1]
              if "--format" in argv else "json"])
    assert exc.value.code != 0
    assert re.search(match, capsys.readouterr().err)
