"""`sparsa report` end to end on a SCALE-Sim CSV, and its error paths; the CSV totals, the
terminal table's width and rows, the labels, the short names and the plots' layout."""

from __future__ import annotations

import csv
import io
import itertools
import json
import re

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from rich.console import Console

from sparsa.cli import main
from sparsa.config import ArrayConfig
from sparsa.models.scalesim import read_topology
from sparsa.sw.model_report import short_name, short_names
from sparsa.sw.prune import PrunePolicy
from sparsa.sw.report import (
    build_report,
    dense_baseline,
    print_table,
    render_csv,
    render_markdown,
    report_to_dict,
)
from sparsa.sw.report_plots import cycles_figure, energy_figure

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
    # GEMM shapes from the CSV, computed here independently: P = Ho*Wo with SCALE-Sim's
    # Ho = ceil((H - F + S) / S) = ceil(15 / 2) = 8, K = C*kh*kw
    assert layers[1]["gemm"] == {"p": 8 * 8, "k": 16 * 9, "cols": 32, "groups": 1}
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
    assert [r["layer"] for r in rows] == ["conv1", "conv2", "fc", "total"]
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


# A model with more layers than the terminal table (15) and the cycles plot (30) show, with long
# dotted names; shapes vary so the layers' cycles differ.
N_BIG = 40


def _big_topology() -> str:
    lines = [TOPOLOGY.splitlines()[0]]
    for i in range(N_BIG):
        stage, layer = divmod(i, 10)
        f = 3 if i % 2 else 1
        lines.append(f"encoder.stages.{stage}.layers.{layer}.convolution, {6 + i % 7}, "
                     f"{6 + i % 7}, {f}, {f}, {4 + 4 * (i % 5)}, {8 + 8 * (i % 3)}, 1,")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def big_topology(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "big.csv"
    path.write_text(_big_topology())
    return path


@pytest.fixture(scope="module")
def big(big_topology):
    return build_report(read_topology(big_topology), ArrayConfig(rows=4, cols=4, n=2, m=4))


def _terminal(report, width: int) -> str:
    buf = io.StringIO()
    print_table(report, console=Console(file=buf, width=width))
    return buf.getvalue()


def test_csv_totals_row_sums_the_layers(big):
    rows = list(csv.DictReader(io.StringIO(render_csv(big))))
    layers, total = rows[:-1], rows[-1]
    assert [r["layer"] for r in layers] == [x.name for x in big.layers]
    assert total["layer"] == "total"
    for key in ("passes", "cycles", "compute_cycles", "dram_stall_cycles", "dense_cycles", "macs",
                "dram_bytes", "sram_bytes"):
        assert int(total[key]) == sum(int(r[key]) for r in layers), key
    assert total["energy_gated_pj"] == ""       # no densities: test_csv_carries_zero_gating
    for key in [k for k in total if k.startswith(("energy_", "dense_energy"))
                and k != "energy_gated_pj"]:
        # rows are rounded to 1e-3 pJ
        assert float(total[key]) == pytest.approx(sum(float(r[key]) for r in layers),
                                                  rel=1e-9, abs=1e-3 * len(layers)), key
    cycles = sum(int(r["cycles"]) for r in layers)
    assert float(total["speedup"]) == pytest.approx(
        sum(int(r["dense_cycles"]) for r in layers) / cycles, abs=1e-6)
    # utilization = required multiplies / (cycles x multipliers): a cycle-weighted mean
    assert float(total["utilization"]) == pytest.approx(
        sum(float(r["utilization"]) * int(r["cycles"]) for r in layers) / cycles, abs=1e-5)


@pytest.mark.parametrize("width", [60, 80, 100, 132, 200])
def test_terminal_fits_the_width(big, width):
    out = _terminal(big, width)
    lines = out.splitlines()
    # bytes, not characters: the output is plain ASCII, so `awk '{print length}'` agrees
    assert max(len(line.encode()) for line in lines) <= width
    for text in (big.model, big.design_name, big.baseline_name, f"speedup {big.speedup:.3f}x",
                 f"energy ratio {big.energy_ratio:.3f}x", f"{big.total.cycles.total:,}",
                 f"15 of {N_BIG} layers, by cycles", f"{N_BIG - 15} other layers",
                 f"total ({N_BIG} layers)"):
        assert text in out, text


HEADER_WORDS = ("layer", "kind", "GEMM", "pattern", "cycles", "dense", "speedup", "util", "DRAM",
                "energy", "why")


def _header_words(out: str) -> set[str]:
    lines = out.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("---"))
    header = " ".join(lines[rule - 2:rule])   # headers take two lines
    return {w for w in HEADER_WORDS if w in header.split()}


def test_terminal_drops_the_least_important_columns_first(big):
    words = [_header_words(_terminal(big, w)) for w in (60, 80, 100, 132, 200)]
    assert words[-1] == set(HEADER_WORDS)
    assert {"layer", "cycles", "speedup", "why"} <= words[0]
    assert words[0] != words[-1]
    for narrow, wide in itertools.pairwise(words):
        assert narrow <= wide


def test_terminal_at_columns_100(topology, big_topology, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "100")
    for path in (topology, big_topology):
        assert main(["report", str(path), "--rows", "4", "--cols", "4", "--format", "table"]) == 0
        out = capsys.readouterr().out
        assert max(len(line) for line in out.splitlines()) <= 100
        assert "speedup" in out
        assert re.search(r"^total \(\d+ layers\)", out, re.MULTILINE)


def test_table_lists_the_layers_with_most_cycles(big):
    lines = _terminal(big, 200).splitlines()
    rules = [i for i, line in enumerate(lines) if set(line.strip()) == {"-"}]
    assert len(rules) == 2
    shown = [line.split()[0] for line in lines[rules[0] + 1:rules[1]]]
    cycles = [x.sparse.cycles.total for x in big.layers]
    order = sorted(range(len(cycles)), key=lambda i: (-cycles[i], i))
    # names of <= 40 characters fit a 200-column table unshortened
    assert shown == [big.layers[i].name for i in order[:15]]
    assert lines[rules[1] + 1].startswith(f"{N_BIG - 15} other layers")
    assert lines[rules[1] + 2].startswith(f"total ({N_BIG} layers)")


def test_few_layers_are_all_shown_in_network_order(topology):
    report = build_report(read_topology(topology), ArrayConfig(rows=4, cols=4, n=1, m=4))
    out = _terminal(report, 80)
    assert "all 3 layers" in out
    assert "other layers" not in out
    assert [out.index(f"\n{name} ") for name in ("conv1", "conv2", "fc")] == sorted(
        out.index(f"\n{name} ") for name in ("conv1", "conv2", "fc"))


def test_labels_name_the_multipliers(topology, tmp_path, capsys):
    cfg = ArrayConfig(rows=4, cols=4, n=2, m=4)
    report = build_report(read_topology(topology), cfg)
    multipliers = 4 * 4 * 2  # rows x cols x N
    assert report.baseline_name == f"dense, same {multipliers} multipliers"
    assert report.design_name == f"2:4 sparse, {multipliers} multipliers"
    data = report_to_dict(report)
    assert (data["design_name"], data["baseline_name"]) == (report.design_name,
                                                            report.baseline_name)
    assert data["config"]["n"] == 2  # the machine fields stay
    md = render_markdown(report)
    assert report.baseline_name in md
    assert report.design_name in md
    assert "dense 2:2" not in md
    assert main(["report", str(topology), "--rows", "4", "--cols", "4", "--format", "json",
                 "-o", str(tmp_path / "o")]) == 0
    assert f"vs dense, same {multipliers} multipliers" in capsys.readouterr().out


def test_files_keep_the_full_names(big):
    md, csv_text = render_markdown(big), render_csv(big)
    for x in big.layers:
        assert f"| {x.name} |" in md
        assert f"\n{x.name}," in csv_text
    assert all(x["name"] in {y.name for y in big.layers} for x in report_to_dict(big)["layers"])


RESNET_NAMES = ["resnet.embedder.embedder.convolution", "classifier.1",
                *(f"resnet.encoder.stages.{s}.layers.{b}.layer.{k}.convolution"
                  for s in range(4) for b in range(6) for k in range(3)),
                *(f"resnet.encoder.stages.{s}.layers.0.shortcut.convolution" for s in range(4))]


def test_short_name_keeps_the_distinctive_tail():
    name = "resnet.encoder.stages.3.layers.2.layer.1.convolution"
    assert short_name(name, 33) == "...stages.3.layers.2.layer.1.conv"
    assert short_name(name, len(name)) == name
    assert short_name("encoder.layer.11.attention.output.dense", 30) == \
        "...layer.11.attn.output.dense"
    with pytest.raises(ValueError, match="at least"):
        short_name(name, 3)


@pytest.mark.parametrize("width", range(8, 60))
def test_short_names_fit_and_stay_apart(width):
    names = [*RESNET_NAMES, "encoder.layer.11.attention.self.matmul#1", "x" * 70, "lm_head"]
    short = short_names(names, width)
    for name, s in zip(names, short, strict=True):
        assert len(s) <= width
        assert s.isascii()
        if len(name) <= width:
            assert s == name
    if width >= 20:
        assert len(set(short)) == len(names)


def test_short_names_separate_colliding_tails():
    # at 22 characters the tails of the four stages collide ("...layers.0.layer.1.conv");
    # the repair must tell them apart
    plain = [short_name(n, 22) for n in RESNET_NAMES]
    assert len(set(plain)) < len(RESNET_NAMES)
    assert len(set(short_names(RESNET_NAMES, 22))) == len(RESNET_NAMES)


def _overlaps(legend, fig) -> list[str]:
    FigureCanvasAgg(fig).draw()
    box = legend.get_window_extent()
    return [ax.get_title() for ax in fig.axes if box.overlaps(ax.get_window_extent())]


def test_cycles_plot_shows_the_heaviest_and_the_rest(big):
    fig = cycles_figure(big)
    main_ax, side = fig.axes
    cycles = sorted((x.sparse.cycles.total for x in big.layers), reverse=True)
    heights = [p.get_height() for p in main_ax.patches]
    assert len(heights) == 2 * 30
    assert heights[30:] == cycles[:30]      # N:M bars, most cycles first
    labels = [t.get_text() for t in main_ax.get_xticklabels()]
    assert len(set(labels)) == 30
    assert all(len(t) <= 34 for t in labels)
    assert [t.get_text() for t in side.get_xticklabels()] == [f"other {N_BIG - 30} layers",
                                                               "whole model"]
    assert [p.get_height() for p in side.patches][2:] == [sum(cycles[30:]), sum(cycles)]
    assert fig.legends
    assert not _overlaps(fig.legends[0], fig)
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts == [big.baseline_name, big.design_name]


def test_energy_plot_legend_outside_the_bars(big):
    fig = energy_figure(big)
    (ax,) = fig.axes
    assert not _overlaps(ax.get_legend(), fig)
    stacked = {}
    for p in ax.patches:
        stacked[round(p.get_x(), 6)] = stacked.get(round(p.get_x(), 6), 0) + p.get_height()
    assert sorted(stacked.values()) == pytest.approx(sorted([big.energy.total * 1e-12,
                                                             big.dense_energy.total * 1e-12]))


HF_TINY = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
           "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           "vocab_size": 100, "max_position_embeddings": 128}


@pytest.mark.parametrize(("phase", "extra"), [(None, []), ("prefill", []),
                                          ("decode", ["--context", "40"]),
                                          ("generate", ["--tokens", "3"])])
def test_hf_config_reports_with_workload_in_every_output(tmp_path, capsys, monkeypatch, phase,
                                                         extra):
    """A Hugging Face config.json written here reports; batch and seq (and the phase) are in
    the terminal summary, the Markdown, every CSV row and the JSON."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("COLUMNS", "120")
    model = tmp_path / "tiny_llama"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(HF_TINY))
    out = tmp_path / "out"
    argv = ["report", str(model), "--preset", "tiny", "--seq", "24", "--batch", "2",
            "--format", "table,md,csv,json", "-o", str(out), *extra]
    assert main(argv + (["--phase", phase] if phase else [])) == 0
    printed = capsys.readouterr().out
    assert "batch 2, seq 24" in printed
    assert "batch 2, seq 24" in (out / "report.md").read_text()
    rows = list(csv.DictReader((out / "report.csv").read_text().splitlines()))
    assert {(r["batch"], r["seq"], r["phase"]) for r in rows} == {("2", "24", phase or "")}
    data = json.loads((out / "report.json").read_text())
    assert data["workload"]["batch"] == 2
    assert data["workload"]["seq"] == 24
    if phase is None:
        assert data["phase"] is None
        return
    summary = data["phase"]
    assert summary["phase"] == phase
    assert summary["batch"] == 2
    assert summary["seq"] == 24
    if phase != "decode":       # a causal prefill: less than the full attention
        assert summary["causal"] is True
        assert 0.5 < summary["attention_macs"] / summary["full_attention_macs"] < 1
        assert "Prefill attention causal" in (out / "report.md").read_text()
    if phase != "prefill":
        assert "per-token latency" in printed.lower()
        assert "P = batch = 2" in printed
        assert "KV-cache traffic" in printed
        assert summary["design"]["per_token_s"] > 0
    if phase == "generate":
        assert summary["tokens"] == 3
        assert data["totals"]["sparse"]["cycles"]["total"] == \
            summary["design"]["prefill_cycles"] + summary["design"]["decode_cycles"]


def test_csv_carries_zero_gating(topology, tmp_path):
    """With declared densities, every CSV row carries the density, the expected gated MACs
    ((1 - density) x the MACs issued, from the JSON's counts) and the energy with gating: the
    energy without it less gated MACs x (MAC - gated MAC) from the energy table read here; the
    totals row sums them, and the figures equal the JSON's gating section. Without densities
    the columns are empty."""
    import tomllib
    from importlib import resources

    table = tomllib.loads(resources.files("sparsa.sw").joinpath(
        "data", "energy_45nm_horowitz.toml").read_text())
    mac = table["energy_pj"]["mult_8b_pj"] + table["energy_pj"]["add_32b_pj"]
    saved_per_mac = mac * (1 - table["gating"]["gated_mac_fraction"])
    densities = {"conv1": 0.5, "conv2": 0.25, "fc": 1.0}
    (tmp_path / "d.toml").write_text("".join(f"{k} = {v}\n" for k, v in densities.items()))
    out = tmp_path / "out"
    argv = ["report", str(topology), "--rows", "4", "--cols", "4", "--nm", "2:4", "--area",
            "none", "--format", "csv,json", "-o", str(out)]
    assert main([*argv, "--act-density", str(tmp_path / "d.toml")]) == 0
    rows = list(csv.DictReader((out / "report.csv").read_text().splitlines()))
    data = json.loads((out / "report.json").read_text())
    for row, layer, g in zip(rows, data["layers"], data["gating"]["layers"], strict=False):
        gated = (1 - densities[row["layer"]]) * layer["sparse"]["actions"]["macs_issued"]
        assert float(row["act_density"]) == densities[row["layer"]]
        assert float(row["gated_macs"]) == pytest.approx(gated, abs=0.1)
        assert float(row["energy_gated_pj"]) == pytest.approx(
            float(row["energy_pj"]) - gated * saved_per_mac, abs=2e-3)
        assert float(row["energy_gated_pj"]) == pytest.approx(g["energy_gated_pj"], abs=1e-3)
    total = rows[-1]
    assert total["layer"] == "total"
    assert float(total["gated_macs"]) == pytest.approx(
        sum(float(r["gated_macs"]) for r in rows[:-1]), abs=0.5)
    assert float(total["energy_gated_pj"]) == pytest.approx(
        data["gating"]["energy_gated_pj"], abs=1e-2)
    assert float(total["energy_pj"]) - float(total["energy_gated_pj"]) == pytest.approx(
        data["gating"]["saved_pj"], abs=1e-2)
    assert data["gating"]["saved_pj"] > 0
    assert main(argv) == 0
    rows = list(csv.DictReader((out / "report.csv").read_text().splitlines()))
    assert {(r["act_density"], r["gated_macs"], r["energy_gated_pj"]) for r in rows} == \
        {("", "", "")}
