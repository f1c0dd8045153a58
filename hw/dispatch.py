"""The accelerator's dispatcher: every hazard rule in one place, and the CONFIG registers."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from sparsa.config import ArrayConfig
from sparsa.isa import LOADS, Opcode

from . import layouts
from .engines import (
    feed_command,
    feed_state,
    load_command,
    load_state,
    queue_entry,
    reader_command,
    reader_state,
    write_state,
)

__all__ = ["Dispatcher"]



def _overlap(a_base, a_count, b_base, b_count) -> Value:
    """Whether row ranges [a, a+na) and [b, b+nb) intersect (both non-empty)."""
    return (a_base < b_base + b_count) & (b_base < a_base + a_count) & \
        (a_count != 0) & (b_count != 0)


class Dispatcher(wiring.Component):
    """Takes instructions from ``insn`` in order, at most one per cycle, and hands each to its
    engine's command stream (``load``, ``preload``, ``feed`` with ``queue``, ``store``).

    An instruction leaves ``insn`` (is dispatched) in a cycle when its engine is ready
    (``cmd.ready``) and it has no hazard with work in flight, read off the engines' ``*_state``
    ports (:meth:`hazard_free` holds every rule). CONFIG needs no engine and has no hazard: it
    sets the im2col registers that every later COMPUTE copies at dispatch. ``idle``: no engine
    has work and no result is still to be written.
    """

    def __init__(self, cfg: ArrayConfig):
        self.cfg = cfg
        super().__init__({
            "insn": In(stream.Signature(layouts.instruction())),
            "load": Out(stream.Signature(load_command())),
            "preload": Out(stream.Signature(reader_command())),
            "feed": Out(stream.Signature(feed_command())),
            "queue": Out(stream.Signature(queue_entry(), always_ready=True)),
            "store": Out(stream.Signature(layouts.instruction_args(Opcode.STORE))),
            "load_state": In(load_state()),
            "preload_state": In(reader_state()),
            "feed_state": In(feed_state()),
            "write_state": In(write_state()),
            "store_state": In(reader_state()),
            "idle": Out(1),
        })

    def hazard_free(self, chain: Value) -> dict[Opcode, Value]:
        """Per opcode: the instruction may dispatch as far as work in flight is concerned (its
        engine must also be ready). ``chain``: a COMPUTE continues a K chain.

        * LOAD_ACT waits while FEED is busy with a COMPUTE of the same tag; LOAD_WEIGHT while
          PRELOAD reads rows it would overwrite; LOAD_ACC until FEED, WRITE and STORE are idle;
          LOAD_SCALE until STORE is idle.
        * PRELOAD waits while LOAD writes weight rows it reads.
        * COMPUTE waits while two earlier COMPUTEs still have results to write, while LOAD
          writes a LOAD_ACT of its tag or any accumulator rows, while STORE reads accumulator
          rows it overwrites, and while an earlier COMPUTE's results are still being written to
          overlapping accumulator rows, except when it continues a K chain (``chain``: exactly
          the rows of the one pending COMPUTE, accumulating): then it starts at once and each
          beat waits until the row it adds has been written (:class:`~.engines.FeedEngine`).
        * STORE waits while results are still being written to rows it reads, and while LOAD
          brings accumulator rows or the scale row it requantizes with.
        """
        a = self.insn.payload.args
        ld, pre, feed = self.load_state, self.preload_state, self.feed_state
        wq, st = self.write_state, self.store_state
        compute, store = a.compute, a.store

        def loading(op: Opcode) -> Value:
            return ld.busy & (ld.op == op)

        def results_into(base, count) -> Value:   # results still to be written into rows
            return ((wq.pending != 0) & _overlap(base, count, wq.queue[0].acc_addr,
                                                 wq.queue[0].count)) | \
                ((wq.pending == 2) & _overlap(base, count, wq.queue[1].acc_addr,
                                              wq.queue[1].count))

        return {
            Opcode.LOAD_ACT: ~(feed.busy & (feed.tag == a.load_act.tag)),
            Opcode.LOAD_WEIGHT: ~(pre.busy & _overlap(a.load_weight.addr, a.load_weight.count,
                                                      pre.base, pre.count)),
            Opcode.LOAD_ACC: ~feed.busy & (wq.pending == 0) & ~st.busy,
            Opcode.LOAD_SCALE: ~st.busy,
            Opcode.PRELOAD: ~(loading(Opcode.LOAD_WEIGHT) & _overlap(
                a.preload.addr, self.cfg.rows, ld.base, ld.count)),
            Opcode.COMPUTE: (wq.pending != 2) & ~loading(Opcode.LOAD_ACC) &
            ~(loading(Opcode.LOAD_ACT) & (ld.tag == compute.tag)) &
            ~(st.busy & _overlap(compute.acc_addr, compute.count, st.base, st.count)) &
            (~results_into(compute.acc_addr, compute.count) | chain),
            Opcode.STORE: ~loading(Opcode.LOAD_ACC) & ~loading(Opcode.LOAD_SCALE) &
            ~results_into(store.acc_addr, store.count),
            Opcode.CONFIG: 1,
        }

    def elaborate(self, platform):
        m = Module()
        insn, a = self.insn, self.insn.payload.args
        op = insn.payload.opcode
        wq = self.write_state
        # a K chain: accumulate onto exactly the rows of the one COMPUTE still being written
        chain = a.compute.accumulate & (wq.pending == 1) & \
            (a.compute.acc_addr == wq.queue[0].acc_addr) & (a.compute.count == wq.queue[0].count)
        free = self.hazard_free(chain)
        engine = {Opcode.PRELOAD: self.preload, Opcode.COMPUTE: self.feed,
                  Opcode.STORE: self.store, **dict.fromkeys(LOADS, self.load)}
        # (an OR of terms, not an m.Switch: that would become an incomplete case statement)
        ready = 0
        for code, ok in free.items():
            ready = ready | ((op == code) & ok & (engine[code].ready if code in engine else 1))
        m.d.comb += insn.ready.eq(ready)   # any other opcode never dispatches
        for stream_, codes in ((self.load, LOADS), (self.preload, (Opcode.PRELOAD,)),
                               (self.feed, (Opcode.COMPUTE,)), (self.store, (Opcode.STORE,))):
            is_op = 0
            for code in codes:
                is_op = is_op | ((op == code) & free[code])
            m.d.comb += stream_.valid.eq(insn.valid & is_op)
        dispatch = insn.valid & insn.ready
        m.d.comb += self.queue.valid.eq(dispatch & (op == Opcode.COMPUTE) &
                                        (a.compute.count != 0))
        self._commands(m, chain)
        config = Signal(layouts.instruction_args(Opcode.CONFIG))
        with m.If(dispatch & (op == Opcode.CONFIG)):
            m.d.sync += config.eq(a.config)
        m.d.comb += [self.feed.payload.walk.config.eq(config), self.idle.eq(
            ~self.load_state.busy & ~self.preload_state.busy & ~self.feed_state.busy &
            ~self.store_state.busy & (wq.pending == 0))]
        return m

    def _commands(self, m: Module, chain: Value) -> None:
        """The command payloads, from the instruction's fields."""
        a, op = self.insn.payload.args, self.insn.payload.opcode
        load, feed = self.load.payload, self.feed.payload
        m.d.comb += [
            load.op.eq(op),
            load.addr.eq(Mux(op == Opcode.LOAD_ACC, a.load_acc.acc_addr,
                             Mux(op == Opcode.LOAD_ACT, a.load_act.addr, a.load_weight.addr))),
            load.count.eq(Mux(op == Opcode.LOAD_SCALE, 1,
                              Mux(op == Opcode.LOAD_ACC, a.load_acc.count,
                                  Mux(op == Opcode.LOAD_ACT, a.load_act.count,
                                      a.load_weight.count)))),
            load.tag.eq(a.load_act.tag),
            load.phase.eq(Mux(op == Opcode.LOAD_WEIGHT, a.load_weight.phase, 0)),
            self.preload.payload.addr.eq(a.preload.addr),
            self.preload.payload.count.eq(self.cfg.rows),
            feed.walk.compute.eq(a.compute), feed.walk.swap.eq(1), feed.chain.eq(chain),
            self.queue.payload.acc_addr.eq(a.compute.acc_addr),
            self.queue.payload.count.eq(a.compute.count),
            self.store.payload.eq(a.store),
        ]
