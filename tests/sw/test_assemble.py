"""The scheduler's program assembled into instructions computes the layer: the golden program
executor's result equals an independent dense computation, for sparse and dense layers."""

from __future__ import annotations

import numpy as np
import pytest

from sparsa import nm
from sparsa.config import ArrayConfig
from sparsa.sim.golden_accel import GoldenAccelerator
from sparsa.sim.stimulus import random_nm_weights
from sparsa.sw.assemble import assemble_gemm

SMALL = dict(act_buffer_kib=1, weight_buffer_kib=1, acc_buffer_kib=1)


@pytest.mark.parametrize("cfg", [ArrayConfig(rows=2, cols=2, n=2, m=4, **SMALL),
                                 ArrayConfig(rows=4, cols=3, n=1, m=4, **SMALL),
                                 ArrayConfig(rows=2, cols=4, n=1, m=1, **SMALL),
                                 ArrayConfig(rows=8, cols=8, n=2, m=4)],
                         ids=lambda c: f"{c.rows}x{c.cols}-{c.n}of{c.m}")
@pytest.mark.parametrize("sparse", [True, False])
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


def test_sparse_layer_must_satisfy_the_pattern():
    cfg = ArrayConfig(rows=2, cols=2, n=1, m=4)
    w = np.ones((8, 2), dtype=np.int64)
    with pytest.raises(nm.NMPatternError, match="column 0, group 0"):
        assemble_gemm(cfg, np.ones((3, 8), dtype=np.int64), w, sparse=True)
