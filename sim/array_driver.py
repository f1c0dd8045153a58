"""Driver: array tiles through :class:`~sparsa.hw.SystolicArray`'s streams, on any backend.

The ``weight``, ``act`` and ``psum_in`` sources and the ``psum`` sink of :mod:`.streams`, each
with its own random idle/backpressure pattern (one shared generator), stepped together on a
:class:`~sparsa.sim.streams.Harness`. The cocotb testbench, the Amaranth simulator and
pyverilator all run tiles through this one driver.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

import numpy as np

from sparsa.config import ArrayConfig

from .encode import decode_psum, tile_beats
from .stimulus import Tile
from .streams import Harness, RandomGaps, StreamSink, StreamSource, run_cycles

__all__ = ["ArrayDriver", "ArrayRun"]


@dataclass(frozen=True)
class ArrayRun:
    outputs: list[np.ndarray]   # one (P, cols) array per tile, in order
    cycles: int                 # first weight beat accepted .. last psum beat transferred


class ArrayDriver:
    """Runs tiles through the array behind ``harness``. ``idle``: probability that a source
    idles before offering its next beat; ``backpressure``: probability per cycle that the sink
    is not ready; both drawn from ``rng`` (anything with ``random()``)."""

    def __init__(self, cfg: ArrayConfig, harness: Harness, *, rng=None, idle: float = 0.0,
                 backpressure: float = 0.0, max_cycles: int = 10_000_000):
        self.cfg, self.harness, self.max_cycles = cfg, harness, max_cycles
        self.idle = RandomGaps(rng, idle)
        self.backpressure = RandomGaps(rng, backpressure)

    async def run(self, tiles: Sequence[Tile], *, overlap: bool = True) -> ArrayRun:
        """Stream ``tiles``; return their outputs and the cycles from the first weight beat
        accepted to the last output beat transferred. With ``overlap`` the weight source runs
        ahead (the next tile loads while the current one computes); without it, each tile's
        weights are offered only after the previous tile's outputs have all arrived."""
        cfg = self.cfg
        beats = [tile_beats(cfg, t) for t in tiles]
        before = [0, *accumulate(t.beats for t in tiles)]   # output beats before tile i
        total = before[-1]
        psum = StreamSink("psum", pacing=self.backpressure)

        def previous_tiles_out(beat: int) -> bool:
            return len(psum.received) >= before[beat // cfg.rows]

        weight = StreamSource("weight", [w for b in beats for w in b.weight], pacing=self.idle,
                              gate=None if overlap else previous_tiles_out)
        act = StreamSource("act", [a for b in beats for a in b.act], pacing=self.idle)
        psum_in = StreamSource("psum_in", [p for b in beats for p in b.psum_in],
                               pacing=self.idle)
        await run_cycles(self.harness, [weight, act, psum_in, psum],
                         lambda cycle: len(psum.received) >= total, max_cycles=self.max_cycles,
                         status=lambda: f"array produced {len(psum.received)} of {total} beats")
        decoded = [decode_psum(cfg, r) for r in psum.received[:total]]
        outputs = [np.array(decoded[before[i]:before[i + 1]], dtype=np.int64)
                   .reshape(t.beats, cfg.cols) for i, t in enumerate(tiles)]
        cycles = psum.transfers[total - 1] - weight.transfers[0] + 1 if total else 0
        return ArrayRun(outputs=outputs, cycles=cycles)
