"""Byte re-packing between the DMA engines' row beats and the accelerator's fixed-size words.

:class:`ChunkPacker`
    the read side: the :class:`~sparsa.hw.dma.DmaReader`'s left-aligned beats of each row ->
    fixed-size chunks (instruction words, scratchpad rows), the size set per descriptor.
:class:`RowCompactor`
    the write side: one ``data_out`` row (``cols`` accumulator-wide lanes) -> the first
    ``channels`` lanes at the activation or accumulator width, little-endian, cut into the
    :class:`~sparsa.hw.dma.DmaWriter`'s bus-wide beats.

Combinational outputs are unconditional assignments (see :mod:`sparsa.hw.dma_units` for why
Icarus needs that).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, exact_log2

from sparsa.config import ArrayConfig

from . import layouts
from .dma_units import read_beat_layout, write_beat_layout

__all__ = ["KIND_BITS", "ChunkPacker", "RowCompactor", "chunk_layout", "job_layout",
           "row_format_layout"]

KIND_BITS = 3     # a descriptor's kind travels with its chunks (its meaning is the user's)


def _check_cfg(cfg) -> None:
    if not isinstance(cfg, ArrayConfig):
        raise TypeError(f"cfg must be an ArrayConfig, not {cfg!r}")


def job_layout(cfg: ArrayConfig, chunk_bytes: int) -> data.StructLayout:
    """What the packer needs of one read descriptor: its ``rows``, the ``size`` of its chunks in
    bytes (1 to ``chunk_bytes``) and its ``kind``, copied onto each chunk."""
    return data.StructLayout({"kind": unsigned(KIND_BITS), "size": unsigned(bits_for(chunk_bytes)),
                              "rows": unsigned(cfg.axi_addr_bits)})


def chunk_layout(chunk_bytes: int) -> data.StructLayout:
    """One chunk: ``size`` bytes LSB-aligned in ``data`` (byte 0 is bits 0..7), zeros above, and
    the ``kind`` of its descriptor."""
    return data.StructLayout({"data": unsigned(8 * chunk_bytes), "kind": unsigned(KIND_BITS)})


class ChunkPacker(wiring.Component):
    """Cuts the rows of each read descriptor into chunks of the descriptor's ``size`` bytes.

    Ports: ``beat`` (in, :func:`~sparsa.hw.dma_units.read_beat_layout`), ``job`` (in,
    :func:`job_layout`: the descriptors in the order the reader got them; an entry is taken
    with the last beat of its last row), ``chunk`` (out, :func:`chunk_layout`), ``idle``.

    A chunk is complete when it holds ``size`` bytes or when its row ends: the bytes of a row
    that do not fill a whole chunk are zero-filled (a pixel's last block of channels). So a row
    of ``R`` bytes gives ``ceil(R / size)`` chunks, and a row of ``k * size`` bytes carries ``k``
    back-to-back rows of the user's (chunks straddle bus beats freely).

    Timing: the packer works in *pieces*, one per cycle at full rate: a piece is the bytes of
    the current beat that fall into the current chunk. A piece that completes a chunk presents
    it on ``chunk`` (combinationally, with the piece's bytes) and waits for ``ready``; a piece
    that ends a beat takes the beat. So a row costs one cycle per piece: ``|{multiples of B or
    of size in (0, R)}| + 1`` cycles for ``B``-byte beats, ``R`` bytes and chunks of ``size``.
    """

    def __init__(self, cfg: ArrayConfig, *, chunk_bytes: int):
        _check_cfg(cfg)
        if isinstance(chunk_bytes, bool) or not isinstance(chunk_bytes, int) or chunk_bytes < 1:
            raise TypeError(f"chunk_bytes must be a positive integer, not {chunk_bytes!r}")
        self.cfg, self.chunk_bytes = cfg, chunk_bytes
        super().__init__({
            "beat": In(stream.Signature(read_beat_layout(cfg))),
            "job": In(stream.Signature(job_layout(cfg, chunk_bytes))),
            "chunk": Out(stream.Signature(chunk_layout(chunk_bytes))),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        b, w = self.cfg.axi_data_bits // 8, self.chunk_bytes
        beat, job = self.beat.payload, self.job.payload
        pos = Signal(range(b))                 # bytes of the current beat already used
        fill = Signal(range(w + 1))            # bytes in ``buf``
        buf = Signal(8 * w)                    # the chunk so far; zero above ``fill`` bytes
        rows_done = Signal.like(job.rows)      # rows of the current job already packed
        avail, space, take = (Signal(bits_for(b)), Signal(bits_for(w)),
                              Signal(bits_for(max(b, w))))
        m.d.comb += [avail.eq(beat.count - pos), space.eq(job.size - fill),
                     take.eq(Mux(avail < space, avail, space))]
        ones = Const((1 << 8 * b) - 1, 8 * b)
        piece = (beat.data.as_value() >> Cat(Const(0, 3), pos)) & \
            (ones >> Cat(Const(0, 3), b - take)[:bits_for(8 * b)])
        combined = Signal(8 * w)
        m.d.comb += combined.eq(buf | (piece << Cat(Const(0, 3), fill))[:8 * w])
        beat_end, chunk_end = Signal(), Signal()
        m.d.comb += [beat_end.eq(take == avail),
                     chunk_end.eq((take == space) | (beat_end & beat.last))]
        active, step = Signal(), Signal()
        m.d.comb += [
            active.eq(self.beat.valid & self.job.valid),
            self.chunk.valid.eq(active & chunk_end),
            self.chunk.payload.data.eq(combined), self.chunk.payload.kind.eq(job.kind),
            step.eq(active & (~chunk_end | self.chunk.ready)),
            self.beat.ready.eq(step & beat_end),
            self.job.ready.eq(step & beat_end & beat.last & (rows_done + 1 == job.rows)),
            self.idle.eq(~self.job.valid),
        ]
        with m.If(step):
            m.d.sync += [buf.eq(Mux(chunk_end, 0, combined)),
                         fill.eq(Mux(chunk_end, 0, fill + take)),
                         pos.eq(Mux(beat_end, 0, pos + take))]
        with m.If(step & beat_end & beat.last):
            m.d.sync += rows_done.eq(Mux(self.job.ready, 0, rows_done + 1))
        return m


def row_format_layout(cfg: ArrayConfig) -> data.StructLayout:
    """How a STORE's rows go to memory: the first ``channels`` lanes, requantized (activation
    width) or ``raw`` (accumulator width)."""
    return data.StructLayout({"channels": unsigned(cfg.addr_bits), "raw": unsigned(1)})


class RowCompactor(wiring.Component):
    """``data_out`` rows (``rows``: ``cols`` lanes of ``acc_width`` bits, requantized values
    sign-extended) -> the row's bytes in memory, bus-wide beats on ``beats``
    (:func:`~sparsa.hw.dma_units.write_beat_layout`, left-aligned): lane ``i`` becomes bytes
    ``i * E .. i * E + E - 1``, little-endian, with ``E`` = ``act_width / 8`` (or
    ``acc_width / 8`` when ``format.raw``), and only the first ``format.channels`` lanes are
    sent: ``ceil(channels * E / B)`` beats per row (none for ``channels == 0``: the row is
    dropped). ``format`` must hold while a row is in the compactor.

    Timing: a row is taken into a register when the register is empty or sends its last beat,
    and its beats leave from the next cycle, one per cycle while ``beats`` is ready. So rows of
    ``k`` beats stream at ``k`` cycles per row, one cycle after each row is offered.
    ``busy``: a row is held.
    """

    def __init__(self, cfg: ArrayConfig):
        _check_cfg(cfg)
        if cfg.act_width % 8 or cfg.acc_width % 8:
            raise ValueError(f"act_width {cfg.act_width} and acc_width {cfg.acc_width} must be "
                             f"multiples of 8 (whole bytes in memory)")
        self.cfg = cfg
        super().__init__({
            "rows": In(stream.Signature(layouts.psum_row(cfg))),
            "format": In(row_format_layout(cfg)),
            "beats": Out(stream.Signature(write_beat_layout(cfg))),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        cfg, m = self.cfg, Module()
        b = cfg.axi_data_bits // 8
        row = self.rows.payload
        packed = Mux(self.format.raw, row.as_value(),
                     Cat(row[i][:cfg.act_width] for i in range(cfg.cols)))
        row_bytes = Mux(self.format.raw, self.format.channels * (cfg.acc_width // 8),
                        self.format.channels * (cfg.act_width // 8))
        beats_per_row = Signal(cfg.addr_bits + 3)
        m.d.comb += beats_per_row.eq((row_bytes + b - 1) >> exact_log2(b))
        held = Signal(cfg.cols * cfg.acc_width)   # the row's bytes not yet sent, from byte 0
        left = Signal.like(beats_per_row)         # its beats not yet sent
        sent = self.beats.valid & self.beats.ready
        m.d.comb += [
            self.beats.valid.eq(left != 0),
            self.beats.payload.eq(held[:8 * b] if 8 * b <= len(held) else held),
            self.rows.ready.eq((left == 0) | ((left == 1) & sent)),
            self.busy.eq(left != 0),
        ]
        with m.If(sent):
            m.d.sync += [held.eq(held >> 8 * b), left.eq(left - 1)]
        with m.If(self.rows.valid & self.rows.ready):
            m.d.sync += [held.eq(packed), left.eq(beats_per_row)]
        return m
