"""Testbench (cocotb) of :class:`~sparsa.hw.top.AxiAccelerator` (top ``sparsa_axi_accelerator``):
the accelerator as a host sees it.

Memory is a cocotbext-axi ``AxiRam`` on the accelerator's AXI4 manager port, with pause
generators on all five channels (parameter ``pauses``: none, or heavy random backpressure and
long stalls that act as latency); the host is an ``AxiLiteMaster`` on the CSR port. Each test
runs two random GEMM and two random convolution programs (:mod:`sparsa.sim.programs`), then a
GEMM followed by a STORE, a LOAD of the bytes it wrote and a STORE of them
(:func:`sparsa.sim.axi_memory.with_readback`), one after the other on the same accelerator: each
program is linked into memory (:func:`sparsa.sim.memory_image.link`, random offsets and gaps),
the host writes it, sets
``prog_base``, ``prog_len`` and ``irq_enable``, starts and waits for ``irq``, then reads
``status`` and the counters and clears the interrupt. Checks: the whole memory afterwards equals
the golden executor's run on the same image (outputs bit-exact, no stray byte written), the
outputs equal the golden ``data_out`` rows, each counter's increase equals the program's counts
(:func:`sparsa.sw.accel_timing.program_counts`; ``gated_macs``: the golden executor's count),
and every AXI and AXI4-Lite channel keeps valid and its payload until ready, with legal bursts.
"""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge
from cocotbext.axi import AxiLiteMaster, AxiRam

from sparsa.hw.csr import register_map
from sparsa.hw.layouts import counters as counter_layout
from sparsa.hw.top import ALL_COUNTERS
from sparsa.isa import Opcode
from sparsa.sw.accel_timing import program_counts

from .axi_memory import with_readback
from .axi_tb import ChannelChecker, check_burst, lite_bus, manager_bus, pause_generator, value
from .cocotb_util import load_config, seed_for, start_clock_and_reset
from .golden_accel import GoldenAccelerator
from .memory_image import link
from .programs import random_conv_program, random_gemm_program
from .tb_csr import checkers as csr_checkers

MEM_BYTES = 1 << 18
MAX_CYCLES = 200_000
STATUS_DONE, STATUS_IRQ = 0b0010, 0b1000


class TopBench:
    """Clock, reset, the memory and the host of one test, and the protocol checkers."""

    def __init__(self, dut, pauses: str, rng):
        self.dut, self.cfg = dut, load_config()
        self.bus_bytes = self.cfg.axi_data_bits // 8
        self.ram = AxiRam(manager_bus(dut), dut.clk, dut.rst, size=MEM_BYTES)
        self.host = AxiLiteMaster(lite_bus(dut), dut.clk, dut.rst)
        channels = [self.ram.read_if.ar_channel, self.ram.read_if.r_channel,
                    self.ram.write_if.aw_channel, self.ram.write_if.w_channel,
                    self.ram.write_if.b_channel]
        for channel in channels:
            gen = pause_generator(pauses, rng)
            if gen is not None:
                channel.set_pause_generator(gen)
        self.regs = {r.name: r.offset for r in register_map(counter_layout(ALL_COUNTERS))}
        self.errors: list[str] = []
        burst = ["addr", "len", "size", "burst"]
        self.checkers = [
            ChannelChecker(dut, "axi__ar__", "ar", burst, lambda b: self._burst("ar", b)),
            ChannelChecker(dut, "axi__aw__", "aw", burst, lambda b: self._burst("aw", b)),
            ChannelChecker(dut, "axi__r__", "r", ["data", "resp", "last"]),
            ChannelChecker(dut, "axi__w__", "w", ["data", "strb", "last"]),
            ChannelChecker(dut, "axi__b__", "b", ["resp"]),
            *csr_checkers(dut),
        ]

    def _burst(self, prefix: str, beat: dict) -> None:
        self.errors += check_burst({f"{prefix}{k}": v for k, v in beat.items()}, prefix,
                                   self.bus_bytes)

    async def start(self) -> None:
        await start_clock_and_reset(self.dut, [])
        for checker in self.checkers:
            checker.start()

    async def counters(self) -> dict[str, int]:
        return {name: int.from_bytes((await self.host.read(self.regs[name], 4)).data, "little")
                for name in ALL_COUNTERS}

    async def run(self, base: int, length: int) -> tuple[int, int]:
        """Start the program of ``length`` bytes at ``base`` (already in memory), wait for the
        interrupt; ``(status, cycles)``."""
        for name, value_ in (("prog_base", base), ("prog_len", length),
                             ("irq_enable", 1), ("ctrl", 1)):
            await self.host.write(self.regs[name], value_.to_bytes(4, "little"))
        cycles = 0
        while not value(self.dut.irq):
            await RisingEdge(self.dut.clk)
            cycles += 1
            assert cycles < MAX_CYCLES, f"no interrupt after {MAX_CYCLES} cycles"
        status = (await self.host.read(self.regs["status"], 4)).data[0]
        await self.host.write(self.regs["status"], bytes([STATUS_IRQ]))
        return status, cycles

    def check_protocol(self) -> None:
        errors = self.errors + [e for c in self.checkers for e in c.errors]
        assert not errors, "; ".join(errors[:5])


async def check_image(tb: TopBench, program, image: bytearray, base: int) -> bytes:
    """Write ``image``, run ``program`` (at ``base``) and check the whole memory against the
    golden executor's run on the same image, the status and each counter's increase; return
    the memory afterwards."""
    cfg = tb.cfg
    assert len(image) + 4096 <= MEM_BYTES, f"the program spans {len(image)} bytes"
    before = await tb.counters()
    tb.ram.write(0, bytes(image))
    expected = bytearray(tb.ram.read(0, MEM_BYTES))
    golden = GoldenAccelerator(cfg)
    golden.run_in_memory(program, expected)
    status, cycles = await tb.run(base, 16 * len(program))
    assert status == STATUS_DONE | STATUS_IRQ, f"status {status:#06b}: expected done and irq"
    memory = tb.ram.read(0, MEM_BYTES)
    changed = [a for a in range(MEM_BYTES) if memory[a] != expected[a]]
    assert not changed, f"{len(changed)} bytes differ from golden, first at {changed[0]:#x}"
    after = await tb.counters()
    counts = {**program_counts(cfg, program), "gated_macs": golden.gated_macs,
              "insns_fetched": len(program)}
    for name, count in counts.items():
        delta = (after[name] - before[name]) % (1 << 32)
        assert delta == count, f"counter {name}: increased by {delta}, expected {count}"
    tb.dut._log.info("%d instructions, %d cycles to irq", len(program), cycles)
    return memory


async def check_program(tb: TopBench, prog, rng: np.random.Generator) -> None:
    """A linked program: :func:`check_image`, and its outputs against the golden rows."""
    cfg = tb.cfg
    mp = link(cfg, prog.program, prog.data_in, rng=rng)
    memory = await check_image(tb, mp.program, mp.image(), mp.prog_base)
    rows = GoldenAccelerator(cfg).run(mp.program, prog.data_in)
    stores = [i for i in mp.program if i.opcode == Opcode.STORE for _ in range(i.count)]
    got = mp.read_outputs(cfg, lambda addr, n: memory[addr:addr + n])
    for k, (row, insn, out) in enumerate(zip(rows, stores, got, strict=True)):
        assert np.array_equal(out, row[:insn.channels]), f"output row {k}: {out} vs {row}"


@cocotb.test(timeout_time=200, timeout_unit="ms")
@cocotb.parametrize(pauses=["none", "heavy"])
async def random_programs(dut, pauses: str) -> None:
    seed = seed_for(f"top-{pauses}")
    with seed.named_in_failures():
        tb = TopBench(dut, pauses, seed.rng())
        await tb.start()
        rng = seed.numpy()
        cfg = tb.cfg
        for order in ("k_inner", "cols_inner"):
            await check_program(tb, random_gemm_program(cfg, rng, order=order,
                                                        zero_fraction=0.3), rng)
            await check_program(tb, random_conv_program(
                cfg, rng, zero_fraction=0.3, max_computes=30, max_compute_beats=150), rng)
        prog = random_gemm_program(cfg, rng, order="k_inner")
        await check_image(tb, *with_readback(cfg, link(cfg, prog.program, prog.data_in)))
        tb.check_protocol()
