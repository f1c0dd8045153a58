# amaranth: UnusedElaboratable=no
"""The memory-mapped accelerator (:class:`~sparsa.hw.top.AxiAccelerator`) in Amaranth's simulator,
behind the Python AXI memory of :mod:`sparsa.sim.axi_memory` (fixed read latency, random pauses,
protocol checks) and driven through its CSRs: random GEMM and convolution programs linked into
memory (:func:`sparsa.sim.memory_image.link`, random offsets and gaps) end with the whole memory
equal to the golden executor's run on the same image (with slow memory, after a second start
written while busy, which must be ignored), the outputs equal to the golden ``data_out`` rows,
the core's counters equal to the counts the cycle model reads off the program, and the top's AXI
beat counts equal to the beats computed here from the operands' addresses. A DMA error reads as
``status.error``; a LOAD right after a STORE of the same bytes reads the stored bytes. The
:class:`~sparsa.hw.packer.ChunkPacker` alone: chunks against bytes cut here, and its documented
cost of one cycle per piece."""

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from sparsa import isa
from sparsa.config import ArrayConfig
from sparsa.hw.export import port_list
from sparsa.hw.fetch import DEFAULT_FETCH_INSNS
from sparsa.hw.packer import ChunkPacker
from sparsa.hw.top import ALL_COUNTERS, AxiAccelerator
from sparsa.isa import Opcode
from sparsa.sim.axi_memory import run_top, with_readback
from sparsa.sim.golden_accel import GoldenAccelerator
from sparsa.sim.memory_image import link
from sparsa.sim.programs import random_conv_program, random_gemm_program
from sparsa.sw.accel_timing import program_counts

SMALL = dict(act_buffer_kib=1, weight_buffer_kib=1, acc_buffer_kib=1)
CONFIGS = {
    "2x2-2of4-axi64": ArrayConfig(rows=2, cols=2, n=2, m=4, axi_data_bits=64, **SMALL),
    "2x3-1of4-axi32": ArrayConfig(rows=2, cols=3, n=1, m=4, axi_data_bits=32, **SMALL),
    "3x2-1of1-axi128": ArrayConfig(rows=3, cols=2, n=1, m=1, axi_data_bits=128, **SMALL),
}
# (read latency, pause probability of every subordinate channel)
MEMORIES = {"ideal": (1, 0.0), "slow": (12, 0.3)}


def test_constructor_checks_its_arguments():
    with pytest.raises(TypeError, match="ArrayConfig"):
        AxiAccelerator("cfg")
    with pytest.raises(ValueError, match="multiples of 8"):
        AxiAccelerator(ArrayConfig(act_width=4))
    with pytest.raises(ValueError, match="multiples of 8"):
        AxiAccelerator(ArrayConfig(acc_width=20))
    with pytest.raises(TypeError, match="insns must be a positive integer"):
        AxiAccelerator(ArrayConfig(), fetch_insns=0)
    with pytest.raises(ValueError, match="whole fetch descriptor"):
        AxiAccelerator(ArrayConfig(), fetch_insns=8, insn_depth=4)
    with pytest.raises(TypeError, match="loads_ahead must be a positive integer, not 0"):
        AxiAccelerator(ArrayConfig(), loads_ahead=0)


def test_ports_are_the_axi_port_the_csr_port_and_irq():
    ports = {p["name"]: p for p in port_list(AxiAccelerator(ArrayConfig(axi_data_bits=256)))}
    assert ports["axi__r__rdata"]["width"] == 256
    assert ports["axi__w__wstrb"] == {"name": "axi__w__wstrb", "direction": "output", "width": 32}
    assert ports["csr__r__rdata"]["direction"] == "output"
    assert ports["irq"] == {"name": "irq", "direction": "output", "width": 1}
    assert {p.split("__")[0] for p in ports} == {"clk", "rst", "axi", "csr", "irq"}


def _beats(addr: int, nbytes: int, bus: int) -> int:
    return (addr + nbytes - 1) // bus - addr // bus + 1 if nbytes else 0


def expected_beats(cfg: ArrayConfig, mp) -> tuple[int, int]:
    """AXI read and write data beats of a linked program, from its addresses: fetch rows of
    ``DEFAULT_FETCH_INSNS`` words, each LOAD's rows, each STORE's rows (bus-aligned beats)."""
    bus, step = cfg.axi_data_bits // 8, DEFAULT_FETCH_INSNS * 16
    reads = sum(_beats(mp.prog_base + a, min(step, mp.prog_len - a), bus)
                for a in range(0, mp.prog_len, step))
    writes = 0
    for i in mp.program:
        if i.opcode == Opcode.LOAD_ACT:
            reads += sum(_beats(i.dram + p * i.stride, i.channels * cfg.act_width // 8, bus)
                         for p in range(i.pixels))
        elif i.opcode in (Opcode.LOAD_WEIGHT, Opcode.LOAD_ACC, Opcode.LOAD_SCALE):
            count = 1 if i.opcode == Opcode.LOAD_SCALE else i.count
            reads += _beats(i.dram, count * isa.row_bytes(cfg, i), bus)
        elif i.opcode == Opcode.STORE:
            size = i.channels * (cfg.acc_width if i.raw else cfg.act_width) // 8
            writes += sum(_beats(i.dram + r * i.stride, size, bus) for r in range(i.count))
    return reads, writes


def check_program(cfg: ArrayConfig, prog, rng: np.random.Generator, memory: str) -> None:
    mp = link(cfg, prog.program, prog.data_in, rng=rng)
    image = mp.image() + bytearray(4096)      # bursts may read past the last byte
    latency, pause = MEMORIES[memory]
    run = run_top(AxiAccelerator(cfg), bytearray(image), prog_base=mp.prog_base,
                  prog_len=mp.prog_len, latency=latency, pause=pause,
                  seed=int(rng.integers(1 << 31)), restart=memory == "slow")
    assert not run.axi.errors, "; ".join(run.axi.errors[:5])
    if run.status_running is not None:     # a second start while busy is ignored (below)
        assert run.status_running == 0b0001, f"status {run.status_running:#06b} while running"
    assert run.status == 0b1010, f"status {run.status:#06b}: expected done and irq only"
    golden = GoldenAccelerator(cfg)
    expected_memory = bytearray(image)
    golden.run_in_memory(mp.program, expected_memory)
    rows = GoldenAccelerator(cfg).run(mp.program, prog.data_in)
    stores = [i for i in mp.program if i.opcode == Opcode.STORE for _ in range(i.count)]
    got = mp.read_outputs(cfg, lambda addr, n: bytes(run.memory[addr:addr + n]))
    for k, (row, insn, out) in enumerate(zip(rows, stores, got, strict=True)):
        np.testing.assert_array_equal(out, row[:insn.channels], err_msg=f"output row {k}")
    changed = [a for a in range(len(image)) if run.memory[a] != expected_memory[a]]
    assert not changed, f"{len(changed)} bytes differ from golden, first at {changed[0]:#x}"
    counts = {**program_counts(cfg, mp.program), "gated_macs": golden.gated_macs,
              "insns_fetched": len(mp.program)}
    reads, writes = expected_beats(cfg, mp)
    counts |= {"axi_read_beats": reads, "axi_write_beats": writes}
    for name, value in counts.items():
        assert run.counters[name] == value, \
            f"counter {name}: {run.counters[name]}, expected {value}"
    assert (run.axi.read_beats, run.axi.write_beats) == (reads, writes)
    assert set(run.counters) == set(ALL_COUNTERS)
    if latency > 1:
        assert run.axi.max_reads_in_flight >= 2


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("memory", MEMORIES)
def test_random_gemm_programs(name, memory, seed_for, request):
    cfg = CONFIGS[name]
    rng = np.random.default_rng(seed_for(request.node.nodeid))
    order = "k_inner" if memory == "ideal" else "cols_inner"
    check_program(cfg, random_gemm_program(cfg, rng, order=order, zero_fraction=0.3), rng, memory)


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("memory", MEMORIES)
def test_random_conv_programs(name, memory, seed_for, request):
    cfg = CONFIGS[name]
    rng = np.random.default_rng(seed_for(request.node.nodeid))
    check_program(cfg, random_conv_program(cfg, rng, zero_fraction=0.3, max_computes=40,
                                           max_compute_beats=200), rng, memory)


def pieces(row_bytes: int, size: int, bus: int) -> int:
    """Cycles the packer spends on a row at full rate: one per piece, the bytes between
    consecutive beat or chunk boundaries."""
    cuts = {k for k in range(1, row_bytes) if k % bus == 0 or k % size == 0}
    return len(cuts) + 1


@pytest.mark.parametrize("bits", [32, 128])
@pytest.mark.parametrize("stall", [0.0, 0.4])
def test_chunk_packer_cuts_rows_into_chunks(bits, stall, seed_for, request):
    """Random jobs (chunk size, rows of random lengths): each row's bytes in chunks of the
    job's size, the last one of a row zero-filled; at full rate one cycle per piece."""
    rng = random.Random(seed_for(request.node.nodeid))
    cfg, width = ArrayConfig(axi_data_bits=bits), 24
    bus = bits // 8
    dut = ChunkPacker(cfg, chunk_bytes=width)
    jobs = []
    for _ in range(12):
        size = rng.choice([1, 3, bus, width, rng.randint(1, width)])
        rows = [rng.randbytes(rng.choice([1, size, 3 * size, rng.randint(1, 70)]))
                for _ in range(rng.randint(1, 3))]
        jobs.append((rng.randrange(8), size, rows))
    expected = [(kind, row[k:k + size].ljust(size, b"\0").ljust(width, b"\0"))
                for kind, size, rows in jobs for row in rows for k in range(0, len(row), size)]
    got, cycles = [], []

    async def source(ctx):
        for kind, size, rows in jobs:
            ctx.set(dut.job.payload, {"kind": kind, "size": size, "rows": len(rows)})
            ctx.set(dut.job.valid, 1)
            for row in rows:
                for k in range(0, len(row), bus):
                    part = row[k:k + bus]
                    ctx.set(dut.beat.payload, {"data": list(part.ljust(bus, b"\xa5")),
                                               "count": len(part), "last": k + bus >= len(row)})
                    ctx.set(dut.beat.valid, 1)
                    await ctx.tick().until(dut.beat.ready)
            ctx.set(dut.beat.valid, 0)
            ctx.set(dut.job.valid, 0)

    async def sink(ctx):
        cycle = 0
        while len(got) < len(expected):
            ready = rng.random() >= stall
            ctx.set(dut.chunk.ready, ready)
            if ready and ctx.get(dut.chunk.valid):
                chunk = ctx.get(dut.chunk.payload)
                got.append((chunk.kind, chunk.data.to_bytes(width, "little")))
                cycles.append(cycle)
            await ctx.tick()
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source, background=True)
    sim.add_testbench(sink)
    sim.run()
    assert got == expected
    if stall == 0:
        total = sum(pieces(len(row), size, bus) for _, size, rows in jobs for row in rows)
        assert cycles[-1] + 1 == total, "one cycle per piece, back to back"


@pytest.mark.parametrize("target", [Opcode.LOAD_WEIGHT, Opcode.STORE])
def test_a_dma_error_sets_status_error(target, seed_for, request):
    """A bus beat of the first LOAD_WEIGHT (or STORE) answered SLVERR: the program still runs
    to the end and ``status`` reads done, error and irq."""
    cfg = CONFIGS["2x2-2of4-axi64"]
    rng = np.random.default_rng(seed_for(request.node.nodeid))
    prog = random_gemm_program(cfg, rng, order="k_inner")
    mp = link(cfg, prog.program, prog.data_in)
    bus = cfg.axi_data_bits // 8
    dram = next(i.dram for i in mp.program if i.opcode == target) // bus * bus
    run = run_top(AxiAccelerator(cfg), mp.image() + bytearray(4096), prog_base=mp.prog_base,
                  prog_len=mp.prog_len, faulty=range(dram, dram + bus))
    assert run.status == 0b1110, f"status {run.status:#06b}: expected done, error and irq"


def test_a_load_reads_what_an_earlier_store_wrote(seed_for, request):
    """A GEMM program, then a STORE, a LOAD of the bytes it wrote and a STORE of the loaded
    row (:func:`~sparsa.sim.axi_memory.with_readback`): the memory afterwards equals the
    golden executor's, which runs the program in order, also when writes are slow."""
    cfg = CONFIGS["2x2-2of4-axi64"]
    rng = np.random.default_rng(seed_for(request.node.nodeid))
    prog = random_gemm_program(cfg, rng, order="k_inner")
    program, image, base = with_readback(cfg, link(cfg, prog.program, prog.data_in))
    expected = bytearray(image)
    GoldenAccelerator(cfg).run_in_memory(program, expected)
    for seed in range(4):     # random pauses: writes slower than reads in some runs
        run = run_top(AxiAccelerator(cfg), bytearray(image), prog_base=base,
                      prog_len=16 * len(program), pause=0.5, seed=int(rng.integers(1 << 31)))
        assert run.memory == expected, f"run {seed}"
