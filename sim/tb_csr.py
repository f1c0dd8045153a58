"""Testbench (cocotb) of :class:`~sparsa.hw.csr.CsrBlock` (top ``sparsa_csr``).

A cocotbext-axi ``AxiLiteMaster`` with pause generators on its five channels (parameter
``pauses``) runs a random sequence: whole and partial (``wstrb``) writes to every register and
to unmapped offsets, reads of every register, and changes of the ``status`` and ``counters``
inputs. A model written from the register map's documented semantics predicts every read, the
response codes (SLVERR off the map), the ``start`` pulses and the ``irq`` line; offsets come
from the exported table (:func:`sparsa.hw.csr.register_map`), as the host driver's do. Every
channel is checked for valid held with a stable payload until ready.
"""

from __future__ import annotations

import random

import cocotb
from amaranth.hdl import Fragment
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
from cocotbext.axi import AxiLiteMaster

from sparsa.hw.csr import status_layout
from sparsa.hw.export import build_top

from .axi_tb import ChannelChecker, lite_bus, pause_generator, value
from .cocotb_util import load_config, seed_for, start_clock_and_reset

OKAY, SLVERR = 0, 2


class CsrModel:
    """What the registers must read, from the documented semantics alone."""

    def __init__(self, addr_bits: int, counters: list[str]):
        self.addr_bits, self.counters = addr_bits, counters
        self.irq_enable = self.irq = self.prog_base = self.prog_len = 0
        self.status = {"busy": 0, "done": 0, "error": 0}
        self.counter_values = dict.fromkeys(counters, 0)
        self.starts = self.raised = 0

    def read(self, name: str) -> int:
        if name == "status":
            s = self.status
            return s["busy"] | s["done"] << 1 | s["error"] << 2 | self.irq << 3
        if name == "prog_base":
            return self.prog_base & 0xFFFF_FFFF
        if name == "prog_base_hi":
            return self.prog_base >> 32
        if name in self.counter_values:
            return self.counter_values[name]
        return {"ctrl": 0, "irq_enable": self.irq_enable, "prog_len": self.prog_len}[name]

    def write(self, name: str, data: int, strb: int) -> None:
        mask = sum(0xFF << 8 * i for i in range(4) if strb >> i & 1)
        new = (self.read(name) & ~mask) | (data & mask)
        if name == "ctrl" and strb & 1 and data & 1:
            self.starts += 1
        elif name == "status" and strb & 1 and data & 8:
            self.irq = 0
        elif name == "irq_enable":
            self.irq_enable = new & 1
        elif name == "prog_len":
            self.prog_len = new
        elif name in ("prog_base", "prog_base_hi"):
            shift = 32 if name == "prog_base_hi" else 0
            value = (self.prog_base & ~(0xFFFF_FFFF << shift)) | new << shift
            self.prog_base = value & ((1 << self.addr_bits) - 1)

    def set_status(self, status: dict[str, int]) -> None:
        if status["done"] and not self.status["done"] and self.irq_enable:
            self.irq, self.raised = 1, self.raised + 1
        self.status = status


class StartCounter:
    """Counts the cycles ``start`` is high and fails on a pulse longer than one cycle."""

    def __init__(self, dut):
        self.dut, self.pulses, self.errors = dut, 0, []

    async def run(self) -> None:
        was = 0
        while True:
            await RisingEdge(self.dut.clk)
            await ReadOnly()
            now = value(self.dut.start)
            if now and was:
                self.errors.append("start high for more than one cycle")
            self.pulses += now
            was = now


def checkers(dut) -> list[ChannelChecker]:
    spec = {"aw": ["addr"], "w": ["data", "strb"], "b": ["resp"], "ar": ["addr"],
            "r": ["data", "resp"]}
    return [ChannelChecker(dut, f"csr__{ch}__", ch, fields) for ch, fields in spec.items()]


@cocotb.test(timeout_time=10, timeout_unit="ms")
@cocotb.parametrize(pauses=["none", "heavy"])
async def csr_random(dut, pauses: str) -> None:
    cfg = load_config()
    rng = seed_for(f"csr-{pauses}").rng()
    csr = build_top(cfg, "csr")
    Fragment.get(csr, None)     # elaborated (cheap), as the export did: no unused warning
    table = {reg.name: reg for reg in csr.registers}
    counters = [name for name, reg in table.items() if reg.access == "r"]
    counter_layout = csr.signature.members["counters"].shape
    master = AxiLiteMaster(lite_bus(dut), dut.clk, dut.rst)
    for half, names in ((master.write_if, ("aw", "w", "b")), (master.read_if, ("ar", "r"))):
        for name in names:
            gen = pause_generator(pauses, rng)
            if gen is not None:
                getattr(half, f"{name}_channel").set_pause_generator(gen)
    model = CsrModel(cfg.axi_addr_bits, counters)
    await start_clock_and_reset(dut, [dut.status, dut.counters])
    watch = checkers(dut)
    for checker in watch:
        checker.start()
    starts = StartCounter(dut)
    cocotb.start_soon(starts.run())
    unmapped = [off for off in range(0, 0x80, 4)
                if off not in {reg.offset for reg in table.values()}]
    await directed_cases(dut, master, table, model)
    reads = 0
    for _ in range(250):
        await drive_inputs(dut, rng, model, counter_layout)
        op = rng.random()
        if op < 0.4:
            name = rng.choice(list(table))
            data, lanes = rng.getrandbits(32), sorted(rng.sample(range(4), rng.randint(1, 4)))
            if name in ("status", "ctrl") and rng.random() < 0.6:
                data, lanes = 8 if name == "status" else 1, [0]   # clear irq, or start
            lo, hi = lanes[0], lanes[-1] + 1      # cocotbext writes one contiguous run
            payload = data.to_bytes(4, "little")[lo:hi]
            strb = sum(1 << i for i in range(lo, hi))
            resp = await master.write(table[name].offset + lo, payload)
            expected = SLVERR if table[name].access == "r" else OKAY
            assert resp.resp == expected, f"write {name}: response {resp.resp}"
            model.write(name, data, strb)
        elif op < 0.5:
            resp = await master.write(rng.choice(unmapped), rng.randbytes(4))
            assert resp.resp == SLVERR, f"unmapped write answered {resp.resp}"
        elif op < 0.55:
            resp = await master.read(rng.choice(unmapped), 4)
            assert resp.resp == SLVERR, f"unmapped read answered {resp.resp}"
        else:
            name = rng.choice(list(table))
            resp = await master.read(table[name].offset, 4)
            got = int.from_bytes(resp.data, "little")
            assert resp.resp == OKAY, f"read {name}: response {resp.resp}"
            assert got == model.read(name), f"read {name}: {got:#x}, expected {model.read(name):#x}"
            reads += 1
        await ClockCycles(dut.clk, 2)
        await ReadOnly()
        assert value(dut.irq) == model.irq, f"irq {value(dut.irq)}, expected {model.irq}"
        assert value(dut.prog_base) == model.prog_base
        assert value(dut.prog_len) == model.prog_len
    await ClockCycles(dut.clk, 4)
    errors = starts.errors + [e for c in watch for e in c.errors]
    assert not errors, "; ".join(errors[:5])
    assert starts.pulses == model.starts, f"{starts.pulses} start pulses, {model.starts} written"
    assert reads > 0
    assert model.starts > 0
    assert model.raised > 0, "the interrupt was never raised"
    dut._log.info("%d reads checked, %d start pulses, %d interrupts", reads, model.starts,
                  model.raised)


async def drive_inputs(dut, rng: random.Random, model: CsrModel, counter_layout) -> None:
    """Sometimes change ``status`` and the counters (after a clock edge), as the accelerator
    would between register accesses."""
    await RisingEdge(dut.clk)
    if rng.random() < 0.3:
        status = {k: int(rng.random() < 0.5) for k in ("busy", "done", "error")}
        dut.status.value = status_layout().const(status).as_bits()
        model.set_status(status)
    if rng.random() < 0.2:
        values = {name: rng.getrandbits(32) for name in model.counters}
        dut.counters.value = counter_layout.const(values).as_bits()
        model.counter_values = values
    await ClockCycles(dut.clk, 2)


async def set_status(dut, model: CsrModel, **status: int) -> None:
    await RisingEdge(dut.clk)
    dut.status.value = status_layout().const(status).as_bits()
    model.set_status({"busy": 0, "done": 0, "error": 0} | status)
    await ClockCycles(dut.clk, 2)


async def directed_cases(dut, master, table, model: CsrModel) -> None:
    """Directed: a start; done raises irq only when enabled; writing status bit 3 clears it."""
    async def expect(irq: int, what: str) -> None:
        await ReadOnly()
        assert value(dut.irq) == irq == model.irq, f"{what}: irq {value(dut.irq)}"
        resp = await master.read(table["status"].offset, 4)
        assert resp.data[0] >> 3 & 1 == irq, f"{what}: status.irq {resp.data[0] >> 3 & 1}"

    await master.write(table["ctrl"].offset, b"\x01")
    model.write("ctrl", 1, 1)
    await set_status(dut, model, done=1)
    await expect(0, "done while disabled")
    await set_status(dut, model, busy=1)
    await master.write(table["irq_enable"].offset, b"\x01")
    model.write("irq_enable", 1, 1)
    await set_status(dut, model, done=1)
    await expect(1, "done while enabled")
    await set_status(dut, model, done=1, error=1)
    await master.write(table["status"].offset, b"\x08")
    model.write("status", 8, 1)
    await ClockCycles(dut.clk, 2)
    await expect(0, "after clearing")
