"""LLM inference phases: prefill, decode with a KV cache, and generation.

The graph of a decoder model traced for ``batch`` (B) sequences of ``seq`` (S) tokens is the
**prefill** of S tokens, except that the LM head computes only the last token's logits (what
generation needs). Its GEMMs are rewritten, not re-traced, for the other phases:

* **decode** at context C: one new token per sequence. Every weight GEMM streams ``P = B`` rows
  (so a weight-stationary array loads each weight tile for B beats of work). The new token's K
  and V are written to the KV cache, then the attention score GEMM (``q . K^T``) and context GEMM
  (``p . V``) run against the cache of C tokens, which is read from memory: in the accelerator's
  terms K^T and V are the stationary operand, so their bytes are the weight-tile loads of those
  GEMMs. Grouped-query (and multi-query) attention is handled: the ``H / H_kv`` query heads that
  share a key/value head are the P rows of one GEMM against that head's cache (``groups = B x
  H_kv``), so each cached head is read once per step. Attention GEMMs run dense. A
  mixture of experts' expert projection runs the rows routed to it (balanced routing,
  :mod:`sparsa.models.moe`): its share of the ``B`` tokens' ``B x top_k`` pairs; an expert with
  none is left out of the step.
* **generate**: the prefill, then T decode steps; step ``t`` (0-based) reads a cache of
  ``C = S + t + 1`` tokens (the prompt, the tokens decoded before and its own). The result is the
  exact sum of every step's cost; each distinct GEMM shape is costed once (weight GEMMs are the
  same at every step, the attention GEMMs' programs change only when their column tiles or K
  passes do: :func:`sparsa.sw.cost.program_tiling`).

KV-cache bytes (``cfg.act_width`` elements): ``2 x decoder_layers x H_kv x head_dim`` per token
and sequence. The writes of new K and V are counted as DRAM traffic (and DRAM energy) on top of
the layers' own traffic; the reads are the attention GEMMs' weight loads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sparsa.config import ArrayConfig
from sparsa.models.graph import Gemm, Layer, LayerGraph, routed_tokens

from . import timing
from .cost import LayerCost
from .energy import Energy, EnergyTable, load_table
from .lower import causal_blocks, causal_gemms
from .model_report import LayerReport, ModelReport, build_report, dense_baseline, layer_report
from .phase_summary import PhaseSide, PhaseSummary
from .prune import PrunePolicy

__all__ = ["PHASES", "WORKLOAD_LIMITS", "PhaseError", "decode_graph", "phase_report",
           "prefill_graph"]

PHASES = ("prefill", "decode", "generate")
# Workload sizes beyond any real use (probably typos), refused up front by the command line.
WORKLOAD_LIMITS = {"batch": 1 << 16, "seq": 1 << 20, "context": 1 << 22, "tokens": 1 << 17}


class PhaseError(ValueError):
    """A phase cannot be applied to this model (not a decoder transformer, bad sizes)."""


def _attention_meta(graph: LayerGraph) -> tuple[int, int, int, int, int, int]:
    """(batch, seq, heads, kv_heads, head_dim, decoder_layers) of a decoder graph."""
    meta = graph.meta
    needed = ("batch", "seq", "heads", "kv_heads", "head_dim", "decoder_layers")
    if any(not isinstance(meta.get(k), int) or meta[k] < 1 for k in needed):
        raise PhaseError(f"model {graph.name!r}: LLM phases need a transformer text model "
                         "traced by sparsa (a zoo LLM or a Hugging Face config), with its "
                         "batch, sequence length and attention heads known")
    b, s, h, kv, d, n = (int(meta[k]) for k in needed)
    if h % kv:
        raise PhaseError(f"model {graph.name!r}: {h} attention heads do not share {kv} "
                         "key/value heads evenly")
    return b, s, h, kv, d, n


def _roles(graph: LayerGraph) -> list[str | None]:
    """For each GEMM layer: "scores", "context" (attention) or None (a weight GEMM)."""
    b, s, h, _, d, n = _attention_meta(graph)
    roles: list[str | None] = []
    expect = "scores"
    for layer in graph.gemm_layers():
        if layer.kind != "matmul":
            roles.append(None)
            continue
        g = layer.gemm
        want = (b * h, s, d, s) if expect == "scores" else (b * h, s, s, d)
        if (g.groups, g.p, g.k, g.cols) != want:
            raise PhaseError(f"model {graph.name!r}: layer {layer.name!r} is not the attention "
                             f"{expect} GEMM expected (groups x P x K x cols {want}, found "
                             f"{(g.groups, g.p, g.k, g.cols)})")
        roles.append(expect)
        expect = "context" if expect == "scores" else "scores"
    if roles.count("scores") != n or expect != "scores":
        raise PhaseError(f"model {graph.name!r}: expected {n} attention score/context pairs, "
                         f"found {roles.count('scores')} score and {roles.count('context')} "
                         "context GEMMs")
    return roles


def _matmul(name: str, g: Gemm, role: str) -> Layer:
    """An attention GEMM of shape ``g`` (``groups`` independent ``P x K . K x cols``)."""
    return Layer(name=name, kind="matmul", in_shape=(g.groups, g.p, g.k),
                 out_shape=(g.groups, g.p, g.cols), nm=None,
                 attrs={"k": g.k, "groups": g.groups, "rhs_shape": (g.groups, g.k, g.cols),
                        "role": role})


def _attention_layer(layer: Layer, role: str, meta: Mapping[str, Any], context: int) -> Layer:
    b, h, kv, d = meta["batch"], meta["heads"], meta["kv_heads"], meta["head_dim"]
    groups, rep = b * kv, h // kv
    k, cols = (d, context) if role == "scores" else (context, d)
    return _matmul(layer.name, Gemm(p=rep, k=k, cols=cols, groups=groups), role)


def _decode_layer(layer: Layer, rows: int) -> Layer:
    out = layer.out_shape[-1]
    return dataclasses.replace(layer, in_shape=(rows, 1, layer.in_shape[-1]),
                               out_shape=(rows, 1, out))


def prefill_graph(graph: LayerGraph) -> LayerGraph:
    """The prefill's layers: as traced, but the LM head (``meta["lm_head"]``) computes only the
    last token's logits of each sequence, as generation does (P = batch)."""
    head, b = graph.meta.get("lm_head"), graph.meta["batch"]
    layers = tuple(_decode_layer(x, b) if x.name == head and x.kind == "linear" else x
                   for x in graph.layers)
    return dataclasses.replace(graph, layers=layers)


def _expert_rows(layer: Layer, tokens: int) -> int | None:
    """Rows an expert projection runs for ``tokens`` tokens (balanced routing), or None when
    ``layer`` is not one."""
    a = layer.attrs
    if layer.kind != "linear" or "expert" not in a:
        return None
    return routed_tokens(tokens, a["top_k"], a["experts"])[a["expert"]]


def decode_graph(graph: LayerGraph, context: int) -> LayerGraph:
    """The GEMM layers of one decode step at ``context`` (see the module notes); an expert that
    no token of the step is routed to is left out."""
    roles = _roles(graph)
    b, s = graph.meta["batch"], graph.meta["seq"]
    layers = []
    for layer, role in zip(graph.gemm_layers(), roles, strict=True):
        rows = _expert_rows(layer, b)
        if role is not None:
            layers.append(_attention_layer(layer, role, graph.meta, context))
        elif rows is not None and layer.gemm.p == _expert_rows(layer, b * s):
            if rows:
                layers.append(_decode_layer(layer, rows))
        elif layer.kind == "linear" and layer.gemm.p == b * s:
            layers.append(_decode_layer(layer, b))
        else:
            raise PhaseError(f"model {graph.name!r}: layer {layer.name!r} ({layer.kind}, "
                             f"P={layer.gemm.p}) is not a per-token GEMM of {b}x{s} tokens; "
                             "LLM phases need a decoder model")
    meta = {**graph.meta, "phase": "decode", "context": context}
    return dataclasses.replace(graph, layers=tuple(layers), meta=meta)


def _scale(obj: Any, n: int) -> Any:
    """A cost or energy dataclass with every number multiplied by ``n``."""
    return type(obj)(**{f.name: (_scale(v, n) if dataclasses.is_dataclass(v) else v * n)
                        for f in dataclasses.fields(obj) for v in (getattr(obj, f.name),)})


@dataclass(frozen=True)
class _Sum:
    """The decode steps' part of one layer: costs, energies and multiplies summed."""

    sparse: LayerCost
    dense: LayerCost
    energy: Energy
    dense_energy: Energy
    macs: int

    @classmethod
    def of(cls, x: LayerReport, n: int = 1) -> _Sum:
        return cls(_scale(x.sparse, n), _scale(x.dense, n), _scale(x.energy, n),
                   _scale(x.dense_energy, n), x.macs * n)

    def __add__(self, other: _Sum) -> _Sum:
        return _Sum(self.sparse + other.sparse, self.dense + other.dense,
                    self.energy + other.energy, self.dense_energy + other.dense_energy,
                    self.macs + other.macs)


def _attention_sums(graph: LayerGraph, roles: list[str | None], cfg: ArrayConfig,
                    table: EnergyTable, memo: dict, tokens: int,
                    progress: Callable[[int, int], None] | None) -> dict[str, _Sum]:
    """Each attention role's cost summed over the decode steps (the same in every layer)."""
    layers = graph.gemm_layers()
    first = {role: layers[roles.index(role)] for role in ("scores", "context")}
    dense_cfg = dense_baseline(cfg)
    sums: dict[str, _Sum] = {}
    for t in range(tokens):
        context = graph.meta["seq"] + t + 1
        for role, layer in first.items():
            x = layer_report(_attention_layer(layer, role, graph.meta, context), cfg, dense_cfg,
                             table, memo)
            sums[role] = sums[role] + _Sum.of(x) if role in sums else _Sum.of(x)
        if progress is not None:
            progress(t + 1, tokens)
    return sums


def _generation_layers(prefill: ModelReport, step: ModelReport, roles: list[str | None],
                       sums: dict[str, _Sum], tokens: int) -> tuple[LayerReport, ...]:
    """Each layer's prefill plus its decode steps; the GEMM shape shown is the prefill's (an
    expert no decode step runs has its prefill only)."""
    steps = {x.name: x for x in step.layers}
    out = []
    for pre, role in zip(prefill.layers, roles, strict=True):
        if role is None and pre.name not in steps:
            out.append(pre)
            continue
        d = sums[role] if role is not None else _Sum.of(steps[pre.name], tokens)
        out.append(dataclasses.replace(
            pre, sparse=pre.sparse + d.sparse, dense=pre.dense + d.dense,
            energy=pre.energy + d.energy, dense_energy=pre.dense_energy + d.dense_energy,
            total_macs=pre.macs + d.macs))
    return tuple(out)


def _side(prefill: ModelReport | None, decode: list[tuple[LayerReport, _Sum]], dense: bool,
          kv_write_pj: tuple[float, float], tile_period: int) -> PhaseSide:
    """``kv_write_pj``: the DRAM energy of the prefill's and the decode steps' KV writes."""
    def cost(x: LayerReport | _Sum) -> LayerCost:
        return x.dense if dense else x.sparse

    def energy(x: LayerReport | _Sum) -> float:
        return (x.dense_energy if dense else x.energy).total

    costs = [cost(s) for _, s in decode]
    return PhaseSide(
        prefill_cycles=sum(cost(x).cycles.total for x in prefill.layers) if prefill else 0,
        decode_cycles=sum(c.cycles.total for c in costs),
        decode_stall_cycles=sum(c.cycles.stall for c in costs),
        decode_weight_bound_cycles=sum(cost(s).cycles.total for x, s in decode
                                       if x.kind == "linear" and x.min_beats < tile_period),
        decode_macs=sum(c.actions.macs_required for c in costs),
        prefill_energy_pj=(sum(energy(x) for x in prefill.layers) + kv_write_pj[0]
                           if prefill else 0.0),
        decode_energy_pj=(sum(energy(s) for _, s in decode) + kv_write_pj[1]) if decode else 0.0)


@dataclass(frozen=True)
class _Request:
    graph: LayerGraph
    cfg: ArrayConfig
    table: EnergyTable
    policy: PrunePolicy | None
    table_name: str
    progress: Callable[[int, int], None] | None

    def build(self, graph: LayerGraph, memo: dict) -> ModelReport:
        return build_report(graph, self.cfg, table=self.table, policy=self.policy,
                            table_name=self.table_name, memo=memo)


@dataclass(frozen=True)
class _Causal:
    """A causal prefill's attention: each role's report over the lower triangle, the query
    block it was split with, and the MACs of the full (square) GEMM."""

    reports: dict[str, LayerReport]
    blocks: dict[str, int]
    full_macs: dict[str, int]


def _causal_role(layer: Layer, role: str, req: _Request, memo: dict) -> tuple[LayerReport, int]:
    """The lower triangle of attention GEMM ``layer`` as the programs of
    :func:`~sparsa.sw.lower.causal_gemms`, with the query block (of those tried) that gives the
    fewest N:M cycles; the report shows the full GEMM's shape."""
    cfgs = (req.cfg, dense_baseline(req.cfg))
    best = None
    for block in causal_blocks(cfgs, layer.gemm.p, role):
        parts = [(layer_report(_matmul(layer.name, g, role), *cfgs, req.table, memo), n)
                 for g, n in causal_gemms(layer.gemm, role, block)]
        total = sum((_Sum.of(x, n) for x, n in parts[1:]), _Sum.of(*parts[0]))
        if best is None or total.sparse.cycles.total < best[0].sparse.cycles.total:
            best = total, parts, block
    total, parts, block = best
    g, largest = layer.gemm, max(parts, key=lambda xn: xn[0].macs)[0]
    return dataclasses.replace(
        largest, name=layer.name, p=g.p, k=g.k, cols=g.cols, groups=g.groups,
        sparse=total.sparse, dense=total.dense, energy=total.energy,
        dense_energy=total.dense_energy, total_macs=total.macs,
        min_beats=min(x.min_beats for x, _ in parts)), block


def _prefill(req: _Request, memo: dict) -> tuple[ModelReport, _Causal | None]:
    """The prefill's report. A causal model's attention GEMMs are costed over their lower
    triangle (:func:`_causal_role`, once per role: every decoder layer's are alike)."""
    graph = prefill_graph(req.graph)
    if not graph.meta.get("causal"):
        return req.build(graph, memo), None
    roles = _roles(req.graph)
    gemms = graph.gemm_layers()
    attention = {x.name for x, role in zip(gemms, roles, strict=True) if role}
    report = req.build(dataclasses.replace(
        graph, layers=tuple(x for x in graph.layers if x.name not in attention)), memo)
    causal = _Causal({}, {}, {})
    for role in ("scores", "context"):
        layer = gemms[roles.index(role)]
        causal.reports[role], causal.blocks[role] = _causal_role(layer, role, req, memo)
        causal.full_macs[role] = layer.gemm.macs
    weights = iter(report.layers)
    layers = tuple(dataclasses.replace(causal.reports[role], name=x.name) if role
                   else next(weights) for x, role in zip(gemms, roles, strict=True))
    return dataclasses.replace(report, layers=layers), causal


def _attention_fields(req: _Request, prefill: ModelReport | None,
                      causal: _Causal | None) -> dict[str, Any]:
    """The summary's prefill attention fields (none without a prefill)."""
    if prefill is None:
        return {}
    roles = _roles(req.graph)
    full = sum(x.gemm.macs for x, role in zip(req.graph.gemm_layers(), roles, strict=True)
               if role)
    costed = sum(x.macs for x, role in zip(prefill.layers, roles, strict=True) if role)
    blocks = causal.blocks if causal else {}
    return {"causal": causal is not None, "score_block": blocks.get("scores", 0),
            "context_block": blocks.get("context", 0), "attention_macs": costed,
            "full_attention_macs": full}


def _summary(req: _Request, phase: str, context: int, tokens: int,
             parts: tuple[ModelReport | None, list[tuple[LayerReport, _Sum]]],
             causal: _Causal | None = None) -> PhaseSummary:
    b, s, _, kv, d, n = _attention_meta(req.graph)
    per_token = 2 * n * kv * d * -(-req.cfg.act_width // 8)
    if phase == "prefill":
        read, cached, writes = 0, b * s * per_token, (b * s * per_token, 0)
    elif phase == "decode":
        read, cached, writes = b * context * per_token, b * context * per_token, (0, b * per_token)
    else:
        read = b * per_token * (tokens * s + tokens * (tokens + 1) // 2)
        cached, writes = b * (s + tokens) * per_token, (b * s * per_token, b * tokens * per_token)
    pj = req.table.dram_64b_pj / 8
    period = timing.array_timing(req.cfg).tile_period
    sides = [_side(parts[0], parts[1], dense, (writes[0] * pj, writes[1] * pj), period)
             for dense in (False, True)]
    return PhaseSummary(
        phase=phase, batch=b, seq=s, context=context, tokens=tokens,
        clock_mhz=req.cfg.clock_mhz, multipliers=req.cfg.multipliers, tile_period=period,
        kv_bytes_per_token=per_token, kv_read_bytes=read, kv_write_bytes=sum(writes),
        kv_cache_bytes=cached, design=sides[0], baseline=sides[1],
        **_attention_fields(req, parts[0], causal))


def _generate(req: _Request, tokens: int) -> ModelReport:
    memo: dict = {}
    roles = _roles(req.graph)
    seq = req.graph.meta["seq"]
    prefill, causal = _prefill(req, memo)
    step = req.build(decode_graph(req.graph, seq + 1), memo)
    sums = _attention_sums(req.graph, roles, req.cfg, req.table, memo, tokens, req.progress)
    role_of = {x.name: role for x, role in zip(req.graph.gemm_layers(), roles, strict=True)}
    decode = [(x, sums[role_of[x.name]] if role_of[x.name] else _Sum.of(x, tokens))
              for x in step.layers]
    summary = _summary(req, "generate", seq + tokens, tokens, (prefill, decode), causal)
    return dataclasses.replace(
        prefill, layers=_generation_layers(prefill, step, roles, sums, tokens), phase=summary,
        workload={**prefill.workload, "phase": "generate", "tokens": tokens})


def phase_report(graph: LayerGraph, cfg: ArrayConfig, phase: str, *,
                 context: int | None = None, tokens: int = 0, table: EnergyTable | None = None,
                 policy: PrunePolicy | None = None, table_name: str = "",
                 progress: Callable[[int, int], None] | None = None) -> ModelReport:
    """The report of ``phase`` of decoder model ``graph`` (traced for its prefill): prefill,
    decode at ``context`` (default: the traced sequence length) or generate ``tokens`` tokens.
    Its :attr:`ModelReport.phase` holds the
    :class:`~sparsa.sw.phase_summary.PhaseSummary`."""
    if phase not in PHASES:
        raise PhaseError(f"phase must be one of {', '.join(PHASES)}, not {phase!r}")
    for value, what, low in ((context, "context", 1), (tokens, "tokens", 0)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < low):
            raise PhaseError(f"{what} must be an integer of at least {low}, not {value!r}")
    if phase == "generate" and tokens < 1:
        raise PhaseError(f"phase generate needs at least one token to decode, not {tokens!r}")
    req = _Request(graph, cfg, table or load_table(), policy, table_name, progress)
    seq = _attention_meta(graph)[1]
    if phase == "generate":
        return _generate(req, tokens)
    if phase == "prefill":
        report, causal = _prefill(req, {})
        summary = _summary(req, phase, seq, 0, (report, []), causal)
        return dataclasses.replace(report, phase=summary,
                                   workload={**report.workload, "phase": "prefill"})
    context = context or seq
    report = req.build(decode_graph(graph, context), {})
    summary = _summary(req, phase, context, 1, (None, [(x, _Sum.of(x)) for x in report.layers]))
    return dataclasses.replace(report, phase=summary)
