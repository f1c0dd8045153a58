"""pyverilator drives the Verilated array from Python: one multi-pass GEMM against golden, and
the cycle contract on a back-to-back tile sequence."""

from __future__ import annotations

import numpy as np
import pytest

from sparsa import nm
from sparsa.config import ArrayConfig
from sparsa.sim.pyverilator_driver import PyVerilatorArray
from sparsa.sim.stimulus import random_gemm
from sparsa.sw import timing


@pytest.mark.rtl
def test_gemm_on_pyverilator(tmp_path, seed_for):
    cfg = ArrayConfig(rows=4, cols=4, n=2, m=4)
    rng = np.random.default_rng(seed_for("pyverilator-array-4x4-2of4"))
    x, w, psum0, tiles = random_gemm(cfg, rng, p=37, passes=3)
    array = PyVerilatorArray(cfg, tmp_path)
    run = array.run_tiles(tiles)
    # The last pass holds the whole GEMM; compare it with an independent dense matmul.
    np.testing.assert_array_equal(run.outputs[-1], nm.gemm_dense(x, w, psum0))
    for tile, got in zip(tiles, run.outputs, strict=True):
        np.testing.assert_array_equal(got, tile.expected)
    assert run.cycles == timing.tile_sequence_cycles(cfg, [t.beats for t in tiles])
