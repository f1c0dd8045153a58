import numpy as np
import pytest

from sparsa.cli import main
from sparsa.models import zoo
from sparsa.models.store import load_saved


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SPARSA_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "sparsa-cache"))


def test_models_lists_zoo(monkeypatch, capsys):
    monkeypatch.setattr(zoo, "names", lambda: ["bert_base", "digits_mlp"])
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    g = zoo.get_graph("digits_mlp")
    weights = sum(lay.weight.size for lay in g.layers if lay.weight is not None)
    assert f"{g.macs:,d}" in out
    assert f"{weights:,d}" in out
    assert "bert_base" in out


def test_prune_demo_writes_checked_model(tmp_path, capsys):
    out_file = tmp_path / "mlp24.npz"
    assert main(["prune", "digits_mlp", "--nm", "2:4", "--method", "second-order",
                 "-o", str(out_file)]) == 0
    out = capsys.readouterr().out
    assert "before: float" in out
    assert "after 2:4 second-order" in out
    graph, meta = load_saved(out_file)
    assert meta["nm"] == [2, 4]
    pruned = [lay for lay in graph.layers if lay.nm]
    assert len(pruned) == 2
    for lay in pruned:
        wg = lay.gemm_weight()
        groups = np.abs(wg[0]).reshape(-1, 4, wg.shape[2]) > 0
        assert groups.sum(axis=1).max() <= 2


def test_prune_errors(tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["prune", "digits_mlp", "--nm", "3:2", "-o", str(tmp_path / "x.npz")])
    assert info.value.code != 0
    with pytest.raises(SystemExit):
        main(["prune", "bert_base", "--method", "gradual", "-o", str(tmp_path / "x.npz")])
    with pytest.raises(SystemExit):
        main(["prune", "no_such_model", "-o", str(tmp_path / "x.npz")])
