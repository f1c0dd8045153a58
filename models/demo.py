"""Demo models trained on scikit-learn's digits (1797 8x8 images, shipped with scikit-learn).

``digits_mlp`` (64-128-64-10) and ``digits_cnn`` (two 3x3 convs, max-pool, two linear layers) train
in seconds on the CPU with fixed seeds. The trained model is saved as an artifact in the cache
directory (``<cache>/demo/<name>-v<version>.npz``, a :func:`~sparsa.models.load.save_graph` file
with the test accuracy in its metadata, plus the ``.pt`` state dict) and loaded from there next
time.
"""

from __future__ import annotations

import dataclasses
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelImportError, UnknownModelError
from .graph import LayerGraph
from .store import cache_dir, load_saved, save_graph

__all__ = ["DEMOS", "DEMO_VERSION", "build_torch", "demo_graph", "digits_data", "train_demo"]

DEMO_VERSION = "2"  # 2: named layers (conv1, fc1, ...)
DEMOS = ("digits_mlp", "digits_cnn")
SEED = 0


def digits_data(name: str = "digits_mlp") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)``: pixels scaled to [0, 1], a fixed 75/25 stratified
    split; images are ``(n, 64)`` for the MLP and ``(n, 1, 8, 8)`` for the CNN."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=SEED,
                                              stratify=y)
    if name == "digits_cnn":
        x_tr, x_te = x_tr.reshape(-1, 1, 8, 8), x_te.reshape(-1, 1, 8, 8)
    return x_tr, y_tr, x_te, y_te


def build_torch(name: str) -> Any:
    """A freshly initialised (seeded) torch model."""
    import torch
    from torch import nn

    torch.manual_seed(SEED)
    if name == "digits_mlp":
        layers = [("fc1", nn.Linear(64, 128)), ("relu1", nn.ReLU()),
                  ("fc2", nn.Linear(128, 64)), ("relu2", nn.ReLU()), ("fc3", nn.Linear(64, 10))]
        return nn.Sequential(OrderedDict(layers))
    if name == "digits_cnn":
        layers = [("conv1", nn.Conv2d(1, 16, 3, padding=1)), ("relu1", nn.ReLU()),
                  ("conv2", nn.Conv2d(16, 32, 3, padding=1)), ("relu2", nn.ReLU()),
                  ("pool", nn.MaxPool2d(2)), ("flatten", nn.Flatten()),
                  ("fc1", nn.Linear(32 * 4 * 4, 64)), ("relu3", nn.ReLU()),
                  ("fc2", nn.Linear(64, 10))]
        return nn.Sequential(OrderedDict(layers))
    raise UnknownModelError(f"unknown demo model {name!r}; expected one of {', '.join(DEMOS)}")


def train_torch(model: Any, name: str, *, epochs: int = 15, lr: float = 3e-3,
                step_hook: Any = None) -> float:
    """Train ``model`` on the digits training split (Adam, cross-entropy, seeded batches) and
    return its test accuracy. ``step_hook(model, step, total)`` runs after each optimizer step
    (``before_step`` of the gradual pruner adjusts gradients through it)."""
    import torch

    x_tr, y_tr, x_te, y_te = digits_data(name)
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    gen = torch.Generator().manual_seed(SEED)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    batch = 64
    steps_per_epoch = -(-len(xt) // batch)
    total = epochs * steps_per_epoch
    step = 0
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            if step_hook is not None:
                step_hook(model, step, total, "before_step")
            opt.step()
            if step_hook is not None:
                step_hook(model, step, total, "after_step")
            step += 1
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(x_te)).argmax(1).numpy()
    return float((pred == y_te).mean())


def trace_demo(name: str, model: Any) -> LayerGraph:
    import torch

    from .torch_import import import_module

    x_tr = digits_data(name)[0]
    graph = import_module(model, torch.from_numpy(x_tr[:1]), name=name)
    return dataclasses.replace(graph, source=f"demo:{name} (trained on sklearn digits)")


def artifact_path(name: str) -> Path:
    return cache_dir() / "demo" / f"{name}-v{DEMO_VERSION}.npz"


def train_demo(name: str) -> tuple[LayerGraph, float]:
    """Train demo model ``name``, save the artifact and return ``(graph, test accuracy)``."""
    import torch

    model = build_torch(name)
    torch.set_num_threads(1)  # tiny model: threads only add overhead
    acc = train_torch(model, name)
    graph = trace_demo(name, model)
    path = artifact_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write under temporary names, then rename: concurrent runs never see half-written files.
    tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}")
    torch.save(model.state_dict(), tmp.with_suffix(".pt"))
    os.replace(tmp.with_suffix(".pt"), path.with_suffix(".pt"))
    save_graph(graph, tmp.with_suffix(".npz"), meta={"demo": name, "test_accuracy": acc})
    os.replace(tmp.with_suffix(".npz"), path)
    return graph, acc


def _with_batch(graph: LayerGraph, batch: int) -> LayerGraph:
    if batch == graph.input_shape[0]:
        return graph
    layers = tuple(dataclasses.replace(lay, in_shape=(batch, *lay.in_shape[1:]),
                                       out_shape=(batch, *lay.out_shape[1:]))
                   for lay in graph.layers)
    return dataclasses.replace(graph, layers=layers, input_shape=(batch, *graph.input_shape[1:]))


def demo_graph(name: str, *, batch: int = 1) -> LayerGraph:
    """The trained demo model (trained and saved on first use)."""
    if name not in DEMOS:
        raise UnknownModelError(f"unknown demo model {name!r}; expected one of {', '.join(DEMOS)}")
    path = artifact_path(name)
    graph = None
    if path.is_file():
        try:
            graph = load_saved(path)[0]
        except ModelImportError:
            graph = None  # corrupt artifact: retrain
    if graph is None:
        graph = train_demo(name)[0]
    return _with_batch(graph, batch)


def demo_accuracy(name: str) -> float:
    """Float test accuracy recorded when the demo model was trained."""
    demo_graph(name)
    return float(load_saved(artifact_path(name))[1]["test_accuracy"])
