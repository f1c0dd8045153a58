"""The layer graph: a small typed description of a network, independent of where it came from.

Importers (PyTorch, ONNX, SCALE-Sim CSV, the zoo) produce a :class:`LayerGraph`; pruning,
quantization and the scheduler consume it. No PyTorch or Amaranth import here.

GEMM view (the array computes ``Y[P x cols] = X[P x K] . W[K x cols]``):

* ``conv2d``: ``P = batch * H_out * W_out``, ``K = (C_in / groups) * kh * kw``,
  ``cols = C_out / groups``, ``groups`` independent GEMMs (depthwise: ``groups = C_in``).
  The im2col K order is ``(kh, kw, c_in)`` with ``c_in`` fastest (NHWC), so an N:M group along K is
  ``m`` consecutive input channels of one filter tap.
* ``linear``: ``P = prod(leading dims)``, ``K = in_features``, ``cols = out_features``.
* ``matmul`` (activation x activation, e.g. attention scores and context): ``groups`` = batch x
  heads, no static weight, so it always runs dense.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["GEMM_KINDS", "Gemm", "Layer", "LayerGraph", "LayerKind", "routed_tokens"]

LayerKind = str
GEMM_KINDS = ("conv2d", "linear", "matmul")
OTHER_KINDS = ("pool", "act", "norm", "add", "softmax", "embedding", "reshape", "other")


def routed_tokens(tokens: int, top_k: int, experts: int) -> list[int]:
    """Tokens each of ``experts`` experts runs when ``tokens`` tokens go to ``top_k`` experts
    each, routed as evenly as possible (the mixture-of-experts assumption of
    :mod:`sparsa.models.moe`): ``floor(tokens x top_k / experts)``, one more for the first
    ``tokens x top_k mod experts`` experts."""
    if not 1 <= top_k <= experts:
        raise ValueError(f"top_k must be between 1 and the {experts} experts, not {top_k}")
    base, extra = divmod(tokens * top_k, experts)
    return [base + (e < extra) for e in range(experts)]


@dataclass(frozen=True)
class Gemm:
    """``groups`` independent GEMMs of ``P x K`` by ``K x cols``."""

    p: int
    k: int
    cols: int
    groups: int = 1

    def __post_init__(self) -> None:
        for name in ("p", "k", "cols", "groups"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"GEMM {name} must be a positive integer, not {value!r}")

    @property
    def macs(self) -> int:
        """Dense multiply-accumulates."""
        return self.groups * self.p * self.k * self.cols


@dataclass(frozen=True)
class Layer:
    """One operation with its shapes.

    ``attrs`` holds kind-specific parameters: for ``conv2d`` ``kernel``, ``stride``, ``padding``,
    ``dilation`` (pairs) and ``groups``; for ``linear`` nothing (a mixture-of-experts
    projection: ``expert``, ``experts``, ``top_k``); for ``matmul`` ``groups``.
    ``weight`` is the source's own tensor when it has one (conv ``(C_out, C_in/groups, kh, kw)``,
    linear ``(out, in)``); ``nm`` the N:M pattern the weight satisfies after pruning (``None``:
    dense).
    """

    name: str
    kind: LayerKind
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)
    weight: np.ndarray | None = field(default=None, repr=False, compare=False)
    bias: np.ndarray | None = field(default=None, repr=False, compare=False)
    nm: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.kind not in GEMM_KINDS + OTHER_KINDS:
            raise ValueError(f"layer {self.name!r}: unknown kind {self.kind!r}; expected one of "
                             f"{', '.join(GEMM_KINDS + OTHER_KINDS)}")

    @property
    def is_gemm(self) -> bool:
        return self.kind in GEMM_KINDS

    @property
    def has_static_weight(self) -> bool:
        return self.kind in ("conv2d", "linear")

    @property
    def gemm(self) -> Gemm | None:
        """The GEMM view of this layer (``None`` for non-GEMM operations)."""
        if self.kind == "conv2d":
            n, _, h, w = self.out_shape
            kh, kw = self.attrs["kernel"]
            groups = int(self.attrs.get("groups", 1))
            c_in, c_out = self.in_shape[1], self.out_shape[1]
            return Gemm(p=n * h * w, k=(c_in // groups) * kh * kw, cols=c_out // groups,
                        groups=groups)
        if self.kind == "linear":
            return Gemm(p=math.prod(self.in_shape[:-1]), k=self.in_shape[-1],
                        cols=self.out_shape[-1])
        if self.kind == "matmul":
            groups = int(self.attrs.get("groups", 1))
            p, cols = self.out_shape[-2], self.out_shape[-1]
            k = int(self.attrs["k"])
            return Gemm(p=p, k=k, cols=cols, groups=groups)
        return None

    def gemm_weight(self) -> np.ndarray:
        """The weight as ``(groups, K, cols)`` GEMM matrices in the im2col K order."""
        if self.weight is None:
            raise ValueError(f"layer {self.name!r} ({self.kind}) carries no weight")
        w = np.asarray(self.weight)
        if self.kind == "linear":
            return w.T[None]
        if self.kind == "conv2d":
            groups = int(self.attrs.get("groups", 1))
            c_out, c_in_g, kh, kw = w.shape
            # (C_out, C_in/g, kh, kw) -> (g, kh, kw, C_in/g, C_out/g) -> (g, K, cols)
            w = w.reshape(groups, c_out // groups, c_in_g, kh, kw).transpose(0, 3, 4, 2, 1)
            return w.reshape(groups, kh * kw * c_in_g, c_out // groups)
        raise ValueError(f"layer {self.name!r} ({self.kind}) has no static weight")


@dataclass(frozen=True)
class LayerGraph:
    """Layers in execution order (a topological order of the source graph).

    ``meta`` describes the workload the shapes were traced for, where the source knows it:
    ``batch``, ``seq`` (tokens per sequence, transformer text models), and for decoder models
    ``heads``, ``kv_heads``, ``head_dim`` and ``decoder_layers`` (read by the LLM phases of
    :mod:`sparsa.sw.phases`), ``causal`` when their attention is (a decoder's), ``experts``
    and ``top_k`` for a mixture of experts (each expert projection a layer whose ``attrs``
    hold ``expert``, ``experts`` and ``top_k``); ``weights`` is ``"absent"`` when a file's
    weights are missing.
    """

    name: str
    layers: tuple[Layer, ...]
    input_shape: tuple[int, ...] = ()
    source: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def gemm_layers(self) -> list[Layer]:
        return [layer for layer in self.layers if layer.is_gemm]

    @property
    def macs(self) -> int:
        return sum(layer.gemm.macs for layer in self.gemm_layers())
