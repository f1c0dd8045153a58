import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from sparsa.models.errors import ModelImportError
from sparsa.models.load import load_graph
from sparsa.models.onnx_import import import_onnx
from sparsa.sw.quant import forward_float


def _export(model, x, path):
    with warnings.catch_warnings():
        # The TorchScript exporter (no onnxscript needed) warns that it is deprecated.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (x,), str(path), dynamo=False)


def test_exported_cnn(tmp_path, node_seed):
    torch.manual_seed(node_seed)
    net = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1, groups=2), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(8 * 3 * 3, 5)).eval()
    x = torch.randn(2, 4, 6, 6)
    path = tmp_path / "cnn.onnx"
    _export(net, x, path)
    g = import_onnx(path)
    assert [lay.kind for lay in g] == ["conv2d", "act", "pool", "reshape", "linear"]
    conv = g.layers[0]
    assert conv.attrs["groups"] == 2
    assert conv.attrs["padding"] == (1, 1)
    assert conv.gemm.groups == 2
    assert conv.gemm.k == 2 * 9
    assert conv.gemm.cols == 4
    np.testing.assert_allclose(conv.weight, net[0].weight.detach().numpy())
    # the imported graph computes what the torch model computes
    g_pool = g.layers[2]
    assert g_pool.out_shape == (2, 8, 3, 3)
    layers = list(g.layers)
    layers[2] = type(g_pool)(name=g_pool.name, kind="pool", in_shape=g_pool.in_shape,
                             out_shape=g_pool.out_shape,
                             attrs={"op": "MaxPool2d", "kernel_size": (2, 2), "stride": (2, 2)})
    runnable = type(g)(name=g.name, layers=tuple(layers), input_shape=g.input_shape)
    with torch.no_grad():
        want = net(x).numpy()
    np.testing.assert_allclose(forward_float(runnable, x.numpy()), want, rtol=1e-4, atol=1e-5)
    assert load_graph(str(path)).macs == g.macs


def test_matmul_between_activations(tmp_path, node_seed):
    torch.manual_seed(node_seed)
    class Att(nn.Module):
        def __init__(self):
            super().__init__()
            self.q = nn.Linear(8, 8)

        def forward(self, x):
            q = self.q(x)
            return torch.softmax(q @ x.transpose(1, 2), -1) @ x

    path = tmp_path / "att.onnx"
    _export(Att().eval(), torch.randn(3, 4, 8), path)
    g = import_onnx(path)
    mms = [lay for lay in g if lay.kind == "matmul"]
    assert [(m.gemm.groups, m.gemm.p, m.gemm.k, m.gemm.cols) for m in mms] == \
        [(3, 4, 8, 4), (3, 4, 4, 8)]
    assert [lay.kind for lay in g].count("linear") == 1


def test_malformed_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00not a protobuf\xff" * 10)
    with pytest.raises(ModelImportError, match=r"bad\.onnx"):
        import_onnx(bad)


def test_unsupported_operator_names_node(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    node = helper.make_node("Hardmax", ["x"], ["y"], name="weird_node")
    model = helper.make_model(helper.make_graph([node], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "unsupported.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelImportError, match=r"weird_node.*Hardmax"):
        import_onnx(path)


def _save_graph(path, nodes, inputs, outputs, initializers=()):
    """A hand-built ONNX file (opset 17) of ``nodes``; ``inputs``/``outputs`` are
    ``(name, shape)`` pairs, ``initializers`` ``(name, array)`` pairs."""
    def info(name, shape):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    graph = helper.make_graph(nodes, "hand", [info(*i) for i in inputs],
                              [info(*o) for o in outputs],
                              [onnx.numpy_helper.from_array(a, n) for n, a in initializers])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_gemm_alpha_beta_trans_b_and_activation_operand(tmp_path):
    """``Gemm`` with a constant B folds alpha into the weight, beta into the bias and stores
    (out, in); with two activations it is a ``matmul`` layer. Skipped operators leave no layer."""
    w = np.arange(12, dtype=np.float32).reshape(4, 3)   # (in, out): transB=0
    wt = np.arange(15, dtype=np.float32).reshape(5, 3)  # (out, in): transB=1
    bias = np.array([1.0, -2.0, 3.0], dtype=np.float32)
    nodes = [
        helper.make_node("Gemm", ["x", "w", "b"], ["h"], name="fc", alpha=0.5, beta=2.0),
        helper.make_node("Identity", ["h"], ["h2"]),
        helper.make_node("Gemm", ["h2", "wt"], ["y"], transB=1),
        helper.make_node("Gemm", ["x", "z"], ["v"], name="act_gemm"),
    ]
    path = _save_graph(tmp_path / "gemm.onnx", nodes, [("x", [2, 4]), ("z", [4, 6])],
                       [("y", [2, 5]), ("v", [2, 6])], [("w", w), ("b", bias), ("wt", wt)])
    g = import_onnx(path)
    assert [(lay.name, lay.kind) for lay in g] == [("fc", "linear"), ("Gemm_2", "linear"),
                                                   ("act_gemm", "matmul")]
    fc, second, act = g.layers
    np.testing.assert_array_equal(fc.weight, 0.5 * w.T)
    np.testing.assert_array_equal(fc.bias, 2.0 * bias)
    assert (fc.in_shape, fc.out_shape) == ((2, 4), (2, 3))
    np.testing.assert_array_equal(second.weight, wt)
    assert second.bias is None
    assert act.attrs == {"k": 4, "groups": 1, "rhs_shape": (4, 6)}
    assert g.input_shape == (2, 4)
    assert g.source == f"onnx:{path}"


def test_batched_matmul_groups_and_constant_weight(tmp_path):
    w = np.ones((8, 3), dtype=np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="proj"),
             helper.make_node("MatMul", ["h", "z"], ["y"], name="bmm")]
    path = _save_graph(tmp_path / "mm.onnx", nodes, [("x", [2, 5, 4, 8]), ("z", [2, 5, 3, 7])],
                       [("y", [2, 5, 4, 7])], [("w", w)])
    proj, bmm = import_onnx(path).layers
    assert proj.kind == "linear"
    np.testing.assert_array_equal(proj.weight, w.T)
    assert proj.weight.flags.c_contiguous
    assert bmm.kind == "matmul"
    assert bmm.attrs == {"k": 3, "groups": 10, "rhs_shape": (2, 5, 3, 7)}


def _conv_file(tmp_path, x_shape, w_shape, y_shape, **attrs):
    w = np.zeros(w_shape, dtype=np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="c1", **attrs)
    return _save_graph(tmp_path / "conv.onnx", [node], [("x", x_shape)], [("y", y_shape)],
                       [("w", w)])


def test_conv_attributes(tmp_path):
    path = _conv_file(tmp_path, [1, 4, 9, 9], [6, 2, 3, 3], [1, 6, 4, 4], group=2,
                      strides=[2, 2], pads=[1, 1, 1, 1], dilations=[2, 2])
    (conv,) = import_onnx(path).layers
    assert conv.kind == "conv2d"
    assert conv.attrs == {"kernel": (3, 3), "stride": (2, 2), "padding": (1, 1),
                          "dilation": (2, 2), "groups": 2}
    assert conv.bias is None
    assert conv.out_shape == (1, 6, 4, 4)


@pytest.mark.parametrize(("shapes", "attrs", "match"), [
    (([1, 4, 9], [6, 4, 3], [1, 6, 7]), {}, r"'c1' \(Conv\): only 2-D convolutions.*\(1, 4, 9\)"),
    (([1, 4, 9, 9], [6, 4, 3, 3], [1, 6, 8, 8]), {"pads": [1, 1, 0, 0]},
     r"'c1' \(Conv\): asymmetric padding \[1, 1, 0, 0\]"),
    (([1, 4, 9, 9], [6, 4, 3, 3], [1, 6, 9, 9]), {"auto_pad": "SAME_UPPER"},
     r"'c1' \(Conv\): auto_pad is not supported"),
])
def test_conv_rejections_name_the_node(tmp_path, shapes, attrs, match):
    with pytest.raises(ModelImportError, match=r"conv\.onnx: node " + match):
        import_onnx(_conv_file(tmp_path, *shapes, **attrs))


def test_gemm_trans_a_and_unknown_shape_are_errors(tmp_path):
    w = np.ones((4, 3), dtype=np.float32)
    node = helper.make_node("Gemm", ["x", "w"], ["y"], name="g1", transA=1)
    path = _save_graph(tmp_path / "ta.onnx", [node], [("x", [4, 2])], [("y", [2, 3])],
                       [("w", w)])
    with pytest.raises(ModelImportError, match=r"node 'g1' \(Gemm\): transA=1 is not supported"):
        import_onnx(path)
    node = helper.make_node("Relu", ["x"], ["y"])
    path = _save_graph(tmp_path / "dyn.onnx", [node], [("x", ["batch", 4])], [("y", ["batch", 4])])
    with pytest.raises(ModelImportError, match=r"node 'Relu' \(Relu\): shape of 'x' is unknown "
                                                r"\(\(-1, 4\)\); export the model with static"):
        import_onnx(path)
