"""Testbenches (cocotb) of :class:`~sparsa.hw.dma.DmaReader` (top ``sparsa_dma_reader``) and
:class:`~sparsa.hw.dma.DmaWriter` (top ``sparsa_dma_writer``); each test runs on its own top.

Memory is a cocotbext-axi ``AxiRamRead``/``AxiRamWrite`` (the engine has one half of the port)
filled with random bytes, with pause generators on every
channel (parameter ``pauses``: none, or heavy random backpressure and long stalls that act as
latency); the engine's own streams get random gaps and stalls in the heavy case. Descriptors are
random, plus the corner cases every run covers: a 1-byte row, unaligned bases and odd lengths,
rows crossing a 4 KiB page, a row longer than one 256-beat burst, overlapping rows (reads),
and an empty descriptor. Expected bytes are computed in Python from the memory image alone: the
reader's beats (bytes, count, last), and for the writer the whole memory afterwards, so a byte
written outside a row (a wrong ``wstrb``) fails as well. ``*_error`` tests make the memory
answer SLVERR and check ``error`` and the writer's completion.
A checker on every channel asserts that valid is held with a stable payload until ready, every
burst is a legal full-width INCR burst inside one 4 KiB page, at most ``max_outstanding`` bursts
are in flight, and at least two are seen in flight.
"""

from __future__ import annotations

import random

import cocotb
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
from cocotbext.axi import AxiRamRead, AxiRamWrite

from sparsa.hw.dma import DEFAULT_OUTSTANDING, descriptor_layout, read_beat_layout

from .axi_tb import (
    ChannelChecker,
    check_burst,
    manager_bus,
    pause_generator,
    start_streams,
    toplevel,
    value,
)
from .cocotb_util import load_config, seed_for, start_clock_and_reset
from .streams import RandomGaps, StreamSink, StreamSource

MEM_BYTES = 1 << 16
READER, WRITER = "sparsa_dma_reader", "sparsa_dma_writer"


def random_descriptors(rng: random.Random, bus_bytes: int, *, count: int,
                       overlap: bool) -> list[tuple[int, int, int, int]]:
    """``(base, stride, rows, row_bytes)``: the corner cases, then ``count`` random ones."""
    long_row = 256 * bus_bytes + rng.randint(1, 3 * bus_bytes)
    page = rng.randint(2, MEM_BYTES // 4096 - 4) * 4096
    cases = [
        (rng.randrange(MEM_BYTES // 2) | 1, 7, 3, 1),                      # 1-byte rows
        (page - rng.randint(1, 2 * bus_bytes), 4096, 2, rng.randint(3 * bus_bytes, 300)),
        (rng.randrange(bus_bytes, 4096), 0, 1, long_row),                  # > 256 beats
        (rng.randrange(MEM_BYTES), 64, 0, 5),                              # empty
    ]
    for _ in range(count):
        row_bytes = rng.choice([1, rng.randint(1, bus_bytes), rng.randint(1, 4 * bus_bytes),
                                rng.randint(1, 300)])
        rows = rng.randint(1, 5)
        gap = rng.randint(-row_bytes, 64) if overlap else rng.randint(0, 64)
        stride = max(row_bytes + gap, 0)
        base = rng.randrange(MEM_BYTES - rows * (row_bytes + 64) - 1)
        cases.append((base, stride, rows, row_bytes))
    rng.shuffle(cases)
    for base, stride, rows, row_bytes in cases:
        assert base + max(rows - 1, 0) * stride + row_bytes <= MEM_BYTES
    return cases


class Bench:
    """Clock, reset, the AXI memory with its pause generators, and the protocol checkers."""

    def __init__(self, dut, pauses: str, rng: random.Random, *, read: bool):
        self.dut, self.cfg, self.rng, self.read = dut, load_config(), rng, read
        self.bus_bytes = self.cfg.axi_data_bits // 8
        bus = manager_bus(dut, read=read, write=not read)
        self.ram = (AxiRamRead(bus.read, dut.clk, dut.rst, size=MEM_BYTES) if read else
                    AxiRamWrite(bus.write, dut.clk, dut.rst, size=MEM_BYTES))
        self.image = bytearray(rng.randbytes(MEM_BYTES))
        self.ram.write(0, bytes(self.image))
        channels = ([self.ram.ar_channel, self.ram.r_channel] if read else
                    [self.ram.aw_channel, self.ram.w_channel, self.ram.b_channel])
        for channel in channels:
            gen = pause_generator(pauses, rng)
            if gen is not None:
                channel.set_pause_generator(gen)
        self.errors: list[str] = []
        self.in_flight = self.max_in_flight = 0
        self.burst_lengths: list[int] = []
        self.w_beat = 0
        self.checkers = self._checkers()

    def _checkers(self) -> list[ChannelChecker]:
        ch = "ar" if self.read else "aw"
        addr = ChannelChecker(self.dut, f"axi__{ch}__", ch, ["addr", "len", "size", "burst"],
                              self._on_address)
        if self.read:
            return [addr, ChannelChecker(self.dut, "axi__r__", "r", ["data", "resp", "last"],
                                         self._on_r),
                    ChannelChecker(self.dut, "data__", "", ["payload"])]
        return [addr, ChannelChecker(self.dut, "axi__w__", "w", ["data", "strb", "last"],
                                     self._on_w),
                ChannelChecker(self.dut, "axi__b__", "b", ["resp"], self._on_b),
                ChannelChecker(self.dut, "done__", "", ["payload"])]

    def _on_address(self, beat: dict) -> None:
        prefix = "ar" if self.read else "aw"
        beat = {f"{prefix}{k}": v for k, v in beat.items()}
        self.errors += check_burst(beat, prefix, self.bus_bytes)
        self.burst_lengths.append(beat[f"{prefix}len"] + 1)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if self.in_flight > DEFAULT_OUTSTANDING:
            self.errors.append(f"{self.in_flight} bursts in flight, more than "
                               f"{DEFAULT_OUTSTANDING}")

    def _on_r(self, beat: dict) -> None:
        if beat["last"]:
            self.in_flight -= 1

    def _on_w(self, beat: dict) -> None:
        if not self.burst_lengths:
            self.errors.append("W beat before its AW burst")
            return
        self.w_beat += 1
        if beat["strb"] == 0:
            self.errors.append("W beat with no byte enabled")
        if beat["last"] != (self.w_beat == self.burst_lengths[0]):
            self.errors.append(f"wlast {beat['last']} on beat {self.w_beat} of a "
                               f"{self.burst_lengths[0]}-beat burst")
        if beat["last"]:
            self.burst_lengths.pop(0)
            self.w_beat = 0

    def _on_b(self, beat: dict) -> None:
        self.in_flight -= 1

    async def start(self, inputs: list) -> None:
        await start_clock_and_reset(self.dut, inputs)
        for checker in self.checkers:
            checker.start()

    def check(self, *, min_in_flight: int = 2) -> None:
        for checker in self.checkers:
            self.errors += checker.errors
        assert not self.errors, "; ".join(self.errors[:5])
        assert self.in_flight == 0, f"{self.in_flight} bursts still in flight"
        assert self.max_in_flight >= min_in_flight, (
            f"at most {self.max_in_flight} bursts seen in flight")

    async def wait_for(self, condition, *, limit: int, what: str) -> None:
        for _ in range(limit):
            await RisingEdge(self.dut.clk)
            await ReadOnly()
            if condition():
                return
        raise AssertionError(f"timeout after {limit} cycles waiting for {what}")


def pack_descriptor(cfg, base: int, stride: int, rows: int, row_bytes: int) -> int:
    return descriptor_layout(cfg).const({"base": base, "stride": stride, "rows": rows,
                                         "row_bytes": row_bytes}).as_bits()


def expected_read_beats(image: bytes, descs, bus_bytes: int) -> list[tuple[bytes, bool]]:
    beats = []
    for base, stride, rows, row_bytes in descs:
        if not row_bytes:
            continue
        for i in range(rows):
            row = image[base + i * stride:base + i * stride + row_bytes]
            chunks = [row[j:j + bus_bytes] for j in range(0, row_bytes, bus_bytes)]
            beats += [(c, j == len(chunks) - 1) for j, c in enumerate(chunks)]
    return beats


def unpack_read_beat(cfg, bits: int) -> tuple[bytes, bool]:
    beat = read_beat_layout(cfg).from_bits(bits)
    count = int(beat.count)
    return beat.data.as_bits().to_bytes(cfg.axi_data_bits // 8, "little")[:count], bool(beat.last)


@cocotb.test(timeout_time=20, timeout_unit="ms", skip=toplevel() != READER)
@cocotb.parametrize(pauses=["none", "heavy"])
async def reader_random(dut, pauses: str) -> None:
    rng = seed_for(f"dma-reader-{pauses}").rng()
    bench = Bench(dut, pauses, rng, read=True)
    cfg, heavy = bench.cfg, pauses != "none"
    descs = random_descriptors(rng, bench.bus_bytes, count=40, overlap=True)
    expected = expected_read_beats(bench.image, descs, bench.bus_bytes)
    source = StreamSource("desc", [], pacing=RandomGaps(rng, 0.3 if heavy else 0.0))
    sink = StreamSink("data", pacing=RandomGaps(rng, 0.3 if heavy else 0.0))
    await bench.start([dut.desc__valid, dut.data__ready])
    start_streams(dut, [source, sink])
    source.send(pack_descriptor(cfg, *d) for d in descs)
    await bench.wait_for(lambda: len(sink.received) >= len(expected) and not value(dut.busy),
                         limit=40 * len(expected) + 2000, what="every row's beats")
    await ClockCycles(dut.clk, 20)
    got = [unpack_read_beat(cfg, bits) for bits in sink.received]
    assert len(got) == len(expected), f"{len(got)} beats, expected {len(expected)}"
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        assert g == e, f"beat {i}: got {g[0].hex()} last={g[1]}, expected {e[0].hex()} last={e[1]}"
    bench.check()
    assert not value(dut.error), "error set without an error response"
    dut._log.info("%d descriptors, %d beats, %d bursts, up to %d in flight", len(descs),
                  len(got), bench.checkers[0].transfers, bench.max_in_flight)


def poison(ram, lo: int, hi: int, *, read: bool) -> None:
    """Make the memory answer SLVERR for accesses to ``[lo, hi)``."""
    inner = ram._read if read else ram._write

    async def access(address, *args):
        if lo <= address < hi or lo < address + (args[0] if read else len(args[0])) <= hi:
            raise OSError(f"poisoned address {address:#x}")
        return await inner(address, *args)
    if read:
        ram._read = access
    else:
        ram._write = access


@cocotb.test(timeout_time=5, timeout_unit="ms", skip=toplevel() != READER)
async def reader_error(dut) -> None:
    """A SLVERR read sets ``error`` (the row's beats still arrive); an idle reader clears it
    when it accepts the next descriptor."""
    rng = seed_for("dma-reader-error").rng()
    bench = Bench(dut, "none", rng, read=True)
    cfg, b = bench.cfg, bench.bus_bytes
    poison(bench.ram, 0x3000, 0x3000 + b, read=True)
    source, sink = StreamSource("desc", []), StreamSink("data")
    await bench.start([dut.desc__valid, dut.data__ready])
    start_streams(dut, [source, sink])
    descs = [(0x2FF0, 0x40, 3, 3 * b + 5), (0x100, 0, 1, 5 * b)]
    source.send([pack_descriptor(cfg, *descs[0])])
    beats = len(expected_read_beats(bench.image, descs[:1], b))
    await bench.wait_for(lambda: len(sink.received) >= beats and not value(dut.busy),
                         limit=2000, what="the rows of the failing descriptor")
    assert value(dut.error), "error not set by a SLVERR response"
    source.send([pack_descriptor(cfg, *descs[1])])
    await bench.wait_for(lambda: not value(dut.error), limit=50, what="error cleared")
    expected = expected_read_beats(bench.image, descs, b)
    await bench.wait_for(lambda: len(sink.received) >= len(expected) and not value(dut.busy),
                         limit=2000, what="the next descriptor's rows")
    got = [unpack_read_beat(cfg, bits) for bits in sink.received]
    assert got[beats:] == expected[beats:], "the descriptor after the error read wrong bytes"
    assert not value(dut.error)
    bench.check(min_in_flight=1)


def writer_rows(rng: random.Random, descs, bus_bytes: int, image: bytearray) -> list[int]:
    """Random bytes for every row of ``descs``, written into ``image`` in order (the expected
    memory), as the writer's left-aligned beats (a row's last beat padded with junk)."""
    beats = []
    for base, stride, rows, row_bytes in descs:
        for i in range(rows if row_bytes else 0):
            row = rng.randbytes(row_bytes)
            image[base + i * stride:base + i * stride + row_bytes] = row
            padded = row + rng.randbytes(-row_bytes % bus_bytes)
            beats += [int.from_bytes(padded[j:j + bus_bytes], "little")
                      for j in range(0, len(padded), bus_bytes)]
    return beats


def compare_memory(got: bytes, expected: bytes) -> None:
    bad = [i for i in range(len(expected)) if got[i] != expected[i]]
    if bad:
        at = bad[0]
        raise AssertionError(f"{len(bad)} bytes differ, first at {at:#x}: got "
                             f"{got[at:at + 8].hex()}, expected {expected[at:at + 8].hex()}")


async def start_writer(dut, bench: Bench, rng: random.Random, heavy: bool):
    idle = 0.3 if heavy else 0.0
    sources = (StreamSource("desc", [], pacing=RandomGaps(rng, idle)),
               StreamSource("data", [], pacing=RandomGaps(rng, idle)))
    done = StreamSink("done", pacing=RandomGaps(rng, idle))
    await bench.start([dut.desc__valid, dut.data__valid, dut.done__ready])
    start_streams(dut, [*sources, done])
    return (*sources, done)


@cocotb.test(timeout_time=20, timeout_unit="ms", skip=toplevel() != WRITER)
@cocotb.parametrize(pauses=["none", "heavy"])
async def writer_random(dut, pauses: str) -> None:
    rng = seed_for(f"dma-writer-{pauses}").rng()
    bench = Bench(dut, pauses, rng, read=False)
    cfg, b = bench.cfg, bench.bus_bytes
    descs = random_descriptors(rng, b, count=30, overlap=False)
    expected = bytearray(bench.image)
    beats = writer_rows(rng, descs, b, expected)
    desc, data, done = await start_writer(dut, bench, rng, pauses != "none")
    desc.send(pack_descriptor(cfg, *d) for d in descs)
    data.send(beats)
    await bench.wait_for(lambda: len(done.received) >= len(descs) and not value(dut.busy),
                         limit=40 * len(beats) + 4000, what="every descriptor's completion")
    await ClockCycles(dut.clk, 20)
    assert len(done.received) == len(descs), f"{len(done.received)} completions for {len(descs)}"
    assert not any(done.received), "a completion reported an error"
    assert data.done, f"{len(data.payloads) - data.sent} data beats left over"
    compare_memory(bench.ram.read(0, MEM_BYTES), expected)
    bench.check()
    assert not value(dut.error)
    dut._log.info("%d descriptors, %d beats, %d bursts, up to %d in flight", len(descs),
                  len(beats), bench.checkers[0].transfers, bench.max_in_flight)


@cocotb.test(timeout_time=5, timeout_unit="ms", skip=toplevel() != WRITER)
async def writer_error(dut) -> None:
    """A SLVERR write response reaches ``done`` and ``error``; the next descriptor's
    completion is clean again and its bytes land."""
    rng = seed_for("dma-writer-error").rng()
    bench = Bench(dut, "none", rng, read=False)
    cfg, b = bench.cfg, bench.bus_bytes
    poison(bench.ram, 0x3000, 0x3000 + b, read=False)
    descs = [(0x2FF0, 0x40, 3, 3 * b + 5), (0x100, 0, 1, 5 * b + 3)]
    expected = bytearray(bench.image)
    beats = writer_rows(rng, descs, b, expected)
    desc, data, done = await start_writer(dut, bench, rng, False)
    desc.send([pack_descriptor(cfg, *descs[0])])
    data.send(beats)
    await bench.wait_for(lambda: len(done.received) >= 1, limit=2000, what="the first completion")
    assert done.received == [1], f"completion {done.received}, expected the error bit"
    assert value(dut.error), "error not set by a SLVERR response"
    desc.send([pack_descriptor(cfg, *descs[1])])
    await bench.wait_for(lambda: len(done.received) >= 2 and not value(dut.busy), limit=2000,
                         what="the second completion")
    assert done.received == [1, 0], f"completions {done.received}"
    assert not value(dut.error)
    got = bench.ram.read(0, MEM_BYTES)
    lo, hi = descs[1][0], descs[1][0] + descs[1][3]
    compare_memory(got[lo:hi], expected[lo:hi])
    bench.check(min_in_flight=1)
