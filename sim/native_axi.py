"""Backend: the Verilated memory-mapped accelerator (:class:`~sparsa.hw.top.AxiAccelerator`) with
its memory inside the simulation, run by a compiled C++ harness (``native/axi_harness.cpp``): no
Python per cycle.

The harness holds the memory (the image of a linked
:class:`~sparsa.sim.memory_image.MemoryProgram`) behind the AXI4 port, with exactly the timing of
:class:`~sparsa.sim.axi_memory.AxiMemory` at pause 0 and the same ``latency`` (read and write
bandwidth are not modelled: the Python memory has none either), and checks the manager's side of
the protocol as it does; any violation fails the run. A C++ host writes ``prog_base``,
``prog_len``, ``irq_enable`` and ``ctrl.start`` over the AXI4-Lite CSR port, waits for ``irq``
(watching the port: no CSR polling) and reads ``status`` and every counter register
(:func:`~sparsa.hw.csr.register_map`). The memory afterwards comes back whole.

:func:`build` compiles once per (configuration, exported Verilog, harness source, options,
Verilator), with the flags of :mod:`sparsa.sim.native`, into :func:`sparsa.sim.native.cache_root`
(folders named ``axi-...``).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sparsa.config import ArrayConfig
from sparsa.hw import layouts
from sparsa.hw.csr import register_map
from sparsa.hw.top import ALL_COUNTERS

from .memory_image import MemoryProgram
from .native import RESET_CYCLES, build_harness

__all__ = ["HARNESS", "PAD_BYTES", "AxiNativeResult", "NativeAxiAccelerator", "build",
           "read_outputs"]

HARNESS = Path(__file__).resolve().parent / "native" / "axi_harness.cpp"
BINARY = "axi_harness"
TOP = "axi_accelerator"
PAD_BYTES = 4096     # memory after the image: bursts may read past its last byte
_MAGIC_IN = int.from_bytes(b"spax-in1", "little")
_MAGIC_OUT = int.from_bytes(b"spaxout1", "little")
_OUT_FIELDS = 11
_STATUS_DONE_IRQ = 0b1010      # status: done and irq pending, not busy, no error
_FAILURES = {1: "timed out", 2: "broke the AXI protocol", 3: "got a CSR error response"}


def build(cfg: ArrayConfig, *, waves: bool | None = None, root: str | Path | None = None) -> Path:
    """The AXI harness executable for ``cfg``, built unless cached; returns its path.
    ``waves``: VCD tracing (default: ``WAVES=1`` in the environment). Cached as
    :func:`sparsa.sim.native.build` caches the core's harness, in the same root."""
    return build_harness(cfg, top=TOP, harness=HARNESS, binary=BINARY, waves=waves, root=root)


@dataclass(frozen=True)
class AxiNativeResult:
    """One program run: ``memory`` afterwards (the image plus :data:`PAD_BYTES`), ``outputs``
    (the STOREd rows read back, :meth:`MemoryProgram.read_outputs`), ``counters`` as the host
    read them (every name of :data:`~sparsa.hw.top.ALL_COUNTERS`), ``status`` (the register),
    ``run_cycles`` (the counter: cycles with ``status.busy``), ``cycles`` (the cycles after the
    ctrl write's response until ``irq``, as :func:`~sparsa.sim.axi_memory.run_top` counts),
    ``simulated`` (every cycle the harness clocked after reset), ``read_beats`` and
    ``write_beats`` (the memory's counts), ``seconds`` and ``cpu_seconds`` (wall and CPU time of
    its cycle loop: on a loaded machine the wall time includes the waits for a core)."""

    memory: bytearray
    outputs: list[np.ndarray]
    counters: dict[str, int]
    status: int
    run_cycles: int
    cycles: int
    simulated: int
    read_beats: int
    write_beats: int
    seconds: float
    cpu_seconds: float


def read_outputs(cfg: ArrayConfig, mp: MemoryProgram, memory: bytes | bytearray
                 ) -> list[np.ndarray]:
    """:meth:`MemoryProgram.read_outputs` on ``memory``, one gather per STORE (a layer's
    program has tens of thousands of rows)."""
    whole = np.frombuffer(memory, dtype=np.uint8)
    rows: list[np.ndarray] = []
    for out in mp.outputs:
        size = (cfg.acc_width if out.raw else cfg.act_width) // 8
        if size not in (1, 2, 4, 8):      # no NumPy integer of that width
            return mp.read_outputs(cfg, lambda a, n: bytes(memory[a:a + n]))
        at = out.dram + out.stride * np.arange(out.count)[:, None] + np.arange(out.channels * size)
        values = np.ascontiguousarray(whole[at]).view(f"<i{size}").astype(np.int64)
        rows += list(values.reshape(out.count, out.channels))
    return rows


class NativeAxiAccelerator:
    """The memory-mapped accelerator for ``cfg`` as a native executable (:func:`build`), with
    memory of read latency ``latency`` cycles (:class:`~sparsa.sim.axi_memory.AxiMemory`'s,
    pause 0). ``max_cycles``: the run fails beyond it."""

    def __init__(self, cfg: ArrayConfig, *, latency: int = 1, max_cycles: int = 100_000_000,
                 cache: str | Path | None = None, waves: str | Path | None = None):
        if not isinstance(cfg, ArrayConfig):
            raise TypeError(f"cfg must be an ArrayConfig, not {cfg!r}")
        if isinstance(latency, bool) or not isinstance(latency, int) or latency < 1:
            raise ValueError(f"latency must be an integer of at least 1 cycle, not {latency!r}")
        self.cfg, self.latency, self.max_cycles = cfg, latency, max_cycles
        if waves is None and os.environ.get("WAVES") == "1":
            waves = Path("build/sim/native_axi.vcd")
        self.waves = None if waves is None else Path(waves).resolve()
        if self.waves is not None:
            self.waves.parent.mkdir(parents=True, exist_ok=True)
        self.binary = build(cfg, waves=self.waves is not None, root=cache)
        self.registers = {r.name: r.offset for r in register_map(layouts.counters(ALL_COUNTERS))}

    def run(self, mp: MemoryProgram) -> AxiNativeResult:
        """Run the linked program ``mp`` from its image (plus :data:`PAD_BYTES` of zeros)."""
        image = mp.image() + bytearray(PAD_BYTES)
        result = self.run_image(image, prog_base=mp.prog_base, prog_len=mp.prog_len)
        return dataclasses.replace(result, outputs=read_outputs(self.cfg, mp, result.memory))

    def run_image(self, image: bytes | bytearray, *, prog_base: int, prog_len: int
                  ) -> AxiNativeResult:
        """Run the program at ``prog_base`` with ``image`` as the whole memory (``outputs``
        empty: the caller knows where they are)."""
        with tempfile.TemporaryDirectory(prefix="sparsa-native-axi-") as tmp:
            src, dst = Path(tmp) / "memory.bin", Path(tmp) / "result.bin"
            src.write_bytes(self.encode(image, prog_base=prog_base, prog_len=prog_len))
            cmd = [str(self.binary), str(src), str(dst)]
            if self.waves is not None:
                cmd.append(str(self.waves))
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            raw = dst.read_bytes() if dst.is_file() else b""
        if proc.returncode != 0 or len(raw) < 8 * _OUT_FIELDS:
            raise RuntimeError(f"the native AXI harness {self.binary} failed "
                               f"(exit {proc.returncode}): {proc.stderr.strip()}")
        return self._decode(raw, len(image), proc.stderr.strip())

    def encode(self, image: bytes | bytearray, *, prog_base: int, prog_len: int) -> bytes:
        """The harness's input file for a run of the program at ``prog_base`` in ``image``."""
        regs = self.registers
        head = [_MAGIC_IN, self.cfg.axi_data_bits // 8, len(image), self.latency,
                self.max_cycles, RESET_CYCLES, prog_base, prog_len,
                *(regs[n] for n in ("ctrl", "status", "irq_enable", "prog_base", "prog_base_hi",
                                    "prog_len", ALL_COUNTERS[0])),
                len(ALL_COUNTERS)]
        return np.array(head, dtype="<u8").tobytes() + bytes(image)

    def _decode(self, raw: bytes, size: int, stderr: str) -> AxiNativeResult:
        head = [int(v) for v in np.frombuffer(raw, dtype="<u8", count=_OUT_FIELDS)]
        magic, status, simulated, start, irq, wall_ns, cpu_ns, errors, reads, writes, reg = head
        if magic != _MAGIC_OUT:
            raise RuntimeError("the native AXI harness wrote no valid result")
        if status:
            detail = f" ({errors} AXI protocol errors)" if errors else ""
            raise RuntimeError(f"the program on the native AXI accelerator {_FAILURES[status]}"
                               f" after {simulated} cycles{detail}: {stderr or 'no message'}")
        pos = 8 * _OUT_FIELDS
        counts = np.frombuffer(raw, dtype="<u4", count=len(ALL_COUNTERS), offset=pos)
        counters = dict(zip(ALL_COUNTERS, (int(c) for c in counts), strict=True))
        memory = bytearray(raw[pos + 4 * len(ALL_COUNTERS):])
        if len(memory) != size:
            raise RuntimeError(f"the native AXI harness returned {len(memory)} bytes of memory, "
                               f"not {size}")
        if reg != _STATUS_DONE_IRQ:
            raise RuntimeError(f"status {reg:#06b} after irq: expected done and irq only "
                               f"(bit 2: a DMA error)")
        return AxiNativeResult(memory=memory, outputs=[], counters=counters, status=reg,
                               run_cycles=counters["run_cycles"], cycles=irq - start - 1,
                               simulated=simulated, read_beats=reads, write_beats=writes,
                               seconds=wall_ns / 1e9, cpu_seconds=cpu_ns / 1e9)
