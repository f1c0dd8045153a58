"""Every subcommand against bad inputs, as a new user would give them: each ends with its exit
status and one line on stderr that names the bad value, never a traceback, and leaves the
working directory exactly as it was (no half-written outputs, no hidden temporaries, an older
output set untouched). A full disk and Ctrl-C are tried on real processes."""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sparsa.cli import main
from sparsa.cli.common import MARKER
from sparsa.models.store import save_graph
from sparsa.models.zoo import get_graph

# (id, argv, exit status, words the one-line message must contain). "{d}" is the fixtures folder.
CASES = [
    # report: the model
    ("report-unknown-model", ["report", "no_such_model"], 1, ["no_such_model"]),
    ("report-misspelt-model", ["report", "digits-cnn"], 1, ["digits-cnn", "digits_cnn"]),
    ("report-missing-onnx", ["report", "{d}/missing.onnx"], 1, ["missing.onnx", "not exist"]),
    ("report-onnx-is-dir", ["report", "{d}/folder.onnx"], 1, ["folder.onnx", "directory"]),
    ("report-random-onnx", ["report", "{d}/random.onnx"], 1, ["random.onnx"]),
    ("report-empty-npz", ["report", "{d}/empty.npz"], 1, ["empty.npz", "sparsa graph"]),
    ("report-truncated-npz", ["report", "{d}/truncated.npz"], 1, ["truncated.npz"]),
    ("report-random-npz", ["report", "{d}/random.npz"], 1, ["random.npz", "sparsa graph"]),
    ("report-npz-without-graph", ["report", "{d}/plain.npz"], 1, ["plain.npz", "__graph__"]),
    ("report-bad-csv-cell", ["report", "{d}/bad.csv"], 1, ["bad.csv", "two"]),
    ("report-empty-csv", ["report", "{d}/empty.csv"], 1, ["empty.csv"]),
    ("report-unknown-suffix", ["report", "{d}/model.h5"], 1, ["model.h5"]),
    # report: the configuration
    ("report-rows-zero", ["report", "{d}/ok.csv", "--rows", "0"], 2, ["rows", "0"]),
    ("report-rows-negative", ["report", "{d}/ok.csv", "--rows", "-3"], 2, ["rows", "-3"]),
    ("report-rows-absurd", ["report", "{d}/ok.csv", "--rows", "100000"], 2, ["100000", "bound"]),
    ("report-rows-text", ["report", "{d}/ok.csv", "--rows", "eight"], 2, ["eight"]),
    ("report-nm-not-pow2", ["report", "{d}/ok.csv", "--nm", "3:6"], 2, ["3:6", "power of two"]),
    ("report-nm-slash", ["report", "{d}/ok.csv", "--nm", "2/4"], 2, ["2/4"]),
    ("report-nm-n-over-m", ["report", "{d}/ok.csv", "--nm", "5:4"], 2, ["5:4"]),
    ("report-nm-zero", ["report", "{d}/ok.csv", "--nm", "0:4"], 2, ["0:4"]),
    ("report-unknown-preset", ["report", "{d}/ok.csv", "--preset", "huge"], 2, ["huge"]),
    ("report-preset-and-config", ["report", "{d}/ok.csv", "--preset", "tiny", "--config",
                                  "{d}/ok.toml"], 2, ["--config"]),
    ("report-missing-config", ["report", "{d}/ok.csv", "--config", "{d}/none.toml"], 2,
     ["none.toml"]),
    ("report-malformed-toml", ["report", "{d}/ok.csv", "--config", "{d}/bad.toml"], 2,
     ["bad.toml", "TOML"]),
    ("report-binary-toml", ["report", "{d}/ok.csv", "--config", "{d}/binary.toml"], 2,
     ["binary.toml", "not text"]),
    ("report-config-yaml", ["report", "{d}/ok.csv", "--config", "{d}/cfg.yaml"], 2,
     ["cfg.yaml", ".toml or .json"]),
    ("report-config-unknown-key", ["report", "{d}/ok.csv", "--config", "{d}/unknown.toml"], 2,
     ["unknown.toml", "colums"]),
    ("report-config-bad-value", ["report", "{d}/ok.csv", "--config", "{d}/badvalue.json"], 2,
     ["badvalue.json", "rows"]),
    ("report-config-is-dir", ["report", "{d}/ok.csv", "--config", "{d}/folder.onnx"], 2,
     ["folder.onnx"]),
    ("report-bad-format", ["report", "{d}/ok.csv", "--format", "pdf"], 2, ["pdf", "--format"]),
    ("report-empty-format", ["report", "{d}/ok.csv", "--format", ","], 2, ["--format"]),
    ("report-missing-energy", ["report", "{d}/ok.csv", "--energy-table", "{d}/no.toml"], 1,
     ["no.toml"]),
    ("report-bad-energy", ["report", "{d}/ok.csv", "--energy-table", "{d}/bad.toml"], 1,
     ["bad.toml"]),
    ("report-calibration-no-weights", ["report", "{d}/ok.csv", "--calibration",
                                       "{d}/plain.npz"], 1, ["carries no weights"]),
    ("report-calibration-archive", ["report", "{d}/other.npz", "--calibration",
                                    "{d}/plain.npz"], 1, ["plain.npz", ".npz archive"]),
    ("report-calibration-missing", ["report", "{d}/other.npz", "--calibration",
                                    "{d}/gone.npy"], 1, ["gone.npy", "cannot read"]),
    ("report-dense-unknown-layer", ["report", "{d}/ok.csv", "--dense", "conv9"], 1, ["conv9"]),
    # report: the output
    ("report-out-is-file", ["report", "{d}/ok.csv", "-o", "{d}/ok.csv"], 2,
     ["ok.csv", "expected a directory"]),
    ("report-out-foreign-dir", ["report", "{d}/ok.csv", "-o", "{d}/foreign"], 2,
     ["foreign", "did not write"]),
    ("report-out-below-file", ["report", "{d}/ok.csv", "-o", "{d}/ok.csv/sub"], 2,
     ["ok.csv", "is a file"]),
    ("report-unknown-option", ["report", "{d}/ok.csv", "--sim", "golden"], 2, ["--sim"]),
    # report: the workload and LLM phases
    ("report-bad-phase", ["report", "{d}/ok.csv", "--phase", "chat"], 2, ["--phase", "chat"]),
    ("report-seq-zero", ["report", "gpt2", "--seq", "0"], 2, ["--seq", "0"]),
    ("report-batch-zero", ["report", "gpt2", "--batch", "0"], 2, ["--batch", "0"]),
    ("report-tokens-negative", ["report", "gpt2", "--phase", "generate", "--tokens", "-1"], 2,
     ["--tokens", "-1"]),
    ("report-tokens-absurd", ["report", "gpt2", "--phase", "generate", "--tokens", "10000000"],
     2, ["--tokens", "10000000", "bound"]),
    ("report-tokens-without-generate", ["report", "gpt2", "--tokens", "4"], 2,
     ["--tokens", "generate"]),
    ("report-seq-for-csv", ["report", "{d}/ok.csv", "--seq", "64"], 1, ["ok.csv", "seq"]),
    ("report-seq-for-image-model", ["report", "digits_cnn", "--seq", "64"], 1,
     ["digits_cnn", "seq"]),
    ("report-axi-with-phase", ["report", "gpt2", "--phase", "decode", "--memory", "axi"], 2,
     ["--memory axi", "--phase"]),
    ("report-axi-typo", ["report", "{d}/ok.csv", "--memory", "axi4"], 2, ["axi4", "dram"]),
    ("report-phase-not-llm", ["report", "{d}/ok.csv", "--phase", "decode"], 1,
     ["LLM phases"]),
    ("report-broken-config-json", ["report", "{d}/broken/config.json"], 1,
     ["config.json", "JSON"]),
    ("report-broken-config-dir", ["report", "{d}/broken"], 1, ["config.json", "JSON"]),
    ("report-config-without-type", ["report", "{d}/typeless.json"], 1,
     ["typeless.json", "model_type"]),
    # prune
    ("prune-out-wrong-suffix", ["prune", "digits_mlp", "-o", "{d}/out/file"], 2,
     ["file", ".npz"]),
    ("prune-out-is-dir", ["prune", "digits_mlp", "-o", "{d}/folder.npz"], 2,
     ["folder.npz", "directory"]),
    ("prune-no-data", ["prune", "resnet50", "--method", "second-order", "-o", "{d}/x.npz"], 2,
     ["second-order", "resnet50"]),
    ("prune-shapes-only", ["prune", "resnet50", "-o", "{d}/x.npz"], 2, ["resnet50", "no weights"]),
    ("prune-bad-nm", ["prune", "digits_mlp", "--nm", "2:3", "-o", "{d}/x.npz"], 2, ["2:3"]),
    ("prune-bad-method", ["prune", "digits_mlp", "--method", "fast", "-o", "{d}/x.npz"], 2,
     ["fast"]),
    ("prune-dense-unknown-layer", ["prune", "digits_mlp", "--dense", "fc9", "-o", "{d}/x.npz"],
     1, ["fc9"]),
    ("prune-missing-model", ["prune", "{d}/gone.npz", "-o", "{d}/x.npz"], 1, ["gone.npz"]),
    ("prune-no-output", ["prune", "digits_mlp"], 2, ["-o"]),
    # run
    ("run-misspelt-model", ["run", "digits-cnn", "--sim", "verilator"], 1, ["digits-cnn"]),
    ("run-images-zero", ["run", "digits_cnn", "--sim", "golden", "--images", "0"], 1,
     ["--images", "0"]),
    ("run-images-too-many", ["run", "digits_cnn", "--sim", "golden", "--images", "100000"], 1,
     ["--images", "100000"]),
    ("run-images-text", ["run", "digits_cnn", "--images", "all"], 2, ["all"]),
    ("run-unknown-sim", ["run", "digits_cnn", "--sim", "modelsim"], 2, ["modelsim"]),
    # other models than the digits demos run layer by layer (tests/rtl/test_model_run.py)
    ("run-layers-out-of-range", ["run", "{d}/ok.csv", "--sim", "golden", "--layers", "99"], 2,
     ["--layers", "'99'"]),
    ("run-layers-for-a-demo", ["run", "digits_cnn", "--sim", "golden", "--layers", "0"], 2,
     ["--layers", "digits demos"]),
    ("run-axi-on-golden", ["run", "{d}/ok.csv", "--sim", "golden", "--memory", "axi"], 2,
     ["--memory axi", "native", "golden"]),
    ("run-out-is-file", ["run", "digits_cnn", "--sim", "golden", "-o", "{d}/ok.csv"], 2,
     ["ok.csv", "expected a directory"]),
    # verilog, synth, bitstream
    ("verilog-too-large", ["verilog", "--rows", "1000", "--cols", "1000"], 1,
     ["1000x1000", "64x64"]),
    ("verilog-absurd", ["verilog", "--rows", "100000", "--cols", "100000"], 2, ["100000"]),
    ("verilog-unknown-top", ["verilog", "--top", "soc"], 2, ["soc"]),
    ("verilog-out-is-file", ["verilog", "-o", "{d}/ok.csv"], 2, ["ok.csv"]),
    ("verilog-bad-nm", ["verilog", "--nm", "1:3"], 2, ["1:3"]),
    ("synth-unknown-target", ["synth", "--target", "stratix"], 2, ["stratix"]),
    ("synth-too-large", ["synth", "--target", "ecp5", "--rows", "128", "--cols", "128"], 1,
     ["128x128"]),
    ("synth-bad-depth", ["synth", "--target", "ecp5", "--pipeline-depth", "5", "--no-pnr"], 2,
     ["pipeline_depth", "5"]),
    ("bitstream-unknown-board", ["bitstream", "--board", "arty"], 2, ["arty"]),
    # models, the command itself
    ("models-batch-zero", ["models", "--batch", "0"], 1, ["batch", "0"]),
    ("models-seq-zero", ["models", "--seq", "0"], 1, ["seq", "0"]),
    ("unknown-command", ["simulate"], 2, ["simulate"]),
]


def _write_fixtures(d: Path) -> None:
    d.mkdir()
    (d / "folder.onnx").mkdir()
    (d / "folder.npz").mkdir()
    rng = np.random.default_rng(0)   # file contents only; nothing random is asserted
    (d / "random.onnx").write_bytes(rng.bytes(300))
    (d / "random.npz").write_bytes(rng.bytes(300))
    (d / "empty.npz").write_bytes(b"")
    save_graph(get_graph("digits_mlp"), d / "whole.npz", meta={"demo": "digits_mlp"})
    whole = (d / "whole.npz").read_bytes()
    (d / "truncated.npz").write_bytes(whole[: len(whole) // 2])
    (d / "whole.npz").unlink()
    np.savez(d / "plain.npz", a=np.zeros(3))
    csv = "Layer name,IFMAP Height,IFMAP Width,Filter Height,Filter Width,Channels,Num Filter,"
    (d / "ok.csv").write_text(csv + "Strides,\nconv1,8,8,3,3,4,8,1,\nfc,1,1,1,1,512,10,1,\n")
    (d / "bad.csv").write_text(csv + "Strides,\nconv1,8,two,3,3,4,8,1,\n")
    (d / "empty.csv").write_text("")
    (d / "model.h5").write_text("x")
    (d / "ok.toml").write_text("rows = 4\n")
    (d / "bad.toml").write_text("rows = = 4\n")
    (d / "binary.toml").write_bytes(b"\xff\xfe\x00rows")
    (d / "cfg.yaml").write_text("rows: 4\n")
    (d / "unknown.toml").write_text("colums = 4\n")
    (d / "badvalue.json").write_text('{"rows": -1}')
    (d / "broken").mkdir()
    (d / "broken" / "config.json").write_text('{"model_type": "llama", "hidden_size": ')
    (d / "typeless.json").write_text('{"hidden_size": 64}')
    (d / "foreign").mkdir()
    (d / "foreign" / "notes.txt").write_text("mine")
    save_graph(get_graph("digits_mlp"), d / "other.npz", meta={"demo": None})


def _snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` (hidden ones too) with a hash of its contents."""
    out = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        out[key] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return out


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("bad_inputs")
    _write_fixtures(work / "in")
    # an older output set that a failed run must leave untouched
    (work / "build" / "report").mkdir(parents=True)
    (work / "build" / "report" / MARKER).write_text("written by sparsa report\n")
    (work / "build" / "report" / "report.md").write_text("older report\n")
    return work


def _run_cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


@pytest.mark.parametrize(("argv", "status", "words"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input(fixtures, monkeypatch, capsys, argv, status, words):
    monkeypatch.chdir(fixtures)
    monkeypatch.setenv("COLUMNS", "100")
    argv = [a.replace("{d}", str(fixtures / "in")) for a in argv]
    before = _snapshot(fixtures)
    code = _run_cli(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == status, f"exit status {code}, expected {status}; stderr: {err}"
    assert "Traceback" not in err
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {err}"
    for word in words:
        assert word in lines[0], f"{word!r} not named in: {lines[0]}"
    assert _snapshot(fixtures) == before, "the command left files behind or changed some"


def test_the_table_is_large_enough():
    commands = {argv[0] for _, argv, _, _ in CASES}
    assert len(CASES) >= 50
    assert {"report", "prune", "run", "verilog", "synth", "bitstream", "models"} <= commands


def _cli(args: list[str], cwd: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sparsa.cli", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "100"}, **kwargs)


def _file_size_limit(limit: int):
    """A full disk for the child: files may not grow past ``limit`` bytes (EFBIG)."""
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.parametrize("argv", [
    ["report", "digits_cnn", "-o", "out"],
    ["prune", "digits_cnn", "-o", "out/pruned.npz"],
    ["verilog", "--rows", "4", "--cols", "4", "-o", "out"],
], ids=["report", "prune", "verilog"])
def test_full_disk_leaves_nothing(tmp_path, argv):
    """Writes fail part-way (a file-size limit stands in for a full disk): one line, status 1,
    and no output directory, file or hidden temporary is left."""
    get_graph("digits_cnn")   # train and cache the demo model before the limit applies
    proc = _cli(argv, tmp_path, preexec_fn=_file_size_limit(4096))
    _, err = proc.communicate(timeout=300)
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == 1, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert "File too large" in lines[0] or "No space" in lines[0], lines[0]
    assert list(tmp_path.iterdir()) == [], sorted(tmp_path.rglob("*"))


def test_ctrl_c_is_one_line_and_status_130(tmp_path):
    """SIGINT while the report is being computed: status 130, one line, no output left."""
    get_graph("resnet50")
    # on the 2x2 array ResNet-50 takes about half a minute to cost
    proc = _cli(["report", "resnet50", "--preset", "tiny", "-o", "out"], tmp_path)
    time.sleep(4)   # past the imports, inside the scheduling
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.fail("the report finished before the interrupt; give it a larger model")
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["sparsa: interrupted"], err
    assert list(tmp_path.iterdir()) == []
