"""The tile cycle contract's closed forms against a cycle-by-cycle walk of the protocol."""

from __future__ import annotations

import itertools

import pytest

from sparsa.config import ArrayConfig
from sparsa.sw import timing


def walk(cfg: ArrayConfig, beats: list[int]) -> int:
    """Step the array's handshake rules one cycle at a time (streams always valid, output always
    ready): weight row r of the next tile may be written once ``since_swap >= r + cols - 3``
    (``since_swap`` counts cycles after the swap beat's cycle, starting at 0), a swap beat needs
    a full shadow bank, outputs leave ``rows + cols - 1 + pipeline_depth`` cycles after their
    input."""
    rows, cols = cfg.rows, cfg.cols
    cycle, tile, beat, wrow, loaded_tiles = 0, 0, 0, 0, 0
    shadow_full, since_swap = False, 10**9
    last_input = None
    while tile < len(beats):
        swap_now = False
        # act/psum_in beat
        if beat == 0:
            if shadow_full:
                swap_now, beat = True, 1
                last_input = cycle
        else:
            beat += 1
            last_input = cycle
        # weight beat (not in the cycle the swap happens: the shadow is still full then)
        if not shadow_full and not swap_now and loaded_tiles < len(beats) \
                and since_swap >= wrow + cols - 3:
            wrow += 1
            if wrow == rows:
                wrow, shadow_full, loaded_tiles = 0, True, loaded_tiles + 1
        if swap_now:
            shadow_full, since_swap = False, -1
        since_swap += 1
        if beat == beats[tile] and beat > 0:
            tile, beat = tile + 1, 0
        cycle += 1
    return last_input + cfg.rows + cfg.cols - 1 + cfg.pipeline_depth + 1


SHAPES = [(r, c) for r, c in itertools.product([1, 2, 3, 4, 8], [1, 2, 3, 4, 8])]


@pytest.mark.parametrize("depth", [0, 1, 2])
@pytest.mark.parametrize(("rows", "cols"), SHAPES)
def test_closed_form_matches_walk(rows, cols, depth):
    cfg = ArrayConfig(rows=rows, cols=cols, n=2, m=4, pipeline_depth=depth)
    for counts in ([1], [5], [1, 1, 1], [2, 30, 1, 7], [17, 16, 15, 14], [100, 1, 100]):
        assert timing.tile_sequence_cycles(cfg, counts) == walk(cfg, counts), counts
    assert timing.tile_cycles(cfg, 9) == walk(cfg, [9])


def test_isolated_tile_is_load_stream_drain():
    cfg = ArrayConfig(rows=8, cols=8, n=2, m=4)
    for p in (1, 10, 1000):
        assert timing.tile_cycles(cfg, p) == cfg.rows + p + (cfg.rows + cfg.cols - 1)


def test_long_tiles_hide_loads():
    """Once P covers a whole load window the sequence costs first load + sum(P) + drain."""
    cfg = ArrayConfig(rows=4, cols=8, n=2, m=8)
    period = timing.array_timing(cfg).tile_period
    counts = [period, period + 3, 50]
    assert timing.tile_sequence_cycles(cfg, counts) == cfg.rows + sum(counts) + 11


@pytest.mark.parametrize("bad", [[], [0], [3, -1], [2.5], [True]])
def test_bad_beat_counts(bad):
    cfg = ArrayConfig()
    with pytest.raises(ValueError, match="tile"):
        timing.tile_sequence_cycles(cfg, bad)
