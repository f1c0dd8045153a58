"""N:M pruning along the GEMM reduction dimension K (``Layer.gemm_weight()`` view).

* :func:`prune_magnitude`: keep the ``n`` largest-magnitude weights of every group of ``m``
  consecutive K indices of every column.
* :func:`prune_second_order`: one-shot layer-wise reconstruction in the style of SparseGPT
  (Frantar & Alistarh, 2023): with ``H = 2 X^T X / P`` from real calibration inputs, columns of
  K are processed left to right; at each group start the mask keeps the ``n`` weights with the
  largest ``w^2 / [H^-1]_jj^2`` and every pruning error is compensated in the weights not yet
  processed through the upper Cholesky factor of ``H^-1``. Layers are pruned in order, each on the
  inputs produced by the already-pruned layers before it.
* :func:`prune_gradual`: N:M training of a demo model with a mask recomputed each step, a schedule
  from dense to the target ``n`` and SR-STE gradients (straight-through to all weights plus a decay
  ``lambda * (1 - mask) * w`` on the pruned ones).
* :class:`PrunePolicy`: which layers stay dense (the first conv and the classifier by default).
* :func:`check_graph_nm`: raise on the first group of any layer that violates its pattern.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from sparsa.models.graph import Layer, LayerGraph
from sparsa.nm import NMPatternError, check_nm, pattern_fits, validate_nm

from .quant import forward_float, gemm_input, set_gemm_weight

__all__ = ["POLICY_HELP", "NMPatternError", "PatternWarning", "PrunePolicy", "check_graph_nm",
           "magnitude_mask", "mark_pruned", "prune_gradual", "prune_magnitude",
           "prune_second_order", "sparsegpt_matrix", "warn_dense_fallback", "warn_wide_groups"]


class PatternWarning(UserWarning):
    """A pruning choice that quietly costs accuracy or speed."""


def warn_wide_groups(graph: LayerGraph, targets: Iterable[int], m: int) -> None:
    """Warn when a group of ``m`` spans more than a layer's whole K."""
    narrow = [f"{graph.layers[i].name} (K={graph.layers[i].gemm.k})" for i in targets
              if graph.layers[i].gemm.k < m]
    if narrow:
        warnings.warn(f"M = {m} is larger than K of {len(narrow)} layer(s): "
                      f"{', '.join(narrow[:3])}{', ...' if len(narrow) > 3 else ''}; one group "
                      "then spans the layer's whole K and keeps only N weights per output",
                      PatternWarning, stacklevel=3)


def warn_dense_fallback(graph: LayerGraph, n: int, m: int) -> None:
    """Warn when layers pruned to their own pattern cannot run sparse on ``n:m`` hardware."""
    pruned = [layer for layer in graph if layer.nm is not None and layer.has_static_weight]
    misfit = [layer for layer in pruned if not pattern_fits(layer.nm, (n, m))]
    if misfit:
        patterns = sorted({f"{a}:{b}" for a, b in (layer.nm for layer in misfit)})
        warnings.warn(f"{len(misfit)} of {len(pruned)} pruned layers ({', '.join(patterns)}) "
                      f"cannot run sparse on {n}:{m} hardware and run dense", PatternWarning,
                      stacklevel=3)


@dataclass(frozen=True)
class PrunePolicy:
    """Which weight layers to prune. By default every ``conv2d``/``linear`` layer except the
    first conv (when the model starts with one) and the classifier (the last weight layer);
    ``dense`` names more layers to keep dense, ``prune`` forces layers to be pruned."""

    keep_first_conv: bool = True
    keep_classifier: bool = True
    dense: frozenset[str] = frozenset()
    prune: frozenset[str] = frozenset()

    def select(self, graph: LayerGraph) -> list[int]:
        weighted = [i for i, lay in enumerate(graph.layers) if lay.has_static_weight]
        skip = set()
        if weighted and self.keep_first_conv and graph.layers[weighted[0]].kind == "conv2d":
            skip.add(weighted[0])
        if weighted and self.keep_classifier:
            skip.add(weighted[-1])
        names = {graph.layers[i].name for i in weighted}
        for name in self.dense | self.prune:
            if name not in names:
                raise ValueError(f"policy names layer {name!r}, which is not a weight layer of "
                                 f"{graph.name!r} (weight layers: {', '.join(sorted(names))})")
        return [i for i in weighted if graph.layers[i].name in self.prune
                or (i not in skip and graph.layers[i].name not in self.dense)]


    def describe(self, graph: LayerGraph) -> str:
        """One line for reports: which weight layers the policy leaves dense."""
        if any(layer.nm is not None for layer in graph):
            return "the model's own N:M patterns"
        chosen = set(self.select(graph))
        kept = [lay.name for i, lay in enumerate(graph.layers)
                if lay.has_static_weight and i not in chosen]
        return f"dense: {', '.join(kept)}" if kept else "every weight layer pruned"

    def to_dict(self) -> dict:
        """JSON-able fields (layer sets as sorted lists), the inverse of :meth:`from_dict`."""
        return {f.name: sorted(v) if isinstance(v, frozenset) else v
                for f in dataclasses.fields(self) for v in [getattr(self, f.name)]}

    @classmethod
    def from_dict(cls, values: dict) -> PrunePolicy:
        return cls(**{k: frozenset(v) if isinstance(v, list) else v for k, v in values.items()})


POLICY_HELP = ("N:M pruning covers every conv and linear layer except the first conv and the "
               "classifier (the last weight layer), which stay dense unless asked; a model "
               "pruned by 'sparsa prune' keeps its own patterns")


def mark_pruned(graph: LayerGraph, n: int, m: int,
                policy: PrunePolicy | None = None) -> LayerGraph:
    """Shape-only pruning, for costing: the layers ``policy`` selects are taken to satisfy
    ``n:m`` (their weights, if any, are not touched). A graph that already carries patterns
    (written by ``sparsa prune``) is returned as it is."""
    validate_nm(n, m)
    if any(layer.nm is not None for layer in graph):
        warn_dense_fallback(graph, n, m)
        return graph
    chosen = set((policy or PrunePolicy()).select(graph))
    warn_wide_groups(graph, chosen, m)
    layers = tuple(dataclasses.replace(layer, nm=(n, m)) if i in chosen else layer
                   for i, layer in enumerate(graph.layers))
    return dataclasses.replace(graph, layers=layers)


def magnitude_mask(w: np.ndarray, n: int, m: int) -> np.ndarray:
    """Boolean ``(K, C)`` mask keeping the ``n`` largest ``|w|`` of each group of ``m`` along K
    (ties: lower K index first)."""
    k, c = w.shape
    groups = -(-k // m)
    padded = np.zeros((groups * m, c))
    padded[:k] = np.abs(w)
    grouped = padded.reshape(groups, m, c)
    order = np.argsort(-grouped, axis=1, kind="stable")
    keep = np.zeros_like(grouped, dtype=bool)
    np.put_along_axis(keep, order[:, :n, :], True, axis=1)
    return keep.reshape(groups * m, c)[:k]


def _with_weight(layer: Layer, wg: np.ndarray, nm: tuple[int, int]) -> Layer:
    return dataclasses.replace(layer, weight=set_gemm_weight(layer, wg).astype(np.float32),
                               nm=nm)


def _targets(graph: LayerGraph, policy: PrunePolicy | None, m: int) -> list[int]:
    targets = (policy or PrunePolicy()).select(graph)
    warn_wide_groups(graph, targets, m)
    for i in targets:
        if graph.layers[i].weight is None:
            raise ValueError(f"layer {graph.layers[i].name!r} of {graph.name!r} has no weights "
                             "to prune (shape-only graph)")
    return targets


def prune_magnitude(graph: LayerGraph, n: int, m: int,
                    policy: PrunePolicy | None = None) -> LayerGraph:
    validate_nm(n, m)
    layers = list(graph.layers)
    for i in _targets(graph, policy, m):
        wg = layers[i].gemm_weight()
        pruned = np.stack([wg[g] * magnitude_mask(wg[g], n, m) for g in range(wg.shape[0])])
        layers[i] = _with_weight(layers[i], pruned, (n, m))
    return dataclasses.replace(graph, layers=tuple(layers))


def sparsegpt_matrix(w: np.ndarray, x: np.ndarray, n: int, m: int, *, blocksize: int = 128,
                     percdamp: float = 0.01) -> np.ndarray:
    """Prune ``w`` ``(K, C)`` to N:M along K minimising ``||X W - X W'||`` for inputs ``x``
    ``(P, K)`` (SparseGPT's algorithm with its N:M mask selection)."""
    validate_nm(n, m)
    x = np.asarray(x, dtype=np.float64)
    W = np.array(w, dtype=np.float64).T  # (C, K): rows are outputs, columns are K
    k = W.shape[1]
    H = 2.0 * x.T @ x / max(len(x), 1)
    dead = np.diag(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    H[np.diag_indices(k)] += percdamp * np.mean(np.diag(H))
    Hinv = np.linalg.cholesky(np.linalg.inv(H)).T  # upper Cholesky factor of H^-1
    blocksize = max(m, blocksize // m * m)
    for i1 in range(0, k, blocksize):
        i2 = min(i1 + blocksize, k)
        W1 = W[:, i1:i2].copy()
        Q1 = np.zeros_like(W1)
        Err1 = np.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        prune = np.zeros_like(W1, dtype=bool)
        for i in range(i2 - i1):
            if i % m == 0:
                j = min(i + m, i2 - i1)
                score = W1[:, i:j] ** 2 / np.diag(Hinv1)[None, i:j] ** 2
                drop = np.argsort(score, axis=1, kind="stable")[:, : max(j - i - n, 0)]
                np.put_along_axis(prune[:, i:j], drop, True, axis=1)
            q = W1[:, i].copy()
            q[prune[:, i]] = 0.0
            Q1[:, i] = q
            err = (W1[:, i] - q) / Hinv1[i, i]
            W1[:, i:] -= np.outer(err, Hinv1[i, i:])
            Err1[:, i] = err
        W[:, i1:i2] = Q1
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    return W.T


def prune_second_order(graph: LayerGraph, n: int, m: int, calib_x: np.ndarray,
                       policy: PrunePolicy | None = None, *, blocksize: int = 128,
                       percdamp: float = 0.01) -> LayerGraph:
    """SparseGPT-style one-shot N:M pruning with calibration inputs ``calib_x`` (model inputs)."""
    validate_nm(n, m)
    targets = set(_targets(graph, policy, m))
    layers = list(graph.layers)
    x = np.asarray(calib_x, dtype=np.float64)
    for i, layer in enumerate(graph.layers):
        one = dataclasses.replace(graph, layers=(layer,))
        if i in targets:
            cols = gemm_input(x, layer)
            wg = layer.gemm_weight()
            pruned = np.stack([sparsegpt_matrix(wg[g], cols[g], n, m, blocksize=blocksize,
                                                percdamp=percdamp) for g in range(len(wg))])
            layers[i] = layer = _with_weight(layer, pruned, (n, m))
            one = dataclasses.replace(graph, layers=(layer,))
        x = forward_float(one, x)
    return dataclasses.replace(graph, layers=tuple(layers))


def check_graph_nm(graph: LayerGraph, layers: Iterable[int] | None = None) -> int:
    """Check every layer with a pattern (``layer.nm``) against it; return how many were checked.
    Raises :class:`NMPatternError` naming the layer and its first violating group."""
    checked = 0
    for i, layer in enumerate(graph.layers):
        if layers is not None and i not in set(layers):
            continue
        if layer.nm is None or layer.weight is None:
            continue
        wg = layer.gemm_weight()
        for g in range(wg.shape[0]):
            try:
                check_nm(wg[g], *layer.nm)
            except NMPatternError as e:
                raise NMPatternError(f"layer {layer.name!r} (GEMM group {g}): {e}") from None
        checked += 1
    return checked


def prune_gradual(name: str, n: int, m: int, policy: PrunePolicy | None = None, *,
                  epochs: int = 12, lr: float = 1e-3, decay: float = 2e-4,
                  ramp: float = 0.5, progress=None) -> LayerGraph:
    """Fine-tune the trained demo model ``name`` into N:M with SR-STE.

    For the first ``ramp`` fraction of the steps the kept count per group falls linearly from
    ``m`` to ``n``; the forward pass uses the masked weights, gradients pass straight through to
    all weights and pruned weights additionally decay by ``decay * w``. ``progress(step,
    total)`` is called after each training step.
    """
    import torch
    from torch.nn.utils import parametrize

    from sparsa.models import demo

    validate_nm(n, m)
    graph = demo.demo_graph(name)
    targets = _targets(graph, policy, m)
    model = demo.build_torch(name)
    model.load_state_dict(torch.load(demo.artifact_path(name).with_suffix(".pt")))
    torch.set_num_threads(1)
    state = {"keep": m}
    modules = {graph.layers[i].name: graph.layers[i] for i in targets}

    class NMMask(torch.nn.Module):
        def __init__(self, layer: Layer) -> None:
            super().__init__()
            self.layer = layer
            self.mask: torch.Tensor | None = None

        def forward(self, w: torch.Tensor) -> torch.Tensor:
            lay = dataclasses.replace(self.layer, weight=w.detach().numpy())
            wg = lay.gemm_weight()
            keep = np.stack([magnitude_mask(wg[g], state["keep"], m) for g in range(len(wg))])
            self.mask = torch.from_numpy(set_gemm_weight(lay, keep.astype(np.float32)))
            return w + (w * self.mask - w).detach()  # straight-through estimator

    masks = {}
    for qual, layer in modules.items():
        masks[qual] = NMMask(layer)
        parametrize.register_parametrization(model.get_submodule(qual), "weight", masks[qual])

    def hook(model, step: int, total: int, when: str) -> None:
        if when == "before_step":
            for qual, mask in masks.items():
                p = model.get_submodule(qual).parametrizations.weight.original
                if p.grad is not None and mask.mask is not None:
                    p.grad.add_(decay * (1.0 - mask.mask) * p.detach())
        else:
            frac = min(1.0, (step + 1) / max(1, int(ramp * total)))
            state["keep"] = max(n, round(m - frac * (m - n)))
            if progress is not None:
                progress(step + 1, total)

    demo.train_torch(model, name, epochs=epochs, lr=lr, step_hook=hook)
    state["keep"] = n
    for qual in modules:
        parametrize.remove_parametrizations(model.get_submodule(qual), "weight",
                                            leave_parametrized=True)
    traced = demo.trace_demo(name, model)
    layers = [dataclasses.replace(lay, nm=(n, m)) if i in targets else lay
              for i, lay in enumerate(traced.layers)]
    return dataclasses.replace(traced, layers=tuple(layers))
