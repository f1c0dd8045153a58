import numpy as np
import pytest

from sparsa.models.demo import digits_data
from sparsa.models.zoo import get_graph
from sparsa.nm import gemm_dense, requantize
from sparsa.sw.prune import prune_magnitude
from sparsa.sw.quant import forward_float, forward_int, quantize_graph, quantize_multiplier


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SPARSA_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "sparsa-cache"))


def test_quantize_multiplier(node_seed):
    real = np.random.default_rng(node_seed).uniform(1e-5, 3.0, 1000)
    mult, shift = quantize_multiplier(real)
    assert np.all(mult < 2 ** 15)
    assert np.all(shift >= 0)
    np.testing.assert_allclose(mult / 2.0 ** shift, real, rtol=2.0 ** -14)


@pytest.mark.parametrize("name", ["digits_mlp", "digits_cnn"])
def test_integer_forward_matches_golden_and_float(name):
    x_tr, _, x_te, y_te = digits_data(name)
    g = prune_magnitude(get_graph(name), 2, 4)
    q = quantize_graph(g, x_tr)
    seen = []

    def check(i, layer, cols, acc):
        ql = q.layers[i]
        assert cols.min() >= -128
        assert cols.max() <= 127
        assert np.abs(ql.weight).max() <= 127
        for grp in range(cols.shape[0]):
            # independent int64 reference: plain matmul of the int8 operands plus the bias
            want = cols[grp].astype(np.int64) @ ql.weight[grp] + ql.bias[grp]
            np.testing.assert_array_equal(acc[grp], want)
            np.testing.assert_array_equal(acc[grp], gemm_dense(cols[grp], ql.weight[grp],
                                                               np.broadcast_to(ql.bias[grp],
                                                                               want.shape)))
        seen.append((i, layer.nm))

    out = forward_int(q, x_te, on_gemm=check)
    assert [nm for _, nm in seen].count((2, 4)) == 2
    # the last layer's outputs are the requantized accumulators
    acc_float = forward_float(g, x_te)
    ql = q.layers[seen[-1][0]]
    np.testing.assert_allclose(out * ql.out_scale, acc_float, atol=np.abs(acc_float).max() * 0.1)
    float_acc = (acc_float.argmax(1) == y_te).mean()
    int_acc = (out.argmax(1) == y_te).mean()
    print(name, "float", float_acc, "int8", int_acc)
    assert abs(float_acc - int_acc) <= 0.01


def test_requantize_is_golden(node_seed):
    rng = np.random.default_rng(node_seed)
    acc = rng.integers(-2 ** 20, 2 ** 20, (50, 6))
    mult, shift = quantize_multiplier(rng.uniform(1e-4, 1e-2, 6))
    got = requantize(acc, mult, shift)
    want = np.clip(np.floor(acc * mult / 2.0 ** shift + 0.5), -128, 127)
    np.testing.assert_array_equal(got, want)
