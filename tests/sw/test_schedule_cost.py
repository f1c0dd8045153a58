"""Scheduler and layer cost: the lowering of each kind of layer; the memoised cycle count equals
the instruction-by-instruction recurrence (which the RTL tests match); counters and the byte
model equal independent counts read off the instructions; the loop order is chosen by bytes;
with ideal memory the array has no bubble between blocks."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from sparsa import isa
from sparsa.config import ArrayConfig
from sparsa.im2col import ConvGeometry, footprint, linear_geometry
from sparsa.isa import Opcode
from sparsa.models.graph import Gemm, Layer
from sparsa.sw import timing
from sparsa.sw.accel_timing import Addresses, annotate_all, program_counts, program_timing
from sparsa.sw.assemble import (
    block_instructions,
    block_view,
    gemm_instructions,
    shifted,
    store_delay,
    view_key,
)
from sparsa.sw.cost import (
    actions_from_counts,
    layer_cost,
    moved,
    paced_cycles,
    program_cycles,
    tiling_counts,
)
from sparsa.sw.lower import linear_lowering, lower_layer
from sparsa.sw.ops import Compute, Configure, LoadActs, LoadWeights, PreloadWeights, Store
from sparsa.sw.schedule import (
    LayerSchedule,
    ScheduleError,
    candidate_tilings,
    iter_block_ops,
    iter_blocks,
    ring_need,
    schedule_gemm,
    schedule_layer,
    tiling_bytes,
    widest_footprint,
)

SMALL = dict(act_buffer_kib=1, weight_buffer_kib=1, acc_buffer_kib=1)


def conv(c_in: int, c_out: int, size: tuple[int, int], *, kernel=(3, 3), stride=(1, 1),
         padding=(1, 1), groups: int = 1, images: int = 1, nm=None, out=None) -> Layer:
    (h, w), (kh, kw), (sh, sw), (ph, pw) = size, kernel, stride, padding
    ho, wo = out or ((h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)
    return Layer("conv", "conv2d", (images, c_in, h, w), (images, c_out, ho, wo), nm=nm,
                 attrs={"kernel": kernel, "stride": stride, "padding": padding,
                        "dilation": (1, 1), "groups": groups})


def random_layer(rng: random.Random, cfg: ArrayConfig) -> Layer:
    """A small conv (any kernel, stride, padding, groups, depthwise) or linear layer."""
    if rng.random() < 0.2:
        k, cols = rng.randint(1, 3 * cfg.k_per_pass), rng.randint(1, 3 * cfg.cols)
        return Layer("fc", "linear", (rng.randint(1, 40), k), (1, cols),
                     nm=rng.choice([None, (cfg.n, cfg.m)]))
    kh, kw = rng.choice([1, 2, 3]), rng.choice([1, 3])
    groups = rng.choice([1, 1, 2, 3])
    cin_g = rng.randint(1, 2 * cfg.k_per_pass)
    if rng.random() < 0.25:      # depthwise
        groups, cin_g = rng.randint(2, 2 * cfg.k_per_pass), 1
    cout = groups * rng.randint(1, 2 * cfg.cols)
    return conv(groups * cin_g, cout, (rng.randint(kh, kh + 12), rng.randint(kw, kw + 12)),
                kernel=(kh, kw), stride=(rng.randint(1, 2), rng.randint(1, 2)),
                padding=(rng.randint(0, kh - 1), rng.randint(0, kw - 1)), groups=groups,
                images=rng.randint(1, 2),
                nm=(cfg.n, cfg.m) if rng.random() < 0.5 and not cfg.is_dense else None)


def random_cfg(rng: random.Random) -> ArrayConfig:
    m = rng.choice([1, 2, 4])
    return ArrayConfig(rows=rng.randint(1, 3), cols=rng.randint(1, 4), n=rng.randint(1, m),
                       m=m, act_buffer_kib=rng.choice([1, 2]), weight_buffer_kib=1,
                       acc_buffer_kib=rng.choice([1, 2]), pipeline_depth=rng.randint(0, 2),
                       dram_bytes_per_cycle=rng.choice([1, 2, 4, 16, 1024]))


def program_bytes(cfg: ArrayConfig, program) -> dict[str, int]:
    """Off-chip bytes summed over the instructions, row by row."""
    out = dict.fromkeys(("act", "weight", "scale", "out"), 0)
    for i in program:
        if i.opcode == Opcode.LOAD_ACT:
            out["act"] += sum(isa.act_row_bytes(cfg, i.channels, r) for r in range(i.count))
        elif i.opcode == Opcode.LOAD_WEIGHT:
            out["weight"] += i.count * isa.row_bytes(cfg, i)     # a dense phase: values only
        elif i.opcode == Opcode.LOAD_SCALE:
            out["scale"] += isa.data_in_bytes(cfg, Opcode.LOAD_SCALE)
        elif i.opcode == Opcode.STORE:
            out["out"] += i.count * isa.data_out_bytes(cfg, i.raw)
    return out


def test_lowering():
    cfg = ArrayConfig(rows=4, cols=4, n=2, m=4)          # K_pass = 16
    stem = lower_layer(conv(3, 8, (16, 16), kernel=(7, 7), stride=(2, 2), padding=(3, 3)), cfg)
    assert stem.host_im2col
    assert stem.geom.channels == 7 * 7 * 3
    assert stem.in_elements == 3 * 16 * 16          # compulsory: the input, not the matrix
    body = lower_layer(conv(32, 8, (8, 8), nm=(2, 4)), cfg)
    assert body.how == "on-chip im2col"
    assert body.nm_tiles
    assert body.phases == 1
    assert body.offsets == 9
    assert body.c_blocks(cfg) == 2
    dense = lower_layer(conv(32, 8, (8, 8)), cfg)
    assert not dense.nm_tiles
    assert dense.phases == 2
    depthwise = lower_layer(conv(24, 24, (8, 8), groups=24), cfg)
    assert depthwise.groups == 24
    assert depthwise.nm_tiles
    assert depthwise.phases == 1
    assert depthwise.runs_sparse(cfg)
    assert not depthwise.pruned
    strided = lower_layer(conv(32, 8, (9, 9), kernel=(1, 1), stride=(2, 2), padding=(0, 0)),
                          cfg)
    assert strided.how == "1x1 strided"
    assert strided.geom.in_pixels == 25
    # SCALE-Sim's output sizes: the extra row and column are padding beats of the walk
    ceil = lower_layer(conv(32, 8, (8, 8), stride=(2, 2), padding=(0, 0), out=(4, 4)), cfg)
    assert ceil.how == "on-chip im2col"
    assert ceil.geom.out_size == (4, 4)
    dilated = lower_layer(Layer("d", "conv2d", (1, 32, 8, 8), (1, 8, 4, 4), attrs={
        "kernel": (3, 3), "stride": (1, 1), "padding": (0, 0), "dilation": (2, 2)}), cfg)
    assert dilated.host_im2col
    # pruned along K = (i, j, c), but 6 channels per group do not keep N:M groups on lanes
    unaligned = lower_layer(conv(12, 4, (6, 6), groups=2, nm=(2, 4)), cfg)
    assert unaligned.pruned
    assert not unaligned.nm_tiles
    assert unaligned.phases == 2


def test_grouped_tiles_exist_only_within_a_group():
    cfg = ArrayConfig(rows=2, cols=2, n=2, m=4)          # K_pass = 8
    t = schedule_layer(conv(16, 16, (4, 4), groups=16), cfg).tiling
    # blocks of 8 channels, tiles of 2 columns: each tile meets one block at each offset
    assert t.col_tiles == 8
    assert t.passes == 9
    assert [{b for _, _, b in t.passes_of(c)} for c in range(8)] == [{c // 4} for c in range(8)]
    assert t.tiles == 9 * 8
    full = schedule_layer(conv(16, 16, (4, 4)), cfg).tiling     # dense: two phases
    assert full.tiles == 9 * 2 * 2 * 8


def test_memoised_cost_equals_the_recurrence(node_seed):
    """Random small layers, every candidate tiling (each activation mode), ideal and DRAM-limited
    ports: the memoised cycles equal the plain recurrence over the whole instruction stream, the
    counters equal those of the stream, and the byte model equals its bytes."""
    rng = random.Random(node_seed)
    modes: set[str] = set()
    checked = slowed = tries = 0
    while (checked < 60 or len(modes) < 5) and tries < 2000:
        tries += 1
        cfg = random_cfg(rng)
        layer = random_layer(rng, cfg)
        try:
            low = lower_layer(layer, cfg)
            tilings = candidate_tilings(low, cfg, gemm=layer.gemm)
        except ScheduleError:
            continue
        for t in tilings:
            prog = list(gemm_instructions(cfg, t))
            for rate in (None, cfg.dram_bytes_per_cycle):
                flat = program_timing(cfg, prog, trace=False, dram_bytes_per_cycle=rate).cycles
                assert program_cycles(cfg, t, dram_bytes_per_cycle=rate) == flat, (cfg, layer, t)
            assert tiling_counts(cfg, t) == program_counts(cfg, prog)
            got, want = tiling_bytes(t), program_bytes(cfg, prog)
            assert (got.act, got.weight + got.metadata, got.scale, got.out, got.acc) == \
                (want["act"], want["weight"], want["scale"], want["out"], 0)
            cost = layer_cost(LayerSchedule("l", layer.kind, "-", t, cfg))
            assert cost.actions.dram_bytes == got.total
            slowed += cost.cycles.stall > 0
            modes.add(t.acts)
            checked += 1
    assert modes >= {"resident", "ring", "double", "single", "sliced"}
    assert slowed > 0


def test_memo_replays_repeated_blocks():
    """A layer of many identical blocks (P blocks of a long GEMM, three groups) still equals
    the plain recurrence."""
    cfg = ArrayConfig(rows=2, cols=2, n=2, m=4, dram_bytes_per_cycle=3, **SMALL)
    t = schedule_gemm(Gemm(p=1500, k=40, cols=9, groups=3), cfg, sparse=True)
    prog = list(gemm_instructions(cfg, t))
    assert t.blocks > 20
    for rate in (None, 3):
        assert program_cycles(cfg, t, dram_bytes_per_cycle=rate) == \
            program_timing(cfg, prog, trace=False, dram_bytes_per_cycle=rate).cycles


def test_stacked_gemms_cost_equals_the_recurrence(node_seed):
    """Random stacked GEMMs (a matmul's batch x heads: stacks that start alike are taken from
    the one before, blocks replayed from keys seen before, chunks annotated once per address
    state), every candidate tiling, ideal and DRAM-limited ports: the memoised cycles equal the
    plain recurrence over the whole instruction stream."""
    rng = random.Random(node_seed)
    checked = 0
    while checked < 12:
        cfg = random_cfg(rng)
        gemm = Gemm(p=rng.randint(1, 60), k=rng.randint(1, 3 * cfg.k_per_pass),
                    cols=rng.randint(1, 3 * cfg.cols), groups=rng.randint(2, 6))
        try:
            tilings = candidate_tilings(linear_lowering(cfg, gemm, pruned=rng.random() < 0.5),
                                        cfg, gemm=gemm)
        except ScheduleError:
            continue
        for t in tilings:
            assert t.stack == gemm.groups
            prog = list(gemm_instructions(cfg, t))
            for rate in (None, cfg.dram_bytes_per_cycle):
                flat = program_timing(cfg, prog, trace=False, dram_bytes_per_cycle=rate).cycles
                assert program_cycles(cfg, t, dram_bytes_per_cycle=rate) == flat, (cfg, gemm, t)
        checked += 1


def test_actions_equal_counts_read_off_the_program(node_seed):
    """The energy model's on-chip actions (from the activity counters) against counts read off
    the instructions and the row layouts, independently."""
    rng = random.Random(node_seed)
    checked = 0
    while checked < 20:
        cfg = random_cfg(rng)
        layer = random_layer(rng, cfg)
        try:
            t = schedule_layer(layer, cfg).tiling
        except ScheduleError:
            continue
        prog = list(gemm_instructions(cfg, t))
        a = actions_from_counts(cfg, program_counts(cfg, prog), tiling_bytes(t))
        computes = [i for i in prog if i.opcode == Opcode.COMPUTE]
        beats = sum(i.count for i in computes)
        act_row = cfg.rows * cfg.m * cfg.act_width // 8
        acc_row = cfg.cols * cfg.acc_width // 8
        w_row = isa.data_in_bytes(cfg, Opcode.LOAD_WEIGHT)
        stored = sum(i.count for i in prog if i.opcode == Opcode.STORE)
        accumulated = sum(i.count for i in computes if i.accumulate)
        assert beats == t.beats
        assert a.macs_issued == beats * cfg.macs_per_cycle
        assert a.act_buffer_read_bytes == beats * act_row
        assert a.act_buffer_write_bytes == act_row * sum(
            i.count for i in prog if i.opcode == Opcode.LOAD_ACT)
        assert a.weight_buffer_read_bytes + a.metadata_buffer_read_bytes == \
            len(computes) * cfg.rows * w_row
        assert a.acc_buffer_read_bytes == (accumulated + stored) * acc_row
        assert a.acc_buffer_write_bytes == beats * acc_row
        assert stored == t.low.geom.p * t.col_tiles
        checked += 1


def test_compulsory_bytes():
    cfg = ArrayConfig(rows=4, cols=4, n=2, m=4)
    layer = conv(32, 8, (8, 8), nm=(2, 4))
    c = lower_layer(layer, cfg).compulsory(cfg)
    k = 9 * 32
    assert c.act == 32 * 8 * 8
    assert c.out == 8 * 8 * 8
    assert c.weight == k // 2 * 8
    assert c.metadata == k // 2 * 8 * 2 // 8
    assert c.scale == math.ceil(8 * (isa.SCALE_MULT_BITS + isa.SCALE_SHIFT_BITS + 32) / 8)
    dense = lower_layer(conv(32, 8, (8, 8)), cfg).compulsory(cfg)
    assert dense.weight == k * 8
    assert dense.metadata == 0
    # everything fits: the program moves the compulsory bytes but scale rows and padding
    t = schedule_layer(layer, cfg).tiling
    got = tiling_bytes(t)
    assert t.acts_resident
    assert t.weights_resident
    assert (got.act, got.weight, got.out) == (c.act, c.weight, c.out)


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


def test_loop_order_chosen_by_dram_bytes():
    cfg = ArrayConfig(rows=4, cols=4, n=2, m=4, act_buffer_kib=4, weight_buffer_kib=4,
                      acc_buffer_kib=4)
    layer = conv(64, 64, (24, 24), nm=(2, 4))
    t = schedule_layer(layer, cfg).tiling
    cands = candidate_tilings(t.low, cfg, gemm=layer.gemm)
    assert len({(c.col_block, c.acts) for c in cands}) > 2
    assert tiling_bytes(t).total <= 1.05 * min(tiling_bytes(c).total for c in cands)
    # everything fits: weight-stationary, every byte moved once
    big = cfg.replace(act_buffer_kib=64, weight_buffer_kib=64, acc_buffer_kib=64)
    ws = schedule_layer(conv(16, 8, (6, 6), nm=(2, 4)), big).tiling
    assert ws.order == "ws"
    assert ws.acts_resident
    assert ws.weights_resident


def test_no_bubble_between_blocks_with_ideal_memory():
    """Many P blocks whose next activations load while the current block computes (3x3 and
    1x1; ring, two regions and slices): after the first, every COMPUTE dispatches as soon as
    the one before has streamed its beats (or the tile period has passed), across blocks too.
    Checked on the chosen tiling and on the ring or two-region one of its column blocks."""
    base = ArrayConfig(rows=4, cols=4, n=1, m=1, act_buffer_kib=4, acc_buffer_kib=2)
    period = timing.array_timing(base).tile_period
    layers = [conv(8, 8, (40, 40)), conv(8, 8, (40, 40), kernel=(1, 1), padding=(0, 0)),
              conv(12, 8, (40, 40))]          # 3 channel blocks: no ring
    for layer in layers:
        chosen = schedule_layer(layer, base).tiling
        assert chosen.p_blocks > 8
        assert chosen.acts in ("ring", "double", "sliced")
        assert chosen.acts == "double" or layer is not layers[2]
        regions = [t for t in candidate_tilings(chosen.low, base, gemm=layer.gemm)
                   if t.acts in ("ring", "double") and t.col_block == chosen.col_block]
        assert regions
        for t in [chosen] + [t for t in regions if t != chosen]:
            prog = list(gemm_instructions(base, t))
            got = program_timing(base, prog)
            computes = [(d, i.count) for d, i in zip(got.dispatch, prog, strict=True)
                        if i.opcode == Opcode.COMPUTE]
            gaps = [b[0] - a[0] - max(a[1], period) for a, b in itertools.pairwise(computes)]
            assert max(gaps) <= 0, (layer, t)


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
    wide = ArrayConfig(rows=2, cols=256, n=2, m=4, acc_buffer_kib=1)
    with pytest.raises(ScheduleError, match="acc_buffer_kib=1"):
        schedule_layer(conv(8, 8, (3, 4)), wide)


def deep_layer(rng: random.Random, cfg: ArrayConfig) -> Layer:
    """A conv or linear layer of many K passes (long blocks: the view's repeated rows)."""
    if rng.random() < 0.3:
        return Layer("fc", "linear", (rng.randint(1, 30), rng.randint(4, 12) * cfg.k_per_pass),
                     (1, rng.randint(1, 5 * cfg.cols)), nm=rng.choice([None, (cfg.n, cfg.m)]))
    return conv(rng.randint(2, 10) * cfg.k_per_pass, rng.randint(1, 6 * cfg.cols),
                (rng.randint(3, 9), rng.randint(3, 9)), kernel=rng.choice([(1, 1), (3, 3)]),
                padding=(1, 1) if rng.random() < 0.5 else (0, 0),
                nm=(cfg.n, cfg.m) if rng.random() < 0.5 and not cfg.is_dense else None)


def tilings_of(cfg: ArrayConfig, layer: Layer) -> list:
    """Every candidate tiling of ``layer`` on ``cfg`` (none when it does not fit)."""
    try:
        return candidate_tilings(lower_layer(layer, cfg), cfg, gemm=layer.gemm)
    except ScheduleError:
        return []


def check_view(cfg: ArrayConfig, t, context) -> list:
    """Each block's view segments of ``t``, expanded repetition by repetition, are its view
    instructions, with the same stores carried; blocks of equal :func:`view_key` after equal
    carried stores have equal views; the cycles costed from them equal the plain recurrence
    over the whole program. The segments repeated, of every block."""
    carry = view_carry = ()
    repeated = []
    by_key: dict = {}
    for block in iter_blocks(t):
        key = (view_key(t, block), tuple((i, n) for i, _, n in carry))
        pairs, carry = block_instructions(cfg, t, block, carry=carry, view=True)
        segments, view_carry = block_view(cfg, t, block, carry=view_carry)
        flat = [i for insns, count, step in segments for r in range(count)
                for i in shifted(insns, r * step)]
        assert flat == [i for i, _ in pairs], (context, t, block)
        assert by_key.setdefault(key, flat) == flat, (context, t, block)
        assert view_carry == carry
        repeated += [insns for insns, count, _ in segments if count > 1]
    prog = list(gemm_instructions(cfg, t))
    for rate in (None, cfg.dram_bytes_per_cycle):
        flat_cycles = program_timing(cfg, prog, trace=False, dram_bytes_per_cycle=rate).cycles
        assert program_cycles(cfg, t, dram_bytes_per_cycle=rate) == flat_cycles, (context, t)
    assert tiling_counts(cfg, t) == program_counts(cfg, prog)
    return repeated


def test_block_view_repeats_the_blocks_instructions(node_seed):
    """Deep random layers, every candidate tiling: :func:`check_view`."""
    rng = random.Random(node_seed)
    checked = repeated = 0
    while checked < 10:
        cfg = random_cfg(rng)
        layer = deep_layer(rng, cfg)
        tilings = tilings_of(cfg, layer)
        for t in tilings:
            repeated += len(check_view(cfg, t, (cfg, layer)))
        checked += bool(tilings)
    assert repeated > 0


def test_blocks_of_equal_view_keys_have_equal_views(node_seed):
    """What the cost model builds each distinct block's view once on: random layers (deep
    ones, and linear ones of odd and even channel blocks, sliced), every candidate tiling:
    blocks of equal :func:`view_key` after equal carried stores have equal view instructions."""
    rng = random.Random(node_seed)
    compared = 0
    for _ in range(150):
        cfg = random_cfg(rng)
        layer = deep_layer(rng, cfg) if rng.random() < 0.5 else Layer(
            "fc", "linear", (rng.randint(1, 40), rng.randint(2, 9) * cfg.k_per_pass),
            (1, rng.randint(3, 5 * cfg.cols)))
        for t in tilings_of(cfg, layer):
            carry, by_key = (), {}
            for block in iter_blocks(t):
                key = (view_key(t, block), tuple((i, n) for i, _, n in carry))
                pairs, carry = block_instructions(cfg, t, block, carry=carry, view=True)
                flat = [i for i, _ in pairs]
                assert by_key.setdefault(key, flat) == flat, (cfg, layer, t, block)
            compared += t.blocks - len(by_key)
    assert compared > 0


def test_sliced_view_repeats_channel_blocks_two_by_two(node_seed):
    """Random linear layers of many channel blocks, sliced: the view's repeated units that load
    activations (only pairs of channel blocks do) expand to the blocks' view instructions
    (:func:`check_view`)."""
    rng = random.Random(node_seed)
    checked = paired = 0
    while checked < 16:
        cfg = random_cfg(rng)
        k = rng.randint(8 * cfg.k_per_pass - 1, 16 * cfg.k_per_pass)
        layer = Layer("fc", "linear", (rng.randint(1, 40), k), (1, rng.randint(1, 4 * cfg.cols)),
                      nm=rng.choice([None, (cfg.n, cfg.m)]))
        for t in (t for t in tilings_of(cfg, layer) if t.sliced):
            paired += sum(any(i.opcode == Opcode.LOAD_ACT for i in insns)
                          for insns in check_view(cfg, t, (cfg, layer)))
            checked += 1
    assert paired > 0


def test_annotate_is_invariant_under_moving_weight_rows(node_seed):
    """What the view's repeated rows rely on: moving every weight scratchpad address (the
    instructions' and the addresses annotated after) by one step changes no timed
    instruction, and moves the addresses after by the step."""
    rng = random.Random(node_seed)
    ops = [Opcode.LOAD_WEIGHT, Opcode.PRELOAD, Opcode.COMPUTE, Opcode.STORE, Opcode.LOAD_ACT,
           Opcode.LOAD_SCALE]
    for _ in range(300):
        rows = rng.randint(1, 4)
        program = []
        for _ in range(rng.randint(1, 12)):
            op = rng.choice(ops)
            if op == Opcode.LOAD_WEIGHT:
                program.append(isa.Instruction(op, addr=rng.randint(0, 3) * rows, count=rows))
            elif op == Opcode.PRELOAD:
                program.append(isa.Instruction(op, addr=rng.randint(0, 3) * rows))
            elif op == Opcode.COMPUTE:
                program.append(isa.Instruction(op, acc_addr=rng.randint(0, 6),
                                               count=rng.randint(0, 3),
                                               accumulate=rng.random() < 0.5))
            elif op == Opcode.STORE:
                program.append(isa.Instruction(op, acc_addr=rng.randint(0, 6),
                                               count=rng.randint(0, 3)))
            elif op == Opcode.LOAD_ACT:
                program.append(isa.Instruction(op, count=rng.randint(0, 2)))
            else:
                program.append(isa.Instruction(op))
        start = Addresses()
        timed, after = annotate_all(rows, start, program)
        step = rng.randint(1, 5) * rows
        moved_timed, moved_after = annotate_all(rows, start, shifted(program, step))
        assert moved_timed == timed
        assert moved_after == moved(after, step)


def test_footprint_widths_equal_the_blocks_footprints(node_seed):
    """The widest P block footprint and the ring's need (counted for blocks that read their
    own pixels) against every block's footprint, walked here."""
    rng = random.Random(node_seed)
    own = 0
    for _ in range(300):
        if rng.random() < 0.5:
            geom = linear_geometry(rng.randint(1, 300), rng.randint(1, 40))
        else:
            k = rng.choice([1, 3])
            geom = ConvGeometry(images=rng.randint(1, 3), in_size=(rng.randint(k, 9),
                                rng.randint(k, 9)), channels=8, kernel=(k, k),
                                stride=(rng.randint(1, 2),) * 2, padding=(rng.randint(0, 1),) * 2)
        p, size = geom.p, rng.randint(1, geom.p)
        fps = [footprint(geom, f, min(size, p - f)) for f in range(0, p, size)]
        widths = [hi - lo for lo, hi in fps]
        assert widest_footprint(geom, size, p) == max(widths)
        pairs = [b[1] - a[0] for a, b in itertools.pairwise(fps)]
        for wrap in (False, True):
            want = max(widths + pairs + ([widths[-1] + widths[0]] if wrap else []))
            assert ring_need(geom, size, p, wrap) == want, (geom, size, wrap)
        own += geom.reads_own_pixels
    assert own > 100


def test_unpaced_programs_take_their_ideal_cycles(node_seed):
    """Random layers, every candidate tiling, random port rates, raw or requantized outputs:
    the cycles paced_cycles gives are the plain recurrence's at that rate, and when it says the
    ports paced nothing they are also the recurrence's with ideal streams (also for programs
    whose scale rows are larger than the rate: the data_in port is watched, not bounded)."""
    rng = random.Random(node_seed)
    unpaced = paced = watched = 0
    while unpaced < 20 or paced < 20:
        cfg = random_cfg(rng)
        cfg = cfg.replace(dram_bytes_per_cycle=rng.choice([1, 4, 8, 16, 32, 64]))
        layer = random_layer(rng, cfg)
        for t in tilings_of(cfg, layer):
            raw = rng.random() < 0.3       # raw rows: larger than requantized ones
            prog = list(gemm_instructions(cfg, t, raw=raw))
            rate = cfg.dram_bytes_per_cycle
            got, was_paced = paced_cycles(cfg, t, dram_bytes_per_cycle=rate, raw=raw)
            assert got == program_timing(cfg, prog, trace=False,
                                         dram_bytes_per_cycle=rate).cycles, (cfg, layer, t)
            if not was_paced:
                assert got == program_timing(cfg, prog, trace=False).cycles, (cfg, layer, t)
                watched += isa.data_in_bytes(cfg, Opcode.LOAD_SCALE) > rate
            unpaced += not was_paced
            paced += was_paced
    assert watched > 0


def deferred_opcodes(opcodes: list, carry: list, delay: int, space: int, limit: int):
    """The deferral rules of block_instructions, restated: the natural opcode sequence
    ``(opcode, store)`` (``store`` naming a LOAD_SCALE's and a STORE's operation) with each
    LOAD_SCALE and STORE held until due (``carry``: held ``[opcode, store, COMPUTEs since]``
    from the block before); the emitted sequence and the held after."""
    held, out, since, emitted = [list(h) for h in carry], [], space, False
    for op, store in opcodes:
        if op in (Opcode.LOAD_SCALE, Opcode.STORE):
            held.append([op, store, 0])
            continue
        if op in (Opcode.PRELOAD, Opcode.LOAD_ACT) and held and not emitted:
            due = [h for h in held if h[2] >= limit - 1]
            if not due and held[0][2] >= delay - 1 and since >= space:
                due = [h for h in held if h[1] is held[0][1]]
            if due:
                held = [h for h in held if h not in due]
                since = 0
            out += [h[0] for h in due]
            emitted = True
        out.append(op)
        if op == Opcode.COMPUTE:
            for h in held:
                h[2] += 1
            since, emitted = since + 1, False
    return out, held


def test_stores_are_deferred_by_the_rules(node_seed):
    """Random layers, every candidate tiling, block by block: the opcodes of
    block_instructions are the scheduler's operations in order with each LOAD_SCALE and STORE
    deferred by the rules (:func:`deferred_opcodes`), and the stores held at each block's end
    are the ones the rules hold, held as long."""
    rng = random.Random(node_seed)
    natural = {Configure: Opcode.CONFIG, LoadWeights: Opcode.LOAD_WEIGHT,
               LoadActs: Opcode.LOAD_ACT, PreloadWeights: Opcode.PRELOAD,
               Compute: Opcode.COMPUTE}
    held_over = 0
    for _ in range(40):
        cfg = random_cfg(rng)
        layer = random_layer(rng, cfg) if rng.random() < 0.5 else deep_layer(rng, cfg)
        for t in tilings_of(cfg, layer):
            delay, space, limit = store_delay(cfg, t)
            carry, rules = (), []
            for block in iter_blocks(t):
                opcodes = []
                for op in iter_block_ops(t, block):
                    if isinstance(op, Store):
                        opcodes += [(Opcode.LOAD_SCALE, op)] * op.scale + [(Opcode.STORE, op)]
                    else:
                        opcodes.append((natural[type(op)], None))
                want, rules = deferred_opcodes(opcodes, rules, delay, space, limit)
                pairs, carry = block_instructions(cfg, t, block, carry=carry)
                assert [i.opcode for i, _ in pairs] == want, (cfg, layer, t, block)
                assert [(i.opcode, n) for i, _, n in carry] == [(h[0], h[2]) for h in rules]
                held_over += bool(carry)
    assert held_over > 0
