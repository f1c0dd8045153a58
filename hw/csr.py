"""The CSR block: an AXI4-Lite subordinate register file, the host's view of the accelerator.

Register map (32-bit registers, byte offsets; the one definition is :data:`REGISTERS` plus the
counters of :func:`register_map`, which the host driver reads too):

======  ================  ======  ================================================================
offset  name              access  fields
======  ================  ======  ================================================================
0x00    ``ctrl``          W       bit 0 ``start``: writing 1 pulses ``start`` for one cycle;
                                  reads 0
0x04    ``status``        R/W1C   bit 0 ``busy``, bit 1 ``done``, bit 2 ``error`` (read-only,
                                  the ``status`` input); bit 3 ``irq``: interrupt pending,
                                  write 1 to clear
0x08    ``irq_enable``    RW      bit 0 ``done``: a rising edge of ``status.done`` sets ``irq``
0x10    ``prog_base``     RW      program base address, bits 31..0
0x14    ``prog_base_hi``  RW      program base address, bits ``axi_addr_bits - 1`` .. 32 (reads
                                  0, ignores writes with a 32-bit address)
0x18    ``prog_len``      RW      program length in bytes
0x40    counters          R       one register per field of the ``counters`` layout, in order,
                                  at ``0x40 + 4 * i``
======  ================  ======  ================================================================

Writes honour ``wstrb`` byte by byte. A write to a counter (read-only) is ignored and answers
SLVERR, as does an access to any other offset (reads return 0); the two low address bits are
ignored. The interrupt output is the port ``irq`` (the ``status.irq`` bit; not named
``interrupt``, which Verilator's lint flags as a C++ word).

AXI4-Lite handling: the address and data of a write are taken independently (``awready`` and
``wready`` drop while one is held), the write happens when both are in and the previous
response has been taken; a read is answered one cycle after its address. One write and one read
are in flight at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Cat, Module, Mux, Shape, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from sparsa.config import ArrayConfig

from .axi import LITE_DATA_BITS, RESP_OKAY, RESP_SLVERR, AxiLiteSignature

__all__ = ["COUNTER_BASE", "REGISTERS", "CsrBlock", "Field", "Register", "lite_signature",
           "register_map", "status_layout"]


@dataclass(frozen=True)
class Field:
    name: str
    lsb: int
    width: int


@dataclass(frozen=True)
class Register:
    """One 32-bit register: byte ``offset``, ``access`` (``"w"``: write-only pulses, ``"rw"``,
    ``"r"``, ``"rw1c"``: read, write 1 to clear) and its fields."""

    name: str
    offset: int
    access: str
    fields: tuple[Field, ...]
    doc: str


REGISTERS = (
    Register("ctrl", 0x00, "w", (Field("start", 0, 1),), "write 1 to start"),
    Register("status", 0x04, "rw1c", (Field("busy", 0, 1), Field("done", 1, 1),
                                      Field("error", 2, 1), Field("irq", 3, 1)),
             "busy/done/error from the accelerator; irq pending (write 1 to clear)"),
    Register("irq_enable", 0x08, "rw", (Field("done", 0, 1),), "interrupt on done"),
    Register("prog_base", 0x10, "rw", (Field("value", 0, 32),), "program address, low bits"),
    Register("prog_base_hi", 0x14, "rw", (Field("value", 0, 32),),
             "program address, bits above 31"),
    Register("prog_len", 0x18, "rw", (Field("value", 0, 32),), "program length in bytes"),
)
COUNTER_BASE = 0x40


def status_layout() -> data.StructLayout:
    """What the accelerator reports to ``status``."""
    return data.StructLayout({"busy": 1, "done": 1, "error": 1})


def register_map(counters: data.StructLayout) -> tuple[Register, ...]:
    """:data:`REGISTERS` and one read-only register per counter field."""
    return REGISTERS + tuple(
        Register(name, COUNTER_BASE + 4 * i, "r",
                 (Field("value", 0, Shape.cast(field.shape).width),), "activity counter")
        for i, (name, field) in enumerate(counters))


def lite_signature(counters: data.StructLayout) -> AxiLiteSignature:
    """The AXI4-Lite port of a CSR block with ``counters``: addresses wide enough for the last
    register (at least 8 bits)."""
    last = max(r.offset for r in register_map(counters))
    return AxiLiteSignature(addr_bits=max(8, last.bit_length()))


class CsrBlock(wiring.Component):
    """The register file above, on ``csr`` (Verilog ``csr__aw__awaddr`` ... ``csr__r__rresp``).

    Other ports: ``start`` (out, one-cycle pulse), ``prog_base`` (out, ``axi_addr_bits``),
    ``prog_len`` (out, 32 bits), ``status`` (in, :func:`status_layout`), ``counters`` (in, the
    ``counters`` layout: unsigned fields of at most 32 bits) and ``irq`` (out, the interrupt).
    """

    def __init__(self, cfg: ArrayConfig, *, counters: data.StructLayout):
        if not isinstance(cfg, ArrayConfig):
            raise TypeError(f"cfg must be an ArrayConfig, not {cfg!r}")
        if not isinstance(counters, data.StructLayout):
            raise TypeError(f"counters must be a data.StructLayout, not {counters!r}")
        for name, field in counters:
            shape = Shape.cast(field.shape)
            if shape.signed or not 0 < shape.width <= LITE_DATA_BITS:
                raise ValueError(f"counter {name!r} must be unsigned and at most 32 bits wide, "
                                 f"not {field.shape!r}")
        self.cfg, self.registers = cfg, register_map(counters)
        super().__init__({
            "csr": In(lite_signature(counters)),
            "start": Out(1),
            "prog_base": Out(cfg.axi_addr_bits),
            "prog_len": Out(32),
            "status": In(status_layout()),
            "counters": In(counters),
            "irq": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        regs = self._state()
        self._write_channel(m, regs)
        self._read_channel(m, regs)
        done_was = Signal()
        m.d.sync += done_was.eq(self.status.done)
        with m.If(self.status.done & ~done_was & regs["irq_enable"][0]):
            m.d.sync += regs["irq"].eq(1)     # after the write channel's clear: a set wins
        m.d.comb += [self.prog_base.eq(regs["prog_base"]), self.prog_len.eq(regs["prog_len"]),
                     self.irq.eq(regs["irq"])]
        return m

    def _state(self) -> dict[str, Signal]:
        return {"irq_enable": Signal(1), "irq": Signal(1),
                "prog_base": Signal(self.cfg.axi_addr_bits), "prog_len": Signal(32)}

    def _read_values(self, regs) -> dict[str, object]:
        """Each register's 32-bit read value."""
        a = self.cfg.axi_addr_bits
        values = {"ctrl": 0, "irq_enable": regs["irq_enable"], "prog_len": regs["prog_len"],
                  "status": Cat(self.status.busy, self.status.done, self.status.error,
                                regs["irq"]),
                  "prog_base": regs["prog_base"][:min(a, 32)],
                  "prog_base_hi": regs["prog_base"][32:] if a > 32 else 0}
        for name, _ in self.counters.shape():
            values[name] = getattr(self.counters, name)
        return values

    def _write_channel(self, m: Module, regs) -> None:
        aw, w, b = self.csr.aw, self.csr.w, self.csr.b
        aw_held, w_held, b_valid = Signal(), Signal(), Signal()
        addr, wdata, wstrb, bresp = (Signal.like(aw.awaddr), Signal.like(w.wdata),
                                     Signal.like(w.wstrb), Signal(2))
        m.d.comb += [aw.awready.eq(~aw_held), w.wready.eq(~w_held), b.bvalid.eq(b_valid),
                     b.bresp.eq(bresp)]
        with m.If(aw.awvalid & aw.awready):
            m.d.sync += [aw_held.eq(1), addr.eq(aw.awaddr)]
        with m.If(w.wvalid & w.wready):
            m.d.sync += [w_held.eq(1), wdata.eq(w.wdata), wstrb.eq(w.wstrb)]
        with m.If(b.bvalid & b.bready):
            m.d.sync += b_valid.eq(0)
        write = Signal()
        m.d.comb += write.eq(aw_held & w_held & ~b_valid)
        with m.If(write):
            m.d.sync += [aw_held.eq(0), w_held.eq(0), b_valid.eq(1), bresp.eq(RESP_SLVERR)]

        def hit(name):
            reg = next(r for r in self.registers if r.name == name)
            return write & (addr[2:] == reg.offset >> 2)

        old = self._read_values(regs)

        def merged(name):       # the register's value with the written bytes replaced
            value = Signal(32)
            m.d.comb += value.eq(old[name])
            return Cat(Mux(wstrb[i], wdata[8 * i:8 * i + 8], value[8 * i:8 * i + 8])
                       for i in range(4))
        a = self.cfg.axi_addr_bits
        m.d.sync += self.start.eq(hit("ctrl") & wstrb[0] & wdata[0])
        with m.If(hit("status") & wstrb[0] & wdata[3]):
            m.d.sync += regs["irq"].eq(0)
        with m.If(hit("irq_enable")):
            m.d.sync += regs["irq_enable"].eq(merged("irq_enable"))
        with m.If(hit("prog_len")):
            m.d.sync += regs["prog_len"].eq(merged("prog_len"))
        with m.If(hit("prog_base")):
            m.d.sync += regs["prog_base"][:min(a, 32)].eq(merged("prog_base"))
        if a > 32:
            with m.If(hit("prog_base_hi")):
                m.d.sync += regs["prog_base"][32:].eq(merged("prog_base_hi"))
        writable = ("ctrl", "status", "irq_enable", "prog_len", "prog_base", "prog_base_hi")
        with m.If(Cat(hit(name) for name in writable).any()):
            m.d.sync += bresp.eq(RESP_OKAY)

    def _read_channel(self, m: Module, regs) -> None:
        ar, r = self.csr.ar, self.csr.r
        r_valid, rdata, rresp = Signal(), Signal(LITE_DATA_BITS), Signal(2)
        m.d.comb += [ar.arready.eq(~r_valid), r.rvalid.eq(r_valid), r.rdata.eq(rdata),
                     r.rresp.eq(rresp)]
        with m.If(r.rvalid & r.rready):
            m.d.sync += r_valid.eq(0)
        values = self._read_values(regs)
        with m.If(ar.arvalid & ar.arready):
            m.d.sync += r_valid.eq(1)
            with m.Switch(ar.araddr[2:]):
                for reg in self.registers:
                    with m.Case(reg.offset >> 2):
                        m.d.sync += [rdata.eq(values[reg.name]), rresp.eq(RESP_OKAY)]
                with m.Default():
                    m.d.sync += [rdata.eq(0), rresp.eq(RESP_SLVERR)]
