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
