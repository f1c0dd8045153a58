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

**Descriptor** (:func:`descriptor_layout`, one per (P block, K pass)). The walk needs no
multiplier at all: the assembler, which has the conv's geometry anyway, computes the first
beat's position and the three address increments once per descriptor with
:func:`descriptor_fields` (kept free of Amaranth so it can move to the root package for
``sw.assemble``). A descriptor carrying raw ``H, W, C_blocks, kh, kw, ...`` would need about ten
``addr_bits``-wide multipliers in the unit (the start row ``((n0*H + y0)*W + x0)*C_blocks + b``
and the strides), each about four 8x8 multipliers: some 30% more multiplier area on a default
8x8 2:4 array. The fields split into layer
constants (``height``, ``width``, ``out_h``, ``out_w``, ``stride_*``, ``step_x``, ``wrap_*``)
and per-pass values (``addr``, ``y``, ``x``, ``oy``, ``ox``, ``y_start``, ``x_start``,
``count``, ``swap``), so an instruction set may set the former once per layer.

**Address walk.** Output pixels go in row-major order ``(n, oy, ox)`` from the first one for
``count`` beats, crossing output rows and images (a P block may start mid-row and span the
batch). Per beat: ``ox += 1, x += sw, addr += step_x``; at the end of an output row ``ox = 0,
x = x_start, oy += 1, y += sh, addr += wrap_y``; at the end of an image also ``oy = 0,
y = y_start, addr += wrap_n``. A beat reads the scratchpad only when ``0 <= y < height`` and
``0 <= x < width`` (compared unsigned, so negative coordinates fail; sizes are below
``2**addr_bits``); otherwise it is a zero beat
and the port stays disabled. Addresses wrap modulo ``2**addr_bits``: out-of-image addresses are
never read.

**Backpressure.** The read port has one cycle of latency. Its ``en`` is driven only when a beat
is issued, and a beat is issued only when the output register is empty or being taken
(``advance = ~act.valid | act.ready``), so while the consumer stalls the port holds its data:
no skid register, no lost beat.

**Cycle contract** (exact; for the cycle model). ``cmd.ready`` is high while the unit is idle and
in the cycle that issues the last beat of the current descriptor. A descriptor accepted in cycle
``t`` issues beat ``k`` (0-based) in cycle ``t + 1 + k`` and presents it on ``act`` in cycle
``t + 2 + k`` when ``act.ready`` stays high; every cycle ``act.valid & ~act.ready`` delays all
later beats (and the next accept) by one. Without such stalls, descriptor ``d`` with ``c_d``
beats, first offered (``cmd.valid``) in cycle ``o_d``, is accepted in cycle
``a_d = max(o_d, a_{d-1} + c_{d-1})``. So descriptors waiting back to back stream without a
bubble: the first accepted in cycle 0, the beats occupy cycles ``2 .. 1 + sum(c)``. Scratchpad
reads: one per beat inside the image, none for zero beats. ``busy`` is high from the cycle after
an accept until the last beat has been taken.

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
``wiring.connect`` when that memory's shape is :func:`row_layout` (the accelerator's ``act_mem``
is ``unsigned`` today: same bits). ``act`` connects to :class:`SystolicArray`'s ``act``;
``psum_in`` stays the feed engine's job, in lockstep with ``act``.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from sparsa.config import ArrayConfig

from . import layouts

__all__ = ["Im2colFeeder", "descriptor_fields", "descriptor_layout", "row_layout"]


def row_layout(cfg: ArrayConfig) -> data.ArrayLayout:
    """One activation-scratchpad row: ``rows * m`` activations (one channel block of a pixel),
    the same as the ``data`` of an array beat."""
    return data.ArrayLayout(signed(cfg.act_width), cfg.act_vector_width)


def descriptor_layout(cfg: ArrayConfig) -> data.StructLayout:
    """One command of :class:`Im2colFeeder`: a (P block, K pass). ``addr``, ``y``, ``x``,
    ``oy``, ``ox`` describe the first beat; the rest are described in the module docstring."""
    a = cfg.addr_bits
    coord, size, row = signed(a + 1), unsigned(a), unsigned(a)
    return data.StructLayout({
        "addr": row, "y": coord, "x": coord, "oy": size, "ox": size,
        "y_start": coord, "x_start": coord,
        "height": size, "width": size, "out_h": size, "out_w": size,
        "stride_y": size, "stride_x": size,
        "step_x": row, "wrap_y": row, "wrap_n": row,
        "count": unsigned(a + 1),
        "swap": unsigned(1),
    })


def descriptor_fields(cfg: ArrayConfig, *, base: int, in_size: tuple[int, int], c_blocks: int,
                      stride: tuple[int, int], padding: tuple[int, int],
                      out_size: tuple[int, int], first: tuple[int, int, int], count: int,
                      offset: tuple[int, int], block: int, swap: bool = False) -> dict[str, int]:
    """The descriptor of one (P block, K pass) of a conv: input ``in_size = (H, W)`` at scratchpad
    row ``base`` with ``c_blocks`` rows per pixel, ``stride = (sh, sw)``, top/left ``padding =
    (ph, pw)``, output ``out_size = (Ho, Wo)``; the P block is ``count`` output pixels from
    ``first = (n, oy, ox)``; the K pass is kernel ``offset = (i, j)`` and channel ``block``."""
    (h, w), (sh, sw), (ph, pw), (ho, wo) = in_size, stride, padding, out_size
    (n0, oy0, ox0), (i, j) = first, offset
    if min(h, w, c_blocks, sh, sw, ho, wo, count) < 1 or min(ph, pw, n0, i, j, block) < 0:
        raise ValueError("sizes, strides and count must be positive; padding, offsets, block "
                         "and the first pixel non-negative")
    if not (oy0 < ho and ox0 < wo and block < c_blocks):
        raise ValueError(f"first pixel {first} outside the output {out_size}, or block {block} "
                         f"beyond {c_blocks}")
    limit = 1 << cfg.addr_bits
    if max(h, w, sh, sw, ho, wo, ph + 1, pw + 1, i + 1, j + 1) > limit - 1 or count > limit:
        raise ValueError(f"sizes, strides, padding and offsets must be below 2**addr_bits = "
                         f"{limit}, and count at most that")
    mask = limit - 1
    y, x = oy0 * sh - ph + i, ox0 * sw - pw + j
    step_x = sw * c_blocks
    step_y = sh * w * c_blocks
    return {
        "addr": (base + ((n0 * h + y) * w + x) * c_blocks + block) & mask,
        "y": y, "x": x, "oy": oy0, "ox": ox0, "y_start": i - ph, "x_start": j - pw,
        "height": h, "width": w, "out_h": ho, "out_w": wo, "stride_y": sh, "stride_x": sw,
        "step_x": step_x & mask,
        "wrap_y": (step_y - (wo - 1) * step_x) & mask,
        "wrap_n": (h * w * c_blocks - (ho - 1) * step_y - (wo - 1) * step_x) & mask,
        "count": count, "swap": int(swap),
    }


class Im2colFeeder(wiring.Component):
    """Builds the array's ``act`` beats of one (P block, K pass) per ``cmd`` descriptor from NHWC
    rows of the activation scratchpad, read through ``rd`` (a synchronous :mod:`lib.memory` read
    port of ``cfg.scratchpad_rows["act"]`` rows of :func:`row_layout`). See the module docstring
    for the layout, the walk and the exact cycle contract."""

    def __init__(self, *, cfg: ArrayConfig):
        if not isinstance(cfg, ArrayConfig):
            raise TypeError(f"cfg must be an ArrayConfig, not {cfg!r}")
        self.cfg = cfg
        depth = cfg.scratchpad_rows["act"]
        super().__init__({
            "cmd": In(stream.Signature(descriptor_layout(cfg))),
            "rd": In(memory.ReadPort.Signature(addr_width=ceil_log2(depth),
                                               shape=row_layout(cfg))),
            "act": Out(stream.Signature(layouts.act_beat(cfg))),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cur = Signal(descriptor_layout(self.cfg))   # the walk: position of the next beat
        advance = Signal()   # the output register is empty or being taken
        issue = Signal()     # a beat is issued (read, or zero) this cycle
        inside = Signal()    # that beat's input pixel lies in the image
        zero_q = Signal()    # the presented beat is padding
        m.d.comb += [
            advance.eq(~self.act.valid | self.act.ready),
            issue.eq(advance & (cur.count != 0)),
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
            m.d.sync += cur.eq(self.cmd.payload)
        return m

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
