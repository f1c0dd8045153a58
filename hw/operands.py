"""The memory-mapped accelerator's operand movers (:mod:`sparsa.hw.top`), one component each.

:class:`OperandTap`
    watches the core's dispatches and turns each LOAD into a read request and each STORE into
    a write job, from the instruction's memory fields (:mod:`sparsa.isa`, "Operands in memory").
:class:`ReadArbiter`
    one DMA reader for two sources: the loads' requests first, then instruction fetch; records
    each descriptor's :class:`Kind` for the :class:`~sparsa.hw.packer.ChunkPacker`.
:class:`StoreUnit`
    the write path: one STORE at a time, its descriptor to the DMA writer and its ``data_out``
    rows compacted into the writer's beats.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, enum, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from sparsa import isa
from sparsa.config import ArrayConfig
from sparsa.isa import INSN_BYTES, Opcode

from . import layouts
from .dma_units import descriptor_layout, write_beat_layout
from .packer import KIND_BITS, RowCompactor, job_layout

__all__ = ["Kind", "OperandTap", "ReadArbiter", "StoreUnit", "chunk_bytes", "chunk_size",
           "read_request", "store_job"]



class Kind(enum.Enum, shape=3):
    """What a read descriptor brings: instruction words, or the operand of a LOAD (the same
    code as its opcode)."""

    FETCH = 0
    LOAD_ACT = Opcode.LOAD_ACT.value
    LOAD_WEIGHT = Opcode.LOAD_WEIGHT.value
    LOAD_ACC = Opcode.LOAD_ACC.value
    LOAD_SCALE = Opcode.LOAD_SCALE.value
    WEIGHT_VALUES = 7       # a phase LOAD_WEIGHT: rows of values only (sparsa.isa)


def chunk_size(cfg: ArrayConfig, kind: Kind) -> int:
    """Bytes of one chunk of ``kind``: an instruction word, a LOAD_ACT row of ``K_pass``
    activations, or the scratchpad (scale) row of the other loads
    (:func:`sparsa.isa.data_in_bytes`)."""
    if kind == Kind.FETCH:
        return INSN_BYTES
    if kind == Kind.LOAD_ACT:
        return cfg.k_per_pass * cfg.act_width // 8
    if kind == Kind.WEIGHT_VALUES:
        return isa.weight_values_bytes(cfg)
    return isa.data_in_bytes(cfg, Opcode(kind.value))


def chunk_bytes(cfg: ArrayConfig) -> int:
    """The widest chunk (the packer's buffer)."""
    return max(chunk_size(cfg, kind) for kind in Kind)


def read_request(cfg: ArrayConfig) -> data.StructLayout:
    """A read descriptor with its ``kind`` (a :class:`Kind` code)."""
    return data.StructLayout({"desc": descriptor_layout(cfg), "kind": unsigned(KIND_BITS)})


def store_job(cfg: ArrayConfig) -> data.StructLayout:
    """What the write path needs of a STORE (its memory fields, ``count`` and ``raw``)."""
    a = cfg.addr_bits
    return data.StructLayout({"dram": unsigned(isa.DRAM_BITS), "stride": unsigned(isa.STRIDE_BITS),
                              "count": unsigned(a), "channels": unsigned(a), "raw": unsigned(1)})


class OperandTap(wiring.Component):
    """At each dispatch (``dispatch`` high with the instruction on ``insn``) of a LOAD, a read
    request into a one-entry register (``load``); of a STORE, a write job into a FIFO
    (``store``, ``store_depth`` entries). ``room``: the instruction on ``insn`` may dispatch as
    far as these are concerned (its request or job has a place; always, for other opcodes).
    ``busy``: a request or a job is waiting; ``stores_queued``: a job is waiting.

    Requests: LOAD_ACT reads ``pixels`` rows of ``channels * act_width / 8`` bytes, ``stride``
    apart; LOAD_WEIGHT and LOAD_ACC one row of ``count`` scratchpad rows' bytes (a phase
    LOAD_WEIGHT's values only, :attr:`Kind.WEIGHT_VALUES`); LOAD_SCALE one row of the scale
    row's bytes. One row per load is the better burst: the planner spends a
    cycle per burst (one per row at least), the reader a capture cycle per row after a gap or an
    unaligned row, and a row is cut into bursts only at 256 beats or a 4 KiB page. An empty
    transfer (no rows or no bytes) makes no request.

    The register cannot be full at a LOAD's dispatch in practice: a LOAD dispatches only once
    the previous LOAD's data is all taken, so its request has left. ``room`` keeps it safe."""

    def __init__(self, cfg: ArrayConfig, *, store_depth: int = 4):
        self.cfg, self.store_depth = cfg, store_depth
        super().__init__({
            "insn": In(layouts.instruction()),
            "dispatch": In(1),
            "load": Out(stream.Signature(read_request(cfg))),
            "store": Out(stream.Signature(store_job(cfg))),
            "room": Out(1),
            "busy": Out(1),
            "stores_queued": Out(1),
        })

    def elaborate(self, platform):
        cfg, m = self.cfg, Module()
        m.submodules.stores = stores = fifo.SyncFIFOBuffered(width=store_job(cfg).size,
                                                             depth=self.store_depth)
        op, a = self.insn.opcode, self.insn.args
        is_load = Signal()
        m.d.comb += is_load.eq((op >= Opcode.LOAD_ACT) & (op <= Opcode.LOAD_SCALE))
        req = Signal(read_request(cfg))
        values = Signal()       # a phase LOAD_WEIGHT (sparse hardware): values only
        m.d.comb += values.eq((op == Opcode.LOAD_WEIGHT) & (a.load_weight.phase != 0)
                              & (cfg.index_width > 0))
        # per LOAD opcode: (dram, bytes per row); the fields sit at different bits in each
        fields = {
            Opcode.LOAD_ACT: (a.load_act.dram, a.load_act.channels * (cfg.act_width // 8)),
            Opcode.LOAD_WEIGHT: (a.load_weight.dram, a.load_weight.count * Mux(
                values, isa.weight_values_bytes(cfg), isa.data_in_bytes(cfg, Opcode.LOAD_WEIGHT))),
            Opcode.LOAD_ACC: (a.load_acc.dram, a.load_acc.count *
                              isa.data_in_bytes(cfg, Opcode.LOAD_ACC)),
            Opcode.LOAD_SCALE: (a.load_scale.dram, isa.data_in_bytes(cfg, Opcode.LOAD_SCALE)),
        }
        base, row_bytes = 0, 0
        for code, (dram, nbytes) in fields.items():
            base, row_bytes = Mux(op == code, dram, base), Mux(op == code, nbytes, row_bytes)
        m.d.comb += [
            req.kind.eq(Mux(values, Kind.WEIGHT_VALUES, op)), req.desc.base.eq(base),
            req.desc.row_bytes.eq(row_bytes),
            req.desc.stride.eq(Mux(op == Opcode.LOAD_ACT, a.load_act.stride, 0)),
            req.desc.rows.eq(Mux(op == Opcode.LOAD_ACT, a.load_act.pixels, 1)),
        ]
        nonempty = (req.desc.rows != 0) & (req.desc.row_bytes != 0)
        free = ~self.load.valid | self.load.ready
        m.d.comb += self.room.eq(Mux(is_load, free, Mux(op == Opcode.STORE, stores.w_rdy, 1)))
        with m.If(self.load.ready):
            m.d.sync += self.load.valid.eq(0)
        with m.If(self.dispatch & is_load & nonempty):
            m.d.sync += [self.load.valid.eq(1), self.load.payload.eq(req)]
        st, job = a.store, Signal(store_job(cfg))
        m.d.comb += [
            job.dram.eq(st.dram), job.stride.eq(st.stride), job.count.eq(st.count),
            job.channels.eq(st.channels), job.raw.eq(st.raw),
            stores.w_data.eq(job), stores.w_en.eq(self.dispatch & (op == Opcode.STORE)),
            self.store.payload.eq(stores.r_data), self.store.valid.eq(stores.r_rdy),
            stores.r_en.eq(self.store.ready),
            self.busy.eq(self.load.valid | (stores.r_level != 0)),
            self.stores_queued.eq(stores.r_level != 0),
        ]
        return m


class ReadArbiter(wiring.Component):
    """Descriptors for the one DMA reader (``desc``): a load's request (``load``) first, else a
    fetch descriptor (``fetch``), fixed priority. Each descriptor given to the reader is
    recorded in a FIFO of ``depth`` jobs (``job``, :func:`~sparsa.hw.packer.job_layout`: its
    kind, chunk size and rows) for the packer; a descriptor waits while the FIFO is full.
    Loads go first because they are already dispatched: the core waits for their data.
    ``hold_loads``: load requests wait (fetch may go). ``busy``: a job is recorded (its data
    not all packed)."""

    def __init__(self, cfg: ArrayConfig, *, depth: int = 8):
        self.cfg, self.depth, self.width = cfg, depth, chunk_bytes(cfg)
        super().__init__({
            "load": In(stream.Signature(read_request(cfg))),
            "fetch": In(stream.Signature(descriptor_layout(cfg))),
            "hold_loads": In(1),
            "desc": Out(stream.Signature(descriptor_layout(cfg))),
            "job": Out(stream.Signature(job_layout(cfg, self.width))),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        cfg, m = self.cfg, Module()
        layout = job_layout(cfg, self.width)
        m.submodules.jobs = jobs = fifo.SyncFIFOBuffered(width=layout.size, depth=self.depth)
        load = self.load.payload
        size = 0
        for kind in Kind:
            size = Mux(load.kind == kind, chunk_size(cfg, kind), size)
        pick_load = Signal()
        m.d.comb += pick_load.eq(self.load.valid & ~self.hold_loads)
        job = Signal(layout)
        m.d.comb += [
            self.desc.payload.eq(Mux(pick_load, load.desc, self.fetch.payload)),
            self.desc.valid.eq((pick_load | self.fetch.valid) & jobs.w_rdy),
            self.load.ready.eq(self.desc.ready & jobs.w_rdy & ~self.hold_loads),
            self.fetch.ready.eq(self.desc.ready & jobs.w_rdy & ~pick_load),
            job.kind.eq(Mux(pick_load, load.kind, Kind.FETCH)),
            job.size.eq(Mux(pick_load, size, INSN_BYTES)),
            job.rows.eq(self.desc.payload.rows),
            jobs.w_data.eq(job), jobs.w_en.eq(self.desc.valid & self.desc.ready),
            self.job.payload.eq(jobs.r_data), self.job.valid.eq(jobs.r_rdy),
            jobs.r_en.eq(self.job.ready), self.busy.eq(jobs.r_level != 0),
        ]
        return m


class StoreUnit(wiring.Component):
    """The write path of STOREs, one at a time (the DMA writer completes a descriptor before it
    takes the next): take a job (``job``), give the writer its descriptor (``desc``: ``count``
    rows of ``channels`` lanes at ``dram``, ``stride`` apart), pass its ``count`` ``data_out``
    rows (``rows``) through a :class:`~sparsa.hw.packer.RowCompactor` to the writer (``data``),
    then wait for the writer's completion (``done``) before the next job. ``busy``: a job is
    held or waiting.

    Timing: a job is taken in the cycle after the previous one's ``done`` (or at once when
    idle); its descriptor is offered from the next cycle; rows flow as the compactor allows."""

    def __init__(self, cfg: ArrayConfig):
        self.cfg = cfg
        super().__init__({
            "job": In(stream.Signature(store_job(cfg))),
            "rows": In(stream.Signature(layouts.psum_row(cfg))),
            "desc": Out(stream.Signature(descriptor_layout(cfg))),
            "data": Out(stream.Signature(write_beat_layout(cfg))),
            "done": In(stream.Signature(data.StructLayout({"error": 1}))),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        cfg, m = self.cfg, Module()
        m.submodules.compactor = compactor = RowCompactor(cfg)
        job = Signal(store_job(cfg))
        active, sent = Signal(), Signal()          # a job is held; its descriptor went out
        rows_left = Signal(cfg.addr_bits)          # its rows not yet taken by the compactor
        elem = Mux(job.raw, cfg.acc_width // 8, cfg.act_width // 8)
        m.d.comb += [
            self.job.ready.eq(~active),
            self.desc.valid.eq(active & ~sent),
            self.desc.payload.base.eq(job.dram), self.desc.payload.stride.eq(job.stride),
            self.desc.payload.rows.eq(job.count),
            self.desc.payload.row_bytes.eq(job.channels * elem),
            compactor.format.channels.eq(job.channels), compactor.format.raw.eq(job.raw),
            compactor.rows.payload.eq(self.rows.payload),
            compactor.rows.valid.eq(self.rows.valid & active & (rows_left != 0)),
            self.rows.ready.eq(compactor.rows.ready & active & (rows_left != 0)),
            self.done.ready.eq(active & sent & (rows_left == 0) & ~compactor.busy),
            self.busy.eq(active | self.job.valid),
        ]
        wiring.connect(m, compactor.beats, wiring.flipped(self.data))
        with m.If(self.rows.valid & self.rows.ready):
            m.d.sync += rows_left.eq(rows_left - 1)
        with m.If(self.desc.valid & self.desc.ready):
            m.d.sync += sent.eq(1)
        with m.If(self.done.valid & self.done.ready):
            m.d.sync += active.eq(0)
        with m.If(self.job.valid & self.job.ready):
            m.d.sync += [job.eq(self.job.payload), active.eq(1), sent.eq(0),
                         rows_left.eq(self.job.payload.count)]
        return m
