import dataclasses

import numpy as np
import pytest

from sparsa.models.demo import digits_data
from sparsa.models.zoo import get_graph
from sparsa.nm import NMPatternError, check_nm
from sparsa.sw.prune import (
    PrunePolicy,
    check_graph_nm,
    magnitude_mask,
    prune_gradual,
    prune_magnitude,
    prune_second_order,
    sparsegpt_matrix,
)
from sparsa.sw.quant import forward_float


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SPARSA_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "sparsa-cache"))


@pytest.mark.parametrize(("n", "m"), [(1, 2), (2, 4), (3, 4), (1, 8), (4, 8), (4, 4)])
def test_magnitude_mask_keeps_largest(n, m, node_seed):
    rng = np.random.default_rng(node_seed)
    w = rng.standard_normal((37, 5))  # K not a multiple of m
    keep = magnitude_mask(w, n, m)
    check_nm(np.where(keep, 1, 0), n, m)
    for c in range(5):
        for g0 in range(0, 37, m):
            col = np.abs(w[g0:g0 + m, c])
            kept = keep[g0:g0 + m, c]
            assert kept.sum() == min(n, len(col))
            if (~kept).any():
                assert col[kept].min() >= col[~kept].max()


def test_policy_and_magnitude_graph():
    g = get_graph("digits_cnn")
    p = prune_magnitude(g, 2, 4)
    weighted = [i for i, lay in enumerate(g.layers) if lay.has_static_weight]
    assert [p.layers[i].nm for i in weighted] == [None, (2, 4), (2, 4), None]
    np.testing.assert_array_equal(p.layers[0].weight, g.layers[0].weight)
    assert check_graph_nm(p) == 2
    for i in weighted[1:-1]:
        wg = p.layers[i].gemm_weight()
        assert np.count_nonzero(wg) == wg.size // 2
    dense = PrunePolicy(keep_classifier=False, dense=frozenset({"conv2"}))
    assert dense.select(g) == [weighted[2], weighted[3]]
    with pytest.raises(ValueError, match="'nope'"):
        PrunePolicy(dense=frozenset({"nope"})).select(g)


def test_checker_names_first_violating_group():
    g = prune_magnitude(get_graph("digits_mlp"), 1, 4)
    layer = g.layers[2]
    w = layer.weight.copy()
    w[3, 8:12] = 1.0  # output 3, K 8..11: group 2 of column 3 gets 4 nonzeros
    bad = dataclasses.replace(g, layers=(*g.layers[:2], dataclasses.replace(layer, weight=w),
                                         *g.layers[3:]))
    with pytest.raises(NMPatternError, match=r"'fc2'.*column 3, group 2"):
        check_graph_nm(bad)


@pytest.mark.parametrize("nm", [(3, 2), (0, 4), (2, 3), (2.0, 4)])
def test_invalid_nm(nm):
    g = get_graph("digits_mlp")
    with pytest.raises(ValueError, match="N:M pattern"):
        prune_magnitude(g, *nm)


def test_second_order_beats_magnitude_on_real_layer():
    g = get_graph("digits_mlp")
    x_tr, _, x_te, _ = digits_data("digits_mlp")
    inputs = {}
    forward_float(g, x_tr, on_gemm=lambda i, lay, cols: inputs.setdefault(i, cols[0]))
    test_inputs = {}
    forward_float(g, x_te, on_gemm=lambda i, lay, cols: test_inputs.setdefault(i, cols[0]))
    w = g.layers[2].gemm_weight()[0]  # (128, 64): the hidden layer, K = 128
    for n, m in ((2, 4), (4, 8)):
        w_mag = w * magnitude_mask(w, n, m)
        w_so = sparsegpt_matrix(w, inputs[2], n, m)
        check_nm(np.where(w_so != 0, 1, 0), n, m)
        for x in (inputs[2], test_inputs[2]):
            err_mag = np.linalg.norm(x @ w - x @ w_mag)
            err_so = np.linalg.norm(x @ w - x @ w_so)
            assert err_so < err_mag


def test_second_order_graph_pattern_and_accuracy():
    g = get_graph("digits_mlp")
    x_tr, _, x_te, y_te = digits_data("digits_mlp")
    p = prune_second_order(g, 2, 4, x_tr[:512])
    assert check_graph_nm(p) == 2
    acc = (forward_float(p, x_te).argmax(1) == y_te).mean()
    assert acc > 0.9


def test_gradual_pattern_and_accuracy():
    p = prune_gradual("digits_mlp", 2, 4, epochs=4)
    assert check_graph_nm(p) == 2
    for lay in p.layers:
        if lay.nm:
            wg = lay.gemm_weight()
            assert np.count_nonzero(wg) <= wg.size // 2
    _, _, x_te, y_te = digits_data("digits_mlp")
    assert (forward_float(p, x_te).argmax(1) == y_te).mean() > 0.9


def test_policy_round_trips_through_json():
    import json

    policy = PrunePolicy(keep_first_conv=False, dense=frozenset({"fc2", "conv2"}),
                         prune=frozenset({"fc1"}))
    assert PrunePolicy.from_dict(json.loads(json.dumps(policy.to_dict()))) == policy
    assert policy.to_dict()["dense"] == ["conv2", "fc2"]
