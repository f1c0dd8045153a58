"""Runs a quantized, pruned network on an accelerator backend, layer by layer.

The host does what the accelerator does not: im2col, pooling, ReLU, flatten (through
:mod:`sparsa.sw.quant`'s helpers) and the classifier's final int16 requantization. Every GEMM layer
is scheduled and assembled (:mod:`sparsa.sw.assemble`) and runs on the backend; per layer the run
records the measured cycles against the ones ``sparsa report``'s cost model
(:mod:`sparsa.sw.cost`) predicts from the tiling, and the activity counters against that model's
counts (from which the report's energy actions are computed). The data-dependent counter
``gated_macs`` (products whose selected activation is zero, see :mod:`sparsa.sw.activity`) is
compared with :func:`~sparsa.sw.activity.gemm_gated_macs`, predicted from the layer's int8 data.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sparsa import nm
from sparsa.config import ArrayConfig
from sparsa.sw import quant
from sparsa.sw.activity import density_of, gemm_gated_macs
from sparsa.sw.assemble import assemble_gemm
from sparsa.sw.cost import actions_from_counts, program_cycles, tiling_counts
from sparsa.sw.energy import energy_of, load_table
from sparsa.sw.schedule import layer_runs_sparse

__all__ = ["LayerRecord", "ModelRun", "prepare_model", "run_model"]


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


@dataclass(frozen=True)
class ModelRun:
    model: str
    backend: str
    images: int
    accuracy: float
    golden_accuracy: float
    bit_exact: bool
    layers: list[LayerRecord]

    @property
    def measured(self) -> int:
        return sum(r.measured for r in self.layers)

    @property
    def predicted(self) -> int:
        return sum(r.predicted for r in self.layers)

    def total(self, field: str):
        """Sum of a :class:`LayerRecord` field over the layers."""
        return sum(getattr(r, field) for r in self.layers)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "measured": self.measured,
                           "predicted": self.predicted})

    @classmethod
    def from_json(cls, text: str) -> ModelRun:
        values = json.loads(text)
        values.pop("measured"), values.pop("predicted")
        values["layers"] = [LayerRecord(**r) for r in values["layers"]]
        return cls(**values)


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


def _energies(cfg: ArrayConfig, counts: dict[str, int], *, raw: bool) -> dict[str, float]:
    """A layer's energy (default table) from its predicted counts, without and with gating."""
    actions = actions_from_counts(cfg, counts, raw=raw)
    table = load_table()
    return {"energy_pj": energy_of(actions, cfg, table).total,
            "energy_gated_pj": energy_of(actions, cfg, table,
                                         gated_macs=counts["gated_macs"]).total}


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
        ql = qgraph.layers[i]
        last = i == gemm_layers[-1]
        cols = quant.gemm_input(act, layer)            # (groups, P, K)
        sparse = layer_runs_sparse(layer, cfg)
        outs, measured, predicted, instructions = [], 0, 0, 0
        diffs: dict[str, int] = {}
        totals: dict[str, int] = {}     # predicted counts
        gated = 0
        for g in range(cols.shape[0]):
            asm = assemble_gemm(cfg, cols[g], ql.weight[g], sparse=sparse, bias=ql.bias[g],
                                multiplier=ql.multiplier[g], shift=ql.shift[g], raw=last)
            run = await backend.run(asm.program, asm.data_in)
            y = asm.collect(run.outputs)
            if last:  # the classifier's int16 requantization happens on the host
                y = nm.requantize(y, ql.multiplier[g], ql.shift[g], out_width=ql.out_width)
            outs.append(y)
            measured += run.cycles
            # the report's own model (block-memoised, from the tiling alone): what `sparsa
            # report` prints for this GEMM, and the counters its energy actions come from
            predicted += program_cycles(cfg, asm.tiling, raw=last)
            instructions += len(asm.program)
            expected = {**tiling_counts(cfg, asm.tiling, raw=last),
                        "gated_macs": gemm_gated_macs(cfg, cols[g], ql.weight[g], sparse=sparse)}
            for k, v in expected.items():
                if run.counters.get(k) != v:
                    diffs[k] = diffs.get(k, 0) + run.counters.get(k, 0) - v
                totals[k] = totals.get(k, 0) + v
            gated += run.counters.get("gated_macs", 0)
        act = quant.gemm_output(np.stack(outs), layer)
        groups, p, k = cols.shape
        records.append(LayerRecord(
            name=layer.name, gemm=f"{p}x{k}x{ql.weight.shape[2]}" + (
                f" g{groups}" if groups > 1 else ""),
            pattern=f"{cfg.n}:{cfg.m}" if sparse else "dense", instructions=instructions,
            measured=measured, predicted=predicted, counters_match=not diffs,
            counter_diffs=diffs, macs=totals["macs"], gated_macs=gated,
            gated_predicted=totals["gated_macs"], act_density=density_of(cols),
            **_energies(cfg, totals, raw=last)))
        if progress is not None:
            progress(records[-1])
    reference = quant.forward_int(qgraph, x)
    return ModelRun(model=name, backend=backend.name, images=len(x),
                    accuracy=quant.accuracy(act, labels),
                    golden_accuracy=quant.accuracy(reference, labels),
                    bit_exact=bool(np.array_equal(act, reference)), layers=records)
