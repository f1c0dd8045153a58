"""Scheduler and layer cost: the program computes the GEMM; the block-memoised cycle count
equals the instruction-by-instruction recurrence (which the RTL tests match); action counts
equal independent counts read off the scheduler's operations."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from sparsa import isa
from sparsa.config import ArrayConfig
from sparsa.isa import Opcode
from sparsa.models.graph import Gemm, Layer
from sparsa.sw import timing
from sparsa.sw.accel_timing import program_counts, program_timing
from sparsa.sw.assemble import gemm_instructions
from sparsa.sw.cost import (
    actions_from_counts,
    layer_cost,
    program_cycles,
    tiling_counts,
    weight_row_split,
)
from sparsa.sw.ops import Compute, LoadActs, LoadWeights, Store
from sparsa.sw.schedule import (
    LayerSchedule,
    ScheduleError,
    candidate_tilings,
    iter_block_ops,
    iter_blocks,
    schedule_gemm,
    schedule_layer,
)


def all_ops(tiling) -> list:
    """Every operation of a tiled GEMM, block by block (what the assembler walks)."""
    return [op for block in iter_blocks(tiling) for op in iter_block_ops(tiling, block)]


def random_case(rng: random.Random) -> tuple[ArrayConfig, Gemm, bool]:
    m = rng.choice([1, 2, 4, 8])
    cfg = ArrayConfig(rows=rng.randint(1, 4), cols=rng.randint(1, 5), n=rng.randint(1, m), m=m,
                      act_buffer_kib=1, weight_buffer_kib=rng.choice([1, 2]),
                      acc_buffer_kib=1,
                      dram_bytes_per_cycle=rng.choice([1, 2, 4, 16, 1024]))
    gemm = Gemm(p=rng.randint(1, 60), k=rng.randint(1, 100), cols=rng.randint(1, 12),
                groups=rng.randint(1, 3))
    return cfg, gemm, rng.random() < 0.5


def walk_compute(cfg: ArrayConfig, beats: list[int]) -> int:
    """Cycle by cycle: weight rows load one per cycle (row r of the next tile no earlier than
    ``swap + max(1, cols-2) + r``), a swap beat waits for a full shadow bank, beats stream one per
    cycle, the last output leaves ``latency`` cycles after the last beat. Counted from
    the first weight beat to the last output beat, inclusive."""
    rows, swap_to_load = cfg.rows, max(1, cfg.cols - 2)
    loaded = loaded_tiles = 0
    last_swap = None
    tile = beat = cycle = 0
    last_beat_cycle = 0
    while tile < len(beats):
        sent = False
        if beat > 0:
            sent = True
        elif loaded == rows:  # the swap beat takes the full shadow bank
            last_swap, loaded, sent = cycle, 0, True
        if (loaded < rows and loaded_tiles < len(beats)
                and (last_swap is None or cycle >= last_swap + swap_to_load + loaded)):
            loaded += 1
            loaded_tiles += loaded == rows
        if sent:
            beat += 1
            last_beat_cycle = cycle
            if beat == beats[tile]:
                tile, beat = tile + 1, 0
        cycle += 1
    return last_beat_cycle + timing.array_timing(cfg).latency + 1


def test_walk_matches_timing_contract(node_seed):
    rng = random.Random(node_seed)
    for _ in range(200):
        cfg = ArrayConfig(rows=rng.randint(1, 6), cols=rng.randint(1, 6), n=1, m=1)
        beats = [rng.randint(1, 20) for _ in range(rng.randint(1, 6))]
        assert walk_compute(cfg, beats) == timing.tile_sequence_cycles(cfg, beats), (cfg, beats)


def test_block_memoised_cycles_equal_the_recurrence(node_seed):
    """Random small GEMMs, every candidate loop order, ideal and DRAM-limited ports: the
    block-memoised count equals the plain recurrence over the whole instruction stream, and the
    per-block counter sums equal the counters of the whole stream."""
    rng = random.Random(node_seed)
    checked = slowed = 0
    for _ in range(120):
        cfg, gemm, sparse = random_case(rng)
        cfg = cfg.replace(pipeline_depth=rng.randint(0, 2))
        try:
            tilings = candidate_tilings(gemm, cfg, sparse=sparse)
            programs = [list(gemm_instructions(cfg, t)) for t in tilings]
        except ScheduleError:
            continue
        for t, prog in zip(tilings, programs, strict=True):
            for rate in (None, cfg.dram_bytes_per_cycle):
                flat = program_timing(cfg, prog, trace=False, dram_bytes_per_cycle=rate)
                assert program_cycles(cfg, t, dram_bytes_per_cycle=rate) == flat.cycles, \
                    (cfg, gemm, t, rate)
            assert tiling_counts(cfg, t) == program_counts(cfg, prog)
            cost = layer_cost(LayerSchedule(name="g", kind="linear", pattern="-", tiling=t,
                                            cfg=cfg))
            assert cost.cycles.compute == program_timing(cfg, prog, trace=False).cycles
            checked += 1
            slowed += cost.cycles.stall > 0
    assert checked > 80
    assert slowed > 0


def test_memo_replays_repeated_blocks():
    """A layer of many identical blocks (P blocks of a long GEMM, three groups) still equals
    the plain recurrence."""
    cfg = ArrayConfig(rows=2, cols=2, n=2, m=4, act_buffer_kib=1, weight_buffer_kib=1,
                      acc_buffer_kib=1, dram_bytes_per_cycle=3)
    t = schedule_gemm(Gemm(p=4000, k=40, cols=9, groups=3), cfg, sparse=True)
    prog = list(gemm_instructions(cfg, t))
    assert t.p_blocks * t.gemm.groups > 20
    for rate in (None, 3):
        assert program_cycles(cfg, t, dram_bytes_per_cycle=rate) == \
            program_timing(cfg, prog, trace=False, dram_bytes_per_cycle=rate).cycles


def test_actions_equal_counts_read_off_the_operations(node_seed):
    """The energy model's actions (from the activity counters) against bytes counted from the
    scheduler's operations and the row layouts, independently."""
    rng = random.Random(node_seed)
    checked = 0
    for _ in range(40):
        cfg, gemm, sparse = random_case(rng)
        try:
            t = schedule_gemm(gemm, cfg, sparse=sparse)
            prog = list(gemm_instructions(cfg, t))
        except ScheduleError:
            continue
        ops = all_ops(t)
        a = actions_from_counts(cfg, program_counts(cfg, prog))
        act_row = cfg.rows * cfg.m * cfg.act_width // 8
        acc_row = cfg.cols * cfg.acc_width // 8
        w_values, w_meta = weight_row_split(cfg)
        beats = sum(op.beats for op in ops if isinstance(op, Compute))
        act_loaded = sum(op.beats for op in ops if isinstance(op, LoadActs))
        w_loaded = cfg.rows * sum(isinstance(op, LoadWeights) for op in ops)
        tiles = sum(isinstance(op, Compute) for op in ops)
        stored = sum(op.beats for op in ops if isinstance(op, Store))
        stores = sum(isinstance(op, Store) for op in ops)
        accumulated = sum(op.beats for op in ops if isinstance(op, Compute) and op.accumulate)
        assert a.macs_issued == beats * cfg.rows * cfg.cols * cfg.n == t.beats * cfg.multipliers
        assert a.act_buffer_read_bytes == beats * act_row
        assert a.act_buffer_write_bytes == a.dram_act_bytes == act_loaded * act_row
        assert a.weight_buffer_read_bytes == tiles * cfg.rows * w_values
        assert a.metadata_buffer_read_bytes == tiles * cfg.rows * w_meta
        assert a.dram_weight_bytes == w_loaded * w_values
        assert a.dram_metadata_bytes == w_loaded * w_meta
        assert w_values + w_meta == isa.data_in_bytes(cfg, Opcode.LOAD_WEIGHT)
        assert a.acc_buffer_read_bytes == (accumulated + stored) * acc_row
        assert a.acc_buffer_write_bytes == beats * acc_row
        assert a.dram_acc_bytes == 0
        assert a.dram_scale_bytes == stores * isa.data_in_bytes(cfg, Opcode.LOAD_SCALE)
        assert a.dram_out_bytes == stored * cfg.cols == t.dram_out_bytes
        assert a.pe_register_write_bits == (
            tiles * cfg.rows * cfg.cols * cfg.n * (cfg.weight_width + cfg.index_width)
            + beats * cfg.rows * cfg.cols * (cfg.m * cfg.act_width + cfg.acc_width))
        checked += 1
    assert checked > 20


def test_bandwidth_stalls_when_it_binds():
    layer = Layer("fc", "linear", (64, 256), (64, 64), nm=(2, 4))
    fast = ArrayConfig(rows=4, cols=4, n=2, m=4, dram_bytes_per_cycle=1024)
    slow = fast.replace(dram_bytes_per_cycle=1)
    c_fast = layer_cost(schedule_layer(layer, fast))
    c_slow = layer_cost(schedule_layer(layer, slow))
    assert c_fast.cycles.stall == 0
    assert c_slow.cycles.stall > 0
    assert c_slow.cycles.compute == c_fast.cycles.compute
    # no schedule beats the roofline: every byte read crosses a 1 B/cycle port
    a = c_slow.actions
    assert c_slow.cycles.total >= a.dram_bytes - a.dram_out_bytes


def run_program_numpy(ops, x: np.ndarray, w: np.ndarray, cfg: ArrayConfig, t) -> np.ndarray:
    """Execute the program on padded slot matrices with accumulators per (P block, col tile)."""
    kp, cols = cfg.k_per_pass, cfg.cols
    p = x.shape[0]
    xs = np.zeros((p, t.passes * kp), dtype=np.int64)
    ws = np.zeros((t.passes * kp, t.col_tiles * cols), dtype=np.int64)
    xs[:, :x.shape[1]] = x
    ws[:w.shape[0], :w.shape[1]] = w
    starts = [pb * t.p_block for pb in range(t.p_blocks)]
    acc: dict = {}
    out = np.full((p, t.col_tiles * cols), -999, dtype=np.int64)
    for op in ops:
        if isinstance(op, Compute):
            r0 = starts[op.p_block]
            rows = slice(r0, r0 + op.beats)
            part = xs[rows, op.k_pass * kp:(op.k_pass + 1) * kp] @ ws[
                op.k_pass * kp:(op.k_pass + 1) * kp, op.col_tile * cols:(op.col_tile + 1) * cols]
            key = (op.p_block, op.col_tile)
            assert op.accumulate == (key in acc)
            acc[key] = acc[key] + part if op.accumulate else part
        elif isinstance(op, Store):
            r0 = starts[op.p_block]
            out[r0:r0 + op.beats, op.col_tile * cols:(op.col_tile + 1) * cols] = acc.pop(
                (op.p_block, op.col_tile))
    return out[:, :w.shape[1]]


@pytest.mark.parametrize("buffers", [1, 4, 64])
def test_program_computes_the_gemm(buffers, node_seed):
    rng = np.random.default_rng(node_seed)
    cfg = ArrayConfig(rows=2, cols=3, n=2, m=4, act_buffer_kib=buffers, acc_buffer_kib=buffers,
                      weight_buffer_kib=buffers)
    gemm = Gemm(p=300, k=45, cols=17)
    x = rng.integers(-128, 128, (gemm.p, gemm.k))
    w = rng.integers(-128, 128, (gemm.k, gemm.cols))
    for t in candidate_tilings(gemm, cfg, sparse=True):
        got = run_program_numpy(all_ops(t), x, w, cfg, t)
        np.testing.assert_array_equal(got, x @ w)


def test_loop_order_chosen_by_dram_bytes():
    cfg = ArrayConfig(rows=4, cols=4, n=2, m=4, act_buffer_kib=4, weight_buffer_kib=4,
                      acc_buffer_kib=4)
    gemm = Gemm(p=600, k=256, cols=32)
    cands = candidate_tilings(gemm, cfg, sparse=True)
    chosen = schedule_gemm(gemm, cfg, sparse=True)
    assert {c.order for c in cands} >= {"p-block", "col-block"}
    assert chosen.dram_bytes == min(c.dram_bytes for c in cands)
    for t in cands:  # program bytes == the tiling's DRAM bytes
        ops = all_ops(t)
        assert sum(op.dram_bytes for op in ops) == t.dram_bytes
    # everything fits: weight-stationary, every byte moved once
    small = Gemm(p=40, k=64, cols=8)
    ws = schedule_gemm(small, cfg.replace(act_buffer_kib=64, weight_buffer_kib=64,
                                          acc_buffer_kib=64), sparse=True)
    assert ws.order == "ws"
    w_tiles = math.ceil(64 / 16) * 2
    assert ws.dram_weight_bytes == w_tiles * 4 * 4 * 2


def test_dense_layer_needs_m_over_n_more_passes():
    cfg = ArrayConfig(rows=4, cols=4, n=1, m=4)
    gemm = Gemm(p=10, k=4 * 16 * 3, cols=4)
    sparse = schedule_gemm(gemm, cfg, sparse=True)
    dense = schedule_gemm(gemm, cfg, sparse=False)
    assert dense.passes == sparse.passes * 4
    matmul = Layer("scores", "matmul", (1, 2, 8, 16), (1, 2, 8, 8), attrs={"groups": 2, "k": 16},
                   nm=(1, 4))
    assert schedule_layer(matmul, cfg).pattern == "dense"


def test_impossible_config_is_a_clear_error():
    cfg = ArrayConfig(rows=64, cols=64, n=2, m=4, weight_buffer_kib=1)
    with pytest.raises(ScheduleError, match="weight_buffer_kib=1"):
        schedule_gemm(Gemm(p=4, k=4, cols=4), cfg, sparse=True, name="fc")
