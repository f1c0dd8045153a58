"""The memory-mapped accelerator's operand movers (:mod:`sparsa.hw.top`), one component each.

:class:`LoadQueue`
    turns each fetched LOAD into a read request, from the instruction's memory fields
    (:mod:`sparsa.isa`, "Operands in memory"), and offers the requests in program order ahead
    of their LOADs' dispatch, once the STOREs before them are complete.
:class:`OperandTap`
    watches the core's dispatches and turns each STORE into a write job.
:class:`ReadArbiter`
    one DMA reader for two sources: the loads' requests first, then instruction fetch; records
    each descriptor's :class:`Kind` for the :class:`~sparsa.hw.packer.ChunkPacker`.
:class:`StoreUnit`
    the write path: one STORE at a time, its descriptor to the DMA writer and its ``data_out``
    rows compacted into the writer's beats.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, enum, fifo, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from sparsa import isa
from sparsa.config import ArrayConfig
from sparsa.isa import INSN_BYTES, Opcode

from . import layouts
from .dma_units import descriptor_layout, write_beat_layout
from .packer import KIND_BITS, RowCompactor, job_layout

__all__ = ["DEFAULT_LOADS_AHEAD", "Kind", "LoadQueue", "OperandTap", "ReadArbiter", "StoreUnit",
           "chunk_bytes", "chunk_size", "read_request", "store_job"]

# Read requests the LoadQueue may issue for LOADs not yet dispatched (see LoadQueue).
DEFAULT_LOADS_AHEAD = 1

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


# Bits of a byte span's end (one past its last byte): a DRAM address plus rows x stride plus a row.
SPAN_BITS = isa.DRAM_BITS + isa.STRIDE_BITS + isa.ADDR_BITS + 2


def load_request(m: Module, cfg: ArrayConfig, insn) -> tuple[Signal, Signal, Signal]:
    """The read request of the instruction ``insn`` (a :func:`~sparsa.hw.layouts.instruction`
    view), combinationally, whether it makes one (a LOAD with rows and bytes) and the end of
    the bytes it reads (one past the last: ``base + (rows - 1) * stride + row_bytes``).

    LOAD_ACT reads ``pixels`` rows of ``channels * act_width / 8`` bytes, ``stride`` apart;
    LOAD_WEIGHT and LOAD_ACC one row of ``count`` scratchpad rows' bytes (a phase LOAD_WEIGHT's
    values only, :attr:`Kind.WEIGHT_VALUES`); LOAD_SCALE one row of the scale row's bytes. One
    row per load is the better burst: the planner spends a cycle per burst (one per row at
    least), the reader a capture cycle per row after a gap or an unaligned row, and a row is cut
    into bursts only at 256 beats or a 4 KiB page. An empty transfer (no pixels, channels or
    rows) makes no request."""
    op, a = insn.opcode, insn.args
    req, makes, end = Signal(read_request(cfg)), Signal(), Signal(SPAN_BITS)
    values = Signal()       # a phase LOAD_WEIGHT (sparse hardware): values only
    m.d.comb += values.eq((op == Opcode.LOAD_WEIGHT) & (a.load_weight.phase != 0)
                          & (cfg.index_width > 0))
    # per LOAD opcode: (dram, bytes per row, non-empty); the fields sit at different bits in each
    fields = {
        Opcode.LOAD_ACT: (a.load_act.dram, a.load_act.channels * (cfg.act_width // 8),
                          (a.load_act.pixels != 0) & (a.load_act.channels != 0)),
        Opcode.LOAD_WEIGHT: (a.load_weight.dram, a.load_weight.count * Mux(
            values, isa.weight_values_bytes(cfg), isa.data_in_bytes(cfg, Opcode.LOAD_WEIGHT)),
            a.load_weight.count != 0),
        Opcode.LOAD_ACC: (a.load_acc.dram, a.load_acc.count *
                          isa.data_in_bytes(cfg, Opcode.LOAD_ACC), a.load_acc.count != 0),
        Opcode.LOAD_SCALE: (a.load_scale.dram, isa.data_in_bytes(cfg, Opcode.LOAD_SCALE), 1),
    }
    base, row_bytes, nonempty = 0, 0, 0
    for code, (dram, nbytes, some) in fields.items():
        base, row_bytes = Mux(op == code, dram, base), Mux(op == code, nbytes, row_bytes)
        nonempty = Mux(op == code, some, nonempty)
    m.d.comb += [
        req.kind.eq(Mux(values, Kind.WEIGHT_VALUES, op)), req.desc.base.eq(base),
        req.desc.row_bytes.eq(row_bytes),
        req.desc.stride.eq(Mux(op == Opcode.LOAD_ACT, a.load_act.stride, 0)),
        req.desc.rows.eq(Mux(op == Opcode.LOAD_ACT, a.load_act.pixels, 1)),
        makes.eq(nonempty),
        end.eq(base + row_bytes + Mux(op == Opcode.LOAD_ACT,
                                      (a.load_act.pixels - 1) * a.load_act.stride, 0)),
    ]
    return req, makes, end


def store_span(m: Module, cfg: ArrayConfig, insn) -> tuple[Signal, Signal]:
    """The end of the bytes a STORE ``insn`` writes (one past the last: ``dram + (count - 1) *
    stride + row bytes``) and whether it writes any."""
    st, end, some = insn.args.store, Signal(SPAN_BITS), Signal()
    row = st.channels * Mux(st.raw, cfg.acc_width // 8, cfg.act_width // 8)
    m.d.comb += [end.eq(st.dram + (st.count - 1) * st.stride + row),
                 some.eq((st.count != 0) & (st.channels != 0))]
    return end, some


class LoadQueue(wiring.Component):
    """Read requests of the fetched LOADs, in program order, issued ahead of their dispatch.

    Ports: ``word``/``written`` (an instruction word written into the instruction FIFO this
    cycle), ``insn``/``dispatch`` (the word dispatched this cycle), ``store_done`` (a STORE's
    write completed this cycle), ``load`` (requests to the :class:`ReadArbiter`), ``busy`` (a
    request is held).

    A written word is registered, then a LOAD's request (:func:`load_request`) enters a FIFO of
    ``depth + 2`` entries with the number of STOREs written before it. The head is offered
    (``load.valid``) once

    * every STORE before it in program order has been dispatched, and those whose bytes
      overlap its bytes have completed (read after write: a program may load what it stored).
      Spans are compared, ``[dram, end)`` of each (rows, stride and the row's bytes), so a LOAD
      of weights does not wait for the STORE of the block before it; a STORE's span is recorded
      at its dispatch in a table of the ``store_depth + 1`` STOREs that can be dispatched and
      not complete (the job FIFO and the write path), hence the first condition; and
    * fewer than ``ahead`` of the requests issued belong to LOADs not yet dispatched.

    Why ahead of dispatch: the core dispatches a LOAD only once the previous LOAD's data is all
    in, so a request made at dispatch pays the whole read latency every time. Issued early, the
    next LOAD's latency overlaps the work between the two. Its data waits on the read path until
    the LOAD dispatches (``data_in`` is ready only then): the AXI ``r`` channel is held, and so
    is fetch data behind it. That cannot deadlock: the LOAD was fetched, so every instruction
    before it is in the instruction FIFO; earlier LOADs' data comes first on the in-order read
    path; a STORE before it dispatches on instructions before it and completes without the read
    path; fetch data held behind it belongs to words after it.

    Why ``ahead`` = 1 by default (:data:`DEFAULT_LOADS_AHEAD`): one request ahead hides the
    latency when the next LOAD dispatches at least about ``L + 3`` cycles after this one, which
    covers the weight loads of a tile loop; more would hold more bursts in the memory's ``r``
    channel without buffering of our own (a data buffer per LOAD ahead, up to a scratchpad's
    worth of rows), for loads that follow each other closely and are bound by the bus anyway
    (ResNet-50 stage0.2.2 at L = 20: 206,210 run_cycles with one ahead, 206,183 with two).

    Sizes: the FIFO never fills: its entries are LOADs fetched and not issued, at most the
    ``depth`` words fetched and not dispatched (the :class:`~sparsa.hw.fetch.Fetcher`'s
    reservation) plus one dispatched LOAD (the next LOAD waits for its data). The STORE counts
    (written, dispatched, completed) wrap at a power of two above the STOREs that can be fetched
    and not complete (``depth`` words, ``store_depth`` jobs and one in the write path).

    Timing: a LOAD written in cycle ``c`` is at the FIFO's head from ``c + 3`` (or the cycle
    after the previous request is issued); a completion or a dispatch in cycle ``t`` counts
    from ``t + 1``."""

    def __init__(self, cfg: ArrayConfig, *, depth: int, ahead: int = DEFAULT_LOADS_AHEAD,
                 store_depth: int = 4):
        for name, value in (("depth", depth), ("ahead", ahead), ("store_depth", store_depth)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TypeError(f"{name} must be a positive integer, not {value!r}")
        self.cfg, self.depth, self.ahead, self.store_depth = cfg, depth, ahead, store_depth
        super().__init__({
            "word": In(layouts.instruction()),
            "written": In(1),
            "insn": In(layouts.instruction()),
            "dispatch": In(1),
            "store_done": In(1),
            "load": Out(stream.Signature(read_request(cfg))),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        cfg, m = self.cfg, Module()
        count_bits = bits_for(self.depth + self.store_depth + 2)
        entry = data.StructLayout({"req": read_request(cfg), "stores": unsigned(count_bits),
                                   "end": unsigned(SPAN_BITS)})
        m.submodules.queue = queue = fifo.SyncFIFOBuffered(width=entry.size, depth=self.depth + 2)
        held, held_valid = Signal(layouts.instruction()), Signal()
        # STOREs written (fetched), dispatched and completed
        fetched, sent, done = (Signal(count_bits, name=n) for n in ("fetched", "sent", "done"))
        is_store = self.dispatch & (self.insn.opcode == Opcode.STORE)
        m.d.sync += [held.eq(self.word), held_valid.eq(self.written),
                     fetched.eq(fetched + (self.written & (self.word.opcode == Opcode.STORE))),
                     sent.eq(sent + is_store), done.eq(done + self.store_done)]
        req, makes, end = load_request(m, cfg, held)
        head = entry(queue.r_data)
        _, dispatched, _ = load_request(m, cfg, self.insn)
        ahead = Signal(range(-1, self.ahead + 1))   # requests issued - their LOADs dispatched
        issued = self.load.valid & self.load.ready
        m.d.comb += [
            queue.w_data.eq(Cat(req, fetched, end)), queue.w_en.eq(held_valid & makes),
            self.load.payload.eq(head.req),
            self.load.valid.eq(queue.r_rdy & self._stores_ok(m, head, is_store, sent, done)
                               & (ahead < self.ahead)),
            queue.r_en.eq(issued),
            self.busy.eq(held_valid | queue.r_rdy),
        ]
        m.d.sync += ahead.eq(ahead + issued - (self.dispatch & dispatched))
        return m

    def _stores_ok(self, m: Module, head, is_store, sent, done) -> Signal:
        """The head's request may go as far as STOREs are concerned: the spans of the STOREs
        dispatched and not complete, in a table written at dispatch (slot ``sent mod T``)."""
        slots = 1 << bits_for(self.store_depth + 1)
        index = bits_for(slots - 1)
        store_end, some = store_span(m, self.cfg, self.insn)
        table = [(Signal(isa.DRAM_BITS, name=f"lo_{e}"), Signal(SPAN_BITS, name=f"end_{e}"),
                  Signal(name=f"some_{e}")) for e in range(slots)]
        for e, (lo, hi, valid) in enumerate(table):
            with m.If(is_store & (sent[:index] == e)):
                m.d.sync += [lo.eq(self.insn.args.store.dram), hi.eq(store_end), valid.eq(some)]
        before = Signal.like(done)          # STOREs before the head's LOAD not yet complete
        pending = Signal.like(done)         # STOREs dispatched and not yet complete
        m.d.comb += [before.eq(head.stores - done), pending.eq(sent - done)]
        conflict = 0
        for e, (lo, hi, valid) in enumerate(table):
            older = (e - done[:index])[:index] < before     # a STORE before the head's LOAD
            conflict |= older & valid & (head.req.desc.base < hi) & (lo < head.end)
        ok = Signal()
        m.d.comb += ok.eq((before <= pending) & ~conflict)
        return ok


class OperandTap(wiring.Component):
    """At each dispatch (``dispatch`` high with the instruction on ``insn``) of a STORE, a write
    job into a FIFO (``store``, ``store_depth`` entries). ``room``: the instruction on ``insn``
    may dispatch as far as the tap is concerned (a STORE's job has a place; always, for other
    opcodes). ``busy``: a job is waiting."""

    def __init__(self, cfg: ArrayConfig, *, store_depth: int = 4):
        self.cfg, self.store_depth = cfg, store_depth
        super().__init__({
            "insn": In(layouts.instruction()),
            "dispatch": In(1),
            "store": Out(stream.Signature(store_job(cfg))),
            "room": Out(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        cfg, m = self.cfg, Module()
        m.submodules.stores = stores = fifo.SyncFIFOBuffered(width=store_job(cfg).size,
                                                             depth=self.store_depth)
        op, st, job = self.insn.opcode, self.insn.args.store, Signal(store_job(cfg))
        m.d.comb += [
            job.dram.eq(st.dram), job.stride.eq(st.stride), job.count.eq(st.count),
            job.channels.eq(st.channels), job.raw.eq(st.raw),
            stores.w_data.eq(job), stores.w_en.eq(self.dispatch & (op == Opcode.STORE)),
            self.store.payload.eq(stores.r_data), self.store.valid.eq(stores.r_rdy),
            stores.r_en.eq(self.store.ready),
            self.room.eq((op != Opcode.STORE) | stores.w_rdy),
            self.busy.eq(stores.r_level != 0),
        ]
        return m


class ReadArbiter(wiring.Component):
    """Descriptors for the one DMA reader (``desc``): a load's request (``load``) first, else a
    fetch descriptor (``fetch``), fixed priority. Each descriptor given to the reader is
    recorded in a FIFO of ``depth`` jobs (``job``, :func:`~sparsa.hw.packer.job_layout`: its
    kind, chunk size and rows) for the packer; a descriptor waits while the FIFO is full.
    Loads go first: the core waits for their data sooner than for words fetched ahead. ``busy``:
    a job is recorded (its data not all packed)."""

    def __init__(self, cfg: ArrayConfig, *, depth: int = 8):
        self.cfg, self.depth, self.width = cfg, depth, chunk_bytes(cfg)
        super().__init__({
            "load": In(stream.Signature(read_request(cfg))),
            "fetch": In(stream.Signature(descriptor_layout(cfg))),
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
        pick_load = self.load.valid
        job = Signal(layout)
        m.d.comb += [
            self.desc.payload.eq(Mux(pick_load, load.desc, self.fetch.payload)),
            self.desc.valid.eq((pick_load | self.fetch.valid) & jobs.w_rdy),
            self.load.ready.eq(self.desc.ready & jobs.w_rdy),
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
