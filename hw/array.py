"""Weight-stationary N:M systolic array with skew/deskew and valid/ready stream ports."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from sparsa.config import ArrayConfig

from .layouts import act_beat, pe_act, psum_row, weight_row
from .pe import SparsePE

__all__ = ["SystolicArray"]


class SystolicArray(wiring.Component):
    """``rows x cols`` :class:`SparsePE` s computing ``psum = psum_in + X . W`` per beat.

    Streams (valid/ready, :mod:`amaranth.lib.stream`):

    ``weight`` (in)
        One PE row of compressed weights per beat, row 0 first; ``rows`` beats fill the shadow
        bank. A beat for row ``r`` is accepted once the previous swap has travelled past every
        PE of row ``r`` (so the bank it overwrites is no longer read), and only while the shadow
        bank is not yet full.
    ``act`` (in) and ``psum_in`` (in)
        Consumed together, one beat each: ``rows * m`` activations and ``cols`` partial sums.
        A beat with ``swap`` set makes the (full) shadow bank active; it waits until the shadow
        bank has been completely loaded.
    ``psum`` (out)
        ``cols`` sums per beat, in input order.
    ``gated`` (out)
        The number of the beat's products gated by a zero selected activation (over all PEs and
        slots), presented with the beat on ``psum`` (meaningful while ``psum.valid``). A chain of
        registers down each column adds its PEs' counts as the beat passes (beside the partial
        sums, not skewed like them); a chain along the bottom adds the columns (column ``c``
        finishes ``c`` cycles after column 0) and the total is delayed ``pipeline_depth``
        cycles, to leave with the sums.

    Skew and deskew registers are inside: activation row ``r`` is delayed ``r`` cycles, partial
    sum column ``c`` enters ``c`` (plus the PE pipeline depth) cycles late and leaves
    ``cols-1-c`` cycles early, so every
    output beat appears :attr:`latency` cycles after its input beat. Backpressure on ``psum``
    stalls the whole pipeline (one global enable); bubbles on the inputs flow through as invalid
    beats. The timing is captured exactly by :mod:`sparsa.sw.timing`.
    """

    def __init__(self, cfg: ArrayConfig):
        if not isinstance(cfg, ArrayConfig):
            raise TypeError(f"cfg must be an ArrayConfig, not {cfg!r}")
        self.cfg = cfg
        super().__init__({
            "act": In(stream.Signature(act_beat(cfg))),
            "psum_in": In(stream.Signature(psum_row(cfg))),
            "weight": In(stream.Signature(weight_row(cfg))),
            "psum": Out(stream.Signature(psum_row(cfg))),
            "gated": Out(range(cfg.macs_per_cycle + 1)),
        })

    @property
    def latency(self) -> int:
        """Enabled cycles from accepting an input beat to presenting its output beat."""
        return self.cfg.rows + self.cfg.cols - 1 + self.cfg.pipeline_depth

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        step = Signal()                # the whole pipeline advances this cycle
        valid = Signal(self.latency)   # bit i: a beat is i enabled cycles in
        m.d.comb += step.eq(~self.psum.valid | self.psum.ready)
        accept, bank, cur, since_swap, shadow_full = self._swap_control(m, step)
        row_write = self._weight_loader(m, step, since_swap, shadow_full)
        pes = self._pe_grid(m, step, bank, cur, row_write)

        with m.If(step):
            m.d.sync += valid.eq(Cat(accept, valid[:-1]))
        m.d.comb += self.psum.valid.eq(valid[-1])
        for c in range(cfg.cols):
            m.d.comb += self.psum.payload[c].eq(
                _delayed(m, step, f"deskew_{c}", pes[-1][c].psum_out, signed(cfg.acc_width),
                         cfg.cols - 1 - c))
        self._gated_total(m, step, pes)
        return m

    def _gated_total(self, m: Module, step: Signal, pes: list[list[SparsePE]]) -> None:
        """``gated``: each column's PE counts added down a register chain that moves with the
        beat (PE(r, c) sees it ``r + c`` cycles after it entered), the column totals added
        along the bottom, then delayed like the products."""
        cfg = self.cfg
        total = None
        for c in range(cfg.cols):
            column = 0
            for r in range(cfg.rows):
                column = _delayed(m, step, f"gated_{r}_{c}", column + pes[r][c].gated,
                                  range(cfg.rows * cfg.n + 1), 1)
            # column c's total is ready at rows + c; the running total (registered) meets it
            total = column if total is None else _delayed(
                m, step, f"gated_sum_{c}", total, range(cfg.macs_per_cycle + 1), 1) + column
        m.d.comb += self.gated.eq(_delayed(m, step, "gated_delay", total,
                                           range(cfg.macs_per_cycle + 1), cfg.pipeline_depth))

    def _swap_control(self, m: Module, step: Signal):
        """The act/psum_in handshake and the bank swap. Returns ``accept`` (a beat enters this
        cycle), ``bank`` (the bank that beat uses), ``cur`` (the bank made active by the last
        swap), ``since_swap`` (enabled cycles since then, saturating) and ``shadow_full``."""
        accept = Signal()         # an act + psum_in beat enters this cycle
        bank = Signal()           # bank used by the beat entering now
        cur = Signal()            # bank made active by the last swap
        shadow_full = Signal()    # all rows of the shadow bank hold the next tile
        saturate = self.cfg.rows + self.cfg.cols
        since_swap = Signal(range(saturate + 1), init=saturate)

        swap = self.act.payload.swap
        swap_ok = ~swap | shadow_full
        m.d.comb += [
            self.act.ready.eq(step & self.psum_in.valid & swap_ok),
            self.psum_in.ready.eq(step & self.act.valid & swap_ok),
            accept.eq(self.act.valid & self.act.ready),
            bank.eq(cur ^ swap),
        ]
        with m.If(accept & swap):
            m.d.sync += [cur.eq(~cur), shadow_full.eq(0), since_swap.eq(0)]
        with m.Elif(step & (since_swap != saturate)):
            m.d.sync += since_swap.eq(since_swap + 1)
        return accept, bank, cur, since_swap, shadow_full

    def _weight_loader(self, m: Module, step: Signal, since_swap: Signal, shadow_full: Signal):
        """Weight rows into the shadow bank, row 0 first; sets ``shadow_full`` after the last.
        Returns the one-hot ``row_write`` (the PE row written this cycle).

        The last beat using the old bank reaches PE(r, c) c + r enabled cycles after the swap
        entered, so row r may be overwritten once since_swap >= r + cols - 3 (the write lands on
        the same edge that beat is consumed)."""
        rows, cols = self.cfg.rows, self.cfg.cols
        wrow = Signal(range(rows))
        w_fire = Signal()
        row_write = Signal(rows)
        m.d.comb += [
            self.weight.ready.eq(step & ~shadow_full & (since_swap + 3 >= wrow + cols)),
            w_fire.eq(self.weight.valid & self.weight.ready),
            row_write.eq(w_fire << wrow),
        ]
        with m.If(w_fire):
            with m.If(wrow == rows - 1):
                m.d.sync += [wrow.eq(0), shadow_full.eq(1)]
            with m.Else():
                m.d.sync += wrow.eq(wrow + 1)
        return row_write

    def _pe_grid(self, m: Module, step: Signal, bank: Signal, cur: Signal,
                 row_write: Signal) -> list[list[SparsePE]]:
        """The ``rows x cols`` PEs: shadow-bank writes, activations skewed into column 0 and
        passed right, partial sums skewed into row 0 and passed down."""
        cfg = self.cfg
        pes: list[list[SparsePE]] = []
        for r in range(cfg.rows):
            pes.append([])
            for c in range(cfg.cols):
                pe = m.submodules[f"pe_{r}_{c}"] = SparsePE(cfg)
                pes[r].append(pe)
                m.d.comb += [
                    pe.en.eq(step),
                    pe.w_en.eq(row_write[r]),
                    pe.w_bank.eq(~cur),
                    pe.w_data.eq(self.weight.payload[c]),
                ]
                if c == 0:
                    row_in = Signal(pe_act(cfg), name=f"row_in_{r}")
                    chunk = range(r * cfg.m, (r + 1) * cfg.m)
                    m.d.comb += row_in.eq(Cat(Cat(*(self.act.payload.data[i] for i in chunk)),
                                              bank))
                    m.d.comb += pe.act_in.eq(_delayed(m, step, f"skew_{r}", row_in,
                                                      pe_act(cfg), r))
                else:
                    m.d.comb += pe.act_in.eq(pes[r][c - 1].act_out)
                if r == 0:
                    m.d.comb += pe.psum_in.eq(
                        _delayed(m, step, f"psum_skew_{c}", self.psum_in.payload[c],
                                 signed(cfg.acc_width), c + cfg.pipeline_depth))
                else:
                    m.d.comb += pe.psum_in.eq(pes[r - 1][c].psum_out)
        return pes


def _delayed(m: Module, enable: Signal, name: str, value, shape, stages: int):
    """``value`` delayed by ``stages`` cycles with ``enable`` set, through registers
    ``{name}_0``, ``{name}_1``, ..."""
    for i in range(stages):
        reg = Signal(shape, name=f"{name}_{i}")
        with m.If(enable):
            m.d.sync += reg.eq(value)
        value = reg
    return value
