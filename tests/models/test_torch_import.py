import math

import numpy as np
import pytest
import torch
from torch import nn

from sparsa.models.errors import ModelImportError
from sparsa.models.torch_import import import_module
from sparsa.models.zoo import get_graph


class Block(nn.Module):
    """A transformer block: attention (explicit projections, fused SDPA and a hand-written
    matmul path), GPT-2's Conv1D MLP, residual adds and a norm."""

    def __init__(self, d: int = 16, heads: int = 2) -> None:
        from transformers.pytorch_utils import Conv1D

        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.fc = Conv1D(4 * d, d)  # weight (in, out), as in GPT-2
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        q, k, v = self.qkv(self.norm(x)).split(d, dim=-1)
        q, k, v = (t.reshape(b, s, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        fused = nn.functional.scaled_dot_product_attention(q, k, v)
        scores = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // self.heads), dim=-1)
        manual = scores @ v
        att = (fused + manual).transpose(1, 2).reshape(b, s, d)
        x = x + self.proj(att)
        return self.act(self.fc(x))


def test_attention_block_layers_shapes_and_weights(node_seed):
    torch.manual_seed(node_seed)
    block = Block().eval()
    x = torch.randn(2, 5, 16)
    g = import_module(block, x)
    kinds = [lay.kind for lay in g]
    assert kinds.count("linear") == 3
    # fused SDPA -> scores + context; manual path -> 2 batched matmuls
    assert kinds.count("matmul") == 4
    assert "norm" in kinds
    assert "add" in kinds
    assert "softmax" in kinds
    qkv = next(lay for lay in g if lay.name == "qkv")
    assert qkv.in_shape == (2, 5, 16)
    assert qkv.out_shape == (2, 5, 48)
    np.testing.assert_array_equal(qkv.weight, block.qkv.weight.detach().numpy())
    assert qkv.gemm.p == 10
    assert qkv.gemm.k == 16
    assert qkv.gemm.cols == 48
    fc = next(lay for lay in g if lay.name == "fc")
    # Conv1D's (in, out) weight is stored as the linear (out, in) weight: same function
    h = torch.randn(3, 16)
    want = block.fc(h).detach().numpy()
    got = h.numpy() @ fc.weight.T + fc.bias
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    for mm in (lay for lay in g if lay.kind == "matmul"):
        assert mm.gemm.groups == 2 * 2  # batch x heads
    scores = [lay for lay in g if lay.kind == "matmul"]
    assert {(s.gemm.p, s.gemm.k, s.gemm.cols) for s in scores} == {(5, 8, 5), (5, 5, 8)}


def test_conv_net_and_functional_ops():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(8, 4)).eval()
    g = import_module(net, torch.zeros(1, 3, 16, 16))
    assert [lay.kind for lay in g] == ["conv2d", "norm", "act", "conv2d", "pool", "reshape",
                                       "linear"]
    dw = g.layers[3]
    assert dw.attrs["groups"] == 8
    assert dw.gemm.groups == 8
    assert dw.gemm.k == 9
    assert g.layers[0].out_shape == (1, 8, 8, 8)
    assert g.macs == 64 * 27 * 8 + 8 * 64 * 9 + 8 * 4


def test_meta_device_llama_shapes_without_weights():
    g = get_graph("llama2_7b", cache=False)
    d, f, layers, seq, vocab, heads = 4096, 11008, 32, 128, 32000, 32
    linears = [lay for lay in g if lay.kind == "linear"]
    assert len(linears) == layers * 7 + 1
    assert all(lay.weight is None for lay in linears)
    mms = [lay for lay in g if lay.kind == "matmul"]
    assert len(mms) == 2 * layers
    assert all(mm.gemm.groups == heads for mm in mms)
    want = layers * seq * (4 * d * d + 3 * d * f) + layers * 2 * heads * seq * seq * (d // heads) \
        + seq * d * vocab
    assert g.macs == want


def test_not_a_module():
    with pytest.raises(ModelImportError, match=r"nn\.Module"):
        import_module(lambda x: x, torch.zeros(1))


def test_trace_failure_is_wrapped():
    with pytest.raises(ModelImportError, match="Linear"):
        import_module(nn.Linear(4, 3), torch.zeros(2, 5))
