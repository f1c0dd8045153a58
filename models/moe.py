"""Mixture-of-experts Hugging Face models on the meta device: the routed experts, made traceable.

A sparse MoE block sends each token to ``top_k`` of its ``E`` experts. transformers runs the
experts of a block as one module holding every expert's weights as 3-D tensors (the modules its
``use_experts_implementation`` decorator marks) and routes tokens with data-dependent indexing,
which the meta device cannot run. Before tracing, :func:`route_experts` replaces each such
module with a stand-in that runs every expert as its own ``nn.Linear`` GEMMs (the gate/up
projection, then the down projection) on the rows routed to it, so each expert is a layer of
the graph: ``<block>.experts.<e>.gate_up_proj`` and ``.down_proj`` (``up_proj`` without a gate).

**Routing assumption: balanced.** The router's decisions depend on the data, which a config does
not have. The ``T x top_k`` (token, expert) pairs of ``T`` tokens are spread as evenly as
possible: expert ``e`` gets ``floor(T k / E)`` tokens, plus one for the first ``T k mod E``
experts (:func:`sparsa.models.graph.routed_tokens`); an expert with no token is not run (its
weights are not read). At decode (``T = batch``) with ``batch x top_k < E`` only that many
experts run, one token each.
"""

from __future__ import annotations

import functools
from typing import Any

from .errors import ModelImportError
from .graph import routed_tokens

__all__ = ["expert_attrs", "route_experts"]


def _is_experts(module: Any) -> bool:
    """A module of transformers' stacked experts (``use_experts_implementation``)."""
    import torch

    return (hasattr(module, "is_transposed") and hasattr(module, "has_gate")
            and isinstance(getattr(module, "down_proj", None), torch.nn.Parameter)
            and module.down_proj.dim() == 3)


def _linear_shapes(module: Any, qual: str) -> tuple[int, list[tuple[str, int, int]]]:
    """``(E, [(name, in_features, out_features)])`` of an experts module's projections."""
    first = "gate_up_proj" if module.has_gate else "up_proj"
    shapes = []
    for name in (first, "down_proj"):
        w = getattr(module, name, None)
        if w is None or w.dim() != 3:
            raise ModelImportError(f"{qual}: mixture-of-experts module {type(module).__name__} "
                                   f"has no 3-D {name} weight (layout not supported)")
        experts, a, b = (int(v) for v in w.shape)
        shapes.append((name, a, b) if module.is_transposed else (name, b, a))
    if len({int(getattr(module, n).shape[0]) for n, _, _ in shapes}) != 1:
        raise ModelImportError(f"{qual}: its projections disagree on the number of experts")
    return experts, shapes


@functools.cache
def _routed_experts_class() -> type:
    import torch
    from torch import nn

    class RoutedExperts(nn.ModuleList):
        """Expert ``e``'s projections as ``nn.Linear`` layers, run on the rows routed to it
        (balanced routing; the module notes)."""

        def __init__(self, experts: int, shapes: list[tuple[str, int, int]],
                     bias: bool) -> None:
            super().__init__(nn.ModuleDict({name: nn.Linear(i, o, bias=bias)
                                            for name, i, o in shapes})
                             for _ in range(experts))
            self.shapes = shapes
            self.top_k = 0          # the router's k, seen at trace time

        def forward(self, hidden_states: Any, top_k_index: Any, *args: Any,
                    **kwargs: Any) -> Any:
            self.top_k = int(top_k_index.shape[-1])
            tokens = int(hidden_states.shape[0])
            (first, _, _), (down, down_in, _) = self.shapes
            for expert, rows in zip(self, routed_tokens(tokens, self.top_k, len(self)),
                                    strict=True):
                if rows:
                    expert[down](expert[first](hidden_states[:rows])[..., :down_in])
            return torch.zeros_like(hidden_states)

    return RoutedExperts


def route_experts(model: Any) -> list[Any]:
    """Replace every stacked-experts module of ``model`` (on the meta device) with its traceable
    stand-in; returns the stand-ins (their ``top_k`` is known once the model has run)."""
    import torch

    found = [(qual, m) for qual, m in model.named_modules() if _is_experts(m)]
    cls = _routed_experts_class()
    out = []
    for qual, module in found:
        experts, shapes = _linear_shapes(module, qual)
        with torch.device("meta"):
            stand_in = cls(experts, shapes, bool(getattr(module, "has_bias", False)))
        parent_name, _, child = qual.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, stand_in)
        out.append((qual, stand_in))
    return out


def expert_attrs(stand_ins: list[tuple[str, Any]]) -> dict[str, dict[str, int]]:
    """Layer name -> ``{"expert", "experts", "top_k"}`` for every expert projection."""
    attrs = {}
    for qual, stand_in in stand_ins:
        for e in range(len(stand_in)):
            for name, _, _ in stand_in.shapes:
                attrs[f"{qual}.{e}.{name}"] = {"expert": e, "experts": len(stand_in),
                                               "top_k": stand_in.top_k}
    return attrs
