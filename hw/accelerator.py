"""The accelerator: scratchpads, a small instruction set and a controller around the array."""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sparsa import isa
from sparsa.config import ArrayConfig
from sparsa.isa import Opcode

from . import layouts
from .array import SystolicArray

__all__ = ["COUNTERS", "Accelerator"]

# Activity counters, readable at any time (all 32-bit, wrapping). ``gated_macs``: the MACs
# (of ``macs``) whose selected activation was zero, so the PE's multiplier was isolated
# (:class:`~sparsa.hw.pe.SparsePE`); counted when the beat's results leave the array, so it is
# complete once the accelerator is idle. Zero weights are not counted.
COUNTERS = ("cycles", "busy_cycles", "act_beats", "macs", "act_reads", "act_writes",
            "weight_reads", "weight_writes", "acc_reads", "acc_writes", "data_in_beats",
            "data_out_beats", "gated_macs")


def _overlap(a_base, a_count, b_base, b_count):
    """Whether row ranges [a, a+na) and [b, b+nb) intersect (both non-empty)."""
    return (a_base < b_base + b_count) & (b_base < a_base + a_count) & \
        (a_count != 0) & (b_count != 0)


class Accelerator(wiring.Component):
    """:class:`SystolicArray` with scratchpads and an in-order dispatching controller.

    Streams: ``insn`` (instruction words, :mod:`sparsa.isa`), ``data_in`` (one scratchpad row
    per beat for the LOAD instructions), ``data_out`` (one row of ``cols`` accumulator-width
    lanes per STOREd row; requantized values are sign-extended). ``counters`` shows the activity
    counters (:data:`COUNTERS`); ``idle`` is high when nothing is in flight.

    Engines run concurrently: LOAD (data_in -> a scratchpad), PRELOAD (weight scratchpad -> the
    PEs' shadow bank), FEED (activation and accumulator rows -> the array), WRITE (array results
    -> accumulator rows) and STORE (accumulators + column bias -> requantize -> data_out). An
    engine takes its next instruction in the cycle it reads its last row, so back-to-back tiles
    stream without a bubble. An instruction
    leaves the ``insn`` stream (is dispatched) when its engine is free and it has no hazard with
    work in flight:

    * LOAD_ACT / LOAD_WEIGHT wait while FEED / PRELOAD read rows they would overwrite;
      LOAD_ACC waits until FEED, WRITE and STORE are idle; LOAD_SCALE until STORE is idle.
    * PRELOAD waits while LOAD writes weight rows it reads.
    * COMPUTE waits while two earlier COMPUTEs still have results to write, while LOAD writes
      activation rows it reads (or any accumulator rows), while
      STORE reads accumulator rows it overwrites, and while an earlier COMPUTE's results are
      still being written to overlapping accumulator rows, except when that COMPUTE has exactly
      the same rows and this one accumulates onto them: then it starts at once and each beat
      waits until the row it adds has been written (a K-pass chain).
    * STORE waits while results are still being written to rows it reads, and while LOAD
      brings accumulator rows or the scale row it requantizes with.
    """

    def __init__(self, cfg: ArrayConfig):
        if not isinstance(cfg, ArrayConfig):
            raise TypeError(f"cfg must be an ArrayConfig, not {cfg!r}")
        self.cfg = cfg
        self.depths = cfg.scratchpad_rows
        super().__init__({
            "insn": In(stream.Signature(layouts.instruction())),
            "data_in": In(stream.Signature(unsigned(layouts.data_in_width(cfg)))),
            "data_out": Out(stream.Signature(layouts.psum_row(cfg))),
            "counters": Out(layouts.counters(COUNTERS)),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        addr_bits = cfg.addr_bits
        m = Module()
        m.submodules.array = array = SystolicArray(cfg)

        act_w = layouts.act_beat(cfg).size - 1
        psum_layout = layouts.psum_row(cfg)
        act_mem = Memory(shape=unsigned(act_w), depth=self.depths["act"], init=[])
        weight_mem = Memory(shape=layouts.weight_row(cfg), depth=self.depths["weight"],
                            init=[])
        acc_mem = Memory(shape=psum_layout, depth=self.depths["acc"], init=[])
        m.submodules.act_mem, m.submodules.weight_mem = act_mem, weight_mem
        m.submodules.acc_mem = acc_mem
        act_wr, act_rd = act_mem.write_port(), act_mem.read_port()
        weight_wr, weight_rd = weight_mem.write_port(), weight_mem.read_port()
        acc_wr, acc_rd_feed, acc_rd_store = (acc_mem.write_port(), acc_mem.read_port(),
                                             acc_mem.read_port())
        scales = Signal(layouts.scale_row(cfg))

        insn = self.insn.payload
        op = insn.opcode

        # ---- LOAD engine ------------------------------------------------------------------
        ld_busy = Signal()
        ld_op = Signal(3)
        ld_addr = Signal(addr_bits)
        ld_count = Signal(addr_bits + 1)   # rows still to load
        ld_fire = Signal()
        ld_free = Signal()   # can take a LOAD now (idle, or taking its last beat)
        m.d.comb += [
            ld_free.eq(~ld_busy | ((ld_count == 1) & ld_fire)),
            self.data_in.ready.eq(ld_busy),
            ld_fire.eq(self.data_in.valid & self.data_in.ready),
            act_wr.addr.eq(ld_addr), act_wr.data.eq(self.data_in.payload),
            weight_wr.addr.eq(ld_addr), weight_wr.data.eq(self.data_in.payload),
            act_wr.en.eq(ld_fire & (ld_op == Opcode.LOAD_ACT)),
            weight_wr.en.eq(ld_fire & (ld_op == Opcode.LOAD_WEIGHT)),
        ]
        with m.If(ld_fire):
            m.d.sync += [ld_addr.eq(ld_addr + 1), ld_count.eq(ld_count - 1)]
            with m.If(ld_count == 1):
                m.d.sync += ld_busy.eq(0)
            with m.If(ld_op == Opcode.LOAD_SCALE):
                m.d.sync += scales.eq(self.data_in.payload)

        # ---- read pipelines: rows of a memory -> a stream, one per cycle ------------------
        def row_reader(name, ports, out_ready, gate=None):
            """A counter walking ``count`` rows from ``base`` through sync read ports; the row
            read in cycle t is presented (``valid``) from cycle t+1 until taken."""
            busy_rows = Signal(addr_bits + 1, name=f"{name}_rows")   # rows not yet read
            addr = Signal(addr_bits, name=f"{name}_addr")
            index = Signal(addr_bits, name=f"{name}_index")          # rows read so far
            valid = Signal(name=f"{name}_valid")
            advance = Signal(name=f"{name}_advance")
            issue = Signal(name=f"{name}_issue")
            m.d.comb += [
                advance.eq(~valid | out_ready),
                issue.eq(advance & (busy_rows != 0) & (1 if gate is None else gate)),
            ]
            for port in ports:
                m.d.comb += port.en.eq(advance)
            m.d.comb += ports[0].addr.eq(addr)
            with m.If(advance):
                m.d.sync += valid.eq(issue)
            with m.If(issue):
                m.d.sync += [addr.eq(addr + 1), busy_rows.eq(busy_rows - 1),
                             index.eq(index + 1)]
            return busy_rows, addr, index, valid, issue

        # ---- PRELOAD engine ---------------------------------------------------------------
        pre_rows, pre_addr, _, pre_valid, pre_issue = row_reader(
            "pre", [weight_rd], array.weight.ready)
        pre_busy = (pre_rows != 0) | pre_valid
        # An engine takes its next instruction once its last row has been (or is being) read:
        # the row still waiting in the read register is not disturbed by the new one.
        pre_free = (pre_rows == 0) | ((pre_rows == 1) & pre_issue)
        m.d.comb += [array.weight.valid.eq(pre_valid),
                     array.weight.payload.eq(weight_rd.data)]

        # ---- WRITE engine: a two-entry queue of (acc_addr, count) -----------------------
        wq_addr = [Signal(addr_bits, name=f"wq{i}_addr") for i in range(2)]
        wq_count = [Signal(addr_bits + 1, name=f"wq{i}_count") for i in range(2)]
        pending = Signal(range(3))          # descriptors not completely written
        written = Signal(addr_bits + 1)     # rows written of descriptor 0
        wr_fire = Signal()
        push = Signal()
        m.d.comb += [
            array.psum.ready.eq(1),
            wr_fire.eq(array.psum.valid),
            acc_wr.addr.eq(Mux(wr_fire, wq_addr[0] + written, ld_addr)),
            acc_wr.data.eq(Mux(wr_fire, array.psum.payload.as_value(), self.data_in.payload)),
            acc_wr.en.eq(wr_fire | (ld_fire & (ld_op == Opcode.LOAD_ACC))),
        ]
        pop = wr_fire & (written + 1 == wq_count[0])
        with m.If(wr_fire):
            m.d.sync += written.eq(Mux(pop, 0, written + 1))
        with m.If(pop):
            m.d.sync += [wq_addr[0].eq(wq_addr[1]), wq_count[0].eq(wq_count[1])]

        # ---- FEED engine ------------------------------------------------------------------
        feed_accumulate = Signal()
        feed_gated = Signal()        # beat j waits until row j of its dependency is written
        feed_first = Signal()
        feed_gate = Signal()
        feed_rows, feed_addr, feed_index, feed_valid, feed_issue = row_reader(
            "feed", [act_rd, acc_rd_feed], array.act.ready, feed_gate)
        feed_busy = (feed_rows != 0) | feed_valid
        feed_free = (feed_rows == 0) | ((feed_rows == 1) & feed_issue)
        feed_acc_base = Signal(addr_bits)
        feed_count = Signal(addr_bits + 1)   # rows of the compute being fed (for hazards)
        # The dependency is descriptor 0 until it is popped (the first pop after dispatch).
        m.d.comb += feed_gate.eq(~feed_gated | (feed_index < written))
        swap_q = Signal()
        acc_q = Signal()
        with m.If(feed_issue):
            m.d.sync += [swap_q.eq(feed_first), feed_first.eq(0), acc_q.eq(feed_accumulate)]
        m.d.comb += [
            acc_rd_feed.addr.eq(feed_acc_base + feed_index),
            array.act.valid.eq(feed_valid), array.psum_in.valid.eq(feed_valid),
            array.act.payload.data.eq(act_rd.data), array.act.payload.swap.eq(swap_q),
            array.psum_in.payload.eq(Mux(acc_q, acc_rd_feed.data.as_value(), 0)),
        ]

        # ---- STORE engine -----------------------------------------------------------------
        st_relu, st_raw = Signal(), Signal()
        st_rows, st_addr, _, st_valid, st_issue = row_reader(
            "st", [acc_rd_store], self.data_out.ready)
        st_busy = (st_rows != 0) | st_valid
        st_free = (st_rows == 0) | ((st_rows == 1) & st_issue)
        st_relu_q, st_raw_q = Signal(), Signal()   # flags of the row in the read register
        with m.If(st_issue):
            m.d.sync += [st_relu_q.eq(st_relu), st_raw_q.eq(st_raw)]
        st_base, st_count = Signal(addr_bits), Signal(addr_bits + 1)
        m.d.comb += self.data_out.valid.eq(st_valid)
        lo_act, hi_act = -(1 << (cfg.act_width - 1)), (1 << (cfg.act_width - 1)) - 1
        for c in range(cfg.cols):
            mult, shift = scales[c].mult, scales[c].shift
            acc = Signal(signed(cfg.acc_width), name=f"st_sum{c}")   # wraps like the PEs
            m.d.comb += acc.eq(acc_rd_store.data[c] + scales[c].bias)
            # round half up: (acc * mult + 2**(shift-1)) >> shift, as sim.golden.requantize
            half = Signal(unsigned(1 << isa.SCALE_SHIFT_BITS), name=f"st_half{c}")
            rounded = Signal(signed(cfg.acc_width + (1 << isa.SCALE_SHIFT_BITS) + 2),
                             name=f"st_round{c}")
            m.d.comb += [
                half.eq((Const(1, 1) << shift) >> 1),
                rounded.eq((acc * mult + half) >> shift),
            ]
            lo = Mux(st_relu_q, 0, lo_act)
            clamped = Mux(rounded < lo, lo, Mux(rounded > hi_act, hi_act, rounded))
            m.d.comb += self.data_out.payload[c].eq(Mux(st_raw_q, acc, clamped))

        # ---- dispatcher -------------------------------------------------------------------
        addr, acc_addr, count = insn.addr, insn.acc_addr, insn.count
        ld_target_weight = ld_busy & (ld_op == Opcode.LOAD_WEIGHT)
        ld_target_act = ld_busy & (ld_op == Opcode.LOAD_ACT)
        ld_target_acc = ld_busy & (ld_op == Opcode.LOAD_ACC)
        ld_target_scale = ld_busy & (ld_op == Opcode.LOAD_SCALE)
        pre_base = Signal(addr_bits)
        feed_act_base = Signal(addr_bits)
        ld_base, ld_total = Signal(addr_bits), Signal(addr_bits + 1)
        # Rows of the pending descriptors, for the accumulator hazards.
        # A chain needs exactly one pending descriptor (descriptor 0) with the same rows.
        acc_hazard_any = ((pending != 0) & _overlap(acc_addr, count, wq_addr[0], wq_count[0])) | \
            ((pending == 2) & _overlap(acc_addr, count, wq_addr[1], wq_count[1]))
        chain = insn.accumulate & (pending == 1) & (acc_addr == wq_addr[0]) & \
            (count == wq_count[0])

        # Per-opcode dispatch conditions and engine start (if/elif chains: an m.Switch would
        # become one incomplete Verilog case statement per register).
        is_load = (op == Opcode.LOAD_ACT) | (op == Opcode.LOAD_WEIGHT) | (op == Opcode.LOAD_ACC)
        can = Signal()
        with m.If(op == Opcode.LOAD_ACT):
            m.d.comb += can.eq(ld_free & ~(feed_busy & _overlap(
                addr, count, feed_act_base, feed_count)))
        with m.Elif(op == Opcode.LOAD_WEIGHT):
            m.d.comb += can.eq(ld_free & ~(pre_busy & _overlap(
                addr, count, pre_base, cfg.rows)))
        with m.Elif(op == Opcode.LOAD_ACC):
            m.d.comb += can.eq(ld_free & ~feed_busy & ~pending.any() & ~st_busy)
        with m.Elif(op == Opcode.LOAD_SCALE):
            m.d.comb += can.eq(ld_free & ~st_busy)
        with m.Elif(op == Opcode.PRELOAD):
            m.d.comb += can.eq(pre_free & ~(ld_target_weight & _overlap(
                addr, cfg.rows, ld_base, ld_total)))
        with m.Elif(op == Opcode.COMPUTE):
            m.d.comb += can.eq(
                feed_free & (pending != 2) & ~ld_target_acc &
                ~(ld_target_act & _overlap(addr, count, ld_base, ld_total)) &
                ~(st_busy & _overlap(acc_addr, count, st_base, st_count)) &
                (~acc_hazard_any | chain))
        with m.Elif(op == Opcode.STORE):
            # a STORE requantizes with the scale row of the LOAD_SCALE before it: wait for its beat
            m.d.comb += can.eq(st_free & ~ld_target_acc & ~ld_target_scale & ~acc_hazard_any)
        # Any other opcode is never dispatched (the host checks its programs).
        m.d.comb += self.insn.ready.eq(can)
        dispatch = self.insn.valid & self.insn.ready

        with m.If(dispatch & is_load):
            base = Mux(op == Opcode.LOAD_ACC, acc_addr, addr)
            m.d.sync += [ld_busy.eq(count != 0), ld_op.eq(op), ld_addr.eq(base),
                         ld_count.eq(count), ld_total.eq(count), ld_base.eq(base)]
        with m.If(dispatch & (op == Opcode.LOAD_SCALE)):
            m.d.sync += [ld_busy.eq(1), ld_op.eq(op), ld_count.eq(1), ld_total.eq(0)]
        with m.If(dispatch & (op == Opcode.PRELOAD)):
            m.d.sync += [pre_rows.eq(cfg.rows), pre_addr.eq(addr), pre_base.eq(addr)]
        with m.If(dispatch & (op == Opcode.COMPUTE)):
            m.d.sync += [feed_rows.eq(count), feed_addr.eq(addr), feed_index.eq(0),
                         feed_act_base.eq(addr), feed_acc_base.eq(acc_addr),
                         feed_count.eq(count), feed_first.eq(1),
                         feed_accumulate.eq(insn.accumulate), feed_gated.eq(chain & ~pop)]
        with m.If(dispatch & (op == Opcode.STORE)):
            m.d.sync += [st_rows.eq(count), st_addr.eq(acc_addr), st_base.eq(acc_addr),
                         st_count.eq(count), st_relu.eq(insn.relu), st_raw.eq(insn.raw)]

        with m.If(pop & ~(dispatch & (op == Opcode.COMPUTE))):
            m.d.sync += feed_gated.eq(0)

        # Queue push (COMPUTE dispatch) and pop (last row written) may coincide.
        m.d.comb += push.eq(dispatch & (op == Opcode.COMPUTE) & (count != 0))
        slot = Mux(pop, pending - 1, pending)
        with m.If(push):
            with m.If(~slot.any()):
                m.d.sync += [wq_addr[0].eq(acc_addr), wq_count[0].eq(count)]
            with m.Else():
                m.d.sync += [wq_addr[1].eq(acc_addr), wq_count[1].eq(count)]
        m.d.sync += pending.eq(pending + push - pop)

        # ---- status and counters ----------------------------------------------------------
        busy = ld_busy | pre_busy | feed_busy | st_busy | (pending != 0)
        m.d.comb += self.idle.eq(~busy)
        act_fire = array.act.valid & array.act.ready
        increments = {
            "cycles": 1,
            "busy_cycles": busy,
            "act_beats": act_fire,
            "macs": Mux(act_fire, cfg.macs_per_cycle, 0),
            "act_reads": act_fire,
            "act_writes": act_wr.en,
            "weight_reads": array.weight.valid & array.weight.ready,
            "weight_writes": weight_wr.en,
            "acc_reads": (act_fire & acc_q) + (self.data_out.valid & self.data_out.ready),
            "acc_writes": acc_wr.en,
            "data_in_beats": ld_fire,
            "data_out_beats": self.data_out.valid & self.data_out.ready,
            "gated_macs": Mux(wr_fire, array.gated, 0),
        }
        for name, inc in increments.items():
            field = getattr(self.counters, name)
            m.d.sync += field.eq(field + inc)
        return m
