"""LLM phases: decode rewrites every GEMM for one token against a KV cache (grouped-query heads
folded), generate is exactly the prefill plus the sum of its decode steps, and the KV-cache
bytes follow from the shapes. Also: costs are shared between tilings with equal programs, and
periodic runs of blocks are skipped exactly."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest

from sparsa.config import ArrayConfig, preset
from sparsa.models.graph import Gemm, Layer
from sparsa.models.load import load_graph
from sparsa.sw.accel_timing import program_timing
from sparsa.sw.assemble import gemm_instructions
from sparsa.sw.cost import (
    block_runs,
    direct_cost,
    layer_cost,
    program_cycles,
    program_tiling,
)
from sparsa.sw.energy import load_table
from sparsa.sw.model_report import build_report, dense_baseline, layer_report
from sparsa.sw.phase_summary import phase_lines, workload_lines
from sparsa.sw.phases import PhaseError, decode_graph, phase_report, prefill_graph
from sparsa.sw.schedule import LayerSchedule, ScheduleError, candidate_tilings, schedule_gemm

TINY = {"model_type": "mistral", "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 2,
        "vocab_size": 100, "max_position_embeddings": 256}
CFG = preset("tiny")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("hf") / "config.json"
    path.write_text(json.dumps(TINY))
    return load_graph(str(path), batch=2, seq=12)


def test_decode_graph_shapes(tiny):
    g = decode_graph(tiny, context=20)
    assert g.meta["phase"] == "decode"
    assert g.meta["context"] == 20
    linears = [x for x in g.layers if x.kind == "linear"]
    assert linears
    assert all(x.gemm.p == 2 for x in linears)
    scores = [x.gemm for x in g.layers if x.attrs.get("role") == "scores"]
    context = [x.gemm for x in g.layers if x.attrs.get("role") == "context"]
    # 2 sequences x 2 key/value heads; the 4 query heads of a group are the P rows
    assert scores == [Gemm(p=4, k=8, cols=20, groups=4)] * 2
    assert context == [Gemm(p=4, k=20, cols=8, groups=4)] * 2
    assert [x.name for x in g.layers] == [x.name for x in tiny.gemm_layers()]


def test_prefill_computes_the_last_tokens_logits_only(tiny):
    traced = {x.name: x.gemm for x in tiny.gemm_layers()}
    pre = {x.name: x.gemm for x in prefill_graph(tiny).gemm_layers()}
    assert traced["lm_head"] == Gemm(p=2 * 12, k=64, cols=100)
    assert pre["lm_head"] == Gemm(p=2, k=64, cols=100)
    assert {k: v for k, v in pre.items() if k != "lm_head"} == \
        {k: v for k, v in traced.items() if k != "lm_head"}


def test_generate_is_prefill_plus_every_decode_step(tiny):
    tokens = 5
    gen = phase_report(tiny, CFG, "generate", tokens=tokens)
    pre = phase_report(tiny, CFG, "prefill")       # causal: test_causal_prefill_attention
    steps = [build_report(decode_graph(tiny, 12 + t + 1), CFG) for t in range(tokens)]
    for i, x in enumerate(gen.layers):
        want = pre.layers[i].sparse.cycles.total + sum(s.layers[i].sparse.cycles.total
                                                       for s in steps)
        assert x.sparse.cycles.total == want, x.name
        dense = pre.layers[i].dense.actions.dram_bytes + sum(
            s.layers[i].dense.actions.dram_bytes for s in steps)
        assert x.dense.actions.dram_bytes == dense, x.name
        assert x.macs == pre.layers[i].macs + sum(s.layers[i].macs for s in steps)
    p = gen.phase
    assert p.design.prefill_cycles == pre.total.cycles.total
    assert p.design.decode_cycles == sum(s.total.cycles.total for s in steps)
    assert p.baseline.decode_cycles == sum(s.dense_total.cycles.total for s in steps)
    assert p.per_token_s(p.design) == pytest.approx(
        p.design.decode_cycles / tokens / (CFG.clock_mhz * 1e6))
    assert gen.workload == {"batch": 2, "seq": 12, "phase": "generate", "tokens": tokens}


def test_multi_query_attention(tmp_path):
    """One key/value head: all query heads of a sequence are the P rows of one GEMM."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**TINY, "num_key_value_heads": 1}))
    g = decode_graph(load_graph(str(path), batch=3, seq=4), context=9)
    scores = {x.gemm for x in g.layers if x.attrs.get("role") == "scores"}
    assert scores == {Gemm(p=8, k=8, cols=9, groups=3)}


def test_kv_cache_bytes(tiny):
    per_token = 2 * 2 * 2 * 8          # K and V x layers x kv heads x head_dim, int8
    d = phase_report(tiny, CFG, "decode", context=30).phase
    assert d.kv_bytes_per_token == per_token
    assert (d.kv_read_bytes, d.kv_write_bytes) == (2 * 30 * per_token, 2 * per_token)
    g = phase_report(tiny, CFG, "generate", tokens=3).phase
    assert g.kv_read_bytes == 2 * per_token * (13 + 14 + 15)
    assert g.kv_cache_bytes == g.kv_write_bytes == 2 * 15 * per_token
    assert d.findings()
    assert "P = batch = 2" in d.findings()[0]


def test_phase_errors(tiny):
    with pytest.raises(PhaseError, match="phase must be"):
        phase_report(tiny, CFG, "chat")
    with pytest.raises(PhaseError, match="token"):
        phase_report(tiny, CFG, "generate", tokens=0)
    with pytest.raises(PhaseError, match="context"):
        phase_report(tiny, CFG, "decode", context=0)
    with pytest.raises(PhaseError, match="LLM phases need"):
        phase_report(load_graph("digits_mlp"), CFG, "decode")


def test_equal_programs_share_costs(node_seed):
    """Tilings that differ only in exact K and column count have the same program: their
    cost is the direct cost of their own program (multiplies required included)."""
    rng = random.Random(node_seed)
    for _ in range(12):
        cfg = ArrayConfig(rows=rng.choice([2, 4]), cols=rng.choice([2, 4]), n=2, m=4,
                          dram_bytes_per_cycle=rng.choice([2, 16]))
        gemm = Gemm(p=rng.randint(1, 40), k=rng.randint(1, 70), cols=rng.randint(1, 30),
                    groups=rng.randint(1, 3))
        sparse = rng.random() < 0.5
        try:
            t = schedule_gemm(gemm, cfg, sparse=sparse)
        except ScheduleError:
            continue
        got = layer_cost(LayerSchedule("x", "linear", "", t, cfg))
        assert got == direct_cost(cfg, t)
        assert program_tiling(t) == program_tiling(
            schedule_gemm(gemm, cfg, sparse=sparse)), "program key is deterministic"


@pytest.mark.parametrize("gemm", [Gemm(p=1, k=16, cols=90, groups=8),
                                  Gemm(p=2, k=24, cols=60, groups=6),
                                  Gemm(p=300, k=24, cols=6, groups=2)])
def test_periodic_runs_equal_the_recurrence(gemm):
    """Long runs of alternating blocks (decode-like: one row, many column tiles) are skipped
    once periodic, and still equal the plain instruction-by-instruction recurrence: the
    scheduled tiling and the candidate with the longest run."""
    cfg = ArrayConfig(rows=2, cols=2, n=2, m=4, act_buffer_kib=1, weight_buffer_kib=1,
                      acc_buffer_kib=1, dram_bytes_per_cycle=3)
    for sparse in (False, True):
        chosen = schedule_gemm(gemm, cfg, sparse=sparse)
        longest = max(candidate_tilings(chosen.low, cfg, gemm=gemm),
                      key=lambda t: max(count for _, count in block_runs(cfg, t)))
        assert max(count for _, count in block_runs(cfg, longest)) > 4, "long runs to skip"
        for t in (chosen, longest):
            prog = list(gemm_instructions(cfg, t))
            for rate in (None, 3):
                assert program_cycles(cfg, t, dram_bytes_per_cycle=rate) == \
                    program_timing(cfg, prog, trace=False, dram_bytes_per_cycle=rate).cycles


MIXTRAL = {**TINY, "model_type": "mixtral", "intermediate_size": 96, "num_local_experts": 3,
           "num_experts_per_tok": 2}


def test_mixture_of_experts_decode_and_generate(tmp_path):
    """Decode at batch 1 routes 1 x 2 (token, expert) pairs: experts 0 and 1 run one row each,
    expert 2 does not run; a step's MACs equal the model's formula. Generate adds each expert's
    decode steps to its prefill (expert 2: its prefill only)."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(MIXTRAL))
    g = load_graph(str(path), batch=1, seq=6)
    step = decode_graph(g, context=9)
    experts = {x.name: x.gemm.p for x in step.layers if ".experts." in x.name}
    assert experts == {f"model.layers.{i}.mlp.experts.{e}.{proj}": 1 for i in range(2)
                       for e in range(2) for proj in ("gate_up_proj", "down_proj")}
    h, inter, heads, kv, hd, vocab, context = 64, 96, 8, 2, 8, 100, 9
    per_layer = (2 * h * h + 2 * h * kv * hd + 2 * heads * context * hd + h * 3
                 + 2 * (h * 2 * inter + inter * h))
    assert step.macs == 2 * per_layer + h * vocab
    report = phase_report(g, CFG, "decode", context=context)
    assert sum(x.macs for x in report.layers) == step.macs
    assert "Mixture of experts: each token runs on 2 of 3 experts" in \
        "\n".join(workload_lines(report))
    tokens = 2
    gen = phase_report(g, CFG, "generate", tokens=tokens)
    pre = {x.name: x for x in phase_report(g, CFG, "prefill").layers}
    dec = {x.name: x for x in report.layers}
    for x in gen.layers:
        if ".experts." in x.name:
            want = pre[x.name].sparse.cycles.total + tokens * (
                dec[x.name].sparse.cycles.total if x.name in dec else 0)
            assert x.sparse.cycles.total == want, x.name
    assert gen.workload["experts"] == 3


def _square_sizes(seq: int, block: int) -> list[int]:
    return [min(block, seq - i) for i in range(0, seq, block)]


def _causal_sum(gemm: Gemm, role: str, block: int, table) -> tuple[int, int, int]:
    """N:M cycles, dense cycles and MACs of the lower triangle's programs, built here: the
    score GEMM as squares (query block i, key block j <= i), the context GEMM as one GEMM per
    query block over the keys up to its last query."""
    sizes, cycles, dense, macs = _square_sizes(gemm.p, block), 0, 0, 0
    for i, rows in enumerate(sizes):
        seen = sum(sizes[:i + 1])
        shapes = ([(rows, gemm.k, keys) for keys in sizes[:i + 1]] if role == "scores"
                  else [(rows, seen, gemm.cols)])
        for p, k, cols in shapes:
            layer = Layer(name="x", kind="matmul", in_shape=(gemm.groups, p, k),
                          out_shape=(gemm.groups, p, cols), attrs={"k": k, "groups": gemm.groups})
            x = layer_report(layer, CFG, dense_baseline(CFG), table)
            cycles, dense = cycles + x.sparse.cycles.total, dense + x.dense.cycles.total
            macs += gemm.groups * p * k * cols
    return cycles, dense, macs


def test_causal_prefill_attention(tmp_path):
    """A decoder's prefill costs its attention's lower triangle: each score and context layer
    equals the sum of its query-block programs built here (the score squares of the size with
    the fewest N:M cycles among whole column tiles doubling up to the context block: 2, 4, 8),
    between half and all of the full GEMM's cycles; weight layers are unchanged. An encoder
    (not causal) keeps its full attention."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(TINY))
    g = load_graph(str(path), batch=1, seq=32)
    table = load_table()
    rep = phase_report(g, CFG, "prefill")
    full = build_report(prefill_graph(g), CFG)
    p = rep.phase
    # 8 query heads; the context block: 32 tokens / 4 blocks, whole 8-channel K passes
    assert (p.causal, p.context_block) == (True, 8)
    squares = {b: _causal_sum(Gemm(p=32, k=8, cols=32, groups=8), "scores", b, table)
               for b in (2, 4, 8)}
    assert p.score_block == min(squares, key=lambda b: squares[b][0])
    sums = {8: squares[p.score_block],
            32: _causal_sum(Gemm(p=32, k=32, cols=8, groups=8), "context", 8, table)}
    for x, f in zip(rep.layers, full.layers, strict=True):
        if f.kind != "matmul":
            assert (x.sparse, x.dense, x.macs) == (f.sparse, f.dense, f.macs), x.name
            continue
        cycles, dense, macs = sums[f.k]
        assert (x.sparse.cycles.total, x.dense.cycles.total, x.macs) == (cycles, dense, macs)
        assert (x.p, x.k, x.cols) == (f.p, f.k, f.cols)
        for got, was in ((cycles, f.sparse.cycles.total), (dense, f.dense.cycles.total),
                         (macs, f.macs)):
            assert 0.5 * was < got < was, x.name
    assert p.attention_macs == 2 * (sums[8][2] + sums[32][2])
    assert "prefill attention causal" in "\n".join(phase_lines(p))
    encoder = dataclasses.replace(g, meta={**g.meta, "causal": False})
    rep = phase_report(encoder, CFG, "prefill")
    assert [x.sparse for x in rep.layers] == [x.sparse for x in full.layers]
    assert not rep.phase.causal
    assert "prefill attention full" in "\n".join(phase_lines(rep.phase))
