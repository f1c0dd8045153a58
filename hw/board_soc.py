"""The memory-mapped accelerator on a board with nothing else: its memory on chip, a tiny host.

:class:`BoardSoc` is what ``sparsa bitstream --top accelerator`` builds (:mod:`sparsa.hw.bitstream`
puts its ``leds`` on the board's LEDs). It holds

- the :class:`~sparsa.hw.top.AxiAccelerator` of a configuration;
- an :class:`AxiRam` on its AXI4 port: block RAM of ``depth`` bus words, initialised with a
  memory image (the program, its tensors and zeros where the outputs go, laid out by
  :func:`sparsa.sim.memory_image.link`; :mod:`sparsa.sim.board_image` builds it and the expected
  checksum; this module takes plain words and imports neither ``sim`` nor ``sw``);
- a :class:`CsrHost`, the host in gateware: after reset it writes ``prog_base``, ``prog_len``
  and ``ctrl.start`` over the AXI4-Lite CSR port, polls ``status`` until ``done``, then reads the
  words ``check_first .. check_first + check_words - 1`` of the RAM (the output region) through
  the RAM's ``scan`` port and folds them into a checksum (the self-test's,
  :func:`~sparsa.hw.selftest.checksum_step`).

The ``leds`` show the checksum's XOR-folded byte once it is complete (zero before): a board that
lights the byte ``sparsa bitstream`` printed has run the program bit-exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory, MemoryData
from amaranth.lib.wiring import In, Out

from sparsa.config import ArrayConfig

from .axi import RESP_OKAY, AxiManagerSignature
from .csr import REGISTERS
from .selftest import checksum_step, fold_byte
from .top import AxiAccelerator

__all__ = ["AxiRam", "BoardSoc", "CsrHost", "ScanSignature"]


class ScanSignature(wiring.Signature):
    """A plain synchronous read port seen from the reader: ``addr`` and ``en`` out, ``data`` in
    (the word at ``addr`` the cycle after ``en``)."""

    def __init__(self, *, depth: int, data_bits: int):
        self.depth, self.data_bits = depth, data_bits
        super().__init__({"en": Out(1), "addr": Out(range(depth)), "data": In(data_bits)})


def _check_ram(depth: int, init: Sequence[int]) -> None:
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 2 or depth & (depth - 1):
        raise ValueError(f"depth must be a power of two of at least 2 words, not {depth!r}")
    if len(init) > depth:
        raise ValueError(f"the image has {len(init)} words, more than the RAM's {depth}")


def _check_range(first: int, words: int, depth: int) -> None:
    if not (first >= 0 and words > 0 and first + words <= depth):
        raise ValueError(f"the checked words {first}..{first + words - 1} must lie in the RAM's "
                         f"{depth} words")


def _register(name: str):
    return next(r for r in REGISTERS if r.name == name)


class AxiRam(wiring.Component):
    """An AXI4 subordinate over one block RAM of ``depth`` words of ``data_bits`` (a power of
    two), initialised with ``init`` (at most ``depth`` words, the rest zero).

    It serves INCR bursts of full-width beats (what sparsa's DMA engines issue; ``arsize``,
    ``awsize`` and ``*burst`` are not looked at), one burst of each direction at a time, with
    ``wstrb`` byte enables. A read beat leaves one cycle after its address is issued to the
    RAM, then one beat per cycle while ``rready`` is high. Addresses wrap at ``depth`` words.
    Every response is OKAY.

    ``data``: the RAM's :class:`~amaranth.lib.memory.MemoryData`.

    ``scan``: a second reader of the same RAM port (so the memory stays one simple dual-port
    block RAM): while ``scan.en`` is high it takes the read port, so it may be used only while no
    AXI read is in flight (:class:`CsrHost` scans after ``done``).
    """

    def __init__(self, *, addr_bits: int, data_bits: int, depth: int, init: Sequence[int] = ()):
        init = tuple(init)
        _check_ram(depth, init)
        self.depth, self.data_bits = depth, data_bits
        # the contents, kept here so a simulation can read them (``ctx.get(ram.data[i])``)
        self.data = MemoryData(shape=unsigned(data_bits), depth=depth, init=init)
        super().__init__({
            "axi": In(AxiManagerSignature(addr_bits=addr_bits, data_bits=data_bits)),
            "scan": In(ScanSignature(depth=depth, data_bits=data_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(self.data)
        rd, wr = mem.read_port(), mem.write_port(granularity=8)
        word = (self.data_bits // 8).bit_length() - 1      # log2 of the bytes per beat
        index = slice(word, word + (self.depth - 1).bit_length())
        ar, r, aw, w, b = (getattr(self.axi, name) for name in ("ar", "r", "aw", "w", "b"))

        # reads: one burst at a time, one beat per cycle through the registered RAM output
        left, raddr = Signal(range(257)), Signal(range(self.depth))
        rid, rvalid, rlast = Signal.like(ar.arid), Signal(), Signal()
        advance, issue = Signal(), Signal()
        m.d.comb += [ar.arready.eq(left == 0), advance.eq(~rvalid | r.rready),
                     issue.eq((left != 0) & advance & ~self.scan.en)]
        with m.If(ar.arvalid & ar.arready):
            m.d.sync += [left.eq(ar.arlen + 1), raddr.eq(ar.araddr[index]), rid.eq(ar.arid)]
        with m.If(issue):
            m.d.sync += [left.eq(left - 1), raddr.eq(raddr + 1), rlast.eq(left == 1)]
        with m.If(advance):
            m.d.sync += rvalid.eq(issue)
        m.d.comb += [rd.addr.eq(Mux(self.scan.en, self.scan.addr, raddr)),
                     rd.en.eq(self.scan.en | issue), self.scan.data.eq(rd.data),
                     r.rdata.eq(rd.data), r.rvalid.eq(rvalid), r.rlast.eq(rlast),
                     r.rid.eq(rid), r.rresp.eq(RESP_OKAY)]

        # writes: the address, then its beats, then the response
        wbusy, bvalid = Signal(), Signal()
        waddr, bid = Signal(range(self.depth)), Signal.like(aw.awid)
        m.d.comb += [aw.awready.eq(~wbusy & ~bvalid), w.wready.eq(wbusy),
                     b.bvalid.eq(bvalid), b.bid.eq(bid), b.bresp.eq(RESP_OKAY),
                     wr.addr.eq(waddr), wr.data.eq(w.wdata),
                     wr.en.eq(Mux(w.wvalid & w.wready, w.wstrb, 0))]
        with m.If(aw.awvalid & aw.awready):
            m.d.sync += [wbusy.eq(1), waddr.eq(aw.awaddr[index]), bid.eq(aw.awid)]
        with m.If(w.wvalid & w.wready):
            m.d.sync += waddr.eq(waddr + 1)
            with m.If(w.wlast):
                m.d.sync += [wbusy.eq(0), bvalid.eq(1)]
        with m.If(b.bvalid & b.bready):
            m.d.sync += bvalid.eq(0)
        return m


class CsrHost(wiring.Component):
    """The host in gateware: writes ``prog_base``, ``prog_len`` and ``ctrl.start`` on ``csr``
    (an AXI4-Lite manager port of ``csr_signature``), polls ``status`` until ``done``, then
    scans ``check_words`` words from ``check_first`` through ``scan`` into ``checksum``
    (:func:`checksum_step`, from 0). ``finished`` rises when the checksum is complete; ``error``
    if ``status.error`` was read set or a CSR write was not answered OKAY."""

    def __init__(self, *, csr_signature: wiring.Signature, scan: ScanSignature, prog_base: int,
                 prog_len: int, check_first: int, check_words: int):
        _check_range(check_first, check_words, scan.depth)
        self.writes = ((_register("prog_base").offset, prog_base),
                       (_register("prog_len").offset, prog_len), (_register("ctrl").offset, 1))
        self.check_first, self.check_words, self.depth = check_first, check_words, scan.depth
        super().__init__({"csr": Out(csr_signature), "scan": Out(scan),
                          "checksum": Out(32), "finished": Out(1), "error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        aw, w, b, ar, r = (getattr(self.csr, name) for name in ("aw", "w", "b", "ar", "r"))
        status = _register("status")
        done_bit = next(f.lsb for f in status.fields if f.name == "done")
        error_bit = next(f.lsb for f in status.fields if f.name == "error")
        aw_sent, w_sent = Signal(), Signal()
        addr, last = Signal(range(self.depth + 1)), self.check_first + self.check_words
        scanned = Signal()          # the RAM's output holds a word read in the previous cycle
        m.d.comb += [w.wstrb.eq(0b1111), b.bready.eq(1), r.rready.eq(1),
                     ar.araddr.eq(status.offset)]
        with m.FSM():
            for i, (offset, value) in enumerate(self.writes):
                after = f"write_{i + 1}" if i + 1 < len(self.writes) else "poll"
                with m.State(f"write_{i}"):
                    m.d.comb += [aw.awaddr.eq(offset), aw.awvalid.eq(~aw_sent),
                                 w.wdata.eq(value), w.wvalid.eq(~w_sent)]
                    aw_now = aw_sent | aw.awready
                    w_now = w_sent | w.wready
                    m.d.sync += [aw_sent.eq(aw_now), w_sent.eq(w_now)]
                    with m.If(aw_now & w_now):
                        m.d.sync += [aw_sent.eq(0), w_sent.eq(0)]
                        m.next = f"response_{i}"
                with m.State(f"response_{i}"), m.If(b.bvalid):
                    m.d.sync += self.error.eq(self.error | (b.bresp != RESP_OKAY))
                    m.next = after
            with m.State("poll"):
                m.d.comb += ar.arvalid.eq(1)
                with m.If(ar.arready):
                    m.next = "status"
            with m.State("status"), m.If(r.rvalid):
                m.d.sync += self.error.eq(self.error | r.rdata[error_bit])
                m.next = "poll"
                with m.If(r.rdata[done_bit]):
                    m.d.sync += addr.eq(self.check_first)
                    m.next = "scan"
            with m.State("scan"):
                m.d.comb += [self.scan.en.eq(addr < last), self.scan.addr.eq(addr)]
                m.d.sync += [scanned.eq(addr < last), addr.eq(addr + (addr < last))]
                with m.If(scanned):
                    m.d.sync += self.checksum.eq(checksum_step(self.checksum, self.scan.data))
                with m.If((addr == last) & ~scanned):
                    m.next = "finished"
            with m.State("finished"):
                m.d.comb += self.finished.eq(1)
        return m


class BoardSoc(wiring.Component):
    """:class:`~sparsa.hw.top.AxiAccelerator` of ``cfg``, an :class:`AxiRam` of ``depth`` words
    holding ``image`` and a :class:`CsrHost` that runs the program at ``prog_base`` (``prog_len``
    bytes) and checksums ``check_words`` RAM words from ``check_first``.

    Ports: ``leds`` (the checksum's folded byte once ``done``, else 0), ``checksum``, ``done``
    and ``error`` (see :class:`CsrHost`)."""

    def __init__(self, cfg: ArrayConfig, *, image: Sequence[int], depth: int, prog_base: int,
                 prog_len: int, check_first: int, check_words: int):
        if not isinstance(cfg, ArrayConfig):
            raise TypeError(f"cfg must be an ArrayConfig, not {cfg!r}")
        image = tuple(image)
        _check_ram(depth, image)        # before any component is made (none is left unused)
        _check_range(check_first, check_words, depth)
        self.cfg = cfg
        self.accelerator = AxiAccelerator(cfg)
        self.ram = AxiRam(addr_bits=cfg.axi_addr_bits, data_bits=cfg.axi_data_bits, depth=depth,
                          init=image)
        self.host = CsrHost(csr_signature=self.accelerator.csr.signature.flip(),
                            scan=self.ram.scan.signature.flip(), prog_base=prog_base,
                            prog_len=prog_len, check_first=check_first,
                            check_words=check_words)
        super().__init__({"leds": Out(8), "checksum": Out(32), "done": Out(1),
                          "error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.accelerator = accelerator = self.accelerator
        m.submodules.ram = ram = self.ram
        m.submodules.host = host = self.host
        wiring.connect(m, accelerator.axi, ram.axi)
        wiring.connect(m, host.csr, accelerator.csr)
        wiring.connect(m, host.scan, ram.scan)
        m.d.comb += [self.checksum.eq(host.checksum), self.done.eq(host.finished),
                     self.error.eq(host.error),
                     self.leds.eq(Mux(host.finished, fold_byte(host.checksum), 0))]
        return m
