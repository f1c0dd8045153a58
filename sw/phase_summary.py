"""What a reader asks of an LLM phase (:mod:`sparsa.sw.phases`): the :class:`PhaseSummary` of a
phase report, its figures as sentences for the terminal and Markdown summaries, and as JSON."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .model_report import ModelReport, si

__all__ = ["PhaseSide", "PhaseSummary", "phase_lines", "phase_to_dict", "workload_lines"]


@dataclass(frozen=True)
class PhaseSide:
    """One design's (N:M or dense) cycles and energy over the phase."""

    prefill_cycles: int
    decode_cycles: int              # all decode steps
    decode_stall_cycles: int        # of which DRAM stalls
    decode_weight_bound_cycles: int  # in weight GEMMs whose P rows < the weight-load period
    decode_macs: int
    prefill_energy_pj: float
    decode_energy_pj: float         # KV-cache writes included


@dataclass(frozen=True)
class PhaseSummary:
    """What a reader asks of an LLM phase; cycles are array clock cycles."""

    phase: str
    batch: int
    seq: int
    context: int                    # decode: the cache length; generate: the last step's
    tokens: int                     # decode steps (decode: 1, prefill: 0)
    clock_mhz: float
    multipliers: int
    tile_period: int                # beats to load a weight tile
    kv_bytes_per_token: int         # per sequence, all decoder layers, K and V
    kv_read_bytes: int
    kv_write_bytes: int
    kv_cache_bytes: int             # the cache at the end
    design: PhaseSide
    baseline: PhaseSide
    # The prefill's attention: causal (a decoder's: its lower triangle, the score GEMM in
    # squares of score_block queries x keys, the context GEMM in blocks of context_block
    # queries) or full; its MACs as costed and those of the full square GEMMs.
    causal: bool = False
    score_block: int = 0
    context_block: int = 0
    attention_macs: int = 0
    full_attention_macs: int = 0

    def seconds(self, cycles: int) -> float:
        return cycles / (self.clock_mhz * 1e6)

    def ttft_s(self, side: PhaseSide) -> float:
        """Time to first token: the prefill."""
        return self.seconds(side.prefill_cycles)

    def per_token_s(self, side: PhaseSide) -> float:
        """Mean latency of one decode step (every sequence of the batch gets a token)."""
        return self.seconds(side.decode_cycles) / self.tokens if self.tokens else 0.0

    def total_s(self, side: PhaseSide) -> float:
        return self.seconds(side.prefill_cycles + side.decode_cycles)

    def tokens_per_s(self, side: PhaseSide) -> float:
        """Decoded tokens per second over the batch."""
        return self.batch * self.tokens / self.seconds(side.decode_cycles) if self.tokens else 0.0

    def energy_per_token_pj(self, side: PhaseSide) -> float:
        return side.decode_energy_pj / (self.batch * self.tokens) if self.tokens else 0.0

    def decode_utilization(self, side: PhaseSide) -> float:
        return side.decode_macs / (side.decode_cycles * self.multipliers) \
            if side.decode_cycles else 0.0

    @property
    def per_token_speedup(self) -> float:
        return self.per_token_s(self.baseline) / self.per_token_s(self.design)

    def findings(self) -> list[str]:
        """Why the array is under-used in decode, and how much of the time is memory-bound."""
        if not self.tokens:
            return []
        d = self.design
        return [
            f"decode uses {self.decode_utilization(d):.1%} of the array: P = batch = "
            f"{self.batch} row(s) per weight tile, whose load takes {self.tile_period} beats",
            f"memory-bound share of decode: {d.decode_stall_cycles / d.decode_cycles:.1%} DRAM "
            f"stalls, {d.decode_weight_bound_cycles / d.decode_cycles:.1%} bound by weight-tile "
            "loads",
        ]


def phase_lines(p: PhaseSummary) -> list[str]:
    """The phase's figures as short sentences (N:M first, the dense baseline in brackets)."""
    d, b = p.design, p.baseline
    lines = []
    if p.phase in ("prefill", "generate"):
        lines.append(f"time to first token {si(p.ttft_s(d), 's')} (dense "
                     f"{si(p.ttft_s(b), 's')}): prefill of {p.seq} tokens x batch {p.batch}")
        lines.append(_attention_line(p))
    if p.tokens:
        lines += [f"per-token latency {si(p.per_token_s(d), 's')} (dense "
                  f"{si(p.per_token_s(b), 's')}), {p.per_token_speedup:.3f}x; "
                  f"{p.tokens_per_s(d):.3g} tokens/s (dense {p.tokens_per_s(b):.3g})",
                  f"energy per token {si(p.energy_per_token_pj(d) * 1e-12, 'J')} (dense "
                  f"{si(p.energy_per_token_pj(b) * 1e-12, 'J')})"]
    if p.phase == "generate":
        lines.append(f"total {si(p.total_s(d), 's')} (dense {si(p.total_s(b), 's')}): the exact "
                     f"sum of {p.tokens} decode steps")
    lines += [f"KV cache {si(p.kv_bytes_per_token, 'B')}/token, {si(p.kv_cache_bytes, 'B')} at "
              f"context {p.context}",
              f"KV-cache traffic: reads {si(p.kv_read_bytes, 'B')} in the attention GEMMs, "
              f"writes {si(p.kv_write_bytes, 'B')} on top of the layers' (energy included)"]
    return lines + p.findings()


def _attention_line(p: PhaseSummary) -> str:
    share = f"{si(p.attention_macs)} MACs"
    if not p.causal:
        return f"prefill attention full ({share}): the model's attention is not causal"
    return (f"prefill attention causal: the score GEMM as {p.score_block}x{p.score_block} "
            f"query x key squares on and below the diagonal, the context GEMM in blocks of "
            f"{p.context_block} queries over the keys each sees; {share}, "
            f"{p.attention_macs / p.full_attention_macs:.1%} of the full GEMMs'")


def phase_to_dict(p: PhaseSummary) -> dict[str, Any]:
    """The summary and its derived figures, JSON-ready."""
    out = dataclasses.asdict(p)
    for name, side in (("design", p.design), ("baseline", p.baseline)):
        out[name].update(ttft_s=p.ttft_s(side), per_token_s=p.per_token_s(side),
                         total_s=p.total_s(side), tokens_per_s=p.tokens_per_s(side),
                         energy_per_token_pj=p.energy_per_token_pj(side),
                         decode_utilization=p.decode_utilization(side))
    out["per_token_speedup"] = p.per_token_speedup if p.tokens else None
    out["findings"] = p.findings()
    return out


def workload_lines(report: ModelReport, prefix: str = "") -> list[str]:
    """The workload, a note when weights are absent, the routing of a mixture of experts and
    the LLM phase's figures."""
    lines = [f"Workload: {report.workload_text}." if report.workload else
             "Workload: as the model file fixes it."]
    if report.weights_absent:
        lines.append("Weights absent: the file's external weight data is missing (shapes only, "
                     "which costing needs).")
    if report.workload.get("experts"):
        e, k = report.workload["experts"], report.workload["top_k"]
        lines.append(f"Mixture of experts: each token runs on {k} of {e} experts, routing "
                     f"assumed balanced (of T tokens each expert gets floor or ceil of T x {k} / "
                     f"{e}; an expert with none is not run; decode: T = batch).")
    if report.phase is not None:
        lines += [line[:1].upper() + line[1:] + "." for line in phase_lines(report.phase)]
    if report.phase is not None and report.phase.phase == "generate":
        lines.append("Each layer sums the prefill and every decode step; its GEMM shape is the "
                     "prefill's.")
    return [prefix + line for line in lines]
