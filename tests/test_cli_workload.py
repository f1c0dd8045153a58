"""`sparsa models` shows the batch and sequence length of each zoo model."""

from __future__ import annotations

import pytest

from sparsa.cli import main
from sparsa.models import zoo


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SPARSA_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "sparsa-cache"))


def test_models_shows_batch_and_seq(monkeypatch, capsys):
    monkeypatch.setattr(zoo, "names", lambda: ["gpt2", "digits_mlp"])
    assert main(["models", "--seq", "32", "--batch", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert {"batch", "seq"} <= set(lines[0].split())
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    # model, layers, GEMMs, GEMM MACs, GEMM weights, then batch and seq
    assert rows["gpt2"][5:7] == ["2", "32"]
    assert rows["digits_mlp"][5:7] == ["2", "-"]


NAMES = ["conv1", "layer1.conv1", "layer1.conv2", "layer2.conv1", "fc"]


@pytest.mark.parametrize(("text", "want"), [
    ("0-3,7", None),           # 7 is out of range (below)
    ("0-2,4", [0, 1, 2, 4]),
    ("4,0,0-1", [0, 1, 4]),    # ascending, each once
    (" 3 ", [3]),
    ("fc", [4]),
    ("layer1.*", [1, 2]),
    ("*.conv1,conv1", [0, 1, 3]),
])
def test_layer_selection(text, want):
    from sparsa.sim.model_run import parse_layers

    if want is None:
        with pytest.raises(ValueError, match="'7' is not inside the model's GEMM layers 0-4"):
            parse_layers(text, NAMES)
    else:
        assert parse_layers(text, NAMES) == want


@pytest.mark.parametrize(("text", "bad"), [("5", "5"), ("3-1", "3-1"), ("conv9", "conv9"),
                                       ("1,", ""), ("-1", "-1"), ("1-x", "1-x")])
def test_layer_selection_errors_name_the_value(text, bad):
    from sparsa.sim.model_run import parse_layers

    with pytest.raises(ValueError, match=f"^--layers: '{bad}' is "):
        parse_layers(text, NAMES)
