"""The on-chip im2col walk in plain Python: the geometry of a conv (or a linear layer), the fields
of the CONFIG and COMPUTE instructions that describe it, and the walk itself.

The hardware (:class:`sparsa.hw.im2col.Im2colFeeder`), the golden executor and the assembler all
follow this one definition; the hardware's docstring gives the cycle contract and why the unit is
an address walker in front of the activation scratchpad.

**Scratchpad layout.** One row holds one input pixel's block of ``K_pass = rows * m`` channels
(NHWC with the channels split into ``C_blocks = ceil(C / K_pass)`` blocks, the last one
zero-padded). Pixel ``(n, y, x)``, block ``b`` sits at row ``base + ((n*H + y)*W + x)*C_blocks +
b`` (modulo ``2**ADDR_BITS``), where ``base`` places the region: a region holds the input pixels
``lo .. hi-1`` (flattened ``(n*H + y)*W + x``) from scratchpad row ``R``, so ``base = R -
lo*C_blocks``.

**K order.** A conv's K runs over kernel offsets ``(i, j)`` and channel blocks ``b``: K pass
``(i*kw + j)*C_blocks + b`` covers channels ``b*K_pass ..`` at offset ``(i, j)``, so its beat for
output pixel ``(n, oy, ox)`` is the row of input pixel ``(n, oy*sh - ph + i, ox*sw - pw + j)``,
block ``b``, or zeros where that pixel lies in the padding. A linear layer ``X (P, K)`` is the
1x1 conv of a stack of images ``1`` pixel wide (:func:`linear_geometry`), so its rows are
simply ``p*C_blocks + b``.

**Walk.** Output pixels go in row-major order ``(n, oy, ox)`` from the first one for ``count``
beats. Per beat: ``ox += 1, x += sw, addr += step_x``; at the end of an output row ``ox = 0,
x = j - pw, oy += 1, y += sh, addr += wrap_y``; at the end of an image also ``oy = 0,
y = i - ph, addr += wrap_n``. A beat reads the scratchpad only when ``0 <= y < H`` and
``0 <= x < W``; addresses wrap modulo ``2**ADDR_BITS``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

from .config import ADDR_BITS, ArrayConfig
from .isa import FORMATS, OFFSET_BITS, STEP_BITS, Instruction, Opcode

__all__ = ["ConvGeometry", "compute_fields", "config_instruction", "footprint",
           "linear_geometry", "walk"]

_MASK = (1 << ADDR_BITS) - 1
_COORD_MAX = (1 << (ADDR_BITS - 1)) - 1     # y, x are signed ADDR_BITS-bit fields
LINEAR_HEIGHT = 1 << 14                     # images of a linear layer's stack


@dataclass(frozen=True)
class ConvGeometry:
    """A conv's shape as the walk sees it. ``pixels``: output pixels to compute (all of them,
    ``images * out_h * out_w``, unless fewer are given: a linear layer's last image); ``out``:
    the output size, when not the floor formula's."""

    images: int
    in_size: tuple[int, int]
    channels: int
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    pixels: int | None = None
    out: tuple[int, int] | None = None

    @functools.cached_property
    def out_size(self) -> tuple[int, int]:
        """``out`` when given (e.g. SCALE-Sim's ``ceil((H - F + S) / S)``, which reads past the
        bottom/right edge: those reads are padding beats), else the floor formula with the
        same padding on both sides."""
        if self.out is not None:
            return self.out
        (h, w), (kh, kw), (sh, sw), (ph, pw) = (self.in_size, self.kernel, self.stride,
                                                self.padding)
        return (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1

    @functools.cached_property
    def reads_own_pixels(self) -> bool:
        """Output pixel ``p`` reads input pixel ``p`` only: a 1x1, stride-1 conv without
        padding whose output is its input's size, such as a linear layer."""
        return self.kernel == (1, 1) and self.stride == (1, 1) and self.padding == (0, 0) and \
            self.out_size == self.in_size

    @functools.cached_property
    def p(self) -> int:
        ho, wo = self.out_size
        return self.images * ho * wo if self.pixels is None else self.pixels

    @property
    def in_pixels(self) -> int:
        h, w = self.in_size
        return self.images * h * w if self.pixels is None else self.pixels

    def c_blocks(self, cfg: ArrayConfig) -> int:
        return -(-self.channels // cfg.k_per_pass)

    def offsets(self) -> Iterator[tuple[int, int]]:
        kh, kw = self.kernel
        return ((i, j) for i in range(kh) for j in range(kw))

    def check(self, cfg: ArrayConfig) -> None:
        """Raise ``ValueError`` naming the limit when the instruction fields cannot describe
        this geometry (the scheduler then lowers the conv with host-side im2col)."""
        (h, w), (kh, kw), (sh, sw), (ph, pw) = (self.in_size, self.kernel, self.stride,
                                                self.padding)
        ho, wo = self.out_size
        if min(self.images, h, w, self.channels, kh, kw, sh, sw, ho, wo, self.p) < 1 or \
                min(ph, pw) < 0:
            raise ValueError(f"bad conv geometry {self}")
        if max(kh, kw) > 1 << OFFSET_BITS:
            raise ValueError(f"kernel {kh}x{kw} exceeds the on-chip im2col's "
                             f"{1 << OFFSET_BITS}x{1 << OFFSET_BITS}")
        if max(sh, sw, ph, pw) >= 1 << STEP_BITS:
            raise ValueError(f"stride {sh}x{sw} or padding {ph}x{pw} exceeds the on-chip "
                             f"im2col's {(1 << STEP_BITS) - 1}")
        if max(h + kh, w + kw, ho, wo) > _COORD_MAX:
            raise ValueError(f"image {h}x{w} exceeds the on-chip im2col's {_COORD_MAX} pixels "
                             f"per side")


def linear_geometry(p: int, channels: int) -> ConvGeometry:
    """``X (p, channels)`` as a 1x1 conv over images of ``LINEAR_HEIGHT`` x 1 pixels."""
    height = min(p, LINEAR_HEIGHT)
    return ConvGeometry(images=-(-p // height), in_size=(height, 1), channels=channels,
                        pixels=p)


def config_instruction(cfg: ArrayConfig, geom: ConvGeometry) -> Instruction:
    """The CONFIG instruction of ``geom``: sizes, strides, padding and the address steps."""
    geom.check(cfg)
    (h, w), (sh, sw), (ph, pw) = geom.in_size, geom.stride, geom.padding
    ho, wo = geom.out_size
    cb = geom.c_blocks(cfg)
    step_x, step_y = sw * cb, sh * w * cb
    return Instruction(
        Opcode.CONFIG, height=h, width=w, out_h=ho, out_w=wo,
        step_x=step_x & _MASK, wrap_y=(step_y - (wo - 1) * step_x) & _MASK,
        wrap_n=(h * w * cb - (ho - 1) * step_y - (wo - 1) * step_x) & _MASK,
        stride_y=sh, stride_x=sw, pad_y=ph, pad_x=pw)


def compute_fields(cfg: ArrayConfig, geom: ConvGeometry, *, base: int, first: int,
                   offset: tuple[int, int], block: int) -> dict[str, int]:
    """The walk fields of a COMPUTE (``addr, y, x, oy, ox, i, j``) for output pixels from
    ``first`` (flattened ``(n*Ho + oy)*Wo + ox``), kernel ``offset = (i, j)`` and channel
    ``block``, with the layout's ``base`` (module docstring)."""
    (h, w), (sh, sw), (ph, pw) = geom.in_size, geom.stride, geom.padding
    ho, wo = geom.out_size
    cb = geom.c_blocks(cfg)
    if not (0 <= first < geom.p and 0 <= block < cb):
        raise ValueError(f"first pixel {first} outside 0..{geom.p - 1}, or block {block} beyond "
                         f"{cb}")
    n, rest = divmod(first, ho * wo)
    oy, ox = divmod(rest, wo)
    i, j = offset
    y, x = oy * sh - ph + i, ox * sw - pw + j
    return {"addr": (base + ((n * h + y) * w + x) * cb + block) & _MASK,
            "y": y, "x": x, "oy": oy, "ox": ox, "i": i, "j": j}


def footprint(geom: ConvGeometry, first: int, count: int) -> tuple[int, int]:
    """The input pixels (flattened, ``lo .. hi-1``) that output pixels ``first ..
    first+count-1`` read: whole input rows, from the first one the block's first output row
    needs to the last one its last output row needs (exactly the block's pixels for a 1x1,
    stride-1 conv without padding whose output is its input's size, such as a linear layer)."""
    if geom.reads_own_pixels:
        return first, first + count    # output pixel p reads input pixel p: exactly those
    (h, w), (kh, _), (sh, _), (ph, _) = geom.in_size, geom.kernel, geom.stride, geom.padding
    ho, wo = geom.out_size
    n0, oy0 = divmod(first // wo, ho)
    n1, oy1 = divmod((first + count - 1) // wo, ho)
    lo_row = min(h, max(0, oy0 * sh - ph))
    hi_row = min(h - 1, oy1 * sh - ph + kh - 1)
    lo = (n0 * h + lo_row) * w
    return lo, max(lo, (n1 * h + hi_row) * w + w)   # empty when every read is padding


def walk(config: Instruction, compute: Instruction, depth_bits: int) -> Iterator[int | None]:
    """The scratchpad row of each beat of ``compute`` under ``config`` (``None``: a padding
    beat), as the hardware walks it; ``depth_bits``: the read port's address width (the
    address is taken modulo ``2**depth_bits``)."""
    for op, want in ((config, Opcode.CONFIG), (compute, Opcode.COMPUTE)):
        if op.opcode != want:
            raise ValueError(f"expected a {want.name} instruction, not {op.opcode.name}")
    c = config
    addr, y, x, oy, ox = compute.addr, compute.y, compute.x, compute.oy, compute.ox
    x_start, y_start = compute.j - c.pad_x, compute.i - c.pad_y
    for _ in range(compute.count):
        yield (addr & ((1 << depth_bits) - 1)) if 0 <= y < c.height and 0 <= x < c.width \
            else None
        if ox + 1 != c.out_w:
            ox, x, addr = ox + 1, x + c.stride_x, (addr + c.step_x) & _MASK
        else:
            ox, x = 0, x_start
            if oy + 1 != c.out_h:
                oy, y, addr = oy + 1, y + c.stride_y, (addr + c.wrap_y) & _MASK
            else:
                oy, y, addr = 0, y_start, (addr + c.wrap_n) & _MASK


assert {n for n, _ in FORMATS[Opcode.COMPUTE]} >= {"addr", "y", "x", "oy", "ox", "i", "j"}
