"""cocotb testbench of :class:`~sparsa.hw.accelerator.Accelerator` (top ``sparsa_accelerator``).

Random GEMM programs (:mod:`sparsa.sim.programs`) go in through the ``insn`` and ``data_in``
streams; the ``data_out`` monitor's rows are compared in order with the golden program executor
(:mod:`sparsa.sim.golden_accel`), the activity counters with counts read off the program, and,
with ideal streams, every dispatch and output cycle with the cycle model
(:mod:`sparsa.sw.accel_timing`).
"""

from __future__ import annotations

import cocotb
import numpy as np
from amaranth.hdl import unsigned
from amaranth.lib import data
from cocotb.triggers import ReadOnly, RisingEdge

from sparsa import isa
from sparsa.hw.accelerator import COUNTERS
from sparsa.isa import Opcode
from sparsa.sw.accel_timing import program_counts, program_timing

from .cocotb_util import StreamSink, StreamSource, load_config, log, make_rng, start_clock_and_reset
from .golden_accel import GoldenAccelerator
from .programs import random_gemm_program

TIMEOUT_US = 5000
COUNTER_LAYOUT = data.StructLayout({name: unsigned(32) for name in COUNTERS})


class AccelTB:
    def __init__(self, dut, name: str, *, idle: float = 0.0, backpressure: float = 0.0):
        self.dut = dut
        self.cfg = load_config()
        self.rng = make_rng(name)
        self.np_rng = np.random.default_rng(self.rng.getrandbits(63))
        self.insn = StreamSource(dut, "insn", self.rng, idle)
        self.data_in = StreamSource(dut, "data_in", self.rng, idle)
        self.data_out = StreamSink(dut, "data_out", self.rng, backpressure)

    async def start(self) -> None:
        await start_clock_and_reset(self.dut, [])
        for part in (self.insn, self.data_in, self.data_out):
            cocotb.start_soon(part.run())

    def counters(self) -> dict[str, int]:
        view = COUNTER_LAYOUT.from_bits(self.dut.counters.value.to_unsigned())
        return {name: int(getattr(view, name)) for name in COUNTERS}

    async def run(self, program, data_in):
        """Run one program to completion; return outputs, dispatch and output cycles (relative
        to the first dispatch) and the counter increments."""
        before = self.counters()
        i0, o0 = len(self.insn.transfers), len(self.data_out.received)
        self.insn.send(i.encode() for i in program)
        self.data_in.send(data_in)
        expected = sum(i.count for i in program if i.opcode == Opcode.STORE)
        await self.data_out.wait_for(o0 + expected)
        while True:  # drain: every instruction dispatched and the controller idle
            await RisingEdge(self.dut.clk)
            await ReadOnly()
            if len(self.insn.transfers) == i0 + len(program) and self.dut.idle.value:
                break
        after = self.counters()
        first = self.insn.transfers[i0]
        outs = [np.array(isa.unpack_psum_row(self.cfg, r))
                for r in self.data_out.received[o0:]]
        return (outs, [c - first for c in self.insn.transfers[i0:]],
                [c - first for c in self.data_out.transfers[o0:]],
                {k: after[k] - before[k] for k in COUNTERS})


def check_counters(cfg, program, data_in, counts) -> None:
    for name, value in program_counts(cfg, program, len(data_in)).items():
        assert counts[name] == value, f"counter {name}: RTL {counts[name]}, program {value}"



@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
@cocotb.parametrize(idle=[0.0, 0.3], backpressure=[0.0, 0.4])
async def random_programs(dut, idle: float, backpressure: float) -> None:
    """Random GEMM programs, both loop orders, random gaps and backpressure: every output row
    equals the golden executor's, every counter the program's count; with ideal streams every
    dispatch/output cycle equals the cycle model's."""
    tb = AccelTB(dut, f"random_programs-{idle}-{backpressure}", idle=idle,
                 backpressure=backpressure)
    await tb.start()
    cfg = tb.cfg
    for order in ("k_inner", "cols_inner", "k_inner"):
        prog = random_gemm_program(cfg, tb.np_rng, order=order)
        golden_out = GoldenAccelerator(cfg).run(prog.program, prog.data_in)
        outs, dispatch, out_cycles, counts = await tb.run(prog.program, prog.data_in)
        assert len(outs) == len(golden_out)
        for k, (got, want) in enumerate(zip(outs, golden_out, strict=True)):
            assert np.array_equal(got, want), f"output row {k}: RTL {got}, golden {want}"
        check_counters(cfg, prog.program, prog.data_in, counts)
        if idle == 0.0 and backpressure == 0.0:
            predicted = program_timing(cfg, prog.program)
            assert dispatch == predicted.dispatch, (dispatch, predicted.dispatch)
            assert out_cycles == predicted.out_cycles
            log.info("%s program of %d instructions: %d cycles, model %d", order,
                     len(prog.program), out_cycles[-1] + 1, predicted.cycles)
