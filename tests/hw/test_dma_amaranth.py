# amaranth: UnusedElaboratable=no
"""Memory-system blocks without a Verilog toolchain: constructor checks, the port names the
testbenches bind to, the CSR table; in Amaranth's simulator, the burst planner against an
independent Python plan (the 256-beat limit below a 4 KiB page at 32 bits, the page limit at
1024 bits) and both aligners against bytes computed here, each with its documented cycle
cost."""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import Fragment
from amaranth.lib import data
from amaranth.sim import Simulator

from sparsa.config import ArrayConfig
from sparsa.hw.axi import AxiLiteSignature, AxiReadSignature
from sparsa.hw.csr import COUNTER_BASE, CsrBlock
from sparsa.hw.dma import DmaReader, DmaWriter
from sparsa.hw.dma_units import BurstPlanner, ReadAligner, WriteAligner, descriptor_layout
from sparsa.hw.export import build_top, port_list
from sparsa.hw.layouts import counters as counter_layout


def exported_csr(cfg: ArrayConfig) -> CsrBlock:
    """The CSR block as exported (elaborated once, as an export would)."""
    csr = build_top(cfg, "csr")
    Fragment.get(csr, None)
    return csr


def test_constructors_check_their_arguments():
    with pytest.raises(TypeError, match="ArrayConfig"):
        DmaReader("cfg")
    with pytest.raises(TypeError, match="max_outstanding"):
        DmaWriter(ArrayConfig(), max_outstanding=2.0)
    with pytest.raises(ValueError, match="at least two"):
        DmaReader(ArrayConfig(), max_outstanding=1)
    with pytest.raises(ValueError, match="power of two"):
        AxiReadSignature(addr_bits=32, data_bits=96)
    with pytest.raises(ValueError, match="32 or 64"):
        AxiLiteSignature(addr_bits=8, data_bits=16)
    with pytest.raises(TypeError, match="StructLayout"):
        CsrBlock(ArrayConfig(), counters=["cycles"])


def test_ports_are_named_by_the_axi_spec():
    cfg = ArrayConfig(axi_data_bits=256, axi_addr_bits=40)
    reader = {p["name"]: p for p in port_list(DmaReader(cfg))}
    assert reader["axi__ar__araddr"] == {"name": "axi__ar__araddr", "direction": "output",
                                         "width": 40}
    assert reader["axi__r__rdata"]["width"] == 256
    assert reader["axi__r__rready"]["direction"] == "output"
    writer = {p["name"]: p for p in port_list(DmaWriter(cfg))}
    assert writer["axi__w__wstrb"]["width"] == 32
    assert {"axi__aw__awlen", "axi__w__wlast", "axi__b__bresp"} <= set(writer)
    csr = {p["name"]: p for p in port_list(exported_csr(cfg))}
    assert csr["csr__aw__awaddr"]["direction"] == "input"
    assert csr["csr__r__rdata"] == {"name": "csr__r__rdata", "direction": "output", "width": 32}
    assert csr["prog_base"]["width"] == 40


def test_csr_table_is_consistent():
    registers = exported_csr(ArrayConfig()).registers
    offsets = [r.offset for r in registers]
    assert len(set(offsets)) == len(offsets)
    assert all(off % 4 == 0 for off in offsets)
    counters = [r for r in registers if r.access == "r"]
    assert [r.offset for r in counters] == [COUNTER_BASE + 4 * i for i in range(len(counters))]
    with pytest.raises(ValueError, match="at most 32 bits"):
        CsrBlock(ArrayConfig(), counters=data.StructLayout({"a": 33}))
    assert [r.name for r in CsrBlock(ArrayConfig(), counters=counter_layout(["a", "b"]))
            .registers[-2:]] == ["a", "b"]


def plan(desc, bus_bytes, addr_bits):
    """Rows (offset, bytes, last) and bursts (addr, len) of one descriptor, from the AXI rules."""
    base, stride, rows, row_bytes = desc
    out_rows, bursts = [], []
    for i in range(rows if row_bytes else 0):
        start = (base + i * stride) % (1 << addr_bits)
        out_rows.append((start % bus_bytes, row_bytes, int(i == rows - 1)))
        beat, last = start // bus_bytes, (start + row_bytes - 1) // bus_bytes
        while beat <= last:
            to_page = (4096 - beat * bus_bytes % 4096) // bus_bytes
            n = min(last - beat + 1, 256, to_page)
            bursts.append((beat * bus_bytes, n - 1))
            beat += n
    return out_rows, bursts


def random_descriptors(rng: random.Random, bus_bytes: int, count: int):
    descs = [(4096 - 3, 4096 + 5, 3, 7), (1, 0, 1, 256 * bus_bytes + 9), (17, 5, 0, 9),
             (bus_bytes * 3, 64, 2, 0), (12345, 1, 4, 1)]
    for _ in range(count):
        row_bytes = rng.choice([1, rng.randint(1, 3 * bus_bytes), rng.randint(1, 9000)])
        descs.append((rng.randrange(1 << 20), rng.randrange(1 << 14), rng.randint(1, 4),
                      row_bytes))
    return descs


@pytest.mark.parametrize("bits", [32, 128, 1024])
@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_burst_planner_follows_the_rules(bits, stall, seed_for):
    rng = random.Random(seed_for(f"burst-planner-{bits}-{stall}"))
    cfg = ArrayConfig(axi_data_bits=bits, axi_addr_bits=24)
    bus_bytes = bits // 8
    descs = random_descriptors(rng, bus_bytes, 12)
    dut = BurstPlanner(cfg)
    got_rows, got_bursts, cycles = [], [], []

    async def bench(ctx):
        pending, busy_cycles = list(descs), 0
        while pending or not ctx.get(dut.idle):
            for port in (dut.row, dut.burst):
                ctx.set(port.ready, rng.random() >= stall)
            if pending:
                base, stride, rows, row_bytes = pending[0]
                ctx.set(dut.desc.payload, {"base": base % (1 << 24), "stride": stride,
                                           "rows": rows, "row_bytes": row_bytes})
            ctx.set(dut.desc.valid, bool(pending))
            if pending and ctx.get(dut.desc.ready):
                pending.pop(0)
            if ctx.get(dut.row.valid) and ctx.get(dut.row.ready):
                row = ctx.get(dut.row.payload)
                got_rows.append((int(row.offset), int(row.bytes), int(row.last)))
            if ctx.get(dut.burst.valid) and ctx.get(dut.burst.ready):
                burst = ctx.get(dut.burst.payload)
                got_bursts.append((int(burst.addr), int(burst.len)))
            busy_cycles += 1
            await ctx.tick()
        cycles.append(busy_cycles)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    expected = [plan(d, bus_bytes, 24) for d in descs]
    assert got_rows == [r for rows, _ in expected for r in rows]
    assert got_bursts == [b for _, bursts in expected for b in bursts]
    if not stall:   # documented cost: 1 cycle per descriptor, 1 per burst (a row with its first)
        assert cycles == [sum(1 + len(bursts) for _, bursts in expected)]
    assert descriptor_layout(cfg).size == 4 * 24


def run_streams(dut, sources: dict, sinks: list, rng: random.Random, stall: float):
    """Drive ``sources`` (port -> list of payloads) and take ``sinks`` (ports) in Amaranth's
    simulator until every source is drained and nothing is left in flight; returns what each
    sink received and the cycles taken."""
    received = {id(port): [] for port in sinks}
    cycles = []

    async def bench(ctx):
        queues = {id(p): (p, list(items)) for p, items in sources.items()}
        count, quiet = 0, 0
        while quiet < 4:
            for port, items in queues.values():
                ctx.set(port.valid, bool(items) and rng.random() >= stall)
                if items:
                    ctx.set(port.payload, items[0])
            for port in sinks:
                ctx.set(port.ready, rng.random() >= stall)
            moved = False
            for port, items in queues.values():
                if ctx.get(port.valid) and ctx.get(port.ready):
                    items.pop(0)
                    moved = True
            for port in sinks:
                if ctx.get(port.valid) and ctx.get(port.ready):
                    received[id(port)].append(ctx.get(port.payload))
                    moved = True
            quiet = 0 if moved or any(items for _, items in queues.values()) else quiet + 1
            count += moved
            await ctx.tick()
        cycles.append(count)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return [received[id(port)] for port in sinks], cycles[0]


def random_rows(rng: random.Random, bus_bytes: int):
    """(start address, length) of rows: unaligned, 1-byte, one beat, several beats."""
    return [(rng.randrange(4 * bus_bytes),
             rng.choice([1, bus_bytes, rng.randint(1, 5 * bus_bytes)])) for _ in range(20)]


@pytest.mark.parametrize("bits", [32, 128])
@pytest.mark.parametrize("stall", [0.0, 0.4])
def test_read_aligner(bits, stall, seed_for):
    """Left-aligned bytes, count and last per row; ``k + 1`` cycles for a row of ``k`` beats,
    ``k`` when it follows a row whose input beats are as many as its output beats."""
    rng = random.Random(seed_for(f"read-aligner-{bits}-{stall}"))
    cfg, b = ArrayConfig(axi_data_bits=bits), bits // 8
    memory = rng.randbytes(16 * b)
    rows = random_rows(rng, b)
    beats, expected = [], []
    for start, length in rows:
        first, last = start // b, (start + length - 1) // b
        beats += [list(memory[i * b:(i + 1) * b]) for i in range(first, last + 1)]
        row = memory[start:start + length]
        expected += [(row[j:j + b], j + b >= length) for j in range(0, length, b)]
    dut = ReadAligner(cfg)
    (out,), cycles = run_streams(dut, {
        dut.row: [{"offset": s % b, "bytes": n, "last": 0} for s, n in rows],
        dut.beat: beats}, [dut.out], rng, stall)
    got = [(bytes(int(x) for x in beat.data)[:int(beat.count)], bool(beat.last)) for beat in out]
    assert got == expected
    if not stall:
        held_end = [-(-n // b) == (s % b + n + b - 1) // b for s, n in rows]
        assert cycles == sum(-(-n // b) + 1 for _, n in rows) - sum(held_end[:-1])


@pytest.mark.parametrize("bits", [32, 128])
@pytest.mark.parametrize("stall", [0.0, 0.4])
def test_write_aligner(bits, stall, seed_for):
    """Bus beats with ``wstrb`` covering exactly each row, ``wlast`` per burst; one beat a
    cycle."""
    rng = random.Random(seed_for(f"write-aligner-{bits}-{stall}"))
    cfg, b = ArrayConfig(axi_data_bits=bits), bits // 8
    rows = random_rows(rng, b)
    data_beats, bursts, rows_in, row_bytes = [], [], [], []
    memory, expected = bytearray(16 * b), bytearray(16 * b)
    for start, length in rows:
        row = rng.randbytes(length)
        expected[start:start + length] = row
        row_bytes.append(row)
        padded = row + rng.randbytes(-length % b)
        data_beats += [list(padded[j:j + b]) for j in range(0, len(padded), b)]
        _, row_bursts = plan((start, 0, 1, length), b, 32)
        bursts += [[n for _, n in row_bursts]]
        rows_in.append({"offset": start % b, "bytes": length, "last": 1})
    dut = WriteAligner(cfg)
    (out,), cycles = run_streams(dut, {dut.row: rows_in, dut.beat: data_beats,
                                       dut.burst: [n for row in bursts for n in row]},
                                 [dut.out], rng, stall)
    beats = iter(out)
    for (start, length), row_bursts, row in zip(rows, bursts, row_bytes, strict=True):
        addr = start // b * b
        for n in row_bursts:
            for i in range(n + 1):
                beat = next(beats)
                assert int(beat.last) == (i == n)
                lanes = int(beat.data).to_bytes(b, "little")
                for lane in range(b):
                    if int(beat.strb) >> lane & 1:
                        memory[addr + lane] = lanes[lane]
                addr += b
        assert memory[start:start + length] == row
    assert next(beats, None) is None
    assert memory == expected, "a strobe enabled a byte outside its row"
    if not stall:
        assert cycles == sum((s % b + n + b - 1) // b for s, n in rows)
