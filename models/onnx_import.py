"""ONNX file -> :class:`~sparsa.models.graph.LayerGraph` via ``onnx`` and its shape inference.

GEMM operators: ``Conv`` (2-D, incl. groups/depthwise), ``Gemm``, ``MatMul`` (a constant operand
makes it a ``linear`` layer with that weight, two activations a ``matmul`` layer). Known
shape-relevant operators (pooling, activations, normalisation incl. ``LRN``, ``Add``/``Sum``,
``Softmax``, reshapes) become layers of the corresponding kind; operators without shape impact
(``Constant``, ``Cast``, ...) are skipped; any other operator (``Resize``, custom ones) passes
through as an ``other`` layer with the shapes shape inference gives (empty when it gives none).
Only a GEMM operator whose shapes are unknown, or a malformed file, raises
:class:`ModelImportError` naming the file and the node.

Weights in external data files are loaded when the files are there. When they are missing the
model loads shape-only (``onnx.load(..., load_external_data=False)``): layers carry no weights
and the graph's ``meta["weights"]`` is ``"absent"``, which the report states.
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
    "InstanceNormalization": "norm", "LRN": "norm", "GroupNormalization": "norm",
    "Add": "add", "Sum": "add", "Softmax": "softmax",
    "Flatten": "reshape", "Reshape": "reshape", "Transpose": "reshape", "Squeeze": "reshape",
    "Unsqueeze": "reshape", "Concat": "reshape",
    "Gather": "embedding",
}
_SKIP = {"Constant", "Identity", "Cast", "Shape", "Dropout", "Mul", "Div", "Sub", "Sqrt", "Pow",
         "ReduceMean", "Slice", "Split", "Expand", "Where", "Equal", "ConstantOfShape", "Range"}
SUPPORTED_OPS = ("Conv", "Gemm", "MatMul", *_OTHER, *_SKIP)


def import_onnx(path: str | Path) -> LayerGraph:
    """Read an ONNX model and return its layer graph (weights from its initializers)."""
    path = Path(path)
    model, weights_absent = _load(path)
    graph = model.graph
    consts = _constants(graph)
    names = frozenset(consts) | {init.name for init in graph.initializer}
    ctx = _Context(path=path, consts=consts, shapes=_shapes(graph, consts), constant_names=names)
    layers = [layer for idx, node in enumerate(graph.node)
              if (layer := _convert(ctx, node, idx)) is not None]
    inputs = [i for i in graph.input if i.name not in names]
    return LayerGraph(name=graph.name or path.stem, layers=tuple(layers),
                      input_shape=ctx.shapes.get(inputs[0].name, ()) if inputs else (),
                      source=f"onnx:{path}",
                      meta={"weights": "absent"} if weights_absent else {})


def _convert(ctx: _Context, node: Any, idx: int) -> Layer | None:
    """The layer of one node (``None`` for operators without shape impact)."""
    from onnx import helper

    name = node.name or f"{node.op_type}_{idx}"
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    op = node.op_type
    if op in _GEMM_OPS:
        return _GEMM_OPS[op](ctx, node, name, attrs)
    if op in _SKIP:
        return None
    first = next((t for t in node.input if t), None)
    return Layer(name=name, kind=_OTHER.get(op, "other"),
                 in_shape=ctx.shapes.get(first, ()) if first else (),
                 out_shape=ctx.shapes.get(node.output[0], ()) if node.output else (),
                 attrs={"op": op})


def _load(path: Path) -> tuple[Any, bool]:
    """The checked model with inferred shapes, and whether its external weight data is absent;
    any failure is a :class:`ModelImportError`."""
    import onnx
    from onnx import shape_inference

    try:
        model, absent = _load_external(path)
        onnx.checker.check_model(model if not absent else _without_external(model))
        return shape_inference.infer_shapes(model), absent
    except ModelImportError:
        raise
    except Exception as e:  # onnx raises DecodeError, ValidationError, InferenceError, OSError
        raise ModelImportError(f"{path}: not a valid ONNX model ({type(e).__name__}: {e})") from e


def _load_external(path: Path) -> tuple[Any, bool]:
    """The model with its external weight data loaded from beside the file, or without it
    (and True) when some of it is missing or unreadable."""
    import onnx
    from onnx import TensorProto, external_data_helper

    model = onnx.load(str(path), load_external_data=False)
    if all(t.data_location != TensorProto.EXTERNAL for t in model.graph.initializer):
        return model, False
    try:
        external_data_helper.load_external_data_for_model(model, str(path.parent))
    except Exception:  # onnx's ValidationError (no such file), OSError, a short file
        return onnx.load(str(path), load_external_data=False), True
    return model, False


def _without_external(model: Any) -> Any:
    """A copy of ``model`` for the checker (which insists that external data exists): each
    initializer held in an external file becomes a graph input of the same type and shape."""
    from onnx import TensorProto, helper

    copy = type(model)()
    copy.CopyFrom(model)
    kept = [t for t in copy.graph.initializer if t.data_location != TensorProto.EXTERNAL]
    external = [t for t in copy.graph.initializer if t.data_location == TensorProto.EXTERNAL]
    copy.graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                            for t in external)
    del copy.graph.initializer[:]
    copy.graph.initializer.extend(kept)
    return copy


def _constants(graph: Any) -> dict[str, np.ndarray]:
    """Initializers whose data is present and the outputs of ``Constant`` nodes, by name."""
    from onnx import TensorProto, numpy_helper

    consts = {init.name: numpy_helper.to_array(init) for init in graph.initializer
              if init.data_location != TensorProto.EXTERNAL}
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
        if not vi.type.tensor_type.HasField("shape"):
            continue
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = tuple(int(d.dim_value) if d.HasField("dim_value") else -1
                                for d in dims)
    for init in graph.initializer:
        shapes[init.name] = tuple(int(d) for d in init.dims)
    for name, arr in consts.items():
        shapes[name] = tuple(arr.shape)
    return shapes


@dataclass(frozen=True)
class _Context:
    """What the node converters read: the file (for messages), constants and shapes."""

    path: Path
    consts: dict[str, np.ndarray]
    shapes: dict[str, tuple[int, ...]]
    constant_names: frozenset[str]     # constants, with or without their data (absent weights)

    def shape(self, node: Any, tensor: str) -> tuple[int, ...]:
        """The static shape of ``tensor``, an input or output of ``node``."""
        s = self.shapes.get(tensor)
        if s is None or any(d < 1 for d in s):
            raise ModelImportError(f"{self.path}: node {node.name or node.op_type!r} "
                                   f"({node.op_type}): shape of {tensor!r} is unknown ({s}); "
                                   "export the model with static input shapes")
        return s

    def is_const(self, node: Any, i: int) -> bool:
        """Whether input ``i`` of ``node`` is a constant (its data may be absent)."""
        return len(node.input) > i and node.input[i] in self.constant_names

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
    if not ctx.is_const(node, 1):
        return Layer(name=name, kind="matmul", in_shape=a, out_shape=out,
                     attrs={"k": int(a[-1]), "groups": 1, "rhs_shape": b})
    w = ctx.input_const(node, 1)
    if w is not None:
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
    if ctx.is_const(node, 1) and len(b) == 2:
        w = ctx.input_const(node, 1)
        return Layer(name=name, kind="linear", in_shape=a, out_shape=out,
                     weight=None if w is None else np.ascontiguousarray(w.T))
    return Layer(name=name, kind="matmul", in_shape=a, out_shape=out,
                 attrs={"k": int(a[-1]), "groups": int(math.prod(out[:-2])), "rhs_shape": b})


_GEMM_OPS: dict[str, Callable[[_Context, Any, str, dict[str, Any]], Layer]] = {
    "Conv": _conv, "Gemm": _gemm, "MatMul": _matmul,
}
