"""Runs a quantized, pruned network on an accelerator backend, layer by layer.

The host does what the accelerator does not: pooling, ReLU, flatten (through :mod:`sparsa.sw.
quant`'s helpers), the im2col matrix of the convs the scheduler lowers with host-side im2col
(a 3-channel stem, :mod:`sparsa.sw.lower`) and the classifier's final int16 requantization; the
other convs read their NHWC input through the on-chip im2col. Every GEMM layer is scheduled and
assembled (:mod:`sparsa.sw.assemble`) and runs on the backend; per layer the run
records the measured cycles against the ones ``sparsa report``'s cost model
(:mod:`sparsa.sw.cost`) predicts from the tiling, and the activity counters against that model's
counts (from which the report's energy actions are computed). The data-dependent counter
``gated_macs`` (products whose selected activation is zero, see :mod:`sparsa.sw.activity`) is
compared with :func:`~sparsa.sw.activity.layer_gated_macs`, predicted from the layer's int8 data.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from sparsa import nm
from sparsa.config import ArrayConfig
from sparsa.sw import quant
from sparsa.sw.activity import density_of, layer_gated_macs
from sparsa.sw.assemble import assemble_layer
from sparsa.sw.cost import actions_from_counts, program_cycles, tiling_counts
from sparsa.sw.energy import energy_of, load_table
from sparsa.sw.schedule import Tiling, schedule_layer, tiling_bytes
from sparsa.sw.top_timing import layer_top_cycles

__all__ = ["LayerRecord", "LayerTotals", "ModelRun", "prepare_model", "run_model"]


@dataclass(frozen=True)
class LayerRecord:
    name: str
    gemm: str
    pattern: str
    instructions: int
    measured: int
    predicted: int
    counters_match: bool
    counter_diffs: dict
    macs: int = 0                 # MACs issued (the ``macs`` counter)
    gated_macs: int = 0           # measured ``gated_macs`` counter
    gated_predicted: int = 0      # predicted from the data (sw.activity.gemm_gated_macs)
    act_density: float = 1.0      # nonzero fraction of the layer's int8 GEMM input
    energy_pj: float = 0.0        # the report's energy model on the predicted counts ...
    energy_gated_pj: float = 0.0  # ... and with the predicted gated MACs zero-gated

    @property
    def difference(self) -> int:
        return self.measured - self.predicted


class LayerTotals:
    """A run of layers (a dataclass with ``layers``, records of :attr:`RECORD`) and its cycle
    totals. Its JSON holds the totals beside the fields (:attr:`DERIVED` names them); reading it
    back drops them."""

    RECORD: ClassVar[type]
    DERIVED: ClassVar[tuple[str, ...]] = ("measured", "predicted")

    @property
    def measured(self) -> int:
        return self.total("measured")

    @property
    def predicted(self) -> int:
        return self.total("predicted")

    def total(self, field: str):
        """Sum of a layer record's field over the layers."""
        return sum(getattr(r, field) for r in self.layers)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), **{k: getattr(self, k) for k in self.DERIVED}})

    @classmethod
    def from_json(cls, text: str):
        values = json.loads(text)
        for key in cls.DERIVED:
            values.pop(key)
        values["layers"] = [cls.RECORD(**r) for r in values["layers"]]
        return cls(**values)


@dataclass(frozen=True)
class ModelRun(LayerTotals):
    RECORD: ClassVar[type] = LayerRecord

    model: str
    backend: str
    images: int
    accuracy: float
    golden_accuracy: float
    bit_exact: bool
    layers: list[LayerRecord]


def prepare_model(spec: str, cfg: ArrayConfig, images: int, policy=None):
    """The quantized, N:M-pruned model and ``images`` digits test images with labels.

    ``spec`` is a demo model name (pruned here by magnitude to the hardware's N:M pattern under
    ``policy``, a :class:`~sparsa.sw.prune.PrunePolicy`; by default the first conv and the
    classifier stay dense) or a saved pruned model of a demo (``sparsa prune``)."""
    from sparsa.models.demo import DEMOS, demo_graph, digits_data
    from sparsa.models.store import load_saved
    from sparsa.sw.prune import prune_magnitude, warn_dense_fallback

    if spec in DEMOS:
        name = spec
        graph = demo_graph(spec)
        if not cfg.is_dense:
            graph = prune_magnitude(graph, cfg.n, cfg.m, policy)
    elif Path(spec).suffix == ".npz":
        graph, meta = load_saved(spec)
        name = meta.get("demo")
        if name not in DEMOS:
            raise ValueError(f"{spec}: sparsa run needs a pruned demo model (one of "
                             f"{', '.join(DEMOS)}), not {name!r}")
        warn_dense_fallback(graph, cfg.n, cfg.m)
    else:
        raise ValueError(f"unknown model {spec!r}: expected a demo model ({', '.join(DEMOS)}) "
                         f"or a .npz written by 'sparsa prune'")
    x_tr, _, x_te, y_te = digits_data(name)
    if not 1 <= images <= len(x_te):
        raise ValueError(f"--images must be between 1 and {len(x_te)}, not {images}")
    qgraph = quant.quantize_graph(graph, x_tr)
    return name, qgraph, x_te[:images], y_te[:images]


def _energies(cfg: ArrayConfig, t: Tiling, counts: dict[str, int], *,
              raw: bool) -> dict[str, float]:
    """A layer's energy (default table) from its predicted counts and bytes, without and with
    gating."""
    actions = actions_from_counts(cfg, counts, tiling_bytes(t, raw=raw))
    table = load_table()
    return {"energy_pj": energy_of(actions, cfg, table).total,
            "energy_gated_pj": energy_of(actions, cfg, table,
                                         gated_macs=counts["gated_macs"]).total}


def _layer_input(act: np.ndarray, layer) -> np.ndarray:
    """The accelerator's view of a GEMM layer's input: NHWC for a conv, ``(P, K)`` rows
    otherwise."""
    if layer.kind == "conv2d":
        return np.ascontiguousarray(act.transpose(0, 2, 3, 1))
    return act.reshape(-1, act.shape[-1])


async def _run_layer(backend, cfg: ArrayConfig, layer, ql, act: np.ndarray, last: bool):
    """One GEMM layer on the backend (scheduled for the batch at hand): its output in the
    layer's layout and its record."""
    batch = act.shape[0]
    layer = dataclasses.replace(layer, in_shape=(batch, *layer.in_shape[1:]),
                                out_shape=(batch, *layer.out_shape[1:]))
    sched = schedule_layer(layer, cfg)
    t = sched.tiling
    x = _layer_input(act, layer)
    in_memory = getattr(backend, "in_memory", False)   # the memory-mapped top (sim.host)
    asm = assemble_layer(cfg, t, x, ql.weight, bias=ql.bias, multiplier=ql.multiplier,
                         shift=ql.shift, raw=last, in_memory=in_memory)
    run = await (backend.run(asm.program, asm.data_in, asm.memory) if in_memory
                 else backend.run(asm.program, asm.data_in))
    y = asm.collect(run.outputs)                      # (P, all groups' columns)
    if last:  # the classifier's int16 requantization happens on the host
        y = nm.requantize(y, ql.multiplier.ravel(), ql.shift.ravel(), out_width=ql.out_width)
    groups, _, cols = ql.weight.shape
    out = quant.gemm_output(y.reshape(-1, groups, cols).transpose(1, 0, 2), layer)
    # the report's own model (block-memoised, from the tiling alone): what `sparsa report`
    # prints for this layer, and the counters its energy actions come from
    expected = {**tiling_counts(cfg, t, raw=last),
                "gated_macs": layer_gated_macs(cfg, t, x, ql.weight)}
    diffs = {k: run.counters.get(k, 0) - v for k, v in expected.items()
             if run.counters.get(k) != v}
    g = layer.gemm
    record = LayerRecord(
        name=layer.name, gemm=f"{g.p}x{g.k}x{g.cols}" + (f" g{g.groups}" if g.groups > 1 else ""),
        pattern=sched.pattern, instructions=len(asm.program), measured=run.cycles,
        predicted=layer_top_cycles(cfg, t, raw=last) if in_memory
        else program_cycles(cfg, t, raw=last), counters_match=not diffs,
        counter_diffs=diffs, macs=expected["macs"], gated_macs=run.counters.get("gated_macs", 0),
        gated_predicted=expected["gated_macs"], act_density=density_of(x),
        **_energies(cfg, t, expected, raw=last))
    return out, record


async def run_model(backend, cfg: ArrayConfig, name: str, qgraph, x: np.ndarray,
                    labels: np.ndarray, *, progress=None) -> ModelRun:
    """Batch inference of ``x`` with every GEMM on ``backend``; the same network through the
    golden integer forward pass (:func:`sparsa.sw.quant.forward_int`) is the reference."""
    graph = qgraph.graph
    act = quant.quantize_input(qgraph, x)
    gemm_layers = [i for i, lay in enumerate(graph.layers) if lay.has_static_weight]
    records: list[LayerRecord] = []
    for i, layer in enumerate(graph.layers):
        if not layer.has_static_weight:
            act = quant.host_layer(act, layer)
            continue
        act, record = await _run_layer(backend, cfg, layer, qgraph.layers[i], act,
                                       last=i == gemm_layers[-1])
        records.append(record)
        if progress is not None:
            progress(records[-1])
    reference = quant.forward_int(qgraph, x)
    return ModelRun(model=name, backend=backend.name, images=len(x),
                    accuracy=quant.accuracy(act, labels),
                    golden_accuracy=quant.accuracy(reference, labels),
                    bit_exact=bool(np.array_equal(act, reference)), layers=records)
