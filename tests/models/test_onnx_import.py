import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from sparsa.models.errors import ModelImportError
from sparsa.models.graph import Gemm
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


def test_unknown_operator_passes_through_with_its_shapes(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    node = helper.make_node("Hardmax", ["x"], ["y"], name="weird_node")
    model = helper.make_model(helper.make_graph([node], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "unsupported.onnx"
    onnx.save(model, str(path))
    (layer,) = import_onnx(path).layers
    assert (layer.name, layer.kind, layer.attrs["op"]) == ("weird_node", "other", "Hardmax")
    assert layer.in_shape == layer.out_shape == (1, 4)


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
    # a non-GEMM operator with a dynamic shape passes through; a GEMM one is an error naming it
    node = helper.make_node("Relu", ["x"], ["y"])
    path = _save_graph(tmp_path / "dyn.onnx", [node], [("x", ["batch", 4])], [("y", ["batch", 4])])
    assert import_onnx(path).layers[0].in_shape == (-1, 4)
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")
    path = _save_graph(tmp_path / "dyn.onnx", [node], [("x", ["batch", 4])], [("y", ["batch", 3])],
                       [("w", w)])
    with pytest.raises(ModelImportError, match=r"node 'mm' \(MatMul\): shape of 'x' is unknown "
                                                r"\(\(-1, 4\)\); export the model with static"):
        import_onnx(path)


def test_lrn_sum_resize_and_custom_operators_pass_through(tmp_path):
    """An AlexNet/GoogLeNet-style graph: LRN, Sum of three branches, Resize (its shapes from
    shape inference only: the graph declares no intermediate shapes), a custom-domain op."""
    w = np.ones((8, 4, 3, 3), dtype=np.float32)
    scales = np.array([1, 1, 2, 2], dtype=np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("LRN", ["c"], ["n"], name="lrn", size=5),
        helper.make_node("Relu", ["n"], ["r"], name="relu"),
        helper.make_node("Sum", ["c", "n", "r"], ["s"], name="sum"),
        helper.make_node("Resize", ["s", "", "scales"], ["u"], name="up", mode="nearest"),
        helper.make_node("Conv", ["u", "w2"], ["y"], name="conv2"),
    ]
    path = _save_graph(tmp_path / "mixed.onnx", nodes, [("x", [1, 4, 6, 6])],
                       [("y", [1, 2, 12, 12])],
                       [("w", w), ("scales", scales), ("w2", np.ones((2, 8, 1, 1), np.float32))])
    g = import_onnx(path)
    assert [(x.name, x.kind) for x in g] == [("conv", "conv2d"), ("lrn", "norm"), ("relu", "act"),
                                            ("sum", "add"), ("up", "other"), ("conv2", "conv2d")]
    assert g.layers[4].out_shape == (1, 8, 12, 12)
    assert g.layers[5].gemm.p == 12 * 12
    assert "weights" not in g.meta


def _external(tmp_path, keep_data):
    w = np.arange(32, dtype=np.float32).reshape(8, 4)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="fc"),
             helper.make_node("Gemm", ["h", "w2"], ["y"], name="head", transB=1)]
    model = helper.make_model(helper.make_graph(
        nodes, "ext", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        [onnx.numpy_helper.from_array(w, "w"),
         onnx.numpy_helper.from_array(np.ones((3, 4), np.float32), "w2")]),
        opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "ext.onnx"
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="ext.data", size_threshold=0)
    if not keep_data:
        (tmp_path / "ext.data").unlink()
    return path, w


def test_external_data_present_loads_weights(tmp_path):
    path, w = _external(tmp_path, keep_data=True)
    g = import_onnx(path)
    np.testing.assert_array_equal(g.layers[0].weight, w.T)
    assert "weights" not in g.meta


def test_external_data_missing_loads_shape_only(tmp_path, capsys):
    from sparsa.cli import main

    path, _ = _external(tmp_path, keep_data=False)
    g = import_onnx(path)
    assert [(x.kind, x.gemm) for x in g] == [("linear", Gemm(p=2, k=8, cols=4)),
                                             ("linear", Gemm(p=2, k=4, cols=3))]
    assert all(x.weight is None for x in g)
    assert g.meta == {"weights": "absent"}
    assert g.input_shape == (2, 8)
    assert main(["report", str(path), "--preset", "tiny", "--format", "table"]) == 0
    assert "Weights absent" in capsys.readouterr().out


def test_torch_export_with_lrn_upsample_and_branch_sum(tmp_path):
    """A real TorchScript export: LocalResponseNorm becomes Pad/AveragePool/If/... nodes,
    Upsample a Resize; all pass through and the two convolutions keep their GEMMs."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.lrn = nn.Conv2d(3, 8, 3, padding=1), nn.LocalResponseNorm(3)
            self.up, self.c2 = nn.Upsample(scale_factor=2), nn.Conv2d(8, 4, 1)

        def forward(self, x):
            a = self.c(x)
            return self.c2(self.up(a + self.lrn(a) + torch.relu(a)))

    path = tmp_path / "lrn.onnx"
    with warnings.catch_warnings():
        # the tracer warns that LocalResponseNorm's size check becomes a constant, the
        # exporter that it cannot constant-fold a strided Slice
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", "Constant folding", UserWarning)
        _export(Net().eval(), torch.zeros(1, 3, 8, 8), path)
    g = import_onnx(path)
    convs = [x for x in g if x.kind == "conv2d"]
    assert [x.gemm for x in convs] == [Gemm(p=64, k=27, cols=8), Gemm(p=256, k=8, cols=4)]
    assert {"Resize", "Pad"} <= {x.attrs.get("op") for x in g if x.kind == "other"}
