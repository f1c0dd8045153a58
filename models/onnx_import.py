"""ONNX file -> :class:`~sparsa.models.graph.LayerGraph` via ``onnx`` and its shape inference.

GEMM operators: ``Conv`` (2-D, incl. groups/depthwise), ``Gemm``, ``MatMul`` (a constant operand
makes it a ``linear`` layer with that weight, two activations a ``matmul`` layer). Shape-relevant
operators (pooling, activations, normalisation, ``Add``, ``Softmax``, reshapes) become layers of
the corresponding kind; operators without shape impact (``Constant``, ``Cast``, ...) are skipped.
Anything else, a missing shape or a malformed file raises :class:`ModelImportError` naming the
file and the node.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelImportError
from .graph import Layer, LayerGraph

__all__ = ["SUPPORTED_OPS", "import_onnx"]

_OTHER = {
    "MaxPool": "pool", "AveragePool": "pool", "GlobalAveragePool": "pool",
    "GlobalMaxPool": "pool",
    "Relu": "act", "Clip": "act", "Sigmoid": "act", "Tanh": "act", "Gelu": "act", "Erf": "act",
    "HardSwish": "act", "HardSigmoid": "act", "LeakyRelu": "act", "Silu": "act",
    "BatchNormalization": "norm", "LayerNormalization": "norm",
    "InstanceNormalization": "norm",
    "Add": "add", "Softmax": "softmax",
    "Flatten": "reshape", "Reshape": "reshape", "Transpose": "reshape", "Squeeze": "reshape",
    "Unsqueeze": "reshape", "Concat": "reshape",
    "Gather": "embedding",
}
_SKIP = {"Constant", "Identity", "Cast", "Shape", "Dropout", "Mul", "Div", "Sub", "Sqrt", "Pow",
         "ReduceMean", "Slice", "Split", "Expand", "Where", "Equal", "ConstantOfShape", "Range"}
SUPPORTED_OPS = ("Conv", "Gemm", "MatMul", *_OTHER, *_SKIP)


def import_onnx(path: str | Path) -> LayerGraph:
    """Read an ONNX model and return its layer graph (weights from its initializers)."""
    from onnx import helper

    path = Path(path)
    graph = _load(path).graph
    consts = _constants(graph)
    ctx = _Context(path=path, consts=consts, shapes=_shapes(graph, consts))
    layers: list[Layer] = []
    for idx, node in enumerate(graph.node):
        name = node.name or f"{node.op_type}_{idx}"
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        op = node.op_type
        if op in _GEMM_OPS:
            layers.append(_GEMM_OPS[op](ctx, node, name, attrs))
        elif op in _OTHER:
            layers.append(Layer(name=name, kind=_OTHER[op], in_shape=ctx.shape(node, node.input[0]),
                                out_shape=ctx.shape(node, node.output[0]), attrs={"op": op}))
        elif op not in _SKIP:
            raise ModelImportError(f"{path}: node {name!r}: unsupported operator {op!r} "
                                   f"(supported: {', '.join(sorted(set(SUPPORTED_OPS)))})")
    inputs = [i for i in graph.input if i.name not in consts]
    return LayerGraph(name=graph.name or path.stem, layers=tuple(layers),
                      input_shape=ctx.shapes.get(inputs[0].name, ()) if inputs else (),
                      source=f"onnx:{path}")


def _load(path: Path) -> Any:
    """The checked model with inferred shapes; any failure is a :class:`ModelImportError`."""
    import onnx
    from onnx import shape_inference

    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
        return shape_inference.infer_shapes(model, strict_mode=True)
    except Exception as e:  # onnx raises DecodeError, ValidationError, InferenceError, OSError
        raise ModelImportError(f"{path}: not a valid ONNX model ({type(e).__name__}: {e})") from e


def _constants(graph: Any) -> dict[str, np.ndarray]:
    """Initializers and the outputs of ``Constant`` nodes, by tensor name."""
    from onnx import numpy_helper

    consts = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    consts[node.output[0]] = numpy_helper.to_array(attr.t)
    return consts


def _shapes(graph: Any, consts: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    """Every known tensor shape, by name; -1 marks a dimension without a static size."""
    shapes: dict[str, tuple[int, ...]] = {}
    for vi in (*graph.input, *graph.value_info, *graph.output):
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = tuple(int(d.dim_value) if d.HasField("dim_value") else -1
                                for d in dims)
    for name, arr in consts.items():
        shapes[name] = tuple(arr.shape)
    return shapes


@dataclass(frozen=True)
class _Context:
    """What the node converters read: the file (for messages), constants and shapes."""

    path: Path
    consts: dict[str, np.ndarray]
    shapes: dict[str, tuple[int, ...]]

    def shape(self, node: Any, tensor: str) -> tuple[int, ...]:
        """The static shape of ``tensor``, an input or output of ``node``."""
        s = self.shapes.get(tensor)
        if s is None or any(d < 1 for d in s):
            raise ModelImportError(f"{self.path}: node {node.name or node.op_type!r} "
                                   f"({node.op_type}): shape of {tensor!r} is unknown ({s}); "
                                   "export the model with static input shapes")
        return s

    def input_const(self, node: Any, i: int) -> np.ndarray | None:
        """Input ``i`` of ``node`` when it is a constant, None when absent or computed."""
        return self.consts.get(node.input[i]) if len(node.input) > i else None


def _conv(ctx: _Context, node: Any, name: str, attrs: dict[str, Any]) -> Layer:
    x, w = ctx.shape(node, node.input[0]), ctx.shape(node, node.input[1])
    if len(x) != 4:
        raise ModelImportError(f"{ctx.path}: node {name!r} (Conv): only 2-D convolutions are "
                               f"supported, not input shape {x}")
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    if pads[:2] != pads[2:]:
        raise ModelImportError(f"{ctx.path}: node {name!r} (Conv): asymmetric padding "
                               f"{pads} is not supported")
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise ModelImportError(f"{ctx.path}: node {name!r} (Conv): auto_pad is not supported")
    return Layer(
        name=name, kind="conv2d", in_shape=x, out_shape=ctx.shape(node, node.output[0]),
        attrs={"kernel": (int(w[2]), int(w[3])),
               "stride": tuple(int(v) for v in attrs.get("strides", [1, 1])),
               "padding": (int(pads[0]), int(pads[1])),
               "dilation": tuple(int(v) for v in attrs.get("dilations", [1, 1])),
               "groups": int(attrs.get("group", 1))},
        weight=ctx.input_const(node, 1), bias=ctx.input_const(node, 2))


def _gemm(ctx: _Context, node: Any, name: str, attrs: dict[str, Any]) -> Layer:
    """A constant B makes a ``linear`` layer (alpha folded into the weight, beta into the bias),
    an activation B a ``matmul`` layer."""
    a, b = ctx.shape(node, node.input[0]), ctx.shape(node, node.input[1])
    if attrs.get("transA", 0):
        raise ModelImportError(f"{ctx.path}: node {name!r} (Gemm): transA=1 is not supported")
    out = ctx.shape(node, node.output[0])
    w = ctx.input_const(node, 1)
    if w is None:
        return Layer(name=name, kind="matmul", in_shape=a, out_shape=out,
                     attrs={"k": int(a[-1]), "groups": 1, "rhs_shape": b})
    w = w * float(attrs.get("alpha", 1.0))
    w = w if attrs.get("transB", 0) else w.T  # -> (out, in)
    bias = ctx.input_const(node, 2)
    if bias is not None:
        bias = bias * float(attrs.get("beta", 1.0))
    return Layer(name=name, kind="linear", in_shape=a, out_shape=out, weight=w, bias=bias)


def _matmul(ctx: _Context, node: Any, name: str, attrs: dict[str, Any]) -> Layer:
    """A constant 2-D right operand makes a ``linear`` layer, anything else a batched
    ``matmul`` layer (one group per leading output index)."""
    a, b = ctx.shape(node, node.input[0]), ctx.shape(node, node.input[1])
    out = ctx.shape(node, node.output[0])
    w = ctx.input_const(node, 1)
    if w is not None and w.ndim == 2:
        return Layer(name=name, kind="linear", in_shape=a, out_shape=out,
                     weight=np.ascontiguousarray(w.T))
    return Layer(name=name, kind="matmul", in_shape=a, out_shape=out,
                 attrs={"k": int(a[-1]), "groups": int(math.prod(out[:-2])), "rhs_shape": b})


_GEMM_OPS: dict[str, Callable[[_Context, Any, str, dict[str, Any]], Layer]] = {
    "Conv": _conv, "Gemm": _gemm, "MatMul": _matmul,
}
