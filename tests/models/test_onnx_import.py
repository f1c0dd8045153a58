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
