"""The accelerator cycle model's parts that the RTL tests do not isolate: the closed-form DRAM
port against the cycle-by-cycle token bucket (beats of varying sizes), LOAD_ACT beat bytes, the
state key (time-shift invariance, round trips) that long programs are memoised on, and the
tag and CONFIG rules as properties."""

from __future__ import annotations

import dataclasses

import pytest

from sparsa import im2col, isa
from sparsa.config import ArrayConfig
from sparsa.isa import Instruction, Opcode
from sparsa.sim.programs import gemm_program, random_conv_program, random_gemm_program
from sparsa.sw.accel_timing import (
    ADDRESS_FIELDS,
    LOADS,
    TIMED_FIELDS,
    AccelTimer,
    Addresses,
    DramPort,
    Timed,
    TimerState,
    annotate_all,
    beat_bytes,
    port_caps,
    program_timing,
)
from sparsa.sw.assemble import timing_view
from sparsa.sw.dram_port import Port, Sizes, transfer

SMALL = dict(act_buffer_kib=1, weight_buffer_kib=1, acc_buffer_kib=1)
CFG = ArrayConfig(rows=2, cols=3, n=1, m=4, **SMALL)


def bucket_cycles(bucket: DramPort, cycle: int, start: int, sizes: list[int]
                  ) -> tuple[list[int], int]:
    """Beats of ``sizes`` through ``bucket`` cycle by cycle, offered from ``start`` to an
    always-ready consumer: their cycles, and the cycle after the last one."""
    while cycle < start:            # idle: credit builds up to the cap
        bucket.tick()
        cycle += 1
    seen: list[int] = []
    while len(seen) < len(sizes):
        nbytes = sizes[len(seen)]
        if bucket.can(nbytes):
            seen.append(cycle)
            bucket.tick(nbytes)
        else:
            bucket.tick()
        cycle += 1
    return seen, cycle


def test_port_closed_form_equals_the_bucket_cycle_by_cycle(rng):
    """Transfers of random lengths and beat sizes (uniform, or periodic: a pixel's full channel
    blocks then a partial one), each offered from a random later cycle: the closed form places
    every beat where the bucket does and leaves the port with the bucket's credit."""
    for _ in range(60):
        rate = int(rng.integers(1, 20))
        patterns = []
        for _ in range(3):
            full = int(rng.integers(1, 40))
            patterns.append(Sizes(full, int(rng.integers(1, full + 1)),
                                  int(rng.integers(1, 5))))
        cap = max(s.full for s in patterns) + rate
        bucket, port = DramPort(rate, cap), Port(0, cap)
        cycle, start = 0, 0
        for _ in range(6):
            start += int(rng.integers(0, 30))
            sizes = patterns[int(rng.integers(0, 3))]
            count = int(rng.integers(1, 40))
            beats, port = transfer(port, start, count, sizes, rate, cap)
            seen, cycle = bucket_cycles(bucket, cycle, start,
                                        [sizes.size(j) for j in range(count)])
            assert seen == [beats.at(j) for j in range(count)], (rate, sizes, count)
            assert (port.t, port.c) == (cycle, bucket.credit)
            start = seen[-1] + 1


@pytest.mark.parametrize("rate", [1, 5, 13, 30])
def test_long_periodic_transfers(rate, rng):
    """Thousands of beats (the closed form works out a few periods, then repeats them): every
    beat and the final credit still equal the bucket's."""
    cap = 32 + rate
    for sizes in (Sizes(32, 5, 3), Sizes(32, 31, 2), Sizes(20, 1, 4), Sizes(32, 32, 3)):
        count = 3 * int(rng.integers(500, 1500))
        bucket, port = DramPort(rate, cap), Port(0, cap)
        beats, port = transfer(port, 3, count, sizes, rate, cap)
        seen, cycle = bucket_cycles(bucket, 0, 3, [sizes.size(j) for j in range(count)])
        assert seen == [beats.at(j) for j in range(count)]
        assert (port.t, port.c) == (cycle, bucket.credit)


def test_dram_port_rejects_bad_rates():
    with pytest.raises(ValueError, match="rate >= 1"):
        DramPort(0, 10)
    with pytest.raises(ValueError, match="dram_bytes_per_cycle"):
        AccelTimer(ArrayConfig(rows=2, cols=2, n=2, m=4), dram_bytes_per_cycle=0)
    with pytest.raises(ValueError, match="positive"):
        Sizes(0, 1)


@pytest.mark.parametrize("channels", [1, 5, 8, 9, 16, 23])
def test_load_act_beat_bytes_are_the_real_channels(channels):
    """A LOAD_ACT of pixels with ``channels`` channels: each row's bytes are its block's real
    channels (counted here by enumerating the channels of each row), the rest zero-filled."""
    cfg = ArrayConfig(rows=2, cols=2, n=2, m=4, act_width=4)   # K_pass 8, 4-bit activations
    blocks = -(-channels // 8)
    prog = [Instruction(Opcode.LOAD_ACT, count=3 * blocks, channels=channels),
            Instruction(Opcode.LOAD_WEIGHT, count=2)]
    ins, outs = beat_bytes(cfg, prog)
    expected = []
    for _pixel in range(3):
        for b in range(blocks):
            real = sum(1 for ch in range(channels) if ch // 8 == b)
            expected.append(-(-real * 4 // 8))
    assert ins == expected + [isa.data_in_bytes(cfg, Opcode.LOAD_WEIGHT)] * 2
    assert outs == []
    assert max(ins) + 3 <= port_caps(cfg, 3)[0]


def programs(cfg, rng, count: int):
    for k in range(count):
        if k % 2:
            yield random_conv_program(cfg, rng, max_computes=40, max_compute_beats=200).program
        else:
            yield random_gemm_program(cfg, rng, order=("k_inner", "cols_inner")[k // 2 % 2],
                                      max_beats=12).program


@pytest.mark.parametrize("rate", [None, 2, 7])
def test_key_restore_is_a_time_shift(rate, rng):
    """Cut a program anywhere, carry only the key into a fresh timer whose clock is offset by an
    arbitrary amount: the rest of the program dispatches at the same cycles plus the offset."""
    for prog in programs(CFG, rng, 4):
        whole = program_timing(CFG, prog, dram_bytes_per_cycle=rate)
        for cut in sorted(set(int(v) for v in rng.integers(1, len(prog), size=5))):
            head = AccelTimer(CFG, dram_bytes_per_cycle=rate)
            head.run(prog[:cut])
            offset = int(rng.integers(-1000, 1000))
            tail = AccelTimer(CFG, dram_bytes_per_cycle=rate, trace=True)
            tail.restore(head.key(), head.last_dispatch + offset)
            tail.addresses = head.addresses
            tail.run(prog[cut:])
            assert [d - offset for d in tail.dispatch] == whole.dispatch[cut:]
            assert [c - offset for c in tail.out_cycles] == \
                whole.out_cycles[len(whole.out_cycles) - len(tail.out_cycles):]


def test_key_keeps_long_writes_in_flight(rng):
    """A COMPUTE much longer than the key's horizon is still writing when later instructions
    dispatch: cutting at every instruction and carrying only the key must not move its last
    written row (a clamped start once put it in the future)."""
    cfg = ArrayConfig(rows=2, cols=1, n=2, m=2, pipeline_depth=1)
    for k in range(6):
        prog = gemm_program(cfg, rng, p=int(rng.integers(60, 400)), passes=1 + k % 2,
                            col_tiles=1 + k // 2 % 2,
                            order=("k_inner", "cols_inner")[k // 4]).program
        whole = program_timing(cfg, prog)
        for cut in range(1, len(prog)):
            head = AccelTimer(cfg)
            head.run(prog[:cut])
            tail = AccelTimer(cfg, trace=True)
            tail.restore(head.key(), head.last_dispatch)
            tail.addresses = head.addresses
            tail.end = head.end
            tail.run(prog[cut:])
            assert tail.dispatch == whole.dispatch[cut:], (k, cut)
            assert tail.cycles == whole.cycles, (k, cut)


@pytest.mark.parametrize("rate", [None, 3])
def test_key_round_trips_and_is_relative(rate, rng):
    """``restore(key(), ref)`` puts the last dispatch at ``ref``, and the key of the restored
    state, taken anew, is the same key whatever ``ref``; keys hash."""
    for prog in programs(CFG, rng, 2):
        timer = AccelTimer(CFG, dram_bytes_per_cycle=rate)
        for insn in prog:
            timer.step(insn)
            key = timer.key()
            ref = int(rng.integers(-10**6, 10**6))
            other = AccelTimer(CFG, dram_bytes_per_cycle=rate)
            other.restore(key, ref)
            assert isinstance(other.state, TimerState)
            assert other.last_dispatch == ref
            fresh = AccelTimer(CFG, dram_bytes_per_cycle=rate)
            fresh.state = other.state       # its key worked out, not remembered from restore()
            assert fresh.key() == key
            assert hash(fresh.key()) == hash(key)


def test_state_is_frozen():
    timer = AccelTimer(CFG)
    with pytest.raises(dataclasses.FrozenInstanceError):
        timer.state.load.free = 3


def tagged_program(load_tag: int, compute_tag: int) -> list[Instruction]:
    """A COMPUTE of 20 beats over region 0 (tag 0), then a LOAD_ACT of 60 rows of tag
    ``load_tag``, then a COMPUTE of tag ``compute_tag``."""
    geom = im2col.linear_geometry(20, CFG.k_per_pass)
    walk = im2col.compute_fields(CFG, geom, base=0, first=0, offset=(0, 0), block=0)
    return [im2col.config_instruction(CFG, geom),
            Instruction(Opcode.LOAD_ACT, count=20, channels=CFG.k_per_pass, tag=0),
            Instruction(Opcode.LOAD_WEIGHT, count=CFG.rows),
            Instruction(Opcode.PRELOAD),
            Instruction(Opcode.COMPUTE, acc_addr=0, count=20, tag=0, **walk),
            Instruction(Opcode.LOAD_ACT, addr=20, count=60, channels=CFG.k_per_pass,
                        tag=load_tag),
            Instruction(Opcode.PRELOAD),
            Instruction(Opcode.COMPUTE, acc_addr=20, count=20, tag=compute_tag,
                        **{**walk, "addr": 20})]


def test_tags_order_loads_and_computes():
    """A LOAD_ACT of the tag the feed engine is busy with waits until its 20 beats are taken;
    of the other tag it dispatches at once. The COMPUTE after it waits for the load when it has
    the load's tag (its 60 beats), not otherwise."""
    other, same = (program_timing(CFG, tagged_program(t, 0)).dispatch for t in (1, 0))
    compute = other[4]
    assert other[5] == compute + 1
    assert same[5] >= compute + 20
    waits, free = (program_timing(CFG, tagged_program(1, t)).dispatch for t in (1, 0))
    assert waits[7] > waits[5] + 60
    assert free[7] < free[5] + 60


def test_config_needs_no_engine(rng):
    """A CONFIG dispatches in the cycle after the instruction before it, and inserting one
    delays nothing by more than that cycle."""
    prog = next(programs(CFG, rng, 1))
    base = program_timing(CFG, prog).dispatch
    for at in sorted(set(int(v) for v in rng.integers(1, len(prog), size=6))):
        more = [*prog[:at], prog[0], *prog[at:]]
        d = program_timing(CFG, more).dispatch
        assert d[:at] == base[:at]
        assert d[at] == d[at - 1] + 1
        assert all(0 <= new - old <= 1 for new, old in zip(d[at + 1:], base[at:], strict=True))


@pytest.mark.parametrize("rate", [None, 3])
def test_only_the_timed_fields_matter(rate, rng):
    """Every field outside :data:`TIMED_FIELDS` and :data:`ADDRESS_FIELDS` redrawn at random
    (im2col walks, addresses of activation rows, flags): every dispatch and output cycle stays
    the same."""
    for prog in programs(CFG, rng, 4):
        whole = program_timing(CFG, prog, dram_bytes_per_cycle=rate)
        redrawn = []
        for insn in prog:
            values = {}
            for name, bits in isa.FORMATS[insn.opcode]:
                if name in TIMED_FIELDS[insn.opcode] + ADDRESS_FIELDS.get(insn.opcode, ()):
                    continue
                lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if \
                    name in isa.SIGNED_FIELDS else (0, (1 << bits) - 1)
                values[name] = int(rng.integers(lo, hi + 1))
                if name in ("accumulate", "relu", "raw"):
                    values[name] = bool(values[name])
            redrawn.append(dataclasses.replace(insn, **values))
        again = program_timing(CFG, redrawn, dram_bytes_per_cycle=rate)
        assert again.dispatch == whole.dispatch
        assert again.out_cycles == whole.out_cycles
        views = program_timing(CFG, [timing_view(i) for i in prog], dram_bytes_per_cycle=rate)
        assert views.dispatch == whole.dispatch     # what the cost model walks
        assert views.out_cycles == whole.out_cycles


def _rows(insn: Instruction, rows: int) -> tuple[int, int]:
    """The scratchpad rows an instruction writes or reads, as the hazards compare them."""
    if insn.opcode == Opcode.PRELOAD:
        return insn.addr, rows
    if insn.opcode == Opcode.LOAD_WEIGHT:
        return insn.addr, insn.count
    return insn.acc_addr, insn.count


def _hits(a: tuple[int, int], b: tuple[int, int] | None) -> bool:
    return b is not None and a[1] > 0 and b[1] > 0 and a[0] < b[0] + b[1] and b[0] < a[0] + a[1]


def test_hazards_are_the_address_overlaps_with_earlier_instructions(rng):
    """:func:`annotate_all`'s hazards against a backward search of the program for the
    instruction each one compares with (the latest PRELOAD, LOAD with beats, STORE with rows,
    COMPUTEs with beats), and its timed fields against the instruction's own."""
    for prog in programs(CFG, rng, 6):
        timed, _ = annotate_all(CFG.rows, Addresses(), prog)
        for i, (insn, got) in enumerate(zip(prog, timed, strict=True)):
            before = prog[:i][::-1]
            loads = [x for x in before if x.opcode in LOADS and
                     (x.count or x.opcode == Opcode.LOAD_SCALE)]
            computes = [x for x in before if x.opcode == Opcode.COMPUTE and x.count]
            stores = [x for x in before if x.opcode == Opcode.STORE and x.count]
            preloads = [x for x in before if x.opcode == Opcode.PRELOAD]
            own = _rows(insn, CFG.rows)
            last = _rows(computes[0], CFG.rows) if computes else None
            want = dict(opcode=insn.opcode)
            want.update({f: getattr(insn, f) for f in TIMED_FIELDS[insn.opcode]})
            if insn.opcode == Opcode.LOAD_WEIGHT:
                want["on_preload"] = _hits(own, _rows(preloads[0], CFG.rows) if preloads
                                           else None)
            elif insn.opcode == Opcode.PRELOAD:
                want["on_load"] = bool(loads) and loads[0].opcode == Opcode.LOAD_WEIGHT and \
                    _hits(own, _rows(loads[0], CFG.rows))
            elif insn.opcode == Opcode.COMPUTE:
                want.update(on_store=_hits(own, _rows(stores[0], CFG.rows) if stores else None),
                            on_last=_hits(own, last),
                            chain=insn.accumulate and own == last)
            elif insn.opcode == Opcode.STORE:
                want.update(on_last=_hits(own, last), on_before=_hits(
                    own, _rows(computes[1], CFG.rows) if len(computes) > 1 else None))
            assert got == Timed(**want), (i, insn)
