"""Drives the Verilated array from Python with ``pyverilator`` (for long programs, no cocotb).

The driver keeps the same stream discipline as the cocotb testbenches (inputs applied with the
clock low, handshakes sampled after the combinational logic has settled, then a rising edge), so
its cycle counts obey the same contract (:mod:`sparsa.sw.timing`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sparsa.config import ArrayConfig
from sparsa.hw.export import export_verilog

from . import pyverilator_compat as pvc
from .amaranth_sim import ArrayRun
from .encode import decode_psum, tile_beats
from .stimulus import Tile

__all__ = ["PyVerilatorArray", "reset", "stream_cycle"]


def reset(sim, idle_inputs: Sequence[str], cycles: int = 2) -> None:
    """Drive ``idle_inputs`` (valid/ready ports) low and hold ``rst`` for ``cycles`` cycles."""
    for port in idle_inputs:
        pvc.set_port(sim, port, 0)
    pvc.set_port(sim, "clk", 0)
    pvc.set_port(sim, "rst", 1)
    pvc.tick(sim, cycles)
    pvc.set_port(sim, "rst", 0)


def stream_cycle(sim, sources: dict[str, deque], sink: str) -> tuple[list[str], int | None]:
    """One clock cycle of ideal streams: every source presents the head of its queue (valid
    while the queue is not empty), the sink is always ready. Accepted beats are popped; returns
    the names of those sources and the sink's payload if a beat left, then clocks once."""
    for name, queue in sources.items():
        if queue:
            pvc.set_port(sim, f"{name}__payload", queue[0])
        pvc.set_port(sim, f"{name}__valid", int(bool(queue)))
    fired = [name for name, queue in sources.items()
             if queue and pvc.get_port(sim, f"{name}__ready")]
    out = pvc.get_port(sim, f"{sink}__payload") if pvc.get_port(sim, f"{sink}__valid") else None
    for name in fired:
        sources[name].popleft()
    pvc.tick(sim)
    return fired, out


class PyVerilatorArray:
    """A Verilated :class:`~sparsa.hw.SystolicArray` for ``cfg``, built into ``build_dir``."""

    def __init__(self, cfg: ArrayConfig, build_dir: str | Path):
        self.cfg = cfg
        build_dir = Path(build_dir)
        paths = export_verilog(cfg, build_dir / "rtl", top="array")
        self.sim = pvc.build(paths.verilog, paths.module, build_dir / "pyverilator",
                             extra_args=["-Wno-fatal"])
        reset(self.sim, ["weight__valid", "act__valid", "psum_in__valid", "psum__ready"])

    def run_tiles(self, tiles: Sequence[Tile], *, max_cycles: int = 10_000_000) -> ArrayRun:
        """Stream ``tiles`` back to back (each next weight tile loads while the previous one
        computes); every stream always valid, output always ready."""
        cfg, sim = self.cfg, self.sim
        beats = [tile_beats(cfg, t) for t in tiles]
        queues = {
            "weight": deque(w for b in beats for w in b.weight),
            "act": deque(a for b in beats for a in b.act),
            "psum_in": deque(p for b in beats for p in b.psum_in),
        }
        total = sum(t.beats for t in tiles)
        received: list[int] = []
        first_weight = last_psum = None
        pvc.set_port(sim, "psum__ready", 1)
        for cycle in range(max_cycles):
            fired, out = stream_cycle(sim, queues, "psum")
            if out is not None:
                received.append(out)
                last_psum = cycle
            if "weight" in fired and first_weight is None:
                first_weight = cycle
            if len(received) == total:
                break
        else:
            raise TimeoutError(f"array produced {len(received)} of {total} beats in "
                               f"{max_cycles} cycles")
        for name in queues:
            pvc.set_port(sim, f"{name}__valid", 0)
        decoded = np.array([decode_psum(cfg, r) for r in received]).reshape(total, cfg.cols)
        outputs, start = [], 0
        for t in tiles:
            outputs.append(decoded[start:start + t.beats])
            start += t.beats
        return ArrayRun(outputs=outputs, cycles=last_psum - first_weight + 1)
