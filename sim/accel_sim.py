"""Runs an accelerator program in Amaranth's simulator (fast, no Verilog toolchain)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Value
from amaranth.sim import Simulator

from sparsa import isa
from sparsa.config import ArrayConfig
from sparsa.hw.accelerator import COUNTERS, Accelerator
from sparsa.isa import Instruction, Opcode
from sparsa.sw.accel_timing import DramPort, beat_bytes, port_caps

__all__ = ["AccelRun", "run_program"]


@dataclass(frozen=True)
class AccelRun:
    outputs: list[np.ndarray]       # data_out rows, decoded as signed accumulator lanes
    cycles: int                     # first instruction dispatched .. last output transferred
    counters: dict[str, int]
    dispatch: list[int]             # cycle (counters.cycles) each instruction was dispatched
    out_cycles: list[int]           # cycle of each data_out transfer


def run_program(cfg: ArrayConfig, program: Sequence[Instruction], data_in: Sequence[int], *,
                seed: int = 0, idle: float = 0.0, backpressure: float = 0.0,
                dram_bytes_per_cycle: int | None = None,
                max_cycles: int = 200_000) -> AccelRun:
    """``idle``/``backpressure``: random gaps on the input streams and random ``data_out``
    stalls; ``dram_bytes_per_cycle``: ``data_in`` and ``data_out`` paced by DRAM ports of that
    rate instead (:class:`sparsa.sw.accel_timing.DramPort`)."""
    if dram_bytes_per_cycle is not None and (idle or backpressure):
        raise ValueError("use either random idle/backpressure or DRAM ports, not both")
    dut = Accelerator(cfg)
    rng = np.random.default_rng(seed)
    expected = sum(i.count for i in program if i.opcode == Opcode.STORE)
    received: list[int] = []
    out_cycles: list[int] = []
    dispatched: list[int] = []
    marks = {"first": None, "last": None, "done": False}

    async def source(ctx, stream, payloads, first_mark=False):
        for p in payloads:
            while rng.random() < idle:
                await ctx.tick()
            ctx.set(stream.valid, 1)
            ctx.set(Value.cast(stream.payload), p)
            while True:
                _, _, ready, cycle = await ctx.tick().sample(stream.ready, dut.counters.cycles)
                if ready:
                    break
            if first_mark:
                dispatched.append(cycle)
                if marks["first"] is None:
                    marks["first"] = cycle
            ctx.set(stream.valid, 0)

    async def insns(ctx):
        await source(ctx, dut.insn, [i.encode() for i in program], first_mark=True)

    in_bytes, out_bytes = beat_bytes(cfg, program)
    if len(in_bytes) != len(data_in):
        raise ValueError(f"the program loads {len(in_bytes)} data_in beats, "
                         f"{len(data_in)} given")
    ports = None
    if dram_bytes_per_cycle is not None:
        caps = port_caps(cfg, dram_bytes_per_cycle)
        ports = [DramPort(dram_bytes_per_cycle, cap) for cap in caps]

    async def beats(ctx):
        if ports is None:
            await source(ctx, dut.data_in, list(data_in))
            return
        port, i = ports[0], 0
        while i < len(data_in):   # offer the next beat whenever the port has its bytes
            ok = port.can(in_bytes[i])
            ctx.set(dut.data_in.valid, ok)
            ctx.set(dut.data_in.payload, data_in[i])
            _, _, ready = await ctx.tick().sample(dut.data_in.ready)
            sent = in_bytes[i] if ok and ready else 0
            port.tick(sent)
            i += bool(sent)
        ctx.set(dut.data_in.valid, 0)

    async def sink(ctx):
        cycles = 0
        while len(received) < expected or not marks["done"]:
            if ports is None:
                ready_now = rng.random() >= backpressure
            else:
                ready_now = len(received) < expected and ports[1].can(out_bytes[len(received)])
            ctx.set(dut.data_out.ready, int(ready_now))
            _, _, valid, ready, payload, cycle, is_idle, rdy_insn = await ctx.tick().sample(
                dut.data_out.valid, dut.data_out.ready, dut.data_out.payload.as_value(),
                dut.counters.cycles, dut.idle, dut.insn.valid)
            if ports is not None:
                ports[1].tick(out_bytes[len(received)] if valid and ready else 0)
            if valid and ready:
                received.append(int(payload))
                out_cycles.append(cycle)
                marks["last"] = cycle
            if len(received) >= expected and is_idle and not rdy_insn:
                marks["done"] = True
            cycles += 1
            if cycles > max_cycles:
                raise TimeoutError(f"program did not finish in {max_cycles} cycles "
                                   f"({len(received)} of {expected} output rows)")
        counters = {}
        for name in COUNTERS:
            counters[name] = ctx.get(getattr(dut.counters, name))
        marks["counters"] = counters

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(insns, background=True)
    sim.add_testbench(beats, background=True)
    sim.add_testbench(sink)
    sim.run()
    outputs = [np.array(isa.unpack_psum_row(cfg, r), dtype=np.int64) for r in received]
    last = marks["last"] if marks["last"] is not None else marks["first"]
    first = marks["first"]
    return AccelRun(outputs=outputs, cycles=last - first + 1, counters=marks["counters"],
                    dispatch=[c - first for c in dispatched],
                    out_cycles=[c - first for c in out_cycles])
