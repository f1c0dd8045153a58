"""DMA engines of the memory system: 2-D strided reads and writes over an AXI4 manager port.

A descriptor (:func:`~sparsa.hw.dma_units.descriptor_layout`: ``base``, ``stride``, ``rows``,
``row_bytes``, all in bytes and of any alignment) moves ``rows`` rows, in the spirit of
Gemmini's mvin/mvout. Rows travel left-aligned on the engine's stream side (row byte 0 is byte
0 of the first beat), bus-aligned on the AXI side: every burst is INCR with ``AxSIZE`` equal to
the full bus width, at most 256 beats and never across a 4 KiB boundary
(:class:`~sparsa.hw.dma_units.BurstPlanner`). Each engine uses the single ID 0.

Why the re-aligners sit between the AXI data channel and the stream: the bus then always moves
whole, aligned beats at full width (no narrow or unaligned bursts, whose support varies between
interconnects), and the consumer of a row never sees its address. An unaligned row costs at
most one extra bus beat; the aligner holds one beat of state and a ``2B -> B`` byte shifter.

Both engines report a non-OKAY response (``rresp``/``bresp``) on ``error``; the bit is sticky
and is cleared when a descriptor is accepted by an idle engine (the start of the next job).
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from sparsa.config import ArrayConfig

from .axi import BURST_INCR, RESP_OKAY, AxiReadSignature, AxiWriteSignature
from .dma_units import (
    BurstPlanner,
    ReadAligner,
    WriteAligner,
    descriptor_layout,
    read_beat_layout,
    row_layout,
    write_beat_layout,
)

__all__ = ["DEFAULT_OUTSTANDING", "DmaReader", "DmaWriter", "descriptor_layout",
           "read_beat_layout", "write_beat_layout"]

# Bursts in flight per engine. Two already overlap one burst's address phase and latency with
# the previous burst's data; four keep a port busy when rows are short (a burst of k beats
# hides a latency of up to 3k cycles).
DEFAULT_OUTSTANDING = 4


def _check(cfg, max_outstanding) -> None:
    if not isinstance(cfg, ArrayConfig):
        raise TypeError(f"cfg must be an ArrayConfig, not {cfg!r}")
    if isinstance(max_outstanding, bool) or not isinstance(max_outstanding, int):
        raise TypeError(f"max_outstanding must be an integer, not {max_outstanding!r}")
    if not 2 <= max_outstanding <= 64:
        raise ValueError(f"max_outstanding must be from 2 to 64 (at least two bursts in flight "
                         f"hide the read latency), not {max_outstanding}")


def _row_fifo(cfg: ArrayConfig, depth: int) -> fifo.SyncFIFOBuffered:
    return fifo.SyncFIFOBuffered(width=row_layout(cfg).size, depth=depth)


def _connect_fifo(m: Module, source, sink, queue: fifo.SyncFIFOBuffered) -> None:
    """``source`` stream -> ``queue`` -> ``sink`` stream (the FIFO stores the payload's bits)."""
    m.d.comb += [queue.w_data.eq(source.payload), queue.w_en.eq(source.valid),
                 source.ready.eq(queue.w_rdy),
                 sink.payload.eq(queue.r_data), sink.valid.eq(queue.r_rdy),
                 queue.r_en.eq(sink.ready)]


class DmaReader(wiring.Component):
    """2-D strided reads: descriptors on ``desc``, rows out on ``data``.

    Ports: ``desc`` (in, :func:`descriptor_layout`), ``data`` (out,
    :func:`read_beat_layout`: left-aligned bytes, ``count``, ``last`` per row), ``axi`` (the
    read half of an AXI4 manager port: Verilog ``axi__ar__*``, ``axi__r__*``), ``busy`` and
    ``error``.

    Outstanding bursts: up to ``max_outstanding`` (default :data:`DEFAULT_OUTSTANDING`) read
    bursts are in flight, counted from the ``ar`` handshake to the ``r`` beat with ``rlast``.
    Read data is not buffered: ``rready`` follows the consumer of ``data`` through the
    aligner, so a stalled consumer stalls the bus, never overflows a buffer. A FIFO of
    ``max_outstanding + 1`` rows (offset, length) carries each row from the planner to the
    aligner.

    Cost of a descriptor: the planner accepts it in one cycle and issues one burst per cycle
    (a row with its first); the data side takes ``beats + 1`` cycles per row (``beats`` = output
    beats, ``ceil(row_bytes / B)``) at full rate, ``beats`` when the row follows one whose
    input beats are as many as its output beats, so with rows of several beats the address
    phase hides under the data. The next descriptor is accepted as soon as the planner has
    issued the previous one's last burst (descriptors pipeline).
    """

    def __init__(self, cfg: ArrayConfig, *, max_outstanding: int = DEFAULT_OUTSTANDING):
        _check(cfg, max_outstanding)
        self.cfg, self.max_outstanding = cfg, max_outstanding
        super().__init__({
            "desc": In(stream.Signature(descriptor_layout(cfg))),
            "data": Out(stream.Signature(read_beat_layout(cfg))),
            "axi": Out(AxiReadSignature.for_config(cfg)),
            "busy": Out(1),
            "error": Out(1),
        })

    def elaborate(self, platform):
        cfg, m = self.cfg, Module()
        m.submodules.planner = planner = BurstPlanner(cfg)
        m.submodules.rows = rows = _row_fifo(cfg, self.max_outstanding + 1)
        m.submodules.aligner = aligner = ReadAligner(cfg)
        ar, r = self.axi.ar, self.axi.r

        wiring.connect(m, wiring.flipped(self.desc), planner.desc)
        _connect_fifo(m, planner.row, aligner.row, rows)
        wiring.connect(m, aligner.out, wiring.flipped(self.data))

        outstanding = Signal(range(self.max_outstanding + 1))
        room = Signal()
        m.d.comb += [
            room.eq(outstanding != self.max_outstanding),
            ar.araddr.eq(planner.burst.payload.addr), ar.arlen.eq(planner.burst.payload.len),
            ar.arsize.eq(exact_log2(cfg.axi_data_bits // 8)), ar.arburst.eq(BURST_INCR),
            ar.arid.eq(0), ar.arvalid.eq(planner.burst.valid & room),
            planner.burst.ready.eq(ar.arready & room),
            aligner.beat.payload.eq(r.rdata), aligner.beat.valid.eq(r.rvalid),
            r.rready.eq(aligner.beat.ready),
        ]
        issued = ar.arvalid & ar.arready
        retired = r.rvalid & r.rready & r.rlast
        m.d.sync += outstanding.eq(outstanding + issued - retired)

        m.d.comb += self.busy.eq(~planner.idle | (outstanding != 0) | rows.r_rdy)
        with m.If(self.desc.valid & self.desc.ready & ~self.busy):
            m.d.sync += self.error.eq(0)
        with m.If(r.rvalid & r.rready & (r.rresp != RESP_OKAY)):
            m.d.sync += self.error.eq(1)
        return m


class DmaWriter(wiring.Component):
    """2-D strided writes: a descriptor on ``desc``, its rows' bytes left-aligned on ``data``
    (:func:`write_beat_layout`, ``ceil(row_bytes / B)`` beats per row), one completion on
    ``done`` (``error``: some ``bresp`` of the descriptor was not OKAY).

    The planner issues ``aw`` bursts (up to ``max_outstanding`` without their ``b`` response);
    the aligner shifts each row to its bus offset and drives ``w`` with ``wstrb`` masking the
    bytes before the row's first and after its last byte, and ``wlast`` from a FIFO of the
    issued burst lengths. Ports: ``axi`` (Verilog ``axi__aw__*``, ``axi__w__*``, ``axi__b__*``),
    ``busy``, ``error`` (sticky, see the module).

    Cost of a descriptor: like the reader's address phase, plus one cycle per bus beat of each
    row (``ceil((offset + row_bytes) / B)``); a descriptor completes once its last ``b``
    response is in, and the next one is accepted after its ``done`` is taken (one write round
    trip between descriptors).
    """

    def __init__(self, cfg: ArrayConfig, *, max_outstanding: int = DEFAULT_OUTSTANDING):
        _check(cfg, max_outstanding)
        self.cfg, self.max_outstanding = cfg, max_outstanding
        super().__init__({
            "desc": In(stream.Signature(descriptor_layout(cfg))),
            "data": In(stream.Signature(write_beat_layout(cfg))),
            "done": Out(stream.Signature(data.StructLayout({"error": 1}))),
            "axi": Out(AxiWriteSignature.for_config(cfg)),
            "busy": Out(1),
            "error": Out(1),
        })

    def elaborate(self, platform):
        cfg, m = self.cfg, Module()
        m.submodules.planner = planner = BurstPlanner(cfg)
        m.submodules.rows = rows = _row_fifo(cfg, self.max_outstanding + 1)
        m.submodules.bursts = bursts = fifo.SyncFIFOBuffered(width=8, depth=self.max_outstanding)
        m.submodules.aligner = aligner = WriteAligner(cfg)
        aw, w, b = self.axi.aw, self.axi.w, self.axi.b

        pending = Signal()                    # a descriptor was accepted, not yet done
        m.d.comb += [planner.desc.payload.eq(self.desc.payload),
                     planner.desc.valid.eq(self.desc.valid & ~pending),
                     self.desc.ready.eq(planner.desc.ready & ~pending)]
        _connect_fifo(m, planner.row, aligner.row, rows)
        wiring.connect(m, wiring.flipped(self.data), aligner.beat)

        outstanding = Signal(range(self.max_outstanding + 1))
        room = Signal()
        m.d.comb += [
            room.eq((outstanding != self.max_outstanding) & bursts.w_rdy),
            aw.awaddr.eq(planner.burst.payload.addr), aw.awlen.eq(planner.burst.payload.len),
            aw.awsize.eq(exact_log2(cfg.axi_data_bits // 8)), aw.awburst.eq(BURST_INCR),
            aw.awid.eq(0), aw.awvalid.eq(planner.burst.valid & room),
            planner.burst.ready.eq(aw.awready & room),
            bursts.w_data.eq(planner.burst.payload.len), bursts.w_en.eq(aw.awvalid & aw.awready),
            aligner.burst.payload.eq(bursts.r_data), aligner.burst.valid.eq(bursts.r_rdy),
            bursts.r_en.eq(aligner.burst.ready),
            w.wdata.eq(aligner.out.payload.data), w.wstrb.eq(aligner.out.payload.strb),
            w.wlast.eq(aligner.out.payload.last), w.wvalid.eq(aligner.out.valid),
            aligner.out.ready.eq(w.wready),
            b.bready.eq(1),
        ]
        issued = aw.awvalid & aw.awready
        answered = b.bvalid & b.bready
        m.d.sync += outstanding.eq(outstanding + issued - answered)

        m.d.comb += [self.busy.eq(pending),
                     self.done.valid.eq(pending & planner.idle & (outstanding == 0)
                                        & ~rows.r_rdy),
                     self.done.payload.error.eq(self.error)]
        with m.If(self.desc.valid & self.desc.ready):
            m.d.sync += [pending.eq(1), self.error.eq(0)]
        with m.If(self.done.valid & self.done.ready):
            m.d.sync += pending.eq(0)
        with m.If(answered & (b.bresp != RESP_OKAY)):
            m.d.sync += self.error.eq(1)
        return m
