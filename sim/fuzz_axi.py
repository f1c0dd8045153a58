"""Fuzzing the memory-mapped accelerator on the native AXI harness (the second campaign of
``make fuzz``), with :mod:`sparsa.sim.fuzz`'s shrinker.

Random programs, the tile batches of :func:`sparsa.sim.fuzz.tile_program` and the random GEMM
and conv programs of :mod:`sparsa.sim.programs` (:func:`sparsa.sim.fuzz.random_cases`), are laid
out in memory by :func:`~sparsa.sim.memory_image.link` (random region offsets, row gaps and
pixel strides; one in ten dense and aligned) and run on
:class:`~sparsa.sim.native_axi.NativeAxiAccelerator` (one harness process per program: it fetches
the program and moves every operand over AXI4), each with a memory read latency drawn from 1 to
40 cycles, on :data:`AXI_CONFIGS` (dense, 2:4, 1:4, 2:8, pipeline depths 0-2, odd shapes,
32- to 256-bit buses). Every program is checked three ways (:func:`check`):

* the whole memory afterwards == :meth:`GoldenAccelerator.run_in_memory
  <sparsa.sim.golden_accel.GoldenAccelerator.run_in_memory>` on the same image;
* ``run_cycles`` == :func:`sparsa.sw.top_timing.top_timing`'s;
* the counters == :func:`~sparsa.sw.accel_timing.program_counts`, with ``gated_macs`` the
  golden's, ``insns_fetched`` the program's length and the AXI beat counters the C++ memory's
  own counts;

and GEMM/conv programs' outputs against their independent reference. A mismatch is shrunk
(latency 1 and a dense layout tried, then :func:`sparsa.sim.fuzz.minimize`: instructions with
their data removed, data zeroed) and its linked image written to
``build/fuzz/axi-repro-<seed>-<n>.json``, replayed by ``python -m sparsa.sim.fuzz_axi --replay
FILE``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from sparsa.config import ArrayConfig
from sparsa.isa import INSN_BYTES, Instruction, Opcode
from sparsa.sw.accel_timing import program_counts
from sparsa.sw.top_timing import top_timing

from . import fuzz
from .golden_accel import GoldenAccelerator, ProgramError
from .memory_image import MemoryProgram, OutputRegion, link
from .native_axi import PAD_BYTES, AxiNativeResult, NativeAxiAccelerator

__all__ = ["AXI_CONFIGS", "AxiCase", "AxiRunner", "AxiStats", "check", "main", "replay",
           "run_axi_campaign", "run_axi_job", "shrink"]

_BUS = {"4x4-dense-d1": 32, "4x4-2of4-d0": 64, "4x4-1of4-d2": 256, "3x4-2of8-d1": 128,
        "3x5-2of4-d2": 32, "5x3-dense-d0": 256, "8x8-2of4-d1": 128}
AXI_CONFIGS: dict[str, ArrayConfig] = {
    f"{name}-axi{bits}": replace(fuzz.CONFIGS[name], axi_data_bits=bits)
    for name, bits in _BUS.items()}
MAX_LATENCY = 40
PROGRAMS = 10_000          # programs of a full AXI campaign (--scale 1)
JOB = (12, 64)             # programs per job, most tiles of a tile batch
MAX_CYCLES = 3_000_000     # per program: a hang costs seconds, not minutes
REPLAY = "-m sparsa.sim.fuzz_axi --replay"


@dataclass
class AxiCase:
    """One program in its stream form (:class:`sparsa.sim.fuzz.Case`'s ``program`` and
    ``data_in``), the read ``latency`` it runs at and the seed of its memory ``layout`` (None:
    regions aligned, rows dense)."""

    program: list[Instruction]
    data_in: list[int]
    latency: int = 1
    layout: int | None = None
    reference: object = None     # a GemmProgram/ConvProgram (independent expectation) or None

    @property
    def tiles(self) -> int:
        return sum(i.opcode == Opcode.COMPUTE for i in self.program)

    def linked(self, cfg: ArrayConfig) -> MemoryProgram:
        rng = None if self.layout is None else np.random.default_rng(self.layout)
        return link(cfg, self.program, self.data_in, rng=rng)


def axi_cases(cfg: ArrayConfig, rng: np.random.Generator, *, programs: int, max_tiles: int
              ) -> list[AxiCase]:
    """``programs`` random programs, half of them tile batches (1 to ``max_tiles`` tiles), each
    with a random latency (1 a fifth of the time, else 2 to :data:`MAX_LATENCY`) and layout."""
    tile_programs = int(rng.binomial(programs, 0.5))
    cases = fuzz.random_cases(cfg, rng, tile_programs=tile_programs,
                              other_programs=programs - tile_programs,
                              tiles=int(rng.integers(1, max_tiles + 1)))
    out = []
    for case in cases:
        latency = 1 if rng.random() < 0.2 else int(rng.integers(2, MAX_LATENCY + 1))
        layout = None if rng.random() < 0.1 else int(rng.integers(0, 2**63))
        out.append(AxiCase(case.program, case.data_in, latency, layout, case.reference))
    return out


# -- running and checking -------------------------------------------------------------------

Result = AxiNativeResult | Exception
AxiRun = Callable[[ArrayConfig, MemoryProgram, int], Result]


class AxiRunner:
    """Runs linked programs on the native AXI executables, one per configuration; a run that
    fails (timeout, AXI protocol violation, bad status) returns its RuntimeError."""

    def __init__(self):
        self.sims: dict[str, NativeAxiAccelerator] = {}

    def sim(self, cfg: ArrayConfig) -> NativeAxiAccelerator:
        """``cfg``'s executable, built (or found) on first use and kept."""
        key = cfg.to_json()
        if key not in self.sims:
            self.sims[key] = NativeAxiAccelerator(cfg, max_cycles=MAX_CYCLES)
        return self.sims[key]

    def __call__(self, cfg: ArrayConfig, mp: MemoryProgram, latency: int) -> Result:
        sim = self.sim(cfg)
        sim.latency = latency
        try:
            return sim.run(mp)
        except RuntimeError as exc:
            return exc


def check(cfg: ArrayConfig, mp: MemoryProgram, latency: int, result: Result,
          reference: object = None) -> list[str]:
    """What differs between ``result`` and the golden memory, the predicted counters, the top's
    cycle model and (when given) the GEMM/conv ``reference``."""
    if isinstance(result, Exception):
        return [f"harness: {result}"]
    memory = mp.image() + bytearray(PAD_BYTES)
    golden = GoldenAccelerator(cfg)
    golden.run_in_memory(mp.program, memory)
    bad = []
    if result.memory != memory:
        got, want = np.frombuffer(result.memory, np.uint8), np.frombuffer(memory, np.uint8)
        differ = np.flatnonzero(got != want) if len(got) == len(want) else [0]
        bad.append(f"memory: {len(differ)} bytes differ from the golden run's, first at "
                   f"{int(differ[0]):#x} ({len(got)} bytes for {len(want)})")
    expected = {**program_counts(cfg, mp.program), "gated_macs": golden.gated_macs,
                "insns_fetched": len(mp.program), "axi_read_beats": result.read_beats,
                "axi_write_beats": result.write_beats}
    wrong = {k: (result.counters[k], v) for k, v in expected.items() if result.counters[k] != v}
    if wrong:
        bad.append(f"counters (got, predicted): {wrong}")
    try:
        predicted = top_timing(cfg, mp.program, latency=latency,
                               prog_base=mp.prog_base).run_cycles
    except Exception as exc:   # the cycle model's failure is a mismatch to shrink, too
        predicted = f"none, top_timing raised {type(exc).__name__}: {exc}"
    if result.run_cycles != predicted:
        bad.append(f"cycles: run_cycles {result.run_cycles} != {predicted} predicted "
                   f"(top_timing, latency {latency})")
    if reference is not None and not bad:
        want_out = reference.reference(cfg.acc_width, cfg.act_width)
        got_out = reference.collect(result.outputs, cfg.cols)
        if any(not np.array_equal(a, b) for a, b in zip(want_out, got_out, strict=True)):
            bad.append("reference: outputs differ from the independent reference")
    return bad


def run_case(cfg: ArrayConfig, case: AxiCase, runner: AxiRun
             ) -> tuple[MemoryProgram, Result, list[str]]:
    """Link ``case``, run it, check it."""
    mp = case.linked(cfg)
    result = runner(cfg, mp, case.latency)
    return mp, result, check(cfg, mp, case.latency, result, case.reference)


# -- shrinking and reproducers --------------------------------------------------------------


def shrink(cfg: ArrayConfig, case: AxiCase, runner: AxiRun, *, max_tries: int = 1000
           ) -> AxiCase:
    """A smaller case that still fails the same way (the same kinds of mismatch): latency 1 and
    a dense layout if they still fail, then :func:`sparsa.sim.fuzz.minimize` over programs not
    :func:`~sparsa.sim.fuzz.undefined`. Every try is relinked and run (at most ``max_tries``);
    ``case`` itself if it passes now."""
    kind = fuzz._kind(run_case(cfg, case, runner)[2])
    if not kind:            # no longer fails: nothing to shrink towards
        return case

    def fails(candidate: AxiCase) -> bool:
        if fuzz.undefined(candidate.program):
            return False
        try:   # a program the golden model rejects may hang the hardware: not run
            GoldenAccelerator(cfg).run(candidate.program, candidate.data_in)
            problems = run_case(cfg, candidate, runner)[2]
        except (ProgramError, ValueError):
            return False
        return bool(problems) and fuzz._kind(problems) >= kind

    return fuzz.minimize(replace(case, reference=None), fails,
                         simpler=({"latency": 1}, {"layout": None}), max_tries=max_tries)


def save_repro(path: Path, cfg: ArrayConfig, case: AxiCase, problems: list[str], seed: int,
               original: int) -> str:
    """Write ``case`` linked (its memory image, so the replay does not depend on
    :func:`link`) to ``path`` (JSON); returns the command that replays it."""
    mp = case.linked(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "campaign": "axi", "config": json.loads(cfg.to_json()), "seed": seed,
        "mismatch": problems, "instructions_before_shrinking": original,
        "latency": case.latency, "layout": case.layout, "prog_base": mp.prog_base,
        "prog_len": mp.prog_len, "size": mp.size,
        "instructions": [str(i) for i in mp.program],
        "segments": [[hex(a), bytes(d).hex()] for a, d in mp.segments]}, indent=1) + "\n")
    return f"{sys.executable} {REPLAY} {path}"


def load_repro(path: Path) -> tuple[ArrayConfig, MemoryProgram, int]:
    """``(config, linked program, latency)`` of a reproducer."""
    raw = json.loads(Path(path).read_text())
    if raw.get("campaign") != "axi":
        raise ValueError("not a reproducer of the AXI campaign (python -m sparsa.sim.fuzz "
                         "--replay replays the core's)")
    cfg = ArrayConfig.from_json(json.dumps(raw["config"]))
    segments = tuple((int(a, 16), bytes.fromhex(d)) for a, d in raw["segments"])
    mp = MemoryProgram(program=(), segments=segments, prog_base=raw["prog_base"],
                       prog_len=raw["prog_len"], outputs=(), size=raw["size"])
    words = mp.image()[mp.prog_base:mp.prog_base + mp.prog_len]
    program = tuple(Instruction.decode(int.from_bytes(words[i:i + INSN_BYTES], "little"))
                    for i in range(0, len(words), INSN_BYTES))
    outputs = tuple(OutputRegion(i.dram, i.stride, i.count, i.channels, i.raw)
                    for i in program if i.opcode == Opcode.STORE)
    return cfg, replace(mp, program=program, outputs=outputs), int(raw["latency"])


def replay(path: Path, runner: AxiRun | None = None) -> list[str]:
    """The mismatches of the reproducer at ``path`` now (empty: it passes)."""
    cfg, mp, latency = load_repro(path)
    return check(cfg, mp, latency, (runner or AxiRunner())(cfg, mp, latency))


# -- the campaign ---------------------------------------------------------------------------


@dataclass
class AxiStats(fuzz.Stats):
    """:class:`sparsa.sim.fuzz.Stats` (``per_config`` counts programs here), with programs
    per read latency."""

    latencies: dict[int, int] = field(default_factory=dict)

    def add(self, other: AxiStats) -> None:
        super().add(other)
        for k, v in other.latencies.items():
            self.latencies[k] = self.latencies.get(k, 0) + v


def run_axi_job(name: str, seed: int, programs: int, max_tiles: int,
                runner: AxiRun | None = None, cfg: ArrayConfig | None = None) -> AxiStats:
    """``programs`` programs on configuration ``name`` (``cfg``: another configuration under
    that name), drawn from ``seed``: linked, run, checked."""
    cfg = cfg or AXI_CONFIGS[name]
    rng = np.random.default_rng(seed)
    runner = runner or _runner()
    stats = AxiStats()
    for i, case in enumerate(axi_cases(cfg, rng, programs=programs, max_tiles=max_tiles)):
        _, result, problems = run_case(cfg, case, runner)
        kind = "tile batch" if case.reference is None else type(case.reference).__name__
        kind += ", dense layout" if case.layout is None else ""
        stats.latencies[case.latency] = stats.latencies.get(case.latency, 0) + 1
        stats.record(kind, name, 1, case, 0 if isinstance(result, Exception) else
                     result.run_cycles, (name, seed, i, case, problems) if problems else None)
    return stats


@functools.cache
def _runner() -> AxiRunner:
    """The worker process's runner."""
    return AxiRunner()


def _build(name: str) -> str:
    return str(_runner().sim(AXI_CONFIGS[name]).binary)


def report_mismatches(stats: AxiStats, out_dir: Path, runner: AxiRun,
                      configs: dict[str, ArrayConfig] = AXI_CONFIGS) -> list[str]:
    """Shrink the first five mismatches and write their reproducers; the replay commands."""
    commands = []
    for name, seed, index, case, problems in stats.mismatches[:5]:
        cfg = configs[name]
        print(f"MISMATCH on {name}, job seed {seed}, program {index} (latency {case.latency}):"
              f" {'; '.join(problems)}", flush=True)
        small = shrink(cfg, case, runner)
        small_problems = run_case(cfg, small, runner)[2]
        cmd = save_repro(out_dir / f"axi-repro-{seed}-{index}.json", cfg, small,
                         small_problems or problems, seed, len(case.program))
        print(f"  {fuzz.shrunk(case, small, bool(small_problems))}, latency {small.latency}; "
              f"replay: {cmd}", flush=True)
        commands.append(cmd)
    return commands


def run_axi_campaign(*, seed: int, programs: int, budget: float, workers: int,
                     configs: Sequence[str], out_dir: Path = fuzz.OUT_DIR,
                     job: tuple = JOB) -> AxiStats:
    """Jobs of ``job`` = (programs, most tiles) round-robin over ``configs`` on ``workers``
    processes until ``programs`` programs are checked or ``budget`` seconds (the builds
    included) have passed."""
    start = time.monotonic()
    with ProcessPoolExecutor(workers) as pool:    # build (or find) every executable first
        list(pool.map(_build, configs))
    for name in configs:      # the (forked) jobs and the shrinking run these, whatever changes
        _runner().sim(AXI_CONFIGS[name])
    print(f"fuzz (AXI): seed {seed}, {workers} workers, configurations: {', '.join(configs)} "
          f"(executables ready after {time.monotonic() - start:.0f} s)", flush=True)
    stats = fuzz.run_jobs(run_axi_job, configs, seed, job, stats=AxiStats(), workers=workers,
                          deadline=start + budget, enough=lambda s: s.programs >= programs)
    stats.seconds = time.monotonic() - start
    if stats.mismatches:
        report_mismatches(stats, out_dir, _runner())
    return stats


def _args(argv):
    ap = argparse.ArgumentParser(prog="python -m sparsa.sim.fuzz_axi",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--replay", type=Path, help="replay a reproducer written by a campaign")
    ap.add_argument("--seed", type=int, default=None,
                    help="campaign seed (default: SPARSA_SEED, else the time)")
    ap.add_argument("--scale", type=float, default=None,
                    help=f"fraction of the full campaign of {PROGRAMS:,} programs "
                         f"(default FUZZ_SCALE, else 1)")
    ap.add_argument("--programs", type=int, default=None,
                    help="programs to check (default: the scale's)")
    ap.add_argument("--budget", type=float, default=600.0,
                    help="seconds at most, the builds included")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--configs", default=",".join(AXI_CONFIGS),
                    help="comma-separated names among " + ", ".join(AXI_CONFIGS))
    return ap.parse_args(argv)


def _print_stats(stats: AxiStats, seed: int, configs: Sequence[str]) -> None:
    print(f"fuzz (AXI): {len(configs)} configurations, {stats.programs:,} programs "
          f"({stats.tiles:,} tiles, {stats.cycles:,} run cycles) checked against golden memory, "
          f"counters and top_timing in {stats.seconds:.0f} s; seed {seed}; "
          f"{len(stats.mismatches)} mismatches, {len(stats.errors)} errors")
    print("\n".join(stats.breakdown("programs")))
    bands = {}
    for latency, n in stats.latencies.items():
        band = "1" if latency == 1 else f"{(latency - 2) // 10 * 10 + 2}-" \
                                        f"{min(MAX_LATENCY, (latency - 2) // 10 * 10 + 11)}"
        bands[band] = bands.get(band, 0) + n
    print("  read latency (cycles): " + ", ".join(
        f"{b}: {n:,}" for b, n in sorted(bands.items(), key=lambda bn: int(bn[0].split("-")[0]))))


def main(argv=None) -> int:
    args = _args(argv)
    if args.replay is not None:
        return fuzz.replay_command(args.replay, replay, "sparsa.sim.fuzz_axi")
    scale = fuzz.env_scale(args.scale)
    programs = args.programs if args.programs is not None else round(PROGRAMS * scale)
    if not scale > 0 or programs < 1 or args.workers < 1 or not args.budget > 0:
        print(f"error: scale (FUZZ_SCALE), programs and budget must be positive numbers and "
              f"workers a positive integer, not scale "
              f"{os.environ.get('FUZZ_SCALE', args.scale)!r}, programs {programs}, budget "
              f"{args.budget}, workers {args.workers}", file=sys.stderr)
        return 2
    configs = fuzz.config_names(args.configs, AXI_CONFIGS)
    if configs is None:
        return 2
    seed = fuzz.campaign_seed(args.seed)
    stats = run_axi_campaign(seed=seed, programs=programs, budget=args.budget,
                             workers=args.workers, configs=configs)
    _print_stats(stats, seed, configs)
    if stats.mismatches or stats.errors:
        print(f"rerun: python -m sparsa.sim.fuzz_axi --seed {seed}")
    return 1 if stats.mismatches or stats.errors else 0


if __name__ == "__main__":
    sys.exit(main())
