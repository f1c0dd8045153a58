"""The accelerator's engines (:class:`~sparsa.hw.accelerator.Accelerator`), one component each.

Every engine takes its work as a command stream from the dispatcher
(:class:`~sparsa.hw.dispatch.Dispatcher`) and shows what it is doing on a ``state`` port, which
the dispatcher reads to apply the hazard rules; the rules themselves are all in the dispatcher.
An engine's ``cmd.ready`` is high when it can take its next command, which it does in the cycle
it reads (or takes) its last row, so back-to-back work streams without a bubble. Scratchpads are
reached through :mod:`amaranth.lib.memory` ports, connected with ``wiring.connect``.

* :class:`LoadEngine`: ``data_in`` beats -> scratchpad write ports, or the scale register.
* :class:`RowReader`: ``count`` rows of a memory -> a stream, one per cycle (PRELOAD: the weight
  scratchpad into the array's shadow bank).
* :class:`FeedEngine`: the im2col feeder on the activation scratchpad and the accumulator rows
  read in lockstep -> the array's ``act`` and ``psum_in``, each beat gated in a K chain.
* :class:`WriteEngine`: the array's results -> accumulator rows, by a two-deep queue of
  (rows, count) descriptors; it also passes the LOAD engine's accumulator writes.
* :class:`StoreEngine`: accumulator rows + column biases -> :class:`Requantizer` (pipelined) ->
  an output FIFO -> ``data_out``, rows read ahead against credits (:data:`STORE_CREDITS`).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import ReadPort, WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from sparsa import isa
from sparsa.config import ADDR_BITS, ArrayConfig
from sparsa.isa import Opcode
from sparsa.nm import phase_indices

from . import layouts
from .im2col import Im2colFeeder, command_layout, row_layout

__all__ = ["STORE_CREDITS", "STORE_STAGES", "FeedEngine", "LoadEngine", "Requantizer",
           "RowReader", "StoreEngine",
           "WriteEngine", "feed_command", "load_command", "load_state", "queue_entry",
           "reader_command", "reader_state", "write_progress", "write_state"]

A = ADDR_BITS


# ---- commands (dispatcher -> engine) and states (engine -> dispatcher) -------------------------

def load_command() -> data.StructLayout:
    """A LOAD: which one (``op``), the first row, the beats to take (1 for LOAD_SCALE), the
    LOAD_ACT's hazard tag, a LOAD_WEIGHT's ``phase`` (:mod:`sparsa.isa`)."""
    return data.StructLayout({"op": unsigned(isa.OPCODE_BITS), "addr": unsigned(A),
                              "count": unsigned(A), "tag": unsigned(1),
                              "phase": unsigned(isa.PHASE_BITS)})


def phase_rows(cfg: ArrayConfig, beat: Value) -> dict[int, Value]:
    """For each dense phase ``p`` (1 .. ``ceil(m/n)``), the weight row a phase LOAD_WEIGHT
    writes for ``beat`` (:func:`sparsa.isa.pack_weight_row` without indices): each PE's ``n``
    values with the phase's fixed indices (:func:`sparsa.nm.phase_indices`)."""
    n, ww, iw = cfg.n, cfg.weight_width, cfg.index_width
    rows = {}
    for p in range(1, min(-(-cfg.m // n), (1 << isa.PHASE_BITS) - 1) + 1):
        fixed = Cat(*(Const(i, iw) for i in phase_indices(n, cfg.m, p - 1)))
        rows[p] = Cat(*(Cat(beat[c * n * ww:(c + 1) * n * ww], fixed) for c in range(cfg.cols)))
    return rows


def reader_command() -> data.StructLayout:
    return data.StructLayout({"addr": unsigned(A), "count": unsigned(A)})


def feed_command() -> data.StructLayout:
    """A COMPUTE: the im2col command (the CONFIG registers and the COMPUTE's fields) and
    ``chain``: its beat ``k`` waits until row ``k`` of the queue's first descriptor is
    written."""
    return data.StructLayout({"walk": command_layout(), "chain": unsigned(1)})


def queue_entry() -> data.StructLayout:
    """The accumulator rows a COMPUTE's results go to."""
    return data.StructLayout({"acc_addr": unsigned(A), "count": unsigned(A)})


def load_state() -> wiring.Signature:
    """``busy``: beats left to take; ``op``, ``base``, ``count``, ``tag``: of the latest LOAD."""
    return wiring.Signature({"busy": Out(1), "op": Out(isa.OPCODE_BITS), "base": Out(A),
                             "count": Out(A), "tag": Out(1)})


def reader_state() -> wiring.Signature:
    """``busy``: rows left to read or one presented and not taken; ``base``, ``count``: the
    latest command's rows."""
    return wiring.Signature({"busy": Out(1), "base": Out(A), "count": Out(A)})


def feed_state() -> wiring.Signature:
    """``busy``: beats left to issue or one presented and not taken; ``tag``: the latest
    COMPUTE's hazard tag."""
    return wiring.Signature({"busy": Out(1), "tag": Out(1)})


def write_state() -> wiring.Signature:
    """``pending``: descriptors not completely written, ``queue[0]`` first."""
    return wiring.Signature({"pending": Out(range(3)),
                             "queue": Out(data.ArrayLayout(queue_entry(), 2))})


def write_progress() -> wiring.Signature:
    """``written``: rows of ``queue[0]`` written so far; ``pop``: its last row is written now."""
    return wiring.Signature({"written": Out(A), "pop": Out(1)})


def _read_port(depth: int, shape) -> wiring.Signature:
    return ReadPort.Signature(addr_width=ceil_log2(depth), shape=shape)


def _write_port(depth: int, shape) -> wiring.Signature:
    return WritePort.Signature(addr_width=ceil_log2(depth), shape=shape)


# ---- engines ----------------------------------------------------------------------------------

class LoadEngine(wiring.Component):
    """``count`` ``data_in`` beats of a LOAD into consecutive scratchpad rows from ``addr``
    (LOAD_ACT, LOAD_WEIGHT, LOAD_ACC: ``act_wr``, ``weight_wr``, ``acc_wr``), or one beat into
    the ``scales`` register (LOAD_SCALE); at most one beat per cycle, from the cycle after the
    accept. ``data_in.ready`` is high while beats are left."""

    def __init__(self, cfg: ArrayConfig):
        self.cfg = cfg
        depth = cfg.scratchpad_rows
        super().__init__({
            "cmd": In(stream.Signature(load_command())),
            "data_in": In(stream.Signature(unsigned(layouts.data_in_width(cfg)))),
            "act_wr": In(_write_port(depth["act"], row_layout(cfg))),
            "weight_wr": In(_write_port(depth["weight"], layouts.weight_row(cfg))),
            "acc_wr": In(_write_port(depth["acc"], layouts.psum_row(cfg))),
            "scales": Out(layouts.scale_row(cfg)),
            "state": Out(load_state()),
        })

    def elaborate(self, platform):
        m = Module()
        state, beat = self.state, self.data_in
        op, addr = Signal.like(state.op), Signal(A)
        left = Signal(A)   # beats still to take
        phase = Signal(isa.PHASE_BITS)
        fire = beat.valid & beat.ready
        m.d.comb += [
            state.busy.eq(left != 0), state.op.eq(op),
            beat.ready.eq(left != 0),
            self.cmd.ready.eq((left == 0) | ((left == 1) & fire)),
        ]
        for port, kind in ((self.act_wr, Opcode.LOAD_ACT), (self.weight_wr, Opcode.LOAD_WEIGHT),
                           (self.acc_wr, Opcode.LOAD_ACC)):
            m.d.comb += [port.addr.eq(addr), port.en.eq(fire & (op == kind))]
            if kind != Opcode.LOAD_WEIGHT:
                m.d.comb += port.data.eq(beat.payload)
        self._weight_data(m, phase)
        with m.If(fire):
            m.d.sync += [addr.eq(addr + 1), left.eq(left - 1)]
            with m.If(op == Opcode.LOAD_SCALE):
                m.d.sync += self.scales.eq(beat.payload)
        with m.If(self.cmd.valid & self.cmd.ready):
            cmd = self.cmd.payload
            m.d.sync += [op.eq(cmd.op), addr.eq(cmd.addr), left.eq(cmd.count), phase.eq(cmd.phase),
                         state.base.eq(cmd.addr), state.count.eq(cmd.count),
                         state.tag.eq(cmd.tag)]
        return m

    def _weight_data(self, m: Module, phase: Signal) -> None:
        """The weight row written: the beat as it is, or (a phase LOAD_WEIGHT) its values with
        the phase's fixed indices."""
        beat, port = self.data_in.payload, self.weight_wr
        if self.cfg.is_dense:         # no indices to write
            m.d.comb += port.data.eq(beat)
            return
        with m.Switch(phase):
            for p, row in phase_rows(self.cfg, beat).items():
                with m.Case(p):
                    m.d.comb += port.data.eq(row)
            with m.Default():
                m.d.comb += port.data.eq(beat)


class RowReader(wiring.Component):
    """``count`` rows from ``addr`` through a synchronous read port ``rd`` -> ``rows``: the row
    read in cycle ``t`` is presented from ``t + 1`` until taken, and the next one is read in the
    cycle it is taken. ``issue``: a row is read this cycle."""

    def __init__(self, *, depth: int, shape):
        super().__init__({
            "cmd": In(stream.Signature(reader_command())),
            "rd": In(_read_port(depth, shape)),
            "rows": Out(stream.Signature(shape)),
            "issue": Out(1),
            "state": Out(reader_state()),
        })

    def elaborate(self, platform):
        m = Module()
        rows, state = self.rows, self.state
        left, addr = Signal(A), Signal(A)   # rows not yet read, the next one
        advance = ~rows.valid | rows.ready
        m.d.comb += [
            self.issue.eq(advance & (left != 0)),
            self.cmd.ready.eq((left == 0) | ((left == 1) & self.issue)),
            self.rd.en.eq(advance), self.rd.addr.eq(addr),
            rows.payload.eq(self.rd.data),
            state.busy.eq((left != 0) | rows.valid),
        ]
        with m.If(advance):
            m.d.sync += rows.valid.eq(self.issue)
        with m.If(self.issue):
            m.d.sync += [addr.eq(addr + 1), left.eq(left - 1)]
        with m.If(self.cmd.valid & self.cmd.ready):
            cmd = self.cmd.payload
            m.d.sync += [left.eq(cmd.count), addr.eq(cmd.addr), state.base.eq(cmd.addr),
                         state.count.eq(cmd.count)]
        return m


class FeedEngine(wiring.Component):
    """A COMPUTE's beats: :class:`~sparsa.hw.im2col.Im2colFeeder` on the activation scratchpad
    (``act_rd``) -> ``act``, and in lockstep (the same ``issue``) accumulator row ``acc_addr +
    k`` (``acc_rd``) -> ``psum_in`` for beat ``k`` when it accumulates (zeros otherwise). In a
    chain, beat ``k`` is issued only once ``progress.written > k`` (its accumulator row is
    written), until the descriptor it waits for pops. Timing: the feeder's cycle contract."""

    def __init__(self, cfg: ArrayConfig):
        self.cfg = cfg
        depth = cfg.scratchpad_rows
        super().__init__({
            "cmd": In(stream.Signature(feed_command())),
            "act_rd": In(_read_port(depth["act"], row_layout(cfg))),
            "acc_rd": In(_read_port(depth["acc"], layouts.psum_row(cfg))),
            "act": Out(stream.Signature(layouts.act_beat(cfg))),
            "psum_in": Out(stream.Signature(layouts.psum_row(cfg))),
            "progress": In(write_progress()),
            "state": Out(feed_state()),
            "reads_acc": Out(1),   # the presented beat carries an accumulator row
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.im2col = feeder = Im2colFeeder(cfg=self.cfg)
        wiring.connect(m, wiring.flipped(self.act_rd), feeder.rd)
        wiring.connect(m, feeder.act, wiring.flipped(self.act))
        cmd, compute = self.cmd, self.cmd.payload.walk.compute
        index = Signal(A)           # beats issued of the current COMPUTE
        acc_addr, accumulate = Signal(A), Signal()
        gated = Signal()            # a chain: wait for each accumulator row to be written
        m.d.comb += [
            feeder.cmd.valid.eq(cmd.valid), feeder.cmd.payload.eq(cmd.payload.walk),
            cmd.ready.eq(feeder.cmd.ready),
            feeder.gate.eq(~gated | (index < self.progress.written)),
            self.acc_rd.en.eq(feeder.issue), self.acc_rd.addr.eq(acc_addr + index),
            self.psum_in.valid.eq(feeder.act.valid),
            self.psum_in.payload.eq(Mux(self.reads_acc, self.acc_rd.data.as_value(), 0)),
            self.state.busy.eq(feeder.busy),
        ]
        with m.If(feeder.issue):
            m.d.sync += [index.eq(index + 1), self.reads_acc.eq(accumulate)]
        with m.If(cmd.valid & cmd.ready):
            m.d.sync += [index.eq(0), acc_addr.eq(compute.acc_addr),
                         accumulate.eq(compute.accumulate), self.state.tag.eq(compute.tag),
                         gated.eq(cmd.payload.chain & ~self.progress.pop)]
        with m.Elif(self.progress.pop):
            m.d.sync += gated.eq(0)
        return m


class WriteEngine(wiring.Component):
    """The array's result rows -> accumulator rows: ``queue`` takes a COMPUTE's (``acc_addr``,
    ``count``) at dispatch (two at most: the dispatcher checks ``state.pending``), and each
    ``psum`` beat is written at once to the next row of the first one. ``load``: a write port
    for the LOAD engine's accumulator rows, passed to ``acc_wr`` (the dispatcher never lets both
    write in one cycle)."""

    def __init__(self, cfg: ArrayConfig):
        depth, psum = cfg.scratchpad_rows["acc"], layouts.psum_row(cfg)
        super().__init__({
            "queue": In(stream.Signature(queue_entry(), always_ready=True)),
            "psum": In(stream.Signature(psum)),
            "load": Out(_write_port(depth, psum)),
            "acc_wr": In(_write_port(depth, psum)),
            "progress": Out(write_progress()),
            "state": Out(write_state()),
        })

    def elaborate(self, platform):
        m = Module()
        q, pending, written = self.state.queue, self.state.pending, self.progress.written
        fire, push, pop = self.psum.valid, Signal(), self.progress.pop
        m.d.comb += [
            self.psum.ready.eq(1),
            push.eq(self.queue.valid),
            pop.eq(fire & (written + 1 == q[0].count)),
            self.acc_wr.addr.eq(Mux(fire, q[0].acc_addr + written, self.load.addr)),
            self.acc_wr.data.eq(Mux(fire, self.psum.payload.as_value(),
                                    self.load.data.as_value())),
            self.acc_wr.en.eq(fire | self.load.en),
        ]
        with m.If(fire):
            m.d.sync += written.eq(Mux(pop, 0, written + 1))
        with m.If(pop):
            m.d.sync += q[0].eq(q[1])
        # a push into the slot that frees with a pop in the same cycle overrides the shift
        with m.If(push):
            with m.If(Mux(pop, pending - 1, pending) == 0):
                m.d.sync += q[0].eq(self.queue.payload)
            with m.Else():
                m.d.sync += q[1].eq(self.queue.payload)
        m.d.sync += pending.eq(pending + push - pop)
        return m


class Requantizer(wiring.Component):
    """Per column: ``(sum + bias) * mult`` rounded half up and shifted right by ``shift`` (as
    :func:`sparsa.nm.requantize`), clamped to the activation range (at zero from below with
    ``relu``), sign-extended; the wrapped ``sum + bias`` itself with ``raw``.

    A pipeline without backpressure: a row presented on ``rows`` in cycle ``t`` (with its flags
    ``relu`` and ``raw``) is on ``out`` in cycle ``t +`` :attr:`LATENCY`, combinationally after
    the last of four register stages: the row as read (the block RAM's slow output straight into
    a register), the sum plus the bias, the product with ``mult`` (DSP blocks), the product
    shifted right by ``shift - 1`` (:meth:`_round_clamp` finishes the rounding on it). ``scales``
    must not change while a row is in the pipeline (the dispatcher holds LOAD_SCALE back while
    the STORE engine is busy)."""

    LATENCY = 4

    def __init__(self, cfg: ArrayConfig):
        self.cfg = cfg
        super().__init__({
            "rows": In(stream.Signature(layouts.psum_row(cfg), always_ready=True)),
            "out": Out(stream.Signature(layouts.psum_row(cfg), always_ready=True)),
            "scales": In(layouts.scale_row(cfg)),
            "relu": In(1),
            "raw": In(1),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        # the valid bit and the flags, one register per stage
        depth = self.LATENCY
        valid = [self.rows.valid, *(Signal(name=f"valid{i}") for i in range(1, depth + 1))]
        relu = [self.relu, *(Signal(name=f"relu{i}") for i in range(1, depth + 1))]
        raw = [self.raw, *(Signal(name=f"raw{i}") for i in range(1, depth + 1))]
        for i in range(1, depth + 1):
            m.d.sync += [valid[i].eq(valid[i - 1]), relu[i].eq(relu[i - 1]),
                         raw[i].eq(raw[i - 1])]
        m.d.comb += self.out.valid.eq(valid[depth])
        aw, pw = cfg.acc_width, cfg.acc_width + isa.SCALE_MULT_BITS + 1
        for c in range(cfg.cols):
            scale = self.scales[c]
            read = Signal(signed(aw), name=f"read{c}")
            acc = [Signal(signed(aw), name=f"sum{c}_{i}") for i in range(3)]  # wraps like PEs
            prod = Signal(signed(pw), name=f"prod{c}")
            # 2 * prod >> shift: (prod + 2**(shift-1)) >> shift is (this + 1) >> 1, also at 0
            halved = Signal(signed(pw + 1), name=f"halved{c}")
            m.d.sync += [read.eq(self.rows.payload[c]), acc[0].eq(read + scale.bias),
                         acc[1].eq(acc[0]), acc[2].eq(acc[1]), prod.eq(acc[0] * scale.mult),
                         halved.eq(Cat(Const(0, 1), prod).as_signed() >> scale.shift)]
            m.d.comb += self.out.payload[c].eq(
                Mux(raw[depth], acc[2], self._round_clamp(halved, relu[depth])))
        return m

    def _round_clamp(self, halved: Value, relu: Value) -> Value:
        """``(halved + 1) >> 1`` clamped to the activation range (at zero with ``relu``): the
        bounds are compared on ``halved`` itself and only the activation's bits are added."""
        aw = self.cfg.act_width
        lo_act, hi_act = -(1 << (aw - 1)), (1 << (aw - 1)) - 1
        # (h + 1) >> 1 > hi  <=>  h >= 2 hi + 1;  (h + 1) >> 1 < lo  <=>  h < 2 lo - 1
        above = halved >= 2 * hi_act + 1
        below = Mux(relu, halved < -1, halved < 2 * lo_act - 1)
        value = (halved[:aw + 1] + 1)[1:aw + 1].as_signed()   # in range: its low bits suffice
        return Mux(above, hi_act, Mux(below, Mux(relu, 0, lo_act), value))


# Register stages from a STORE's accumulator read data to ``data_out``: the requantizer's
# (:attr:`Requantizer.LATENCY`) and the output FIFO (:class:`StoreEngine`). The cycle model
# states the same figure (``sparsa.sw.accel_timing.STORE_STAGES``); the exactness tests hold
# them equal.
STORE_STAGES = Requantizer.LATENCY + 1
# Rows a STORE may have read and not yet handed to ``data_out``: with two more than the stages,
# a row is read every cycle while ``data_out`` takes one every cycle.
STORE_CREDITS = STORE_STAGES + 2


class StoreEngine(wiring.Component):
    """A STORE: accumulator rows ``acc_addr ..`` (``count``) read through ``rd`` into the
    :class:`Requantizer` (with the ``scales`` register) and an output FIFO -> ``data_out``.

    Timing: ``rd`` reads a row in any cycle in which rows are left and fewer than
    :data:`STORE_CREDITS` rows read are not yet taken from ``data_out`` (counted at the start of
    the cycle); the row read in cycle ``r`` is in the FIFO, offered on ``data_out``, from cycle
    ``r + 1 +`` :data:`STORE_STAGES` until taken, in order. The credits cover the stages, so
    ``data_out`` streams one row per cycle while it is ready, and nothing in the pipeline waits
    for ``data_out``: a backpressured row waits in the FIFO. The engine takes its next command
    in the cycle it reads its last row; ``state.busy`` is high while rows are left to read or
    rows read are not yet taken."""

    def __init__(self, cfg: ArrayConfig):
        self.cfg = cfg
        depth, psum = cfg.scratchpad_rows["acc"], layouts.psum_row(cfg)
        super().__init__({
            "cmd": In(stream.Signature(layouts.instruction_args(Opcode.STORE))),
            "rd": In(_read_port(depth, psum)),
            "scales": In(layouts.scale_row(cfg)),
            "data_out": Out(stream.Signature(psum)),
            "state": Out(reader_state()),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        m.submodules.requantizer = requant = Requantizer(cfg)
        m.submodules.queue = queue = fifo.SyncFIFO(width=layouts.psum_row(cfg).size,
                                                   depth=STORE_CREDITS)
        cmd, state, out = self.cmd, self.state, self.data_out
        left, addr = Signal(A), Signal(A)       # rows not yet read, the next one
        held = Signal(range(STORE_CREDITS + 1))  # rows read and not yet taken
        relu, raw = Signal(), Signal()           # of the current STORE
        issue, taken = Signal(), Signal()
        m.d.comb += [
            issue.eq((left != 0) & (held != STORE_CREDITS)),
            taken.eq(out.valid & out.ready),
            cmd.ready.eq((left == 0) | ((left == 1) & issue)),
            self.rd.en.eq(issue), self.rd.addr.eq(addr),
            requant.rows.payload.eq(self.rd.data), requant.scales.eq(self.scales),
            queue.w_en.eq(requant.out.valid), queue.w_data.eq(requant.out.payload),
            out.valid.eq(queue.r_rdy), out.payload.eq(queue.r_data), queue.r_en.eq(out.ready),
            state.busy.eq((left != 0) | (held != 0)),
        ]
        m.d.sync += [held.eq(held + issue - taken), requant.rows.valid.eq(issue)]
        with m.If(issue):   # the flags travel with the row being read
            m.d.sync += [addr.eq(addr + 1), left.eq(left - 1), requant.relu.eq(relu),
                         requant.raw.eq(raw)]
        with m.If(cmd.valid & cmd.ready):
            p = cmd.payload
            m.d.sync += [left.eq(p.count), addr.eq(p.acc_addr), relu.eq(p.relu), raw.eq(p.raw),
                         state.base.eq(p.acc_addr), state.count.eq(p.count)]
        return m
