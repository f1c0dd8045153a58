"""The memory-mapped accelerator: the stream-fed core behind one AXI4 manager port and a CSR block.

The host writes a program (16-byte little-endian instruction words, ``Instruction.encode()``)
and the tensors into memory, writes ``prog_base`` and ``prog_len`` and then ``ctrl.start``
(:mod:`sparsa.hw.csr`), and waits for ``status.done`` or the interrupt. The accelerator fetches
its own instructions and moves every LOAD and STORE operand over its AXI port, as the
instructions' memory fields say (:mod:`sparsa.isa`, "Operands in memory").

Structure (each block its own component, joined with ``wiring.connect``)::

    CSR start -> Fetcher --fetch desc--> ReadArbiter --desc--> DmaReader <-- AXI ar/r
    fetched words -> LoadQueue --load request--^    |job FIFO      |beats
                                                     +--------> ChunkPacker --chunks-->
        FETCH chunks -> instruction FIFO -> core.insn;  LOAD chunks -> core.data_in
    core dispatch -> OperandTap --STORE jobs--> StoreUnit <-- core.data_out
                                                StoreUnit -> DmaWriter --> AXI aw/w/b

Why one read path, in order: a single :class:`~sparsa.hw.dma.DmaReader` (one AXI ID, data in
request order) serves instruction fetch and the four loads, so the packer needs no reordering and
the port's read bandwidth is shared without a crossbar. The only hazard of sharing is deadlock:
fetched words must never block load data behind them, nor load data the words its LOAD waits
for. The :class:`~sparsa.hw.fetch.Fetcher` issues a descriptor only when the instruction FIFO
has room for all its words counting those in flight, so fetch data always drains. A LOAD's
request is made when the LOAD is fetched (:class:`~sparsa.hw.operands.LoadQueue`), issued in
program order up to one LOAD ahead of dispatch, so the next LOAD's read latency overlaps the
work before it; its data waits in the read path (``r`` held) until the core dispatches the LOAD
and takes it. Everything the LOAD's dispatch waits for is already fetched (it comes before the
LOAD) or comes before its data on the in-order read path (earlier LOADs' data), or does not use
the read path (STOREs), so the held data never blocks what would release it. The
:class:`~sparsa.hw.operands.ReadArbiter` gives loads priority: the core waits for them sooner
than for words fetched ahead.

Stores: :class:`~sparsa.hw.operands.StoreUnit` writes one STORE at a time (the DMA writer
completes a descriptor before taking the next); STORE jobs wait in a FIFO filled at dispatch.

Memory ordering: a LOAD's read waits until every STORE before it in program order has been
dispatched and every one of those that writes any byte of the LOAD's span has completed (its
last write response is in), so a program may load what it stored (a layer's output as the next
layer's input). Spans, not bytes, are compared (``[dram, dram + (rows - 1) * stride + row
bytes)`` of each): a few comparators against the STOREs dispatched and not complete. By time
alone (every STORE before it complete) the first weight LOAD of each output block waited for
the STORE of the block before it; with spans, ResNet-50 stage0.2.2 at L = 20 takes 206,210
run_cycles instead of 223,425.
Writes are not ordered after earlier reads: a STORE must not overwrite bytes a LOAD dispatched
before it may still be reading (its data not all in, i.e. the LOAD engine still busy with it).
Instruction fetch is not ordered against writes either (no self-modifying programs).

Status and counters: ``status.busy`` from ``start`` until everything is finished (all
``prog_len // 16`` words fetched and dispatched, the core idle, no request, job, STORE or DMA
transfer left); then ``status.done`` (sticky until the next start) and, if enabled, the
interrupt. ``status.error``: a DMA response was not OKAY (sticky until the next start). A start
while busy is ignored. The counters are the core's :data:`~sparsa.hw.accelerator.COUNTERS` and
:data:`TOP_COUNTERS`, all 32-bit, wrapping and counted since reset.

Cycle costs
-----------
Exact rules: :mod:`sparsa.sw.top_timing` holds them as code, the cycle model of a whole program,
and ``tests/hw/test_top_timing.py`` checks it cycle for cycle against this RTL. Memory of read
latency ``L``: a read burst's first beat is valid ``L`` cycles after its ``ar`` handshake (at the
earliest), later beats one per cycle, bursts in order; ``arready``, ``awready`` and ``wready``
high; a write burst's ``b`` the cycle after its last ``w`` beat. ``B``: bus bytes. "At ``t``"
means in clock cycle ``t``.

*Read path* (fetch and loads share it, in the order the reader takes their descriptors):

1. Requests. A LOAD whose word is written into the instruction FIFO at ``c`` (its chunk)
   offers its descriptor from ``c + 3``, not before ``D' + 1`` (``D'``: the dispatch of the
   previous LOAD with a request: one request ahead), the dispatch of the last STORE before it
   in program order plus 1, and ``W + 1`` (``W``: the completion of the last STORE before it
   whose span overlaps its span). A fetch descriptor is offered
   from the cycle after the start pulse, and after that from the cycle after the previous
   fetch descriptor is taken, once the words it brings fit the FIFO: descriptor of words
   ``f .. f+n-1`` not before ``dispatch(word f + n - 17) + 1``. The
   reader takes a descriptor when its planner is idle (from the cycle after the previous
   descriptor's last burst); the load's request first if both are offered (fetch descriptors go
   while it waits for ``D'`` or ``W``).
2. Planner. A descriptor taken at ``P``: its bursts, one per cycle, row by row: the first at
   ``P + 1``, each in the cycle after the previous one, and burst ``q`` (counted over all
   descriptors) not before ``R(q - n) + 1``, where ``R(q)`` is the cycle the burst's last beat
   is taken (``n`` = :data:`READ_BURSTS` = 8 bursts in flight); a row is handed on
   (``ROW(j)``) with its first burst. A row covers the bus beats ``floor(a / B) .. floor((a +
   bytes - 1) / B)``, cut into bursts at 256 beats and at 4 KiB.
3. Beats. Beat ``i`` (in request order) is valid from ``max(issue(burst) + L + index in burst,
   taken(i - 1) + 1)``.
4. Aligner and packer, per row ``j`` (``n`` input beats, ``k = ceil(bytes / B)`` output
   beats): capture at ``C = max(E(j - 1) + g, valid(first beat))``, taking the first beat
   (``E(j - 1)``: the last cycle of the previous row, of any descriptor; ``g = 0`` if that row
   had ``n == k``, its last output beat taking no input beat, else ``g = 1``). Output beat ``t``
   starts at ``S(t) = max(end(t - 1) + 1, valid(input beat t + 1) if t + 1 < n)`` (``end(-1) =
   C``) and lasts one cycle per *piece*: the bytes ``[tB, min((t+1)B, bytes))`` cut at the
   multiples of the chunk size ``S`` (16 for fetch, ``K_pass * act_width / 8`` for LOAD_ACT,
   :func:`sparsa.isa.row_bytes` for the others: a phase LOAD_WEIGHT's values). Input beat
   ``t + 1`` is taken in its last cycle. A chunk leaves in the cycle of each piece that ends at
   a multiple of ``S`` or at the row's end (the instruction FIFO has room); a LOAD's chunk, not
   before ``D + 1`` (``D``: the LOAD's dispatch, from which ``data_in`` is ready: the piece
   and the packer behind it wait).
   ``E(j)`` is the end of output beat ``k - 1``.
5. Dispatch. A fetched word written at ``c`` is at the FIFO's output from ``max(c + 2,
   dispatch(previous word) + 1)``; the core decides from there (:mod:`~sparsa.hw.dispatch`).

So a LOAD alone (idle read path, dispatched as soon as its word is at the FIFO's output,
rows of one burst, eight bursts enough to cover ``L``) has its first ``data_in`` beat at
``D + 3 + L``. The next LOAD, if fetched, is requested from ``D + 1``: its data is there when
it dispatches (taken from its ``D + 1``) if that is at least about ``L + 3`` cycles after ``D``
and after this LOAD's data. A row costs ``p_j`` cycles (``p_j`` the pieces of row
``j``: ``|{multiples of B or S in (0, bytes_j)}| + 1``), one more after a row with ``n > k``
(unaligned, its bytes spill into one more bus beat). With single-beat aligned rows of one piece
eight bursts in flight cover ``L <= 7``; beyond, burst ``q + 8`` waits for the cycle after burst
``q``'s last beat (rule 2).

*Write path* (one STORE at a time):

1. A STORE dispatched at ``D`` is in the job FIFO's output from ``D + 2`` (or one cycle after
   the previous job leaves); the store unit takes it at ``J`` = that cycle, or the cycle after
   the previous STORE's completion. Its descriptor is taken at ``J + 1``; the writer's planner
   follows rule 2 (row 0 and its first burst at ``J + 2``), with ``n = 4`` bursts in flight and
   ``R(q)`` the cycle of the burst's ``b`` handshake (= its last ``w`` beat + 1).
2. Rows. The core's ``data_out`` row ``r`` is taken at ``T(r) = max(offered, J + 1,
   last compactor beat of row r - 1)``; the compactor's beats (``k = ceil(bytes / B)`` per row)
   are ready from ``T(r) + 1``, one after the other.
3. ``w`` beats. Row ``r`` spans ``ceil((a mod B + bytes) / B)`` bus beats; bus beat ``m`` goes
   at ``max(previous w beat + 1, V(r), U(q), compactor beat m ready if m < k)``, where ``V(r) =
   max(ROW(r) + 2, last w beat of row r - 1 + 1)`` and ``U(q) = max(issue(q) + 2, last w beat of
   burst q - 1 + 1)`` for the burst ``q`` it belongs to.
4. Completion at the last ``b`` handshake + 1; the next job is taken in the cycle after.

An idle core offers a STORE's rows from ``D + 2 + S`` (``S`` =
:data:`~sparsa.hw.engines.STORE_STAGES`, the requantizer's pipeline), the next one the cycle
after a row is taken; so a STORE alone of rows that each fit one aligned bus beat takes row
``r`` at ``D + 2 + S + r`` (the write path is ready by then) and completes at
``D + 4 + S + count``.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from sparsa import isa
from sparsa.config import ArrayConfig

from . import layouts
from .accelerator import COUNTERS, Accelerator
from .axi import AxiManagerSignature
from .csr import CsrBlock, lite_signature
from .dma import DmaReader, DmaWriter
from .fetch import DEFAULT_FETCH_INSNS, Fetcher, check_fetch
from .operands import (
    DEFAULT_LOADS_AHEAD,
    Kind,
    LoadQueue,
    OperandTap,
    ReadArbiter,
    StoreUnit,
    chunk_bytes,
)
from .packer import ChunkPacker

__all__ = ["ALL_COUNTERS", "READ_BURSTS", "TOP_COUNTERS", "AxiAccelerator"]

# The top's own counters: cycles with status.busy, AXI read and write data beats, instruction
# words fetched.
TOP_COUNTERS = ("run_cycles", "axi_read_beats", "axi_write_beats", "insns_fetched")
ALL_COUNTERS = COUNTERS + TOP_COUNTERS
# Read bursts in flight (the DmaReader's max_outstanding). A LOAD_ACT reads one burst per pixel,
# often of a few beats (a pixel's channels): with ``n`` bursts of ``b`` beats in flight the
# port streams if about ``n * b >= L + 3``, so eight cover a read latency of 20 with 64-channel
# pixels at 128 bits (four left it at two thirds of the bus: ResNet-50 stage0.2.2 at L = 20,
# 239,169 -> 223,425 run_cycles). It costs a FIFO entry of row bookkeeping per burst.
READ_BURSTS = 8


class AxiAccelerator(wiring.Component):
    """:class:`~sparsa.hw.accelerator.Accelerator` with instruction fetch and DMA (the module
    docstring). Ports: ``axi`` (AXI4 manager: ``axi__ar__araddr`` ... ``axi__b__bready``),
    ``csr`` (the :class:`~sparsa.hw.csr.CsrBlock`'s AXI4-Lite subordinate, ``csr__aw__awaddr``
    ...), ``irq``. ``fetch_insns``: instruction words per fetch descriptor; ``insn_depth``: the
    words the fetcher reserves in the instruction FIFO. After elaboration, ``probes`` names a
    few internal handshakes (``start``, ``dispatch``, ``data_in``, ``data_out``,
    ``data_out_valid``, ``store_done``) for testbenches that check the cycle costs."""

    def __init__(self, cfg: ArrayConfig, *, fetch_insns: int = DEFAULT_FETCH_INSNS,
                 insn_depth: int = 2 * DEFAULT_FETCH_INSNS,
                 loads_ahead: int = DEFAULT_LOADS_AHEAD):
        if not isinstance(cfg, ArrayConfig):
            raise TypeError(f"cfg must be an ArrayConfig, not {cfg!r}")
        if cfg.act_width % 8 or cfg.acc_width % 8:
            raise ValueError(f"the AXI accelerator moves whole bytes: act_width "
                             f"({cfg.act_width}) and acc_width ({cfg.acc_width}) must be "
                             f"multiples of 8")
        check_fetch(fetch_insns, insn_depth)
        if isinstance(loads_ahead, bool) or not isinstance(loads_ahead, int) or loads_ahead < 1:
            raise TypeError(f"loads_ahead must be a positive integer, not {loads_ahead!r}")
        self.cfg, self.fetch_insns, self.insn_depth = cfg, fetch_insns, insn_depth
        self.loads_ahead = loads_ahead
        self.counter_layout = layouts.counters(ALL_COUNTERS)
        super().__init__({
            "axi": Out(AxiManagerSignature.for_config(cfg)),
            "csr": In(lite_signature(self.counter_layout)),
            "irq": Out(1),
        })

    def elaborate(self, platform):
        cfg, m = self.cfg, Module()
        sub = m.submodules
        sub.core = core = Accelerator(cfg)
        sub.csr = csr = CsrBlock(cfg, counters=self.counter_layout)
        sub.fetch = fetch = Fetcher(cfg, insns=self.fetch_insns, depth=self.insn_depth)
        sub.tap = tap = OperandTap(cfg)
        sub.loads = loads = LoadQueue(cfg, depth=self.insn_depth, ahead=self.loads_ahead,
                                      store_depth=tap.store_depth)
        sub.arbiter = arbiter = ReadArbiter(cfg)
        sub.reader = reader = DmaReader(cfg, max_outstanding=READ_BURSTS)
        sub.packer = packer = ChunkPacker(cfg, chunk_bytes=chunk_bytes(cfg))
        # one place more than the fetcher counts: a buffered FIFO's ``w_rdy`` ignores its
        # output register, so a write never waits even while a word moves into it
        sub.insns = insns = fifo.SyncFIFOBuffered(width=isa.INSN_BITS, depth=self.insn_depth + 1)
        sub.store = store = StoreUnit(cfg)
        sub.writer = writer = DmaWriter(cfg)

        wiring.connect(m, wiring.flipped(self.csr), csr.csr)
        m.d.comb += self.irq.eq(csr.irq)
        for half, channels in ((reader, ("ar", "r")), (writer, ("aw", "w", "b"))):
            for name in channels:
                wiring.connect(m, getattr(half.axi, name), wiring.flipped(getattr(self.axi, name)))
        # the read path: fetch and load descriptors -> reader -> packer -> insn FIFO / data_in
        wiring.connect(m, fetch.desc, arbiter.fetch)
        wiring.connect(m, loads.load, arbiter.load)
        wiring.connect(m, arbiter.desc, reader.desc)
        wiring.connect(m, arbiter.job, packer.job)
        wiring.connect(m, reader.data, packer.beat)
        chunk = packer.chunk
        is_fetch = chunk.payload.kind == Kind.FETCH
        m.d.comb += [
            insns.w_data.eq(chunk.payload.data), insns.w_en.eq(chunk.valid & is_fetch),
            core.data_in.payload.eq(chunk.payload.data),
            core.data_in.valid.eq(chunk.valid & ~is_fetch),
            chunk.ready.eq((is_fetch & insns.w_rdy) | (~is_fetch & core.data_in.ready)),
        ]
        # dispatch: the instruction FIFO -> the core; the tap and the load queue see every
        # dispatch, the load queue every word written
        dispatch, store_done = Signal(), Signal()
        m.d.comb += [
            core.insn.payload.eq(insns.r_data), core.insn.valid.eq(insns.r_rdy & tap.room),
            dispatch.eq(core.insn.valid & core.insn.ready), insns.r_en.eq(dispatch),
            tap.insn.eq(insns.r_data), tap.dispatch.eq(dispatch), fetch.popped.eq(dispatch),
            loads.word.eq(insns.w_data), loads.written.eq(insns.w_en & insns.w_rdy),
            loads.insn.eq(insns.r_data), loads.dispatch.eq(dispatch),
            store_done.eq(writer.done.valid & writer.done.ready), loads.store_done.eq(store_done),
        ]
        # the write path: STORE jobs and data_out rows -> writer
        wiring.connect(m, tap.store, store.job)
        wiring.connect(m, core.data_out, store.rows)
        wiring.connect(m, store.desc, writer.desc)
        wiring.connect(m, store.data, writer.data)
        wiring.connect(m, writer.done, store.done)

        # handshakes a testbench may watch (the cycle costs above are measured on these)
        self.probes = {"start": csr.start, "dispatch": dispatch,
                       "data_in": core.data_in.valid & core.data_in.ready,
                       "data_out": core.data_out.valid & core.data_out.ready,
                       "data_out_valid": core.data_out.valid,
                       "store_done": store_done}
        finished = (~fetch.busy & (insns.r_level == 0) & core.idle & ~tap.busy & ~loads.busy
                    & ~arbiter.busy & ~reader.busy & ~store.busy & ~writer.busy)
        running = self._status(m, csr, fetch, finished, reader.error | writer.error)
        self._counters(m, core, csr, running, insns)
        return m

    def _status(self, m: Module, csr: CsrBlock, fetch: Fetcher, finished, dma_error) -> Signal:
        """busy (``running``), done and error, and the start of a run; returns ``running``."""
        running, done, error = Signal(), Signal(), Signal()
        start = csr.start & ~running
        m.d.comb += [fetch.start.eq(start), fetch.prog_base.eq(csr.prog_base),
                     fetch.prog_len.eq(csr.prog_len),
                     csr.status.busy.eq(running), csr.status.done.eq(done),
                     csr.status.error.eq(error)]
        with m.If(running & finished):
            m.d.sync += [running.eq(0), done.eq(1)]
        with m.If(dma_error):
            m.d.sync += error.eq(1)
        with m.If(start):
            m.d.sync += [running.eq(1), done.eq(0), error.eq(0)]
        return running

    def _counters(self, m: Module, core: Accelerator, csr: CsrBlock, running, insns) -> None:
        """The core's counters and :data:`TOP_COUNTERS` -> the CSR block."""
        for name in COUNTERS:
            m.d.comb += getattr(csr.counters, name).eq(getattr(core.counters, name))
        r, w = self.axi.r, self.axi.w
        increments = {"run_cycles": running, "axi_read_beats": r.rvalid & r.rready,
                      "axi_write_beats": w.wvalid & w.wready,
                      "insns_fetched": insns.w_en & insns.w_rdy}
        for name, inc in increments.items():
            field = Signal(layouts.COUNTER_BITS, name=name)
            m.d.sync += field.eq(field + inc)
            m.d.comb += getattr(csr.counters, name).eq(field)
