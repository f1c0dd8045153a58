"""The scheduler's program assembled into instructions computes the layer: the golden program
executor's result equals an independent computation, a direct convolution (one kernel offset at
a time over the padded input, no im2col) or a matmul, for sparse and dense layers, every loop
order and activation mode."""

from __future__ import annotations

import numpy as np
import pytest

from sparsa import nm
from sparsa.config import ArrayConfig
from sparsa.isa import Opcode
from sparsa.models.graph import Gemm, Layer
from sparsa.sim.golden_accel import GoldenAccelerator
from sparsa.sim.memory_image import link
from sparsa.sim.stimulus import random_nm_weights
from sparsa.sw.assemble import assemble_gemm, assemble_layer
from sparsa.sw.lower import linear_lowering, lower_layer
from sparsa.sw.schedule import candidate_tilings

SMALL = dict(act_buffer_kib=1, weight_buffer_kib=1, acc_buffer_kib=1)


def direct_conv(x: np.ndarray, w: np.ndarray, stride, padding, groups: int,
                out: tuple[int, int]) -> np.ndarray:
    """``x`` NHWC, ``w`` ``(C_out, C_in/groups, kh, kw)``: the ``(N*Ho*Wo, C_out)`` sums,
    zero padding top/left as given and bottom/right as the output size needs."""
    n, h, wd, c = x.shape
    c_out, cin_g, kh, kw = w.shape
    (sh, sw), (ph, pw), (ho, wo) = stride, padding, out
    xp = np.zeros((n, max(h + ph, (ho - 1) * sh + kh), max(wd + pw, (wo - 1) * sw + kw), c),
                  dtype=np.int64)
    xp[:, ph:ph + h, pw:pw + wd] = x
    y = np.zeros((n, ho, wo, c_out), dtype=np.int64)
    cout_g = c_out // groups
    for g in range(groups):
        cols = slice(g * cout_g, (g + 1) * cout_g)
        for i in range(kh):
            for j in range(kw):
                win = xp[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw,
                         g * cin_g:(g + 1) * cin_g]
                y[..., cols] += win @ w[cols, :, i, j].T
    return y.reshape(-1, c_out)


def random_conv(rng: np.random.Generator, cfg: ArrayConfig, *, sparse: bool) -> Layer:
    """A small conv with weights: any kernel up to 3x3, stride, padding, groups (a third
    depthwise), 1-2 images, sometimes SCALE-Sim's larger output."""
    kh, kw = (int(v) for v in rng.integers(1, 4, 2))
    (sh, sw), (ph, pw) = rng.integers(1, 3, 2), (int(rng.integers(0, kh)), int(rng.integers(0, kw)))
    groups = int(rng.choice([1, 1, 2, 3]))
    cin_g = int(rng.integers(1, 2 * cfg.k_per_pass + 2))
    if rng.random() < 0.3:
        groups, cin_g, cout_g = int(rng.integers(2, 2 * cfg.k_per_pass + 2)), 1, 1
    if sparse and cin_g > cfg.n:     # N:M groups on the array's lanes
        cin_g = max(cfg.m, cin_g // cfg.m * cfg.m)
    cout_g = int(rng.integers(1, cfg.cols + 2))
    h, w = int(rng.integers(kh, kh + 8)), int(rng.integers(kw, kw + 8))
    out = [(h + 2 * ph - kh) // int(sh) + 1, (w + 2 * pw - kw) // int(sw) + 1]
    if rng.random() < 0.2:
        out[0] += 1
    images = int(rng.integers(1, 3))
    weight = rng.integers(-128, 128, (groups * cout_g, cin_g, kh, kw))
    layer = Layer("conv", "conv2d", (images, groups * cin_g, h, w),
                  (images, groups * cout_g, *out), weight=weight,
                  attrs={"kernel": (kh, kw), "stride": (int(sh), int(sw)), "padding": (ph, pw),
                         "dilation": (1, 1), "groups": groups},
                  nm=(cfg.n, cfg.m) if sparse else None)
    if sparse:   # prune each group's GEMM along K = (i, j, channel)
        wg = layer.gemm_weight()
        pruned = np.stack([nm.unpack_nm(nm.pack_nm(np.where(
            random_nm_weights(rng, *g.shape, cfg.n, cfg.m) != 0, g, 0), cfg.n, cfg.m))
            for g in wg])
        weight = pruned.reshape(groups, kh, kw, cin_g, cout_g).transpose(0, 4, 3, 1, 2) \
            .reshape(groups * cout_g, cin_g, kh, kw)
        layer = Layer(layer.name, layer.kind, layer.in_shape, layer.out_shape, layer.attrs,
                      weight=weight, nm=layer.nm)
    return layer


CONFIGS = [ArrayConfig(rows=2, cols=2, n=2, m=4, **SMALL),
           ArrayConfig(rows=3, cols=3, n=1, m=4, **SMALL),
           ArrayConfig(rows=2, cols=4, n=1, m=1, **SMALL)]


def _cases(configs):
    """(configuration, sparse) pairs: dense hardware runs nothing sparse."""
    return [pytest.param(c, sparse, id=f"{c.rows}x{c.cols}-{c.n}of{c.m}-{c.act_buffer_kib}k-"
                         f"{'sparse' if sparse else 'dense'}")
            for c in configs for sparse in (True, False) if not (sparse and c.is_dense)]


@pytest.mark.parametrize(("cfg", "sparse"), _cases(CONFIGS))
def test_assembled_conv_computes_the_layer(cfg, sparse, rng):
    """Random convs through every candidate tiling (P blocks, column blocks, resident, ring,
    two and single regions, grouped and depthwise, dense phases): golden == direct conv."""
    for _ in range(3):
        layer = random_conv(rng, cfg, sparse=sparse)
        low = lower_layer(layer, cfg)
        n, c, h, w = layer.in_shape
        x = np.where(rng.random((n, h, w, c)) < 0.3, 0, rng.integers(-128, 128, (n, h, w, c)))
        bias = rng.integers(-(1 << 20), 1 << 20, layer.out_shape[1])
        want = direct_conv(x, np.asarray(layer.weight), layer.attrs["stride"],
                           layer.attrs["padding"], layer.attrs["groups"], layer.out_shape[2:])
        for t in candidate_tilings(low, cfg, gemm=layer.gemm):
            asm = assemble_layer(cfg, t, x, layer.gemm_weight(), bias=bias, raw=True)
            got = asm.collect(GoldenAccelerator(cfg).run(asm.program, asm.data_in))
            np.testing.assert_array_equal(got, nm.wrap(want + bias, cfg.acc_width),
                                          err_msg=f"{layer} {t}")


def test_many_blocks_and_modes_compute_the_layer(node_seed):
    """Convs too large for the scratchpads: many P blocks through a ring (one channel block),
    two regions (three blocks: no ring) and a single region (weights not resident),
    requantized with ReLU."""
    cfg = ArrayConfig(rows=2, cols=2, n=2, m=4, act_buffer_kib=2, weight_buffer_kib=1,
                      acc_buffer_kib=1)
    rng = np.random.default_rng(node_seed)
    modes = set()
    for c_in, h in ((8, 27), (20, 12)):       # 1 row per pixel (a ring); 3 (no ring)
        layer = Layer("conv", "conv2d", (1, c_in, h, 10), (1, 24, h, 10),
                      weight=rng.integers(-128, 128, (24, c_in, 3, 3)),
                      attrs={"kernel": (3, 3), "stride": (1, 1), "padding": (1, 1),
                             "groups": 1})
        x = rng.integers(-128, 128, (1, h, 10, c_in))
        mult, shift = rng.integers(1, 1 << 15, 24), rng.integers(8, 24, 24)
        want = nm.requantize(direct_conv(x, layer.weight, (1, 1), (1, 1), 1, (h, 10)), mult,
                             shift, relu=True)
        for t in candidate_tilings(lower_layer(layer, cfg), cfg, gemm=layer.gemm):
            if t.acts in modes:
                continue
            asm = assemble_layer(cfg, t, x, layer.gemm_weight(), multiplier=mult, shift=shift,
                                 relu=True)
            got = asm.collect(GoldenAccelerator(cfg).run(asm.program, asm.data_in))
            np.testing.assert_array_equal(got, want)
            assert t.p_blocks > 1
            modes.add(t.acts)
    assert modes == {"ring", "double", "single"}


def test_sliced_linear_computes_the_layer(node_seed):
    """A linear layer whose pixels are many channel blocks: each K pass's slice of a P block
    loads while the one before computes (and every other mode), requantized."""
    rng = np.random.default_rng(node_seed)
    cfg = ArrayConfig(rows=2, cols=2, n=2, m=4, **SMALL)
    p, k, c = 150, 5 * cfg.k_per_pass - 3, 7
    x = rng.integers(-128, 128, (p, k))
    w = random_nm_weights(rng, k, c, cfg.n, cfg.m)
    mult, shift = rng.integers(1, 1 << 15, c), rng.integers(8, 24, c)
    want = nm.requantize(x @ w, mult, shift)
    modes = set()
    for t in candidate_tilings(linear_lowering(cfg, Gemm(p=p, k=k, cols=c), pruned=True), cfg):
        asm = assemble_layer(cfg, t, x, w[None], multiplier=mult, shift=shift)
        np.testing.assert_array_equal(
            asm.collect(GoldenAccelerator(cfg).run(asm.program, asm.data_in)), want)
        modes.add(t.acts)
    assert "sliced" in modes


@pytest.mark.parametrize(("cfg", "sparse"), _cases([
    ArrayConfig(rows=2, cols=2, n=2, m=4, **SMALL), ArrayConfig(rows=4, cols=3, n=1, m=4, **SMALL),
    ArrayConfig(rows=2, cols=4, n=1, m=1, **SMALL), ArrayConfig(rows=8, cols=8, n=2, m=4)]))
def test_assembled_gemm_computes_the_layer(cfg, sparse, rng):
    p, k, c = (int(v) for v in rng.integers(1, 90, size=3))
    w = random_nm_weights(rng, k, c, cfg.n, cfg.m) if sparse else rng.integers(-128, 128, (k, c))
    x = rng.integers(-128, 128, (p, k))
    bias = rng.integers(-(1 << 20), 1 << 20, c)
    mult, shift = rng.integers(1, 1 << 15, c), rng.integers(8, 24, c)
    asm = assemble_gemm(cfg, x, w, sparse=sparse, bias=bias, multiplier=mult, shift=shift)
    got = asm.collect(GoldenAccelerator(cfg).run(asm.program, asm.data_in))
    want = nm.requantize(np.asarray(x) @ np.asarray(w) + bias[None, :], mult, shift)
    np.testing.assert_array_equal(got, want)
    raw = assemble_gemm(cfg, x, w, sparse=sparse, bias=bias, raw=True)
    got_raw = raw.collect(GoldenAccelerator(cfg).run(raw.program, raw.data_in))
    np.testing.assert_array_equal(got_raw, np.asarray(x) @ np.asarray(w) + bias[None, :])


def test_stores_name_their_real_columns_and_run_from_memory(rng):
    """Each STORE says how many of its columns are the layer's (the AXI top writes only those):
    over the STOREs, rows x columns is every output once; linked into memory, the program
    stores exactly the stream program's rows cut to those columns."""
    cfg = ArrayConfig(rows=2, cols=4, n=2, m=4, **SMALL)
    p, k, c = 7, 19, 10                       # 10 columns: tiles of 4, 4 and 2
    w = random_nm_weights(rng, k, c, cfg.n, cfg.m)
    x = rng.integers(-128, 128, (p, k))
    asm = assemble_gemm(cfg, x, w, sparse=True, multiplier=np.ones(c, dtype=np.int64),
                        shift=np.zeros(c, dtype=np.int64))
    stores = [i for i in asm.program if i.opcode == Opcode.STORE]
    assert sum(i.count * i.channels for i in stores) == p * c
    mp = link(cfg, asm.program, asm.data_in, rng=rng)
    memory = mp.image()
    GoldenAccelerator(cfg).run_in_memory(mp.program, memory)
    rows = GoldenAccelerator(cfg).run(asm.program, asm.data_in)
    per_row = [i for i in stores for _ in range(i.count)]
    cut = [row[:i.channels] for i, row in zip(per_row, rows, strict=True)]
    got = mp.read_outputs(cfg, lambda a, n: bytes(memory[a:a + n]))
    for g, e in zip(got, cut, strict=True):
        np.testing.assert_array_equal(g, e)


@pytest.mark.parametrize("sparse", [True, False])
def test_stacked_gemms_compute_each_group(sparse, node_seed):
    """A matmul's groups: independent GEMMs stacked along P, each with its own weights."""
    rng = np.random.default_rng(node_seed)
    cfg = ArrayConfig(rows=2, cols=2, n=2, m=4, **SMALL)
    groups, p, k, c = 3, 37, 19, 5
    w = np.stack([random_nm_weights(rng, k, c, cfg.n, cfg.m) if sparse else
                  rng.integers(-128, 128, (k, c)) for _ in range(groups)])
    x = rng.integers(-128, 128, (groups * p, k))
    for t in candidate_tilings(linear_lowering(cfg, Gemm(p=p, k=k, cols=c, groups=groups),
                                               pruned=sparse), cfg):
        assert t.stack == groups
        asm = assemble_layer(cfg, t, x, w, raw=True)
        got = asm.collect(GoldenAccelerator(cfg).run(asm.program, asm.data_in))
        want = np.concatenate([x[g * p:(g + 1) * p] @ w[g] for g in range(groups)])
        np.testing.assert_array_equal(got, want)


def test_sparse_layer_must_satisfy_the_pattern():
    cfg = ArrayConfig(rows=2, cols=2, n=1, m=4)
    w = np.ones((8, 2), dtype=np.int64)
    with pytest.raises(nm.NMPatternError, match="column 0, group 0"):
        assemble_gemm(cfg, np.ones((3, 8), dtype=np.int64), w, sparse=True)


def test_bad_input_shape_is_a_clear_error():
    cfg = ArrayConfig(rows=2, cols=2, n=2, m=4)
    layer = Layer("conv", "conv2d", (1, 8, 6, 6), (1, 4, 6, 6),
                  weight=np.ones((4, 8, 3, 3), dtype=np.int64),
                  attrs={"kernel": (3, 3), "stride": (1, 1), "padding": (1, 1), "groups": 1})
    t = candidate_tilings(lower_layer(layer, cfg), cfg)[0]
    with pytest.raises(ValueError, match="36 pixels of 8 channels"):
        assemble_layer(cfg, t, np.ones((1, 6, 5, 8), dtype=np.int64), layer.gemm_weight())
