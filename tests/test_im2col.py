"""The im2col walk of :mod:`sparsa.im2col` (what the feeder, the golden executor and the
assembler follow) against a direct computation of each beat's input pixel, the footprints of P
blocks, and the limits of the instruction fields.

The direct computation: beat ``k`` of a pass is output pixel ``first + k`` = ``(n, oy, ox)`` in
row-major order; it reads input pixel ``(n, oy*sh - ph + i, ox*sw - pw + j)``, channel block
``b``, at scratchpad row ``base + ((n*H + y)*W + x)*C_blocks + b`` when the pixel is inside the
image, and nothing (a padding beat) otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from sparsa import im2col
from sparsa.config import ADDR_BITS, ArrayConfig
from sparsa.im2col import ConvGeometry
from sparsa.isa import Instruction, Opcode

CONFIGS = {
    "2x2-2of4": ArrayConfig(rows=2, cols=2, n=2, m=4),
    "3x2-1of1": ArrayConfig(rows=3, cols=2, n=1, m=1),
    "1x4-3of4": ArrayConfig(rows=1, cols=4, n=3, m=4),
}


def random_geometry(cfg: ArrayConfig, rng: np.random.Generator) -> ConvGeometry:
    kh, kw = (int(v) for v in rng.integers(1, 6, size=2))
    sh, sw = (int(v) for v in rng.integers(1, 4, size=2))
    ph, pw = int(rng.integers(0, kh)), int(rng.integers(0, kw))
    h = int(rng.integers(max(1, kh - 2 * ph), 12))
    w = int(rng.integers(max(1, kw - 2 * pw), 12))
    return ConvGeometry(images=int(rng.integers(1, 4)), in_size=(h, w),
                        channels=int(rng.integers(1, 4 * cfg.k_per_pass)), kernel=(kh, kw),
                        stride=(sh, sw), padding=(ph, pw))


def direct_rows(cfg, geom: ConvGeometry, *, base: int, first: int, count: int,
                offset: tuple[int, int], block: int, depth_bits: int) -> list[int | None]:
    (h, w), (sh, sw), (ph, pw) = geom.in_size, geom.stride, geom.padding
    ho, wo = geom.out_size
    cb = -(-geom.channels // cfg.k_per_pass)
    rows = []
    for p in range(first, first + count):
        n, oy, ox = p // (ho * wo), p // wo % ho, p % wo
        y, x = oy * sh - ph + offset[0], ox * sw - pw + offset[1]
        if 0 <= y < h and 0 <= x < w:
            row = (base + ((n * h + y) * w + x) * cb + block) % (1 << ADDR_BITS)
            rows.append(row % (1 << depth_bits))
        else:
            rows.append(None)
    return rows


def walk_rows(cfg, geom, *, base, first, count, offset, block, depth_bits):
    fields = im2col.compute_fields(cfg, geom, base=base, first=first, offset=offset,
                                   block=block)
    compute = Instruction(Opcode.COMPUTE, count=count, **fields)
    return list(im2col.walk(im2col.config_instruction(cfg, geom), compute, depth_bits))


@pytest.mark.parametrize("name", CONFIGS)
def test_walk_equals_the_direct_pixels(name, rng):
    """Random geometries (several images, strides, padding, kernels, channel blocks), P blocks
    starting anywhere (mid-row, crossing rows and images), every kernel offset and block, bases
    anywhere in the address space (wrapping), read ports narrower than the address."""
    cfg = CONFIGS[name]
    for _ in range(40):
        geom = random_geometry(cfg, rng)
        cb = geom.c_blocks(cfg)
        first = int(rng.integers(0, geom.p))
        count = int(rng.integers(1, geom.p - first + 1))
        base = int(rng.integers(0, 1 << ADDR_BITS))
        depth_bits = int(rng.choice([ADDR_BITS, 10, 7]))
        for offset in geom.offsets():
            block = int(rng.integers(0, cb))
            args = dict(base=base, first=first, count=count, offset=offset, block=block,
                        depth_bits=depth_bits)
            assert walk_rows(cfg, geom, **args) == direct_rows(cfg, geom, **args), (geom, args)


def test_linear_layer_rows_are_consecutive_pixels(rng):
    """A linear layer (:func:`im2col.linear_geometry`): pass ``b`` of pixels ``first ..`` reads
    rows ``p*C_blocks + b``, across the stack's images too."""
    cfg = CONFIGS["2x2-2of4"]
    for p, k in ((5, 3), (40, 17), (im2col.LINEAR_HEIGHT + 7, 9)):
        geom = im2col.linear_geometry(p, k)
        cb = geom.c_blocks(cfg)
        first = int(rng.integers(0, p))
        count = min(p - first, 50)
        for b in range(cb):
            rows = walk_rows(cfg, geom, base=0, first=first, count=count, offset=(0, 0),
                             block=b, depth_bits=ADDR_BITS)
            assert rows == [(q * cb + b) % (1 << ADDR_BITS)
                            for q in range(first, first + count)]


@pytest.mark.parametrize("name", CONFIGS)
def test_footprints_cover_every_read(name, rng):
    """Every row a P block's passes read lies in its footprint's rows (placed at ``R``: ``base =
    R - lo*C_blocks``); footprints are whole input rows, and exactly the block's pixels for a 1x1
    stride-1 conv without padding."""
    cfg = CONFIGS[name]
    for _ in range(30):
        geom = random_geometry(cfg, rng)
        if rng.random() < 0.2:
            geom = ConvGeometry(images=geom.images, in_size=geom.in_size,
                                channels=geom.channels)
        cb = geom.c_blocks(cfg)
        w = geom.in_size[1]
        first = int(rng.integers(0, geom.p))
        count = int(rng.integers(1, geom.p - first + 1))
        lo, hi = im2col.footprint(geom, first, count)
        if geom.kernel == (1, 1) and geom.stride == (1, 1) and geom.padding == (0, 0):
            assert (lo, hi) == (first, first + count)
        else:
            assert lo % w == 0
            assert hi % w == 0
        region = int(rng.integers(0, 1 << 12))
        base = (region - lo * cb) % (1 << ADDR_BITS)
        for offset in geom.offsets():
            for block in range(cb):
                rows = walk_rows(cfg, geom, base=base, first=first, count=count, offset=offset,
                                 block=block, depth_bits=ADDR_BITS)
                for row in rows:
                    assert row is None or region <= row < region + (hi - lo) * cb, \
                        (geom, first, count, offset, block, row)


def test_walk_rejects_other_opcodes():
    cfg = CONFIGS["2x2-2of4"]
    config = im2col.config_instruction(cfg, im2col.linear_geometry(4, 8))
    compute = Instruction(Opcode.COMPUTE, count=4)
    with pytest.raises(ValueError, match="expected a CONFIG instruction, not COMPUTE"):
        list(im2col.walk(compute, compute, 8))
    with pytest.raises(ValueError, match="expected a COMPUTE instruction, not CONFIG"):
        list(im2col.walk(config, config, 8))


@pytest.mark.parametrize(("changes", "message"), [
    (dict(channels=0), "bad conv geometry"),
    (dict(images=0), "bad conv geometry"),
    (dict(padding=(-1, 0)), "bad conv geometry"),
    (dict(kernel=(9, 1), in_size=(4, 4)), "bad conv geometry"),   # no output pixel
    (dict(kernel=(17, 1), in_size=(20, 4)), "kernel 17x1 exceeds"),
    (dict(stride=(8, 1)), "stride 8x1 or padding 0x0 exceeds"),
    (dict(padding=(0, 8), kernel=(3, 9)), "padding 0x8 exceeds"),
    (dict(in_size=(40000, 2)), "image 40000x2 exceeds"),
])
def test_geometry_limits_are_clear_errors(changes, message):
    cfg = CONFIGS["2x2-2of4"]
    geom = ConvGeometry(**{**dict(images=1, in_size=(6, 6), channels=5), **changes})
    with pytest.raises(ValueError, match=message):
        geom.check(cfg)
    with pytest.raises(ValueError, match=message):
        im2col.config_instruction(cfg, geom)


def test_largest_fields_fit():
    """Kernels of 16, strides and padding of 7 and images just under the coordinate limit
    produce valid instructions."""
    cfg = CONFIGS["2x2-2of4"]
    for geom in (ConvGeometry(images=1, in_size=(16, 16), channels=3, kernel=(16, 16),
                              stride=(7, 7), padding=(7, 7)),
                 ConvGeometry(images=1, in_size=(32000, 2), channels=1, kernel=(3, 1))):
        config = im2col.config_instruction(cfg, geom)
        assert Instruction.decode(config.encode()) == config
        fields = im2col.compute_fields(cfg, geom, base=0, first=geom.p - 1,
                                       offset=(geom.kernel[0] - 1, 0), block=0)
        compute = Instruction(Opcode.COMPUTE, count=1, **fields)
        assert Instruction.decode(compute.encode()) == compute


def test_compute_fields_reject_pixels_and_blocks_outside():
    cfg = CONFIGS["2x2-2of4"]
    geom = ConvGeometry(images=1, in_size=(4, 4), channels=9)    # 2 blocks of 8, 16 pixels
    with pytest.raises(ValueError, match=r"first pixel 16 outside 0\.\.15"):
        im2col.compute_fields(cfg, geom, base=0, first=16, offset=(0, 0), block=0)
    with pytest.raises(ValueError, match="block 2 beyond"):
        im2col.compute_fields(cfg, geom, base=0, first=0, offset=(0, 0), block=2)
