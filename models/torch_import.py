"""PyTorch ``nn.Module`` + example input -> :class:`~sparsa.models.graph.LayerGraph`.

The capture runs the model once under a :class:`~torch.utils._python_dispatch.TorchDispatchMode`
and module hooks:

* modules that own a GEMM weight (``nn.Linear``, ``nn.Conv2d``, transformers' ``Conv1D``) become
  one ``linear``/``conv2d`` layer each, with their weight when it is real (not on the meta device);
* shape-relevant modules (pooling, activations, norms, softmax, embedding, flatten) become one
  layer each; the ATen ops inside them are not looked at;
* elsewhere, ATen ops are captured directly: ``mm``/``addmm``/``bmm``/``baddbmm`` between two
  activations (attention scores and context) become ``matmul`` layers, a product with a parameter
  becomes a ``linear`` layer, ``convolution`` a ``conv2d`` layer, fused scaled-dot-product
  attention two ``matmul`` layers around a ``softmax``, and ``add`` of two equal-shaped
  activations (residuals) an ``add`` layer.

Models built on the meta device work (no memory is allocated for their weights).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import ModelImportError
from .graph import Layer, LayerGraph

__all__ = ["import_module"]

_ACT_NAMES = ("relu", "gelu", "silu", "sigmoid", "tanh", "hardswish", "hardtanh", "relu6",
              "leakyrelu", "mish", "elu", "activation", "quickgelu", "newgelu")


def _module_kind(module: Any) -> str | None:
    """The layer kind a module is captured as, or ``None`` to look inside it."""
    import torch.nn as nn

    cls = type(module).__name__
    low = cls.lower()
    if isinstance(module, (nn.Linear, nn.Conv2d)) or cls == "Conv1D":
        return "gemm"
    if isinstance(module, nn.Flatten):
        return "reshape"
    if isinstance(module, nn.Embedding):
        return "embedding"
    if isinstance(module, nn.Softmax):
        return "softmax"
    if "pool" in low and not list(module.children()):
        return "pool"
    if "norm" in low and not list(module.children()):
        return "norm"
    if not list(module.children()) and (low in _ACT_NAMES or low.endswith("activation")
                                        or type(module).__module__.endswith(".activation")):
        return "act"
    return None


def _np(t: Any) -> np.ndarray | None:
    if t is None or t.device.type == "meta":
        return None
    return t.detach().cpu().float().numpy().copy()


def _shape(t: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in t.shape)


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[-1]))


class _Capture:
    def __init__(self) -> None:
        self.layers: list[Layer] = []
        self.stack: list[tuple[str, Any, str | None]] = []
        self.names: dict[str, int] = {}

    def unique(self, name: str) -> str:
        count = self.names.get(name, 0)
        self.names[name] = count + 1
        return name if count == 0 else f"{name}#{count}"

    def inside_leaf(self) -> bool:
        return any(kind is not None for _, _, kind in self.stack)

    def scope(self) -> str:
        return self.stack[-1][0] if self.stack else ""

    def add(self, name: str, kind: str, in_shape: tuple, out_shape: tuple, **kw: Any) -> None:
        self.layers.append(Layer(name=self.unique(name or kind), kind=kind,
                                 in_shape=tuple(in_shape), out_shape=tuple(out_shape), **kw))

    # --- module-level capture -----------------------------------------------------------------
    def module_layer(self, name: str, module: Any, kind: str, inputs: tuple, output: Any) -> None:
        import torch
        import torch.nn as nn

        x = next((a for a in inputs if isinstance(a, torch.Tensor)), None)
        y = output[0] if isinstance(output, (tuple, list)) else output
        if x is None or not isinstance(y, torch.Tensor):
            return
        if kind == "gemm":
            if isinstance(module, nn.Conv2d):
                attrs = {"kernel": _pair(module.kernel_size), "stride": _pair(module.stride),
                         "padding": _pair(module.padding), "dilation": _pair(module.dilation),
                         "groups": int(module.groups)}
                self.add(name, "conv2d", _shape(x), _shape(y), attrs=attrs,
                         weight=_np(module.weight), bias=_np(module.bias))
            else:
                weight = module.weight
                if type(module).__name__ == "Conv1D":  # transformers: weight is (in, out)
                    weight = weight.t()
                self.add(name, "linear", _shape(x), _shape(y), weight=_np(weight),
                         bias=_np(module.bias))
            return
        attrs: dict[str, Any] = {"op": type(module).__name__}
        if kind == "pool":
            for key in ("kernel_size", "stride", "padding", "output_size"):
                value = getattr(module, key, None)
                if value is not None:
                    attrs[key] = _pair(value)
        self.add(name, kind, _shape(x), _shape(y), attrs=attrs)

    # --- ATen-level capture -------------------------------------------------------------------
    def aten(self, func: Any, args: tuple, out: Any) -> None:
        import torch

        op = func.overloadpacket.__name__
        scope = self.scope()
        prefix = f"{scope}." if scope else ""
        tensors = [a for a in args if isinstance(a, torch.Tensor)]

        def is_param(t: Any) -> bool:
            while t is not None:
                if isinstance(t, torch.nn.Parameter):
                    return True
                t = t._base
            return False

        if op in ("mm", "addmm", "bmm", "baddbmm"):
            a, b = (args[1], args[2]) if op in ("addmm", "baddbmm") else (args[0], args[1])
            if is_param(b) and a.dim() == 2:
                bias = args[0] if op == "addmm" else None
                self.add(prefix + "linear", "linear", _shape(a), _shape(out),
                         weight=_np(b.t()), bias=_np(bias) if bias is not None else None)
            else:
                groups = a.shape[0] if a.dim() == 3 else 1
                self.add(prefix + "matmul", "matmul", _shape(a), _shape(out),
                         attrs={"k": int(a.shape[-1]), "groups": int(groups),
                                "rhs_shape": _shape(b)})
        elif op == "convolution":
            x, w = args[0], args[1]
            if x.dim() != 4:
                raise ModelImportError(f"{prefix}convolution: only 2-D convolutions are "
                                       f"supported, not input shape {_shape(x)}")
            stride, padding, dilation, transposed, _, groups = args[3:9]
            if transposed:
                raise ModelImportError(f"{prefix}convolution: transposed convolution is not "
                                       "supported")
            attrs = {"kernel": _pair(w.shape[2:]), "stride": _pair(stride),
                     "padding": _pair(padding), "dilation": _pair(dilation),
                     "groups": int(groups)}
            self.add(prefix + "conv2d", "conv2d", _shape(x), _shape(out), attrs=attrs,
                     weight=_np(w) if is_param(w) else None,
                     bias=_np(args[2]) if args[2] is not None and is_param(args[2]) else None)
        elif "scaled_dot_product" in op:
            q, k, v = args[0], args[1], args[2]
            lead = q.shape[:-2]
            groups = int(math.prod(lead))
            lq, lk, d = int(q.shape[-2]), int(k.shape[-2]), int(q.shape[-1])
            scores = (*_shape(q)[:-1], lk)
            self.add(prefix + "attn_scores", "matmul", _shape(q), scores,
                     attrs={"k": d, "groups": groups, "rhs_shape": _shape(k)})
            self.add(prefix + "attn_softmax", "softmax", scores, scores)
            self.add(prefix + "attn_context", "matmul", scores, (*_shape(q)[:-1], int(v.shape[-1])),
                     attrs={"k": lk, "groups": groups, "rhs_shape": _shape(v)})
            del lq
        elif op in ("relu", "gelu", "silu", "sigmoid", "tanh", "hardtanh", "relu_", "gelu_"):
            self.add(prefix + op, "act", _shape(tensors[0]), _shape(out), attrs={"op": op})
        elif op in ("max_pool2d_with_indices", "avg_pool2d", "_adaptive_avg_pool2d"):
            y = out[0] if isinstance(out, (tuple, list)) else out
            self.add(prefix + op, "pool", _shape(tensors[0]), _shape(y), attrs={"op": op})
        elif op in ("_softmax", "_safe_softmax"):
            self.add(prefix + "softmax", "softmax", _shape(tensors[0]), _shape(out))
        elif (op in ("add", "add_") and len(tensors) == 2 and tensors[0].dim() >= 2
              and tensors[0].shape == tensors[1].shape and tensors[0].numel() > 1
              and not any(is_param(t) for t in tensors)):
            self.add(prefix + "add", "add", _shape(tensors[0]), _shape(out))


def import_module(model: Any, example_input: Any, *, name: str | None = None,
                  **forward_kwargs: Any) -> LayerGraph:
    """Trace ``model(example_input, **forward_kwargs)`` once and return its layer graph.

    ``example_input`` is a tensor or a tuple of positional tensors. The model runs under
    ``torch.no_grad()``; a model and input on the meta device are traced without allocating
    memory for weights (the layers then carry no weights).
    """
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    if not isinstance(model, torch.nn.Module):
        raise ModelImportError(f"expected a torch.nn.Module, not {type(model).__name__}")
    capture = _Capture()

    class _Mode(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if not capture.inside_leaf():
                capture.aten(func, args, out)
            return out

    handles = []
    for qual, module in model.named_modules():
        kind = _module_kind(module) if module is not model or not list(model.children()) else None

        def pre(mod, inputs, qual=qual, kind=kind):
            capture.stack.append((qual, mod, kind))

        def post(mod, inputs, output, qual=qual, kind=kind):
            capture.stack.pop()
            if kind is not None and not capture.inside_leaf():
                capture.module_layer(qual, mod, kind, inputs, output)

        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    args = example_input if isinstance(example_input, tuple) else (example_input,)
    try:
        with torch.no_grad(), _Mode():
            model(*args, **forward_kwargs)
    except ModelImportError:
        raise
    except Exception as e:
        raise ModelImportError(f"tracing {type(model).__name__} failed: "
                               f"{type(e).__name__}: {e}") from e
    finally:
        for h in handles:
            h.remove()
    first = next((a for a in args if isinstance(a, torch.Tensor)), None)
    return LayerGraph(name=name or type(model).__name__, layers=tuple(capture.layers),
                      input_shape=_shape(first) if first is not None else (),
                      source=f"torch:{type(model).__name__}")
