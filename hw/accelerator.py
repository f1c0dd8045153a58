"""The accelerator: scratchpads, the engines and their dispatcher around the array."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sparsa.config import ArrayConfig

from . import layouts
from .array import SystolicArray
from .dispatch import Dispatcher
from .engines import FeedEngine, LoadEngine, RowReader, StoreEngine, WriteEngine
from .im2col import row_layout

__all__ = ["COUNTERS", "Accelerator"]

# Activity counters, readable at any time (all 32-bit, wrapping). ``gated_macs``: the MACs
# (of ``macs``) whose selected activation was zero, so the PE's multiplier was isolated
# (:class:`~sparsa.hw.pe.SparsePE`); counted when the beat's results leave the array, so it is
# complete once the accelerator is idle. Zero weights are not counted. ``act_reads`` counts the
# beats fed, padding beats included.
COUNTERS = ("cycles", "busy_cycles", "act_beats", "macs", "act_reads", "act_writes",
            "weight_reads", "weight_writes", "acc_reads", "acc_writes", "data_in_beats",
            "data_out_beats", "gated_macs")


class Accelerator(wiring.Component):
    """:class:`SystolicArray` with scratchpads, engines and an in-order dispatcher.

    Streams: ``insn`` (instruction words, :mod:`sparsa.isa`), ``data_in`` (one scratchpad row
    per beat for the LOAD instructions), ``data_out`` (one row of ``cols`` accumulator-width
    lanes per STOREd row; requantized values are sign-extended). ``counters`` shows the activity
    counters (:data:`COUNTERS`); ``idle`` is high when nothing is in flight.

    Engines (:mod:`sparsa.hw.engines`) run concurrently: LOAD (data_in -> a scratchpad or the
    scale register), PRELOAD (weight scratchpad -> the PEs' shadow bank), FEED (on-chip im2col
    over the activation scratchpad and the accumulator rows -> the array), WRITE (array results
    -> accumulator rows) and STORE (accumulators + column bias -> requantize -> data_out; the
    requantizer is pipelined, so a row read in cycle ``c`` is offered on ``data_out`` from
    ``c + 1 +`` :data:`~sparsa.hw.engines.STORE_STAGES`, and STORE reads ahead into an output
    FIFO). An engine takes its next instruction in the cycle it reads its last row, so
    back-to-back tiles stream without a bubble. The :class:`~sparsa.hw.dispatch.Dispatcher`
    holds the CONFIG registers and every hazard rule: an instruction leaves the ``insn`` stream
    (is dispatched) when its engine is free and it has no hazard with work in flight.
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
        cfg, depths = self.cfg, self.depths
        m = Module()
        m.submodules.array = array = SystolicArray(cfg)
        m.submodules.act_mem = act_mem = Memory(shape=row_layout(cfg), depth=depths["act"],
                                                init=[])
        m.submodules.weight_mem = weight_mem = Memory(shape=layouts.weight_row(cfg),
                                                      depth=depths["weight"], init=[])
        m.submodules.acc_mem = acc_mem = Memory(shape=layouts.psum_row(cfg),
                                                depth=depths["acc"], init=[])
        ports = {"act_wr": act_mem.write_port(), "weight_wr": weight_mem.write_port(),
                 "acc_wr": acc_mem.write_port()}
        m.submodules.dispatch = dispatch = Dispatcher(cfg)
        m.submodules.load = load = LoadEngine(cfg)
        m.submodules.preload = preload = RowReader(depth=depths["weight"],
                                                   shape=layouts.weight_row(cfg))
        m.submodules.feed = feed = FeedEngine(cfg)
        m.submodules.write = write = WriteEngine(cfg)
        m.submodules.store = store = StoreEngine(cfg)

        wiring.connect(m, wiring.flipped(self.insn), dispatch.insn)
        for name, engine in (("load", load), ("preload", preload), ("feed", feed),
                             ("store", store)):
            wiring.connect(m, getattr(dispatch, name), engine.cmd)
            wiring.connect(m, engine.state, getattr(dispatch, f"{name}_state"))
        wiring.connect(m, dispatch.queue, write.queue)
        wiring.connect(m, write.state, dispatch.write_state)
        # LOAD
        wiring.connect(m, wiring.flipped(self.data_in), load.data_in)
        wiring.connect(m, load.act_wr, ports["act_wr"])
        wiring.connect(m, load.weight_wr, ports["weight_wr"])
        wiring.connect(m, load.acc_wr, write.load)
        m.d.comb += store.scales.eq(load.scales)
        # PRELOAD
        wiring.connect(m, preload.rd, weight_mem.read_port())
        wiring.connect(m, preload.rows, array.weight)
        # FEED and WRITE
        wiring.connect(m, feed.act_rd, act_mem.read_port())
        wiring.connect(m, feed.acc_rd, acc_mem.read_port())
        wiring.connect(m, feed.act, array.act)
        wiring.connect(m, feed.psum_in, array.psum_in)
        wiring.connect(m, write.progress, feed.progress)
        wiring.connect(m, array.psum, write.psum)
        wiring.connect(m, write.acc_wr, ports["acc_wr"])
        # STORE
        wiring.connect(m, store.rd, acc_mem.read_port())
        wiring.connect(m, store.data_out, wiring.flipped(self.data_out))

        m.d.comb += self.idle.eq(dispatch.idle)
        self._count(m, array, feed, ports)
        return m

    def _count(self, m: Module, array: SystolicArray, feed: FeedEngine, ports: dict) -> None:
        """The activity counters (:data:`COUNTERS`), one increment per cycle each."""
        act_fire = array.act.valid & array.act.ready
        out_fire = self.data_out.valid & self.data_out.ready
        increments = {
            "cycles": 1,
            "busy_cycles": ~self.idle,
            "act_beats": act_fire,
            "macs": Mux(act_fire, self.cfg.macs_per_cycle, 0),
            "act_reads": act_fire,
            "act_writes": ports["act_wr"].en,
            "weight_reads": array.weight.valid & array.weight.ready,
            "weight_writes": ports["weight_wr"].en,
            "acc_reads": (act_fire & feed.reads_acc) + out_fire,
            "acc_writes": ports["acc_wr"].en,
            "data_in_beats": self.data_in.valid & self.data_in.ready,
            "data_out_beats": out_fire,
            "gated_macs": Mux(array.psum.valid, array.gated, 0),
        }
        for name, inc in increments.items():
            field = getattr(self.counters, name)
            m.d.sync += field.eq(field + inc)
