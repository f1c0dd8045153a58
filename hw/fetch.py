"""Instruction fetch of the memory-mapped accelerator (:mod:`sparsa.hw.top`)."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from sparsa.config import ArrayConfig
from sparsa.isa import INSN_BYTES

from .dma_units import descriptor_layout

__all__ = ["DEFAULT_FETCH_INSNS", "Fetcher", "check_fetch"]

# Instructions per fetch descriptor. Eight is one 128-byte burst (8 beats at 128 bits): long
# enough that the descriptor and burst overhead (a few cycles) is small beside the data, short
# enough that a FIFO of two descriptors' instructions (256 bytes) keeps the next burst in
# flight while the core works through the current one.
DEFAULT_FETCH_INSNS = 8


def check_fetch(insns, depth) -> None:
    """``insns`` words per descriptor and a FIFO of ``depth`` words: positive integers, the FIFO
    at least one descriptor deep."""
    for name, value in (("insns", insns), ("depth", depth)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise TypeError(f"{name} must be a positive integer, not {value!r}")
    if depth < insns:
        raise ValueError(f"the instruction FIFO (depth {depth}) must hold a whole fetch "
                         f"descriptor ({insns} instructions)")


class Fetcher(wiring.Component):
    """On ``start``: the ``prog_len // 16`` instruction words from ``prog_base`` as read
    descriptors (``desc``: one row of ``F`` words, the last one shorter), each issued only when
    the instruction FIFO (``depth`` words) has room for all its words, counting those still in
    flight: ``reserved`` (words requested and not yet dispatched, decreased by ``popped``) plus
    the descriptor's words must not exceed ``depth``. So fetched words always drain into the
    FIFO and never hold the read channel that the loads share. ``busy``: words are left to
    request (trailing bytes of a ``prog_len`` that is not a multiple of 16 are ignored).

    Timing: on ``start`` (cycle ``t``) the first descriptor is offered from ``t + 1``; each later
    one is offered in the cycle after the previous one is taken, or once ``reserved`` has
    dropped far enough.
    """

    def __init__(self, cfg: ArrayConfig, *, insns: int = DEFAULT_FETCH_INSNS, depth: int = 16):
        if not isinstance(cfg, ArrayConfig):
            raise TypeError(f"cfg must be an ArrayConfig, not {cfg!r}")
        check_fetch(insns, depth)
        self.cfg, self.insns, self.depth = cfg, insns, depth
        super().__init__({
            "start": In(1),
            "prog_base": In(cfg.axi_addr_bits),
            "prog_len": In(32),
            "desc": Out(stream.Signature(descriptor_layout(cfg))),
            "popped": In(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        f = self.insns
        addr = Signal(self.cfg.axi_addr_bits)
        left = Signal(32 - 4)                        # instruction words still to request
        reserved = Signal(range(self.depth + 1))
        n = Signal(bits_for(f))
        m.d.comb += n.eq(Mux(left < f, left, f))
        desc = self.desc.payload
        m.d.comb += [
            desc.base.eq(addr), desc.stride.eq(0), desc.rows.eq(1),
            desc.row_bytes.eq(n * INSN_BYTES),
            self.desc.valid.eq((left != 0) & (reserved + n <= self.depth)),
            self.busy.eq(left != 0),
        ]
        issued = self.desc.valid & self.desc.ready
        m.d.sync += reserved.eq(reserved + Mux(issued, n, 0) - self.popped)
        with m.If(issued):
            m.d.sync += [addr.eq(addr + n * INSN_BYTES), left.eq(left - n)]
        with m.If(self.start):
            m.d.sync += [addr.eq(self.prog_base), left.eq(self.prog_len[4:])]
        return m
