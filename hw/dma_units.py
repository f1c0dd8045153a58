"""The units the DMA engines (:mod:`sparsa.hw.dma`) are built from, each its own component.

:class:`BurstPlanner`
    walks a 2-D strided descriptor and cuts every row into legal AXI4 INCR bursts.
:class:`ReadAligner`
    turns the bus-aligned beats of a row into beats that start with the row's first byte.
:class:`WriteAligner`
    the reverse: left-aligned row beats into bus-aligned ``wdata`` with ``wstrb`` and ``wlast``.

All widths derive from :class:`~sparsa.config.ArrayConfig` through the layouts below.

Combinational outputs are unconditional assignments (``Mux`` and logic, no ``m.If``/``m.FSM`` in
the ``comb`` domain): Yosys writes those as continuous ``assign`` s. Under ``m.If`` they become
``always @*`` blocks, and Icarus never runs such a block when it reads only registers that
still hold their initial value, which left outputs X after reset.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, exact_log2

from sparsa.config import ArrayConfig

from .axi import MAX_BURST_BEATS, PAGE_BYTES

__all__ = ["BurstPlanner", "ReadAligner", "WriteAligner", "burst_layout", "descriptor_layout",
           "read_beat_layout", "row_layout", "write_beat_layout"]


def _bus_bytes(cfg: ArrayConfig) -> int:
    return cfg.axi_data_bits // 8


def descriptor_layout(cfg: ArrayConfig) -> data.StructLayout:
    """A 2-D strided transfer (Gemmini's mvin/mvout in spirit): ``rows`` rows of ``row_bytes``
    bytes, row ``i`` starting at ``base + i * stride`` (bytes; any alignment). Every field is
    an address-wide unsigned number; ``rows == 0`` or ``row_bytes == 0`` is an empty transfer."""
    a = cfg.axi_addr_bits
    return data.StructLayout({"base": unsigned(a), "stride": unsigned(a), "rows": unsigned(a),
                              "row_bytes": unsigned(a)})


def read_beat_layout(cfg: ArrayConfig) -> data.StructLayout:
    """One beat of a row as the reader returns it: the row's bytes left-aligned in ``data``
    (byte 0 of the first beat is the row's first byte), ``count`` valid bytes (1 to the bus
    width; the bytes above are undefined) and ``last`` on the row's last beat."""
    b = _bus_bytes(cfg)
    return data.StructLayout({"data": data.ArrayLayout(unsigned(8), b),
                              "count": unsigned(bits_for(b)), "last": unsigned(1)})


def write_beat_layout(cfg: ArrayConfig) -> data.ArrayLayout:
    """One beat of a row given to the writer: bus-width bytes, left-aligned; the last beat of a
    row carries ``row_bytes`` modulo the bus width bytes (the rest is ignored)."""
    return data.ArrayLayout(unsigned(8), _bus_bytes(cfg))


def row_layout(cfg: ArrayConfig) -> data.StructLayout:
    """What the aligners need of a row: the byte ``offset`` of its start within a bus beat, its
    length in ``bytes`` and whether it is the ``last`` row of its descriptor."""
    return data.StructLayout({"offset": unsigned(exact_log2(_bus_bytes(cfg))),
                              "bytes": unsigned(cfg.axi_addr_bits), "last": unsigned(1)})


def burst_layout(cfg: ArrayConfig) -> data.StructLayout:
    """One INCR burst: bus-aligned byte ``addr`` and ``len`` = beats - 1 (AxLEN)."""
    return data.StructLayout({"addr": unsigned(cfg.axi_addr_bits), "len": unsigned(8)})


class _Walk(enum.Enum, shape=1):
    """The burst planner's state: waiting for a descriptor, issuing bursts."""

    IDLE = 0
    BURST = 1


def _check_cfg(cfg) -> None:
    if not isinstance(cfg, ArrayConfig):
        raise TypeError(f"cfg must be an ArrayConfig, not {cfg!r}")


class BurstPlanner(wiring.Component):
    """Walks a descriptor (``desc``) row by row and cuts each row into AXI4 INCR bursts.

    Each burst is offered on ``burst``, one per cycle at best; a row's first burst also
    offers the row on ``row``, and the two are taken together (``burst.valid`` waits for
    ``row.ready`` and ``row.valid`` for ``burst.ready`` in that cycle, so neither is taken
    without the other). A row covers the bus beats from the one holding its first byte to the
    one holding its last; a burst is as long as the beats left in the row, at most 256 beats
    and never past the next 4 KiB boundary. So a descriptor costs one cycle to accept and one
    per burst; rows of at most 4 KiB that do not cross a page boundary are a single burst.
    ``idle`` is high when no descriptor is being walked.
    """

    def __init__(self, cfg: ArrayConfig):
        _check_cfg(cfg)
        self.cfg = cfg
        super().__init__({
            "desc": In(stream.Signature(descriptor_layout(cfg))),
            "row": Out(stream.Signature(row_layout(cfg))),
            "burst": Out(stream.Signature(burst_layout(cfg))),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        cfg, m = self.cfg, Module()
        shift = exact_log2(_bus_bytes(cfg))
        a = cfg.axi_addr_bits
        desc = Signal(descriptor_layout(cfg))     # the walk: base = current row, rows = left
        fresh = Signal()                          # the next burst is the current row's first
        next_beat = Signal(a - shift)             # the next burst's address, in beats, and
        next_left = Signal(a - shift + 1)         # the row's beats left, after its first burst
        row_end = Signal(a)
        m.d.comb += row_end.eq(desc.base + desc.row_bytes - 1)
        beat, beats_left = Signal.like(next_beat), Signal.like(next_left)
        m.d.comb += [beat.eq(Mux(fresh, desc.base[shift:], next_beat)),
                     beats_left.eq(Mux(fresh, row_end[shift:] - desc.base[shift:] + 1,
                                       next_left))]
        page_beats = PAGE_BYTES >> shift
        to_page = Signal(range(page_beats + 1))
        m.d.comb += to_page.eq(page_beats - beat[:exact_log2(page_beats)])
        limit = Signal(range(MAX_BURST_BEATS + 1))
        m.d.comb += limit.eq(Mux(to_page > MAX_BURST_BEATS, MAX_BURST_BEATS, to_page))
        beats = Signal(range(MAX_BURST_BEATS + 1))
        m.d.comb += beats.eq(Mux(beats_left < limit, beats_left, limit))

        m.d.comb += [
            self.row.payload.offset.eq(desc.base[:shift]),
            self.row.payload.bytes.eq(desc.row_bytes),
            self.row.payload.last.eq(desc.rows == 1),
            self.burst.payload.addr.eq(Cat(Const(0, shift), beat)),
            self.burst.payload.len.eq(beats - 1),
        ]
        # A plain state register with its outputs as continuous assignments (see the module).
        state = Signal(_Walk)
        idle, walking = (state == _Walk.IDLE), (state == _Walk.BURST)
        m.d.comb += [self.idle.eq(idle), self.desc.ready.eq(idle),
                     self.row.valid.eq(walking & fresh & self.burst.ready),
                     self.burst.valid.eq(walking & (~fresh | self.row.ready))]
        nonempty = (self.desc.payload.rows != 0) & (self.desc.payload.row_bytes != 0)
        with m.If(self.desc.valid & self.desc.ready):
            m.d.sync += [desc.eq(self.desc.payload), fresh.eq(1),
                         state.eq(Mux(nonempty, _Walk.BURST, _Walk.IDLE))]
        with m.If(self.burst.valid & self.burst.ready):
            m.d.sync += [next_beat.eq(beat + beats), next_left.eq(beats_left - beats),
                         fresh.eq(0)]
            with m.If(beats_left == beats):
                m.d.sync += [desc.rows.eq(desc.rows - 1), desc.base.eq(desc.base + desc.stride),
                             fresh.eq(1),
                             state.eq(Mux(desc.rows == 1, _Walk.IDLE, _Walk.BURST))]
        return m


class ReadAligner(wiring.Component):
    """Re-aligns the bus beats of each row (``beat``; ``row`` gives its offset and length) into
    left-aligned beats on ``out``.

    The row's first beat is captured into a one-beat register (no output); after that each
    output beat is the upper ``B - offset`` bytes of the register followed by the lower
    ``offset`` bytes of the next input beat (a ``2B -> B`` byte shifter), and the input beat
    replaces the register. When the register alone holds the rest of the row, the last output
    beat is sent without taking an input beat, and takes the next row's first beat instead
    (its capture, if the beat is there). So a row of ``k`` output beats and ``n`` input beats
    takes ``k + 1`` cycles at full rate, and ``k`` when ``n == k`` and the next row's first
    beat follows at once; exactly its own input beats are taken. The ``row`` entry is needed
    from the first output beat and released with the row's last.
    """

    def __init__(self, cfg: ArrayConfig):
        _check_cfg(cfg)
        self.cfg = cfg
        super().__init__({
            "row": In(stream.Signature(row_layout(cfg))),
            "beat": In(stream.Signature(write_beat_layout(cfg))),
            "out": Out(stream.Signature(read_beat_layout(cfg))),
        })

    def elaborate(self, platform):
        cfg, m = self.cfg, Module()
        b = _bus_bytes(cfg)
        row = self.row.payload
        held = Signal(8 * b)                  # the previous input beat of this row
        have = Signal()                       # ``held`` holds the row's current beat
        sent = Signal(cfg.axi_addr_bits)      # row bytes sent so far
        left = Signal(cfg.axi_addr_bits)
        m.d.comb += left.eq(row.bytes - sent)
        held_only = Signal()                  # the rest of the row lies in ``held``
        m.d.comb += held_only.eq(left <= b - row.offset)
        # The input beat is used only when taken, so the payload stays stable while it waits.
        word = Cat(held, Mux(held_only, 0, self.beat.payload.as_value()))
        m.d.comb += [
            self.out.payload.data.eq(word >> Cat(Const(0, 3), row.offset)),
            self.out.payload.count.eq(Mux(left < b, left, b)),
            self.out.payload.last.eq(left <= b),
        ]
        # A row's first beat goes into ``held`` while nothing is held (beats come in row order,
        # so it needs no ``row`` entry yet), or with the previous row's last output beat when
        # that one takes no input beat.
        loading = ~have
        active = self.row.valid & have
        done = Signal()
        m.d.comb += [
            self.out.valid.eq(active & (held_only | self.beat.valid)),
            self.beat.ready.eq(loading | (active & self.out.ready)),
            done.eq(self.out.valid & self.out.ready & self.out.payload.last),
            self.row.ready.eq(done),
        ]
        with m.If(loading & self.beat.valid):
            m.d.sync += [held.eq(self.beat.payload), have.eq(1)]
        with m.If(self.out.valid & self.out.ready):
            m.d.sync += [held.eq(self.beat.payload), sent.eq(sent + b)]
        with m.If(done):
            m.d.sync += [sent.eq(0), have.eq(held_only & self.beat.valid)]
        return m


class WriteAligner(wiring.Component):
    """Places the left-aligned beats of each row (``beat``) at the row's bus offset and emits
    the W channel's beats on ``out``: ``data``, ``strb`` and ``last`` (the end of a burst, whose
    lengths arrive on ``burst``, one entry per burst in the order the addresses were issued).

    Bus beat ``k`` of a row is the upper ``offset`` bytes of input beat ``k - 1`` (held in a
    register) followed by the lower ``B - offset`` bytes of input beat ``k``; when the row's
    bytes end inside the held beat, the last bus beat takes no input. ``strb`` masks the lanes
    before the row's first byte (first beat) and after its last byte (last beat), so memory
    outside the row is never written. One bus beat per cycle at full rate.
    """

    def __init__(self, cfg: ArrayConfig):
        _check_cfg(cfg)
        self.cfg = cfg
        b = _bus_bytes(cfg)
        super().__init__({
            "row": In(stream.Signature(row_layout(cfg))),
            "burst": In(stream.Signature(unsigned(8))),
            "beat": In(stream.Signature(write_beat_layout(cfg))),
            "out": Out(stream.Signature(data.StructLayout({
                "data": unsigned(8 * b), "strb": unsigned(b), "last": unsigned(1)}))),
        })

    def elaborate(self, platform):
        cfg, m = self.cfg, Module()
        b = _bus_bytes(cfg)
        row = self.row.payload
        held = Signal(8 * b)
        pos = Signal(cfg.axi_addr_bits + 1)   # row bytes before this bus beat's lane 0, + offset
        beat_no = Signal(8)                   # beat within the current burst
        need = Signal()                       # this bus beat takes an input beat
        m.d.comb += need.eq(pos < row.bytes)
        end = Signal(cfg.axi_addr_bits + 2)   # lanes of this beat up to the row's end
        m.d.comb += end.eq(row.bytes + row.offset - pos)
        last_of_row = Signal()
        m.d.comb += last_of_row.eq(end <= b)
        ones = Const((1 << b) - 1, b)
        first_mask = Mux(pos == 0, (ones << row.offset)[:b], ones)
        last_mask = Mux(last_of_row, ones >> (b - end[:bits_for(b)])[:bits_for(b)], ones)
        # The input beat is used only when taken, so ``wdata`` stays stable while it waits.
        word = Cat(held, Mux(need, self.beat.payload.as_value(), 0))
        m.d.comb += [
            self.out.payload.data.eq(word >> Cat(Const(0, 3), b - row.offset)),
            self.out.payload.strb.eq(first_mask & last_mask),
            self.out.payload.last.eq(beat_no == self.burst.payload),
        ]
        ready = self.row.valid & self.burst.valid
        m.d.comb += [self.out.valid.eq(ready & (self.beat.valid | ~need)),
                     self.beat.ready.eq(ready & need & self.out.ready)]
        sent = self.out.valid & self.out.ready
        m.d.comb += [self.burst.ready.eq(sent & self.out.payload.last),
                     self.row.ready.eq(sent & last_of_row)]
        with m.If(sent):
            m.d.sync += [pos.eq(pos + b), beat_no.eq(beat_no + 1)]
        with m.If(sent & need):
            m.d.sync += held.eq(self.beat.payload)
        with m.If(self.burst.ready):
            m.d.sync += beat_no.eq(0)
        with m.If(self.row.ready):
            m.d.sync += pos.eq(0)
        return m
