# amaranth: UnusedElaboratable=no
"""The top's cycle model (:mod:`sparsa.sw.top_timing`, the rules documented in
:mod:`sparsa.hw.top`, "Cycle costs") against the RTL in Amaranth's simulator: probes of
:attr:`~sparsa.hw.top.AxiAccelerator.probes`, memory of fixed read latency ``L`` without pauses
(:class:`~sparsa.sim.axi_memory.AxiMemory`), the model reading nothing of the RTL but the start
pulse's cycle.

* the read path alone: a LOAD (random kind, rows, stride, alignment, 4 KiB crossings, ``L`` from
  1 to 20 so the eight-burst limit binds): every ``data_in`` beat's cycle after its dispatch
  (:class:`~sparsa.sw.top_timing.ReadPath`);
* instruction fetch: CONFIG-only programs (dispatched as soon as they arrive): every dispatch;
* the write path alone: a STORE: every ``data_out`` handshake and the writer's completion
  (:func:`~sparsa.sw.top_timing.write_store`); a LOAD after a STORE waits for it, also when
  the STORE is not yet dispatched;
* a LOAD requested ahead of its dispatch: its data waits for it;
* whole programs: random GEMM and conv programs (:mod:`sparsa.sim.programs`) linked with random
  offsets and gaps, at ``L`` = 1, 5 and 20 on 64- and 128-bit buses (and with two requests
  ahead): every dispatch, ``data_in`` and ``data_out`` handshake, STORE completion and
  ``run_cycles`` == the model (:func:`~sparsa.sw.top_timing.top_timing`), and the read-back
  program (a LOAD right after a STORE of its bytes)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from sparsa import isa
from sparsa.config import ArrayConfig
from sparsa.hw import axi, dma, fetch, operands
from sparsa.hw.operands import Kind, OperandTap
from sparsa.hw.operands import chunk_size as hw_chunk_size
from sparsa.hw.top import READ_BURSTS, AxiAccelerator
from sparsa.isa import Instruction, Opcode
from sparsa.sim.axi_memory import run_top, with_readback
from sparsa.sim.memory_image import link
from sparsa.sim.native_axi import NativeAxiAccelerator
from sparsa.sim.programs import random_conv_program, random_gemm_program
from sparsa.sw import top_timing as model
from sparsa.sw.accel_timing import STORE_STAGES
from sparsa.sw.top_timing import ReadPath, chunk_size, top_timing, write_store

SMALL = dict(act_buffer_kib=1, weight_buffer_kib=1, acc_buffer_kib=1)
CONFIGS = {
    "2x2-2of4-axi64": ArrayConfig(rows=2, cols=2, n=2, m=4, axi_data_bits=64, **SMALL),
    "2x3-1of4-axi32": ArrayConfig(rows=2, cols=3, n=1, m=4, axi_data_bits=32, **SMALL),
    "3x5-1of1-axi128": ArrayConfig(rows=3, cols=5, n=1, m=1, axi_data_bits=128, **SMALL),
}
PROG_BASE = 0x100


def run(cfg: ArrayConfig, program: list[Instruction], latency: int):
    memory = bytearray(random.Random(7).randbytes(1 << 15))
    words = b"".join(i.encode().to_bytes(isa.INSN_BYTES, "little") for i in program)
    memory[PROG_BASE:PROG_BASE + len(words)] = words
    return run_top(AxiAccelerator(cfg), memory, prog_base=PROG_BASE,
                   prog_len=len(words), latency=latency).events


def random_load(cfg: ArrayConfig, rng: random.Random, case: int) -> tuple[Instruction, list]:
    """A LOAD and its rows ``(address, bytes)``: case 0 a LOAD_ACT of 12 short pixels (slow
    memory makes the eight-burst limit bind), case 1 a LOAD_WEIGHT across a 4 KiB boundary,
    then random ones."""
    op = [Opcode.LOAD_ACT, Opcode.LOAD_WEIGHT][case] if case < 2 else rng.choice(
        [Opcode.LOAD_ACT, Opcode.LOAD_ACT, Opcode.LOAD_WEIGHT, Opcode.LOAD_ACC, Opcode.LOAD_SCALE])
    dram = 0x3000 - rng.randrange(1, 40) if case == 1 or rng.random() < 0.3 else \
        0x2000 + rng.randrange(64)
    if op == Opcode.LOAD_ACT:
        kp = cfg.k_per_pass
        channels = rng.randint(1, kp if case == 0 else 3 * kp)
        pixels = 12 if case == 0 else rng.randint(1, 8)
        stride = channels * cfg.act_width // 8 + rng.randint(0, 9)
        insn = Instruction(op, count=pixels * -(-channels // kp), channels=channels, dram=dram,
                           stride=stride, pixels=pixels)
        return insn, [(dram + p * stride, channels) for p in range(pixels)]
    count = 1 if op == Opcode.LOAD_SCALE else rng.randint(2 if case == 1 else 1, 8)
    insn = Instruction(op, dram=dram, **({} if op == Opcode.LOAD_SCALE else {"count": count}))
    return insn, [(dram, count * isa.data_in_bytes(cfg, op))]


@pytest.mark.parametrize("name", CONFIGS)
def test_load_costs(name, seed_for, request):
    """A LOAD dispatched in cycle D with the read path idle: its request is taken in D + 1,
    then the read path's rules give every ``data_in`` beat."""
    cfg, rng = CONFIGS[name], random.Random(seed_for(request.node.nodeid))
    for case in range(4):
        insn, rows = random_load(cfg, rng, case)
        latency = 20 if case == 0 else rng.choice([1, 2, 5, 9, 20])
        events = run(cfg, [insn], latency)
        (dispatch,) = events["dispatch"]
        size = chunk_size(cfg, insn.opcode)
        expected = ReadPath(cfg.axi_data_bits // 8, latency).descriptor(rows, size, dispatch + 1)
        assert events["data_in"] == expected, f"{insn} with L={latency}"


@pytest.mark.parametrize("name", CONFIGS)
def test_fetch_costs(name, seed_for, request):
    """CONFIG-only programs: each dispatch cycle from the start pulse (fetch descriptors of
    eight words, each once the instruction FIFO has room for it; a word dispatched two cycles
    after its chunk)."""
    cfg, rng = CONFIGS[name], random.Random(seed_for(request.node.nodeid))
    for words in (rng.randint(1, 16), rng.randint(25, 40)):    # the second waits for room
        latency = rng.choice([1, 4, 13])
        program = [Instruction(Opcode.CONFIG, height=i) for i in range(words)]
        events = run(cfg, program, latency)
        (start,) = events["start"]
        timing = top_timing(cfg, program, latency=latency, start=start, prog_base=PROG_BASE)
        assert events["dispatch"] == timing.dispatch, f"{words} words, L={latency}"


@pytest.mark.parametrize("name", CONFIGS)
def test_store_costs(name, seed_for, request):
    """A STORE dispatched in cycle D: its job is taken in D + 2, the core offers its rows from
    D + 2 + STORE_STAGES, and the write path's rules give the ``data_out`` handshakes and the
    completion."""
    cfg, rng = CONFIGS[name], random.Random(seed_for(request.node.nodeid))
    bus = cfg.axi_data_bits // 8
    for _ in range(4):
        count, channels, raw = rng.randint(1, 10), rng.randint(1, cfg.cols), rng.random() < 0.5
        size = channels * (cfg.acc_width if raw else cfg.act_width) // 8
        dram = rng.choice([0x2000 + rng.randrange(64), 0x3000 - rng.randrange(1, 4 * bus)])
        stride = size + rng.choice([0, rng.randint(0, 70)])
        insn = Instruction(Opcode.STORE, count=count, channels=channels, raw=raw, dram=dram,
                           stride=stride)
        events = run(cfg, [insn], 1)
        (dispatch,) = events["dispatch"]
        rows = [(dram + r * stride, size) for r in range(count)]
        handshakes, done = write_store(rows, bus, dispatch + 2, dispatch + 2 + STORE_STAGES)
        assert events["data_out"] == handshakes, str(insn)
        assert events["store_done"] == [done], str(insn)


@pytest.mark.parametrize("name", CONFIGS)
def test_a_load_after_a_store_waits_for_it(name, seed_for, request):
    """A STORE then a LOAD of bytes it writes (the STORE starts at the LOAD's last byte): the
    LOAD's request is held until the cycle after the STORE's completion, then the read path's
    rules give every ``data_in`` beat."""
    cfg, rng = CONFIGS[name], random.Random(seed_for(request.node.nodeid))
    insn, rows = random_load(cfg, rng, 2)
    store = Instruction(Opcode.STORE, count=rng.randint(1, 6), channels=cfg.cols, raw=True,
                        dram=rows[-1][0] + rows[-1][1] - 1,
                        stride=cfg.cols * cfg.acc_width // 8)
    latency = rng.choice([1, 5])
    events = run(cfg, [store, insn], latency)
    _, dispatch = events["dispatch"]
    (done,) = events["store_done"]
    size = chunk_size(cfg, insn.opcode)
    expected = ReadPath(cfg.axi_data_bits // 8, latency).descriptor(rows, size,
                                                                   max(dispatch, done) + 1)
    assert done > dispatch, "the LOAD was dispatched before the STORE completed"
    assert events["data_in"] == expected


def test_the_next_load_is_requested_before_it_dispatches():
    """A LOAD_WEIGHT, a PRELOAD of its rows and a LOAD_WEIGHT of the same rows (dispatched only
    once the PRELOAD has read them): the second LOAD's request goes at the first one's dispatch,
    so its data waits for its dispatch (taken from the next cycle), sooner than a request made
    at dispatch could bring it (``D + 3 + L``); every cycle == the model."""
    cfg = CONFIGS["2x2-2of4-axi64"]
    program = [Instruction(Opcode.LOAD_WEIGHT, addr=0, count=2, dram=0x2000),
               Instruction(Opcode.PRELOAD, addr=0),
               Instruction(Opcode.LOAD_WEIGHT, addr=0, count=2, dram=0x2403)]
    for latency in (5, 20):
        events = run(cfg, program, latency)
        second = events["dispatch"][2]
        assert events["data_in"][2] == second + 1, f"L={latency}: the data was not there"
        assert events["data_in"][2] < second + 3 + latency
        (start,) = events["start"]
        timing = top_timing(cfg, program, latency=latency, start=start, prog_base=PROG_BASE)
        for name in ("dispatch", "data_in"):
            assert events[name] == getattr(timing, name), f"{name}, L={latency}"


@pytest.mark.parametrize("dram", [0x2810, 0x2403])
def test_a_load_waits_for_a_store_before_it_not_yet_dispatched(dram):
    """A LOAD_SCALE, a STORE (dispatched once the scales are in) and a LOAD_WEIGHT: the LOAD's
    request could go at the LOAD_SCALE's dispatch, while the STORE is still in the instruction
    FIFO. It waits for the STORE's dispatch, and, if it reads bytes the STORE writes (0x2810;
    the STORE writes 0x2800 to 0x2811), for the STORE's completion (read after write in program
    order), so its data comes ``L`` cycles after that, else sooner; every cycle == the
    model."""
    cfg = CONFIGS["2x2-2of4-axi64"]
    program = [Instruction(Opcode.LOAD_SCALE, dram=0x2000),
               Instruction(Opcode.STORE, count=3, channels=2, dram=0x2800, stride=8),
               Instruction(Opcode.LOAD_WEIGHT, addr=0, count=2, dram=dram)]
    for latency in (5, 20):
        events = run(cfg, program, latency)
        scale, store, _ = events["dispatch"]
        (done,) = events["store_done"]
        assert store > scale + 1, "the STORE was dispatched before the LOAD could be requested"
        if dram == 0x2810:
            assert events["data_in"][1] >= done + 1 + latency
        else:
            assert store + 1 + latency <= events["data_in"][1] < done + 1 + latency
        (start,) = events["start"]
        timing = top_timing(cfg, program, latency=latency, start=start, prog_base=PROG_BASE)
        for name in ("dispatch", "data_in", "data_out", "store_done"):
            assert events[name] == getattr(timing, name), f"{name}, L={latency}"


def test_the_model_knows_the_tops_constants():
    """The constants :mod:`sparsa.sw.top_timing` keeps (sw does not import hw) are the RTL's."""
    cfg = CONFIGS["2x3-1of4-axi32"]
    assert (model.MAX_BURST_BEATS, model.PAGE_BYTES, model.OUTSTANDING, model.READ_OUTSTANDING) \
        == (axi.MAX_BURST_BEATS, axi.PAGE_BYTES, dma.DEFAULT_OUTSTANDING, READ_BURSTS)
    assert model.DEFAULT_FETCH_INSNS == fetch.DEFAULT_FETCH_INSNS
    assert OperandTap(cfg).store_depth == model.STORE_JOBS
    assert AxiAccelerator(cfg).loads_ahead == operands.DEFAULT_LOADS_AHEAD == model.LOADS_AHEAD
    assert chunk_size(cfg, None) == hw_chunk_size(cfg, Kind.FETCH)
    for op in isa.LOADS:
        assert chunk_size(cfg, op) == hw_chunk_size(cfg, Kind(op.value)), op
    assert chunk_size(cfg, isa.Opcode.LOAD_WEIGHT, values=True) == \
        hw_chunk_size(cfg, Kind.WEIGHT_VALUES) == isa.weight_values_bytes(cfg)


# ---- whole programs ----------------------------------------------------------------------

PROGRAM_CONFIGS = {
    "2x2-2of4-axi64": CONFIGS["2x2-2of4-axi64"],
    "2x3-1of1-axi128": ArrayConfig(rows=2, cols=3, n=1, m=1, axi_data_bits=128, **SMALL),
}
LATENCIES = [1, 5, 20]


def check_program(cfg: ArrayConfig, program, image: bytearray, prog_base: int, latency: int,
                  what: str, loads_ahead: int = operands.DEFAULT_LOADS_AHEAD) -> None:
    """``program`` (linked, its words at ``prog_base`` in ``image``) on the RTL and the model:
    every probe's cycles and ``run_cycles`` agree."""
    run = run_top(AxiAccelerator(cfg, loads_ahead=loads_ahead), bytearray(image),
                  prog_base=prog_base, prog_len=len(program) * isa.INSN_BYTES, latency=latency)
    assert run.status & 0b10, f"{what}: the run did not finish"
    assert not run.axi.errors, f"{what}: {run.axi.errors[:3]}"
    events = run.events
    (start,) = events["start"]
    timing = top_timing(cfg, program, latency=latency, start=start, prog_base=prog_base,
                        loads_ahead=loads_ahead)
    for name in ("dispatch", "data_in", "data_out", "store_done"):
        got, want = events[name], getattr(timing, name)
        if got != want:
            at = next((i for i, (g, w) in enumerate(zip(got, want, strict=False)) if g != w),
                      min(len(got), len(want)))
            raise AssertionError(
                f"{what}, L={latency}: {name} #{at} of {len(got)}: RTL {got[at:at + 3]}, model "
                f"{want[at:at + 3]} (of {len(want)})"
                + (f"; instruction {program[at]}" if name == "dispatch" else ""))
    assert run.counters["run_cycles"] == timing.run_cycles, f"{what}, L={latency}: run_cycles"


def _linked(cfg: ArrayConfig, prog, rng: np.random.Generator):
    mp = link(cfg, prog.program, prog.data_in, rng=rng)
    return list(mp.program), mp.image() + bytearray(4096), mp.prog_base


@pytest.mark.parametrize("latency", LATENCIES)
@pytest.mark.parametrize("name", PROGRAM_CONFIGS)
def test_program_cycles(name, latency, seed_for, request):
    """A random GEMM (random loop order) and a random conv, linked with random offsets and gaps
    (unaligned rows, strides): every dispatch, ``data_in`` and ``data_out`` handshake, STORE
    completion and ``run_cycles`` == the model."""
    cfg, rng = PROGRAM_CONFIGS[name], np.random.default_rng(seed_for(request.node.nodeid))
    order = ("k_inner", "cols_inner")[int(rng.integers(0, 2))]
    gemm = random_gemm_program(cfg, rng, order=order, zero_fraction=0.3)
    check_program(cfg, *_linked(cfg, gemm, rng), latency, f"GEMM ({order})")
    conv = random_conv_program(cfg, rng, zero_fraction=0.3, max_computes=16,
                               max_compute_beats=120)
    check_program(cfg, *_linked(cfg, conv, rng), latency, "conv")


def test_two_loads_ahead_program_cycles(seed_for, request):
    """The top with two read requests ahead of dispatch (``loads_ahead=2``): a random conv at
    ``L`` = 20, every cycle == the model with the same parameter."""
    cfg = PROGRAM_CONFIGS["2x2-2of4-axi64"]
    rng = np.random.default_rng(seed_for(request.node.nodeid))
    conv = random_conv_program(cfg, rng, zero_fraction=0.3, max_computes=16,
                               max_compute_beats=120)
    check_program(cfg, *_linked(cfg, conv, rng), 20, "conv", loads_ahead=2)


@pytest.mark.parametrize("latency", [1, 20])
@pytest.mark.parametrize("name", PROGRAM_CONFIGS)
def test_read_back_program_cycles(name, latency, seed_for, request):
    """A GEMM then a STORE, a LOAD_ACC of its bytes at once (held until the STORE completes)
    and a STORE (:func:`~sparsa.sim.axi_memory.with_readback`): every cycle == the model."""
    cfg, rng = PROGRAM_CONFIGS[name], np.random.default_rng(seed_for(request.node.nodeid))
    gemm = random_gemm_program(cfg, rng, order="k_inner")
    program, image, base = with_readback(cfg, link(cfg, gemm.program, gemm.data_in, rng=rng))
    check_program(cfg, program, image, base, latency, "read-back")


def test_fetch_overtakes_a_load_held_by_a_store():
    """A long STORE, a LOAD_WEIGHT of bytes it writes (held until it completes) and CONFIGs:
    the CONFIGs after the LOAD dispatch meanwhile, so fetch descriptors they make room for are
    taken before the held request (the model looks ahead for these); every cycle == the
    model."""
    cfg = CONFIGS["2x2-2of4-axi64"]
    program = [Instruction(Opcode.STORE, count=30, channels=2, raw=True, dram=0x2000, stride=8),
               Instruction(Opcode.LOAD_WEIGHT, addr=3, count=2, dram=0x20e3),
               *(Instruction(Opcode.CONFIG, height=i) for i in range(30))]
    for latency in (1, 9):
        events = run(cfg, program, latency)
        assert events["dispatch"][16] < events["data_in"][0], "no fetch overtook the LOAD"
        (start,) = events["start"]
        timing = top_timing(cfg, program, latency=latency, start=start, prog_base=PROG_BASE)
        for name in ("dispatch", "data_in", "data_out", "store_done"):
            assert events[name] == getattr(timing, name), f"{name}, L={latency}"


@pytest.mark.rtl
@pytest.mark.parametrize("name", PROGRAM_CONFIGS)
def test_larger_programs_run_cycles_on_the_native_harness(name, seed_for, request):
    """Larger programs (a conv of up to 400 COMPUTEs, a GEMM of up to 200 output rows) on the
    Verilated top with the same memory timing (:mod:`sparsa.sim.native_axi`): ``run_cycles`` ==
    the model, at a short and a long latency."""
    cfg, rng = PROGRAM_CONFIGS[name], np.random.default_rng(seed_for(request.node.nodeid))
    native = NativeAxiAccelerator(cfg)
    programs = [random_conv_program(cfg, rng, max_computes=400, max_compute_beats=3000),
                random_gemm_program(cfg, rng, order="cols_inner", max_beats=200)]
    for prog, latency in zip(programs, (20, 3), strict=True):
        mp = link(cfg, prog.program, prog.data_in, rng=rng)
        native.latency = latency
        timing = top_timing(cfg, mp.program, latency=latency, prog_base=mp.prog_base)
        assert native.run(mp).run_cycles == timing.run_cycles, \
            f"{len(mp.program)} instructions, L={latency}"
