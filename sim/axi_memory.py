"""AXI models for Amaranth's simulator: a bytearray-backed AXI4 subordinate (memory) that checks
the manager's side of the protocol, and a small AXI4-Lite manager for a CSR port.

:class:`AxiMemory` answers one manager port (an ``Out(AxiManagerSignature)`` member of the
component under test). Timing, chosen so a cycle model can be written against it: an ``ar``
handshake in cycle ``t`` makes the burst's first beat valid in cycle ``t + latency`` (at the
earliest: bursts are answered in order, one beat per cycle), and ``arready``, ``rvalid``,
``awready``, ``wready`` and ``bvalid`` pause at random with probability ``pause`` per cycle
(``rng``). A write burst's response is valid from the cycle after its last ``w`` beat. Beats at
bus-aligned addresses in ``faulty`` answer SLVERR (reads; a write burst touching them is
answered SLVERR and its bytes there are not written).

Checks (each violation is recorded in :attr:`AxiMemory.errors`): a manager's ``valid`` is held
with a stable payload until ``ready`` (``ar``, ``aw``, ``w``), every burst is a full-width INCR
burst of at most 256 beats that does not cross a 4 KiB boundary and lies inside the memory,
``wlast`` marks exactly the last beat of each burst, and no write beat has an empty ``wstrb``.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

from sparsa.hw.axi import MAX_BURST_BEATS, PAGE_BYTES

__all__ = ["AxiLiteDriver", "AxiMemory", "TopRun", "burst_errors", "run_top", "with_readback"]

SLVERR = 0b10


def burst_errors(addr: int, length: int, size: int, burst: int, bus_bytes: int,
                 memory_bytes: int) -> list[str]:
    """What is wrong with an AR/AW burst (``length`` beats)."""
    errors = []
    if burst != 1:
        errors.append(f"burst type {burst} is not INCR")
    if 1 << size != bus_bytes:
        errors.append(f"size {size} is not the bus width")
    if not 1 <= length <= MAX_BURST_BEATS:
        errors.append(f"burst of {length} beats")
    if addr % bus_bytes:
        errors.append(f"address {addr:#x} not bus-aligned")
    end = addr + length * bus_bytes
    if addr // PAGE_BYTES != (end - 1) // PAGE_BYTES:
        errors.append(f"burst {addr:#x} + {length} beats crosses a 4 KiB boundary")
    if end > memory_bytes:
        errors.append(f"burst {addr:#x} + {length} beats ends beyond the memory")
    return errors


@dataclass
class _Burst:
    addr: int
    beats: int
    due: int        # the first cycle its (next) beat may be valid


class _Held:
    """One manager channel's "valid held until ready, payload stable" rule."""

    def __init__(self, name: str):
        self.name, self.held = name, None

    def check(self, valid: int, ready: int, payload: tuple, cycle: int, errors: list) -> None:
        if self.held is not None:
            if not valid:
                errors.append(f"{self.name}: valid dropped before ready (cycle {cycle})")
            elif payload != self.held:
                errors.append(f"{self.name}: payload changed before ready (cycle {cycle})")
        self.held = payload if valid and not ready else None


class AxiMemory:
    """The memory behind ``port`` (see the module): ``data`` is the memory, readable and
    writable by the test at any time; :attr:`read_beats` and :attr:`write_beats` count the
    data beats; :attr:`max_reads_in_flight` the most read bursts accepted and not finished."""

    def __init__(self, port, data: bytearray, *, latency: int = 1, pause: float = 0.0,
                 rng: random.Random | None = None, faulty: range = range(0)):
        if latency < 1:
            raise ValueError(f"latency must be at least 1 cycle, not {latency}")
        self.port, self.data, self.latency, self.pause = port, data, latency, pause
        self.faulty = faulty
        self.rng = rng or random.Random(0)
        self.bus_bytes = len(port.r.rdata) // 8
        self.errors: list[str] = []
        self.read_beats = self.write_beats = self.max_reads_in_flight = 0
        self._reads: deque[_Burst] = deque()
        self._writes: deque[_Burst] = deque()
        self._responses: deque[tuple[int, int]] = deque()    # (cycle b is due, bresp)
        self._faulty_burst = False
        self._r_held = self._b_held = False
        self._checks = {name: _Held(name) for name in ("ar", "aw", "w")}

    def _paused(self) -> bool:
        return self.pause > 0 and self.rng.random() < self.pause

    async def run(self, ctx) -> None:
        """The subordinate's process (``sim.add_testbench(mem.run, background=True)``)."""
        cycle = 0
        while True:
            self._drive(ctx, cycle)
            self._sample(ctx, cycle)
            await ctx.tick()
            cycle += 1

    def _drive(self, ctx, cycle: int) -> None:
        p, b = self.port, self.bus_bytes
        ctx.set(p.ar.arready, not self._paused())
        ctx.set(p.aw.awready, not self._paused())
        ctx.set(p.w.wready, bool(self._writes) and not self._paused())
        head = self._reads[0] if self._reads else None
        if not self._r_held:
            self._r_held = head is not None and head.due <= cycle and not self._paused()
        ctx.set(p.r.rvalid, self._r_held)
        if self._r_held:
            ctx.set(p.r.rdata, int.from_bytes(self.data[head.addr:head.addr + b], "little"))
            ctx.set(p.r.rlast, head.beats == 1)
            ctx.set(p.r.rresp, SLVERR if head.addr in self.faulty else 0)
        if not self._b_held:
            self._b_held = bool(self._responses) and self._responses[0][0] <= cycle \
                and not self._paused()
        ctx.set(p.b.bvalid, self._b_held)
        ctx.set(p.b.bresp, self._responses[0][1] if self._b_held else 0)

    def _sample(self, ctx, cycle: int) -> None:
        p, b = self.port, self.bus_bytes
        for name, ch in (("ar", p.ar), ("aw", p.aw)):
            valid = ctx.get(getattr(ch, f"{name}valid"))
            ready = ctx.get(getattr(ch, f"{name}ready"))
            burst = tuple(ctx.get(getattr(ch, f"{name}{f}"))
                          for f in ("addr", "len", "size", "burst"))
            self._checks[name].check(valid, ready, burst, cycle, self.errors)
            if valid and ready:
                addr, length, size, kind = burst
                self.errors += [f"{name}: {e}" for e in burst_errors(
                    addr, length + 1, size, kind, b, len(self.data))]
                queue = self._reads if name == "ar" else self._writes
                queue.append(_Burst(addr, length + 1, cycle + self.latency))
                self.max_reads_in_flight = max(self.max_reads_in_flight, len(self._reads))
        if self._r_held and ctx.get(p.r.rready):
            head = self._reads[0]
            head.addr, head.beats, self._r_held = head.addr + b, head.beats - 1, False
            self.read_beats += 1
            if head.beats == 0:
                self._reads.popleft()
        w = tuple(ctx.get(getattr(p.w, f"w{f}")) for f in ("data", "strb", "last"))
        wvalid, wready = ctx.get(p.w.wvalid), ctx.get(p.w.wready)
        self._checks["w"].check(wvalid, wready, w, cycle, self.errors)
        if wvalid and wready:
            self._write_beat(*w, cycle)
        if self._b_held and ctx.get(p.b.bready):
            self._responses.popleft()
            self._b_held = False

    def _write_beat(self, wdata: int, wstrb: int, wlast: int, cycle: int) -> None:
        head, b = self._writes[0], self.bus_bytes
        if not wstrb:
            self.errors.append(f"w: beat with no byte enabled (cycle {cycle})")
        if bool(wlast) != (head.beats == 1):
            self.errors.append(f"w: wlast {wlast} with {head.beats} beats left (cycle {cycle})")
        raw = wdata.to_bytes(b, "little")
        self._faulty_burst |= head.addr in self.faulty
        for i in range(b):
            if wstrb >> i & 1 and head.addr not in self.faulty:
                self.data[head.addr + i] = raw[i]
        head.addr, head.beats = head.addr + b, head.beats - 1
        self.write_beats += 1
        if head.beats == 0 or wlast:
            self._writes.popleft()
            self._responses.append((cycle + 1, SLVERR if self._faulty_burst else 0))
            self._faulty_burst = False


class AxiLiteDriver:
    """An AXI4-Lite manager on ``port`` (an ``In(AxiLiteSignature)`` member): one access at a
    time, 32-bit, all byte lanes. Raises on a response other than OKAY."""

    def __init__(self, port):
        self.port = port

    async def write(self, ctx, addr: int, value: int) -> None:
        aw, w, b = self.port.aw, self.port.w, self.port.b
        ctx.set(aw.awaddr, addr)
        ctx.set(w.wdata, value)
        ctx.set(w.wstrb, 0xF)
        ctx.set(aw.awvalid, 1)
        ctx.set(w.wvalid, 1)
        pending = {"aw": True, "w": True}
        while any(pending.values()):
            fire = {"aw": pending["aw"] and ctx.get(aw.awready),
                    "w": pending["w"] and ctx.get(w.wready)}
            await ctx.tick()
            for name, ch in (("aw", aw), ("w", w)):
                if fire[name]:
                    pending[name] = False
                    ctx.set(getattr(ch, f"{name}valid"), 0)
        ctx.set(b.bready, 1)
        while not ctx.get(b.bvalid):
            await ctx.tick()
        resp = ctx.get(b.bresp)
        await ctx.tick()
        ctx.set(b.bready, 0)
        if resp:
            raise AssertionError(f"CSR write to {addr:#x} answered {resp}")

    async def read(self, ctx, addr: int) -> int:
        ar, r = self.port.ar, self.port.r
        ctx.set(ar.araddr, addr)
        ctx.set(ar.arvalid, 1)
        while not ctx.get(ar.arready):
            await ctx.tick()
        await ctx.tick()
        ctx.set(ar.arvalid, 0)
        ctx.set(r.rready, 1)
        while not ctx.get(r.rvalid):
            await ctx.tick()
        value, resp = ctx.get(r.rdata), ctx.get(r.rresp)
        await ctx.tick()
        ctx.set(r.rready, 0)
        if resp:
            raise AssertionError(f"CSR read of {addr:#x} answered {resp}")
        return value


@dataclass(frozen=True)
class TopRun:
    """One program on the memory-mapped top: the memory afterwards, ``status`` and the counters
    as the host reads them, the cycles from the last CSR write to ``irq``, the memory model
    (its counts and protocol errors) and ``events``: for each probe of the top
    (``AxiAccelerator.probes``), the cycles it was high, counted from the simulation's start."""

    memory: bytearray
    status: int
    counters: dict[str, int]
    cycles: int
    axi: AxiMemory
    events: dict[str, list[int]]
    status_running: int | None    # read right after the start (``restart``)


def run_top(dut, memory: bytearray, *, prog_base: int, prog_len: int, latency: int = 1,
            pause: float = 0.0, seed: int = 0, faulty: range = range(0),
            restart: bool = False, max_cycles: int = 200_000) -> TopRun:
    """Run the program at ``prog_base`` on ``dut`` (an :class:`~sparsa.hw.top.AxiAccelerator`)
    with ``memory`` behind its AXI port (``faulty``: see :class:`AxiMemory`): write the CSRs
    (interrupt enabled, then start), wait for ``irq`` (recording the probes), read ``status``
    and every counter. ``restart``: read ``status`` right after the start and write start again
    (while busy, it must be ignored)."""
    from amaranth.sim import Simulator

    from sparsa.hw.csr import register_map

    sim = Simulator(dut)            # elaborates ``dut``: its probes exist from here
    axi = AxiMemory(dut.axi, memory, latency=latency, pause=pause, rng=random.Random(seed),
                    faulty=faulty)
    csr = AxiLiteDriver(dut.csr)
    regs = {r.name: r.offset for r in register_map(dut.counter_layout)}
    result, events = [], {name: [] for name in dut.probes}

    async def watch(ctx) -> None:
        cycle = 0
        while True:
            for name, probe in dut.probes.items():
                if ctx.get(probe):
                    events[name].append(cycle)
            await ctx.tick()
            cycle += 1

    async def host(ctx) -> None:
        for name, value in (("prog_base", prog_base), ("prog_len", prog_len),
                            ("irq_enable", 1), ("ctrl", 1)):
            await csr.write(ctx, regs[name], value)
        running = None
        if restart:
            running = await csr.read(ctx, regs["status"])
            await csr.write(ctx, regs["ctrl"], 1)
        cycles = 0
        while not ctx.get(dut.irq):
            await ctx.tick()
            cycles += 1
            if cycles > max_cycles:
                raise AssertionError(f"no interrupt after {max_cycles} cycles "
                                     f"(AXI errors: {axi.errors[:3]})")
        status = await csr.read(ctx, regs["status"])
        counters = {name: await csr.read(ctx, regs[name]) for name, _ in dut.counter_layout}
        result.append(TopRun(memory, status, counters, cycles, axi, events, running))

    sim.add_clock(1e-8)
    sim.add_testbench(axi.run, background=True)
    sim.add_testbench(watch, background=True)
    sim.add_testbench(host)
    sim.run()
    return result[0]


def with_readback(cfg, mp) -> tuple[list, bytearray, int]:
    """``mp`` (a linked :class:`~sparsa.sim.memory_image.MemoryProgram` with a STORE) followed by
    a raw STORE of one accumulator row, a LOAD_ACC of those bytes at once and a raw STORE of the
    loaded row elsewhere: ``(program, memory image, program address)``. Run in order, the last
    STORE writes what the first one did (plus the column biases): a LOAD that overtook the
    STORE before it would read stale bytes."""
    from sparsa.isa import Instruction, Opcode

    row = cfg.cols * cfg.acc_width // 8
    first, second, base = [-(-mp.size // 64) * 64 + 64 * k for k in range(3)]
    acc = next(i.acc_addr for i in mp.program if i.opcode == Opcode.STORE)
    program = [*mp.program,
               Instruction(Opcode.STORE, acc_addr=acc, count=1, raw=True, channels=cfg.cols,
                           dram=first, stride=row),
               Instruction(Opcode.LOAD_ACC, acc_addr=acc + 1, count=1, dram=first),
               Instruction(Opcode.STORE, acc_addr=acc + 1, count=1, raw=True,
                           channels=cfg.cols, dram=second, stride=row)]
    words = b"".join(i.encode().to_bytes(16, "little") for i in program)
    image = mp.image() + bytearray(base + len(words) - mp.size + 4096)
    image[base:base + len(words)] = words
    return program, image, base
