"""On-chip im2col: the array's activation beats built from NHWC rows of the activation scratchpad.

Why an im2col unit between the scratchpad and the array (as in Gemmini) and not a line buffer: the
array is weight-stationary and takes one K pass (one weight tile) at a time, so a pass needs one
kernel offset of every output pixel of the P block, never a whole window at once. With the K order
below every beat is exactly one scratchpad row (or zeros), so the unit is an address walker in
front of a read port: no window registers, no line buffer sized by the widest image, and any
stride, padding and kernel size at one beat per cycle.

**Scratchpad layout.** One row holds one input pixel's block of ``K_pass = rows * m`` channels
(the width of an array beat, ``act_width`` bits each): NHWC with the channels split into
``C_blocks = ceil(C / K_pass)`` blocks, the last one zero-padded. Pixel ``(n, y, x)``, block
``b`` sits at row ``base + ((n*H + y)*W + x)*C_blocks + b``.

**K order and passes.** A conv's GEMM K runs over kernel offsets ``(i, j)`` and channel blocks
``b``: K pass ``(i*kw + j)*C_blocks + b`` covers channels ``b*K_pass .. (b+1)*K_pass - 1`` at
offset ``(i, j)``, so its beat for output pixel ``(n, oy, ox)`` is the row of input pixel
``(n, oy*sh - ph + i, ox*sw - pw + j)``, block ``b``, or zeros where that pixel lies in the
padding. The weights are packed in the same K order with zero rows for the padded channels of
the last block, so an N:M group (``m`` consecutive K) is ``m`` consecutive channels of one kernel
offset, and the padded channels meet zero activations and zero weights.

**Command** (:func:`command_layout`, one per (P block, K pass)): the fields of a CONFIG
instruction (the layer's geometry: ``height``, ``width``, ``out_h``, ``out_w``, strides,
top/left padding and the address steps ``step_x``, ``wrap_y``, ``wrap_n``), the fields of a
COMPUTE (the first beat's row ``addr``, input pixel ``(y, x)``, output pixel ``(oy, ox)``,
kernel offset ``(i, j)`` and ``count``) and ``swap`` (the first beat swaps weight tiles). The
walk itself is defined in plain Python by :func:`sparsa.im2col.walk`, and the assembler
computes the fields with :func:`sparsa.im2col.config_instruction` and
:func:`sparsa.im2col.compute_fields`. The walk needs no multiplier at all: the assembler, which
has the conv's geometry anyway, gives the first beat's position and the three address
increments. Fields carrying raw ``H, W, C_blocks, kh, kw, ...`` would need about ten
``addr_bits``-wide multipliers in the unit (the start row ``((n0*H + y0)*W + x0)*C_blocks + b``
and the strides), each about four 8x8 multipliers: some 30% more multiplier area on a default
8x8 2:4 array. On accept the unit copies what it needs (so a later CONFIG may change the
registers the command came from) and starts the walk with ``y_start = i - pad_y`` and
``x_start = j - pad_x`` (at this kernel offset, the input row of output row 0 and the input
column of output column 0).

**Address walk.** Output pixels go in row-major order ``(n, oy, ox)`` from the first one for
``count`` beats, crossing output rows and images (a P block may start mid-row and span the
batch). Per beat: ``ox += 1, x += sw, addr += step_x``; at the end of an output row ``ox = 0,
x = x_start, oy += 1, y += sh, addr += wrap_y``; at the end of an image also ``oy = 0,
y = y_start, addr += wrap_n``. A beat reads the scratchpad only when ``0 <= y < height`` and
``0 <= x < width`` (compared unsigned on ``addr_bits + 1``-bit coordinates, so negative ones
fail); otherwise it is a zero beat and the port stays disabled. Addresses wrap modulo
``2**addr_bits``, and the read port takes their low bits: out-of-image addresses are never
read.

**Backpressure and gating.** The read port has one cycle of latency. Its ``en`` is driven only
when a beat is issued, and a beat is issued only when the output register is empty or being
taken (``act.valid`` low or ``act.ready`` high) and ``gate`` is high, so while the consumer
stalls the port holds its data: no skid register, no lost beat. ``issue`` is high in exactly
the cycles that issue a beat (a read, or a zero beat): a unit beside this one (the feed
engine's accumulator read) reads in lockstep with it, and ``gate`` lets such a unit hold a beat
back (a K chain waits for the accumulator row it adds).

**Cycle contract** (exact; for the cycle model). ``cmd.ready`` is high while the unit has no
beat left and in the cycle that issues the last beat of the current command. A command
accepted in cycle ``t`` issues beat ``k`` (0-based) in cycle ``t + 1 + k`` and presents it on
``act`` in cycle ``t + 2 + k`` when ``act.ready`` and ``gate`` stay high; every cycle in which a
beat is left but none is issued (``gate`` low, or ``act.valid & ~act.ready``) delays all later
beats (and the next accept) by one. Without such cycles, command ``d`` with ``c_d`` beats,
first offered (``cmd.valid``) in cycle ``o_d``, is accepted in cycle ``a_d = max(o_d, a_{d-1} +
c_{d-1})``. So commands waiting back to back stream without a bubble: the first accepted in
cycle 0, the beats occupy cycles ``2 .. 1 + sum(c)``. Scratchpad reads: one per beat inside the
image, none for zero beats. ``busy`` is high from the cycle after an accept until the last beat
has been taken.

**Grouped and depthwise convolutions** (issue 10 item 5; not this unit's job). A channel-parallel
mapping keeps this layout and walk unchanged: the pass of block ``b`` at offset ``(i, j)`` delivers
``K_pass`` consecutive channels, i.e. ``K_pass / g`` whole groups of ``g`` channels when ``g``
divides ``K_pass``. Its weight tile holds those groups' filters block-diagonally (zero across
groups; an N:M group of ``m`` consecutive K never straddles two conv groups when ``m`` divides
``g``), the output channels of the groups in the block spread over the columns, and the same
input rows serve every column tile of the block. A depthwise conv (``g = 1``) is ``kh*kw``
passes per block with a diagonal tile per offset. How many columns such a tile fills is the
mapping's choice; the feeder only needs the block and offset of each pass.

**Integration.** ``rd`` connects to a read port of the activation scratchpad with
``wiring.connect`` (that memory's shape is :func:`row_layout`), ``act`` to
:class:`~sparsa.hw.array.SystolicArray`'s ``act``; ``psum_in`` is the feed engine's job, in
lockstep through ``issue`` (:class:`~sparsa.hw.accelerator.Accelerator`).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from sparsa import isa
from sparsa.config import ArrayConfig
from sparsa.isa import Opcode

from . import layouts

__all__ = ["Im2colFeeder", "command_layout", "row_layout"]


def row_layout(cfg: ArrayConfig) -> data.ArrayLayout:
    """One activation-scratchpad row: ``rows * m`` activations (one channel block of a pixel),
    the same as the ``data`` of an array beat."""
    return data.ArrayLayout(signed(cfg.act_width), cfg.act_vector_width)


def command_layout() -> data.StructLayout:
    """One command of :class:`Im2colFeeder`: the fields of a CONFIG and of a COMPUTE
    instruction (:func:`sparsa.hw.layouts.instruction_args`) and ``swap``."""
    return data.StructLayout({
        "config": layouts.instruction_args(Opcode.CONFIG),
        "compute": layouts.instruction_args(Opcode.COMPUTE),
        "swap": unsigned(1),
    })


def _walk_layout(cfg: ArrayConfig) -> data.StructLayout:
    """The walk's state: the position of the next beat, what is left and the layer's steps."""
    a = cfg.addr_bits
    coord, size, row = signed(a + 1), unsigned(a), unsigned(a)
    step = unsigned(isa.STEP_BITS)
    return data.StructLayout({
        "addr": row, "y": coord, "x": coord, "oy": size, "ox": size,
        "y_start": signed(isa.OFFSET_BITS + 1), "x_start": signed(isa.OFFSET_BITS + 1),
        "height": size, "width": size, "out_h": size, "out_w": size,
        "stride_y": step, "stride_x": step,
        "step_x": row, "wrap_y": row, "wrap_n": row,
        "count": unsigned(a),
        "swap": unsigned(1),
    })


class Im2colFeeder(wiring.Component):
    """Builds the array's ``act`` beats of one (P block, K pass) per ``cmd`` from NHWC rows of the
    activation scratchpad, read through ``rd`` (a synchronous :mod:`lib.memory` read port of
    ``cfg.scratchpad_rows["act"]`` rows of :func:`row_layout`). ``gate`` (in): a beat may be
    issued this cycle; ``issue`` (out): one is. See the module docstring for the layout, the walk
    and the exact cycle contract."""

    def __init__(self, *, cfg: ArrayConfig):
        if not isinstance(cfg, ArrayConfig):
            raise TypeError(f"cfg must be an ArrayConfig, not {cfg!r}")
        self.cfg = cfg
        depth = cfg.scratchpad_rows["act"]
        super().__init__({
            "cmd": In(stream.Signature(command_layout())),
            "rd": In(memory.ReadPort.Signature(addr_width=ceil_log2(depth),
                                               shape=row_layout(cfg))),
            "act": Out(stream.Signature(layouts.act_beat(cfg))),
            "gate": In(1, init=1),
            "issue": Out(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cur = Signal(_walk_layout(self.cfg))   # the walk: position of the next beat
        advance = Signal()   # the output register is empty or being taken
        issue = self.issue   # a beat is issued (read, or zero) this cycle
        inside = Signal()    # that beat's input pixel lies in the image
        zero_q = Signal()    # the presented beat is padding
        m.d.comb += [
            advance.eq(~self.act.valid | self.act.ready),
            issue.eq(advance & (cur.count != 0) & self.gate),
            inside.eq((cur.y.as_unsigned() < cur.height) & (cur.x.as_unsigned() < cur.width)),
            self.cmd.ready.eq((cur.count == 0) | ((cur.count == 1) & issue)),
            self.rd.addr.eq(cur.addr),
            self.rd.en.eq(issue & inside),
            self.act.payload.data.eq(Mux(zero_q, 0, self.rd.data.as_value())),
            self.busy.eq((cur.count != 0) | self.act.valid),
        ]
        with m.If(advance):
            m.d.sync += [self.act.valid.eq(issue), zero_q.eq(~inside),
                         self.act.payload.swap.eq(cur.swap)]
        self._walk(m, cur, issue)
        with m.If(self.cmd.valid & self.cmd.ready):   # last: overrides the walk's update
            self._start(m, cur, self.cmd.payload)
        return m

    @staticmethod
    def _start(m: Module, cur, cmd) -> None:
        """Load the walk from a command: the COMPUTE's first beat, the CONFIG's geometry."""
        conf, comp = cmd.config, cmd.compute
        m.d.sync += [
            cur.addr.eq(comp.addr), cur.y.eq(comp.y), cur.x.eq(comp.x),
            cur.oy.eq(comp.oy), cur.ox.eq(comp.ox), cur.count.eq(comp.count),
            cur.y_start.eq(comp.i - conf.pad_y), cur.x_start.eq(comp.j - conf.pad_x),
            cur.swap.eq(cmd.swap),
        ]
        for name in ("height", "width", "out_h", "out_w", "stride_y", "stride_x", "step_x",
                     "wrap_y", "wrap_n"):
            m.d.sync += getattr(cur, name).eq(getattr(conf, name))

    @staticmethod
    def _walk(m: Module, cur, issue: Signal) -> None:
        """Step ``cur`` to the next output pixel when a beat is issued: adders and compares
        only."""
        with m.If(issue):
            m.d.sync += [cur.count.eq(cur.count - 1), cur.swap.eq(0)]
            with m.If(cur.ox + 1 != cur.out_w):
                m.d.sync += [cur.ox.eq(cur.ox + 1), cur.x.eq(cur.x + cur.stride_x),
                             cur.addr.eq(cur.addr + cur.step_x)]
            with m.Else():
                m.d.sync += [cur.ox.eq(0), cur.x.eq(cur.x_start)]
                with m.If(cur.oy + 1 != cur.out_h):
                    m.d.sync += [cur.oy.eq(cur.oy + 1), cur.y.eq(cur.y + cur.stride_y),
                                 cur.addr.eq(cur.addr + cur.wrap_y)]
                with m.Else():
                    m.d.sync += [cur.oy.eq(0), cur.y.eq(cur.y_start),
                                 cur.addr.eq(cur.addr + cur.wrap_n)]
