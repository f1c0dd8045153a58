"""Fuzzing the accelerator core on the native backend (``make fuzz``), with a shrinker.

A campaign runs, on two worker processes, random programs on several configurations
(:data:`CONFIGS`: dense, 2:4, 1:4, 2:8, pipeline depths 0-2, odd shapes):

* tile batches (:func:`tile_program`): one CONFIG and LOAD_ACT, a few weight tiles (some
  columns zero, extreme operands at random) loaded, then many random array passes ("tiles"),
  each a weight tile (sometimes loaded again just before) PRELOADed and COMPUTEd over random
  activation rows into accumulators that LOAD_ACC set to extreme partial
  sums (INT32_MIN/INT32_MAX next to negative products), then STOREd raw (and sometimes
  requantized), with fewer output channels than the array has; K from 1 (K < m) to a few
  passes;
* :func:`~sparsa.sim.programs.random_gemm_program` and
  :func:`~sparsa.sim.programs.random_conv_program` programs.

Each batch of programs runs in one harness process
(:meth:`~sparsa.sim.native.NativeAccelerator.execute_batch`), paced by ideal streams, DRAM ports,
or random idle/backpressure up to 0.97 with long stalls (:class:`~sparsa.sim.native.Pace`).
Every program is checked (:func:`check`): outputs bit-exact with the golden executor, counters
== :func:`~sparsa.sw.accel_timing.program_counts` (gated_macs == the golden's), and, without
random pacing, every dispatch and output cycle == :func:`~sparsa.sw.accel_timing.program_timing`;
GEMM and conv programs also against their independent reference. A mismatch is shrunk
(:func:`shrink`: instructions with their data beats removed, data beats zeroed, pacing made
ideal) and written to ``build/fuzz/repro-<seed>.json``, replayed by
``python -m sparsa.sim.fuzz --replay FILE``. A "tile" counted is one COMPUTE checked.
:mod:`sparsa.sim.fuzz_axi` is the memory-mapped accelerator's campaign (``make fuzz`` runs
both); it shares this module's stimulus, :func:`minimize` and :func:`run_jobs`.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from sparsa import im2col, isa, nm
from sparsa.config import ArrayConfig
from sparsa.isa import Instruction, Opcode
from sparsa.sw.accel_timing import program_counts, program_timing

from .golden_accel import GoldenAccelerator, ProgramError
from .native import NativeAccelerator, Pace
from .programs import act_rows, psum_rows, random_conv_program, random_gemm_program, weight_rows
from .stimulus import random_acts

__all__ = ["CONFIGS", "Case", "Stats", "check", "main", "minimize", "random_cases", "replay",
           "run_campaign", "run_jobs", "shrink", "tile_program"]

_BUF = dict(act_buffer_kib=2, weight_buffer_kib=2, acc_buffer_kib=2)
CONFIGS: dict[str, ArrayConfig] = {
    "4x4-dense-d1": ArrayConfig(rows=4, cols=4, n=1, m=1, pipeline_depth=1, **_BUF),
    "4x4-2of4-d0": ArrayConfig(rows=4, cols=4, n=2, m=4, pipeline_depth=0, **_BUF),
    "4x4-1of4-d2": ArrayConfig(rows=4, cols=4, n=1, m=4, pipeline_depth=2, **_BUF),
    "3x4-2of8-d1": ArrayConfig(rows=3, cols=4, n=2, m=8, pipeline_depth=1, **_BUF),
    "3x5-2of4-d2": ArrayConfig(rows=3, cols=5, n=2, m=4, pipeline_depth=2, **_BUF),
    "5x3-dense-d0": ArrayConfig(rows=5, cols=3, n=1, m=1, pipeline_depth=0, **_BUF),
    "8x8-2of4-d1": ArrayConfig(rows=8, cols=8, n=2, m=4, pipeline_depth=1, **_BUF),
}
RATES = (None, 1, 5, 40)          # DRAM bytes per cycle of a batch (None: ideal or random)
MAX_CYCLES = 3_000_000            # per program: a hang costs seconds, not minutes
OUT_DIR = Path("build/fuzz")


@dataclass
class Case:
    """One program as it ran: its pacing, and what else it is checked against."""

    program: list[Instruction]
    data_in: list[int]
    pace: Pace | None = None
    rate: int | None = None
    reference: object = None     # a GemmProgram/ConvProgram (independent expectation) or None

    @property
    def exact(self) -> bool:
        """Whether the cycles are deterministic (checked against the cycle model)."""
        return self.pace is None or not self.pace.random

    @property
    def tiles(self) -> int:
        return sum(i.opcode == Opcode.COMPUTE for i in self.program)


# -- stimulus -------------------------------------------------------------------------------


def _extreme(rng: np.random.Generator, shape, bits: int) -> np.ndarray:
    """Values of ``bits`` bits, half of them at (or one step inside) the ends of the range."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    full = rng.integers(lo, hi + 1, size=shape)
    roll = rng.integers(0, 8, size=shape)
    return np.select([roll == 0, roll == 1, roll == 2, roll == 3], [lo, hi, lo + 1, hi - 1],
                     full)


def _tile_k(cfg: ArrayConfig, rng: np.random.Generator) -> int:
    """K of a tile batch: below m, below one pass, or up to three passes."""
    kp, roll = cfg.k_per_pass, rng.random()
    if roll < 0.2 and cfg.m > 1:
        return int(rng.integers(1, cfg.m))
    if roll < 0.45 and kp > 1:
        return int(rng.integers(1, kp))
    return int(rng.integers(1, 3 * kp + 1))


def _tile_weights(cfg: ArrayConfig, rng: np.random.Generator, extreme: bool) -> np.ndarray:
    """One ``(k_per_pass, cols)`` N:M weight tile (a vectorized
    :func:`~sparsa.sim.stimulus.random_nm_weights`: each group of m keeps n nonzeros at random
    places, sometimes fewer, 15% none), its operands at the ends of the range when ``extreme``,
    its last columns zero at random."""
    g, m, n, cols = cfg.rows, cfg.m, cfg.n, cfg.cols
    rank = np.argsort(np.argsort(rng.random((g, cols, m)), axis=2), axis=2)
    keep = np.where(rng.random((g, cols)) < 0.3, rng.integers(1, n + 1, size=(g, cols)), n)
    keep[rng.random((g, cols)) < 0.15] = 0
    lo = -(1 << (cfg.weight_width - 1))
    vals = _extreme(rng, (g, cols, m), cfg.weight_width) if extreme else \
        rng.integers(lo, -lo, size=(g, cols, m))
    vals[vals == 0] = lo
    w = np.where(rank < keep[..., None], vals, 0).transpose(0, 2, 1).reshape(g * m, cols)
    if rng.random() < 0.4:
        w[:, int(rng.integers(1, cols + 1)):] = 0
    return w


def tile_program(cfg: ArrayConfig, rng: np.random.Generator, *, tiles: int) -> Case:
    """A tile batch of ``tiles`` array passes (module docstring)."""
    k = _tile_k(cfg, rng)
    passes = -(-k // cfg.k_per_pass)
    depth = cfg.scratchpad_rows
    p = int(rng.integers(1, min(2 * (cfg.rows + cfg.cols), depth["act"] // passes) + 1))
    extreme = bool(rng.random() < 0.4)
    x = _extreme(rng, (p, k), cfg.act_width) if extreme else random_acts(rng, p, k,
                                                                         width=cfg.act_width)
    x = np.where(rng.random(x.shape) < rng.random() * 0.5, 0, x)
    geom = im2col.linear_geometry(p, k)
    prog = [im2col.config_instruction(cfg, geom),
            Instruction(Opcode.LOAD_ACT, addr=0, count=passes * p, channels=k, tag=0, pixels=p)]
    data = act_rows(cfg, x)
    regions, slots = max(1, min(4, depth["acc"] // p)), min(6, depth["weight"] // cfg.rows)
    for slot in range(int(rng.integers(1, slots + 1))):
        _load_weights(cfg, rng, prog, data, slot * cfg.rows, extreme)
    loaded = len(prog) - 2
    written: set[int] = set()
    scaled = False
    for _ in range(tiles):
        first = int(rng.integers(0, p))
        count = int(rng.integers(1, p - first + 1))
        acc = int(rng.integers(0, regions)) * p
        slot = int(rng.integers(0, loaded)) * cfg.rows
        if rng.random() < 0.1:    # a new tile into a slot: LOAD_WEIGHT among the COMPUTEs
            _load_weights(cfg, rng, prog, data, slot, extreme)
        prog.append(Instruction(Opcode.PRELOAD, addr=slot))
        rows = set(range(acc, acc + count))
        if rng.random() < 0.4 or not rows <= written:
            prog.append(Instruction(Opcode.LOAD_ACC, acc_addr=acc, count=count))
            data += psum_rows(cfg, _extreme(rng, (count, cfg.cols), cfg.acc_width))
            accumulate = True
        else:
            accumulate = bool(rng.random() < 0.7)
        walk = im2col.compute_fields(cfg, geom, base=0, first=first, offset=(0, 0),
                                     block=int(rng.integers(0, passes)))
        prog.append(Instruction(Opcode.COMPUTE, acc_addr=acc, count=count,
                                accumulate=accumulate, tag=0, **walk))
        written |= rows
        prog, data, scaled = _tile_stores(cfg, rng, prog, data, (acc, count), scaled)
    return Case(prog, data)


def _load_weights(cfg, rng, prog: list, data: list, slot: int, extreme: bool) -> None:
    """Append a LOAD_WEIGHT of a new random tile into weight rows ``slot ..``."""
    packed = nm.pack_nm(_tile_weights(cfg, rng, extreme), cfg.n, cfg.m)
    prog.append(Instruction(Opcode.LOAD_WEIGHT, addr=slot, count=cfg.rows))
    data += weight_rows(cfg, packed)


def _tile_stores(cfg, rng, prog, data, rows, scaled):
    """A tile's raw STORE, sometimes a requantized one (after a LOAD_SCALE), few channels."""
    acc, count = rows
    channels = int(rng.integers(1, cfg.cols + 1))
    prog.append(Instruction(Opcode.STORE, acc_addr=acc, count=count, raw=True,
                            channels=channels))
    if rng.random() < 0.25:
        if not scaled or rng.random() < 0.5:
            prog.append(Instruction(Opcode.LOAD_SCALE))
            data.append(isa.pack_scale_row(cfg, rng.integers(1, 1 << 15, size=cfg.cols),
                                           rng.integers(0, 48, size=cfg.cols),
                                           _extreme(rng, cfg.cols, 32)))
            scaled = True
        prog.append(Instruction(Opcode.STORE, acc_addr=acc, count=count, raw=False,
                                relu=bool(rng.random() < 0.5), channels=channels))
    return prog, data, scaled


def random_pace(rng: np.random.Generator, seed: int) -> Pace | None:
    """Ideal streams a third of the time, else random idle and backpressure (up to 0.97),
    with long stalls (up to 600 cycles) half of the time."""
    roll = rng.random()
    if roll < 1 / 3:
        return None
    bp = float(rng.choice([0.0, 0.3, 0.7, 0.9, 0.95, 0.97]))
    idle = float(rng.choice([0.0, 0.2, 0.5, 0.8]))
    if rng.random() < 0.5:
        return Pace(idle=idle, backpressure=bp, stall=float(rng.choice([0.002, 0.01, 0.03])),
                    stall_max=int(rng.choice([50, 200, 600])), seed=seed)
    return Pace(idle=idle, backpressure=bp, seed=seed)


def random_cases(cfg: ArrayConfig, rng: np.random.Generator, *, tile_programs: int,
                 other_programs: int, tiles: int) -> list[Case]:
    """``tile_programs`` tile batches of ``tiles`` tiles and ``other_programs`` random GEMM/conv
    programs (half each), unpaced."""
    cases = [tile_program(cfg, rng, tiles=tiles) for _ in range(tile_programs)]
    for _ in range(other_programs):
        if rng.random() < 0.5:
            prog = random_gemm_program(cfg, rng, order=("k_inner", "cols_inner")[
                int(rng.integers(0, 2))], zero_fraction=float(rng.random() * 0.5))
        else:
            prog = random_conv_program(cfg, rng, zero_fraction=float(rng.random() * 0.5),
                                       max_computes=60, max_compute_beats=300)
        cases.append(Case(prog.program, prog.data_in, reference=prog))
    return cases


def batch_cases(cfg: ArrayConfig, rng: np.random.Generator, *, tile_programs: int,
                other_programs: int, tiles: int, rate: int | None) -> list[Case]:
    """One batch: :func:`random_cases`, at DRAM rate ``rate`` or (None) randomly paced."""
    cases = random_cases(cfg, rng, tile_programs=tile_programs, other_programs=other_programs,
                         tiles=tiles)
    for case in cases:
        case.rate = rate
        if rate is None:
            case.pace = random_pace(rng, int(rng.integers(0, 2**63)))
    return cases


# -- checking -------------------------------------------------------------------------------


def check(cfg: ArrayConfig, case: Case, result) -> list[str]:
    """What differs between ``result`` (an AccelRun, or the TimeoutError of a run) and the
    golden model, the counts, the cycle model (exact cases) and the reference (if any)."""
    golden = GoldenAccelerator(cfg)
    want = golden.run(case.program, case.data_in)
    if isinstance(result, Exception):
        return [f"timeout: {result}"]
    bad = []
    if len(result.outputs) != len(want) or any(
            not np.array_equal(a, b) for a, b in zip(result.outputs, want, strict=False)):
        rows = [i for i, (a, b) in enumerate(zip(result.outputs, want, strict=False))
                if not np.array_equal(a, b)]
        bad.append(f"outputs: {len(result.outputs)} rows for {len(want)}, rows {rows[:8]} "
                   f"differ")
    expected = {**program_counts(cfg, case.program, len(case.data_in)),
                "gated_macs": golden.gated_macs}
    got = {k: result.counters[k] for k in expected}
    if got != expected:
        bad.append(f"counters: {got} != {expected}")
    if case.exact:
        predicted = program_timing(cfg, case.program, dram_bytes_per_cycle=case.rate)
        if (result.dispatch, result.out_cycles, result.cycles) != (
                predicted.dispatch, predicted.out_cycles, predicted.cycles):
            bad.append(f"cycles: {result.cycles} != {predicted.cycles} predicted (or a "
                       f"dispatch/output cycle differs)")
    if case.reference is not None and not bad:
        ref, got_out = case.reference.reference(cfg.acc_width, cfg.act_width), \
            case.reference.collect(result.outputs, cfg.cols)
        if any(not np.array_equal(a, b) for a, b in zip(ref, got_out, strict=True)):
            bad.append("reference: outputs differ from the independent reference")
    return bad


Runner = Callable[[ArrayConfig, Sequence[Case]], list]


class NativeRunner:
    """Runs cases on the native executables, one per (configuration, DRAM rate)."""

    def __init__(self):
        self.sims: dict[tuple[str, int | None], NativeAccelerator] = {}

    def sim(self, cfg: ArrayConfig, rate: int | None) -> NativeAccelerator:
        """The executable for ``cfg`` at DRAM rate ``rate``, built (or found) on first use."""
        key = (cfg.to_json(), rate)
        if key not in self.sims:
            self.sims[key] = NativeAccelerator(cfg, dram_bytes_per_cycle=rate,
                                               max_cycles=MAX_CYCLES)
        return self.sims[key]

    def __call__(self, cfg: ArrayConfig, cases: Sequence[Case]) -> list:
        out = []
        for rate in dict.fromkeys(c.rate for c in cases):
            group = [c for c in cases if c.rate == rate]
            res = self.sim(cfg, rate).execute_batch([(c.program, c.data_in) for c in group],
                                               [c.pace for c in group])
            out += [(c, r if isinstance(r, Exception) else r.run) for c, r in zip(group, res,
                                                                                  strict=True)]
        order = {id(c): i for i, c in enumerate(cases)}
        return [r for _, r in sorted(out, key=lambda cr: order[id(cr[0])])]


# -- shrinking ------------------------------------------------------------------------------


def _beats(insn: Instruction) -> int:
    """data_in beats an instruction takes."""
    if insn.opcode in (Opcode.LOAD_ACT, Opcode.LOAD_WEIGHT, Opcode.LOAD_ACC):
        return insn.count
    return 1 if insn.opcode == Opcode.LOAD_SCALE else 0


def _units(case) -> list[tuple[Instruction, list[int]]]:
    units, pos = [], 0
    for insn in case.program:
        n = _beats(insn)
        units.append((insn, case.data_in[pos:pos + n]))
        pos += n
    return units


def _from_units(case, units):
    return replace(case, program=[u[0] for u in units],
                   data_in=[b for u in units for b in u[1]], reference=None)


def reads_unwritten(program: Sequence[Instruction]) -> bool:
    """Whether a STORE or an accumulating COMPUTE reads accumulator rows that nothing wrote, or
    a COMPUTE comes before any LOAD_ACT (the golden model's scratchpads are zero, the
    hardware's whatever they held: not a reproducer)."""
    written: set[int] = set()
    acts = False
    for insn in program:
        acts = acts or insn.opcode == Opcode.LOAD_ACT
        if insn.opcode == Opcode.COMPUTE and not acts:
            return True
        rows = set(range(insn.acc_addr, insn.acc_addr + insn.count))
        reads = insn.opcode == Opcode.STORE or (insn.opcode == Opcode.COMPUTE and
                                                insn.accumulate)
        if reads and not rows <= written:
            return True
        if insn.opcode in (Opcode.LOAD_ACC, Opcode.COMPUTE):
            written |= rows
    return False


def undefined(program: Sequence[Instruction]) -> bool:
    """Whether a shrunk ``program`` is no reproducer: it :func:`reads_unwritten`, or it ends
    with a PRELOAD that no COMPUTE takes (the golden model accepts that; the hardware reads the
    tile's weight rows, which neither cycle model counts: no compiler emits it)."""
    tail = [i.opcode for i in program if i.opcode in (Opcode.PRELOAD, Opcode.COMPUTE)][-1:]
    return reads_unwritten(program) or tail == [Opcode.PRELOAD]


def _kind(problems: list[str]) -> set[str]:
    return {p.split(":")[0] for p in problems}


def shrink(cfg: ArrayConfig, case: Case, runner: Runner, *, max_tries: int = 2000) -> Case:
    """A smaller case that still fails the same way (same kinds of mismatch, :func:`check`):
    :func:`minimize` with the pacing made ideal and the DRAM port removed first, over programs
    not :func:`undefined`. At most ``max_tries`` runs; ``case`` itself if it passes now."""
    kind = _kind(check(cfg, case, runner(cfg, [case])[0]))
    if not kind:            # no longer fails: nothing to shrink towards
        return case

    def fails(candidate: Case) -> bool:
        if undefined(candidate.program):
            return False
        try:   # a program the golden model rejects may hang the hardware: not run
            GoldenAccelerator(cfg).run(candidate.program, candidate.data_in)
            problems = check(cfg, candidate, runner(cfg, [candidate])[0])
        except (ProgramError, ValueError):
            return False
        return bool(problems) and _kind(problems) >= kind

    return minimize(replace(case, reference=None), fails,
                    simpler=({"pace": None}, {"rate": None}), max_tries=max_tries)


def minimize(case, fails: Callable[[object], bool], *, simpler: Sequence[dict] = (),
             max_tries: int = 2000):
    """The smallest ``case`` (a :class:`Case` or any dataclass with ``program``, ``data_in`` and
    ``reference`` fields) found for which ``fails`` stays true: each field change of
    ``simpler`` kept if it still fails, then chunks of instructions removed with their data
    beats (halving the chunk, then every window of 4, 3, 2 and 1 instructions and every
    PRELOAD with its COMPUTE, until none can go), then data beats zeroed. At most
    ``max_tries`` calls of ``fails``."""
    tries = [0]

    def counted(candidate) -> bool:
        tries[0] += 1
        return fails(candidate)

    for change in simpler:
        candidate = replace(case, **change)
        if candidate != case and counted(candidate):
            case = candidate
    units = _units(case)
    chunk = max(1, len(units) // 2)
    while tries[0] < max_tries:
        # aligned chunks while large; every window of 1-4 instructions (a PRELOAD and its
        # COMPUTE only go together) at the end, until none can go
        step = chunk if chunk > 4 else 1
        removed = False
        for start in range(len(units) - chunk, -1, -step):
            if tries[0] >= max_tries or start + chunk > len(units):
                continue
            candidate = units[:start] + units[start + chunk:]
            if candidate and counted(_from_units(case, candidate)):
                units, removed = candidate, True
        for first, second in _tile_pairs(units) if chunk <= 4 else ():
            if tries[0] < max_tries:
                candidate = units[:first] + units[first + 1:second] + units[second + 1:]
                if candidate and counted(_from_units(case, candidate)):
                    units, removed = candidate, True
        if removed and chunk <= 4:
            chunk = 4                  # the small windows again, from the largest
        elif chunk == 1:
            break
        elif not removed:
            chunk //= 2
    return _zero_beats(_from_units(case, units), counted, max_tries - tries[0])


def _tile_pairs(units) -> list[tuple[int, int]]:
    """``(PRELOAD, COMPUTE)`` positions of each COMPUTE and the PRELOAD before it, the last
    first (so that removing one pair leaves the positions of the earlier ones)."""
    pairs, preload = [], None
    for n, (insn, _) in enumerate(units):
        if insn.opcode == Opcode.PRELOAD:
            preload = n
        elif insn.opcode == Opcode.COMPUTE and preload is not None:
            pairs.append((preload, n))
            preload = None
    return pairs[::-1]


def _zero_beats(case: Case, fails, budget: int) -> Case:
    """Data beats set to zero where the failure stays (chunks halving down to one beat)."""
    data = list(case.data_in)
    chunk = max(1, len(data) // 2)
    while budget > 0 and data:
        for start in range(0, len(data), chunk):
            if budget <= 0:
                break
            if not any(data[start:start + chunk]):
                continue
            trial = data[:start] + [0] * len(data[start:start + chunk]) + data[start + chunk:]
            budget -= 1
            if fails(replace(case, data_in=trial)):
                data = trial
        if chunk == 1:
            break
        chunk //= 2
    return replace(case, data_in=data)


# -- reproducers ----------------------------------------------------------------------------


def save_repro(path: Path, cfg: ArrayConfig, case: Case, problems: list[str], seed: int,
               original: int) -> str:
    """Write ``case`` to ``path`` (JSON); returns the command that replays it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "config": json.loads(cfg.to_json()), "seed": seed, "mismatch": problems,
        "instructions_before_shrinking": original,
        "program": [hex(i.encode()) for i in case.program],
        "data_in": [hex(b) for b in case.data_in],
        "pace": asdict(case.pace) if case.pace is not None else None, "rate": case.rate},
        indent=1) + "\n")
    return f"{sys.executable} -m sparsa.sim.fuzz --replay {path}"


def load_repro(path: Path) -> tuple[ArrayConfig, Case]:
    raw = json.loads(Path(path).read_text())
    if raw.get("campaign") == "axi":
        raise ValueError("a reproducer of the AXI campaign: python -m sparsa.sim.fuzz_axi "
                         "--replay replays it")
    cfg = ArrayConfig.from_json(json.dumps(raw["config"]))
    case = Case(program=[Instruction.decode(int(w, 16)) for w in raw["program"]],
                data_in=[int(b, 16) for b in raw["data_in"]],
                pace=Pace(**raw["pace"]) if raw["pace"] else None, rate=raw["rate"])
    return cfg, case


def replay(path: Path, runner: Runner | None = None) -> list[str]:
    """The mismatches of the reproducer at ``path`` now (empty: it passes)."""
    cfg, case = load_repro(path)
    runner = runner or NativeRunner()
    return check(cfg, case, runner(cfg, [case])[0])


# -- the campaign ---------------------------------------------------------------------------


@dataclass
class Stats:
    tiles: int = 0
    programs: int = 0
    kinds: dict[str, int] = field(default_factory=dict)   # programs per stimulus kind
    per_config: dict[str, int] = field(default_factory=dict)   # tiles per configuration
    cycles: int = 0
    seconds: float = 0.0
    mismatches: list = field(default_factory=list)   # (config, seed, index, case, problems)
    errors: list = field(default_factory=list)       # jobs that raised (stimulus or checker)

    def add(self, other: Stats) -> None:
        self.tiles += other.tiles
        self.programs += other.programs
        self.cycles += other.cycles
        for mine, theirs in ((self.kinds, other.kinds), (self.per_config, other.per_config)):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + v
        self.mismatches += other.mismatches
        self.errors += other.errors

    def breakdown(self, unit: str) -> list[str]:
        """Report lines: each configuration's count (of ``unit``), then programs per kind."""
        return [f"  {name}: {n:,} {unit}" for name, n in self.per_config.items()] + \
            [f"  {kind}: {n:,} programs" for kind, n in sorted(self.kinds.items())]

    def record(self, kind: str, config: str, per_config: int, case, cycles: int,
               mismatch: tuple | None) -> None:
        """One program checked: its stimulus ``kind``, ``per_config`` added to its
        configuration's count, its ``cycles``, and its ``mismatch`` if any."""
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        self.per_config[config] = self.per_config.get(config, 0) + per_config
        self.programs += 1
        self.tiles += case.tiles
        self.cycles += cycles
        if mismatch is not None:
            self.mismatches.append(mismatch)


def job_seed(seed: int, name: str, index: int) -> int:
    return zlib.crc32(f"{seed}:{name}:{index}".encode())


def run_job(name: str, seed: int, tile_programs: int, other_programs: int, tiles: int,
            runner: Runner | None = None, cfg: ArrayConfig | None = None) -> Stats:
    """One batch on configuration ``name`` (``cfg``: another configuration under that name),
    drawn from ``seed``: run, checked."""
    cfg = cfg or CONFIGS[name]
    rng = np.random.default_rng(seed)
    rate = RATES[int(rng.integers(0, len(RATES)))] if rng.random() < 0.3 else None
    cases = batch_cases(cfg, rng, tile_programs=tile_programs, other_programs=other_programs,
                        tiles=tiles, rate=rate)
    results = (runner or _runner())(cfg, cases)
    stats = Stats()
    for i, (case, result) in enumerate(zip(cases, results, strict=True)):
        problems = check(cfg, case, result)
        kind = ("tile batch" if case.reference is None else type(case.reference).__name__) + \
            ("" if case.exact else ", random pacing") + (f", DRAM {case.rate} B/cycle"
                                                          if case.rate else "")
        stats.record(kind, name, case.tiles, case, 0 if isinstance(result, Exception) else
                     result.cycles, (name, seed, i, case, problems) if problems else None)
    return stats


@functools.cache
def _runner() -> NativeRunner:
    """The worker process's runner (its executables stay open across jobs)."""
    return NativeRunner()


def _report_mismatches(stats: Stats, out_dir: Path, runner: Runner) -> None:
    for name, seed, index, case, problems in stats.mismatches[:5]:
        cfg = CONFIGS[name]
        print(f"MISMATCH on {name}, job seed {seed}, program {index}: {'; '.join(problems)}")
        small = shrink(cfg, case, runner)
        small_problems = check(cfg, small, runner(cfg, [small])[0])
        cmd = save_repro(out_dir / f"repro-{seed}-{index}.json", cfg, small,
                         small_problems or problems, seed, len(case.program))
        print(f"  {shrunk(case, small, bool(small_problems))}; replay: {cmd}")


def shrunk(case, small, fails: bool) -> str:
    """How ``case`` was shrunk to ``small`` (which ``fails`` or not when rerun)."""
    if not fails:
        return ("PASSES when rerun now (the tree changed during the campaign, or the failure "
                "is not deterministic): saved unshrunk")
    return (f"shrunk from {len(case.program)} to {len(small.program)} instructions, "
            f"{len(small.data_in)} data beats")


def run_campaign(*, seed: int, tiles: int, programs: int, budget: float, workers: int,
                 configs: Sequence[str], out_dir: Path = OUT_DIR, batch: tuple = (8, 2, 64)
                 ) -> Stats:
    """Jobs round-robin over ``configs`` on ``workers`` processes until ``tiles`` tiles and
    ``programs`` programs are checked or ``budget`` seconds have passed."""
    start = time.monotonic()
    for name in configs:     # build (or find) every executable first: the (forked) jobs and
        for rate in RATES:   # the shrinking run these, whatever changes in the tree meanwhile
            _runner().sim(CONFIGS[name], rate)
    print(f"fuzz: seed {seed}, {workers} workers, configurations: {', '.join(configs)} "
          f"(executables ready after {time.monotonic() - start:.0f} s)", flush=True)
    stats = run_jobs(run_job, configs, seed, batch, stats=Stats(), workers=workers,
                     deadline=start + budget,
                     enough=lambda s: s.tiles >= tiles and s.programs >= programs)
    stats.seconds = time.monotonic() - start
    if stats.mismatches:
        _report_mismatches(stats, out_dir, _runner())
    return stats


def run_jobs(job: Callable[..., Stats], names: Sequence[str], seed: int, args: tuple, *,
             stats: Stats, workers: int, deadline: float, enough: Callable[[Stats], bool]
             ) -> Stats:
    """``job(name, job_seed, *args)`` round-robin over ``names`` on ``workers`` processes, each
    job's :class:`Stats` added to ``stats``, until ``enough(stats)`` or the ``deadline``
    (:func:`time.monotonic`); a progress line every 30 s. A job that raises is an error
    naming its seed."""
    submitted, last, jobs, start = 0, 0.0, {}, time.monotonic()
    with ProcessPoolExecutor(workers) as pool:
        pending = set()
        while True:
            stop = enough(stats) or time.monotonic() > deadline
            while not stop and len(pending) < 2 * workers:
                name = names[submitted % len(names)]
                future = pool.submit(job, name, job_seed(seed, name, submitted), *args)
                pending.add(future)
                jobs[future] = f"{name}, job seed {job_seed(seed, name, submitted)}"
                submitted += 1
            if not pending:
                break
            done = next(as_completed(pending))
            pending.discard(done)
            try:
                stats.add(done.result())
            except Exception as exc:   # a generator or checker bug: the job's seed names it
                stats.errors.append(f"{jobs[done]}: {type(exc).__name__}: {exc}")
                print(f"  ERROR in job {jobs[done]}: {type(exc).__name__}: {exc}", flush=True)
            if time.monotonic() - last > 30:
                last = time.monotonic()
                print(f"  {time.monotonic() - start:6.0f} s: {stats.tiles:,} tiles, "
                      f"{stats.programs:,} programs, {len(stats.mismatches)} mismatches",
                      flush=True)
    return stats


def _args(argv):
    ap = argparse.ArgumentParser(prog="python -m sparsa.sim.fuzz", description=__doc__.split(
        "\n")[0])
    ap.add_argument("--replay", type=Path, help="replay a reproducer written by a campaign")
    ap.add_argument("--seed", type=int, default=None,
                    help="campaign seed (default: SPARSA_SEED, else the time)")
    ap.add_argument("--scale", type=float, default=None,
                    help="fraction of the full campaign: 10^6 tiles and 10^4 programs "
                         "(default FUZZ_SCALE, else 1)")
    ap.add_argument("--budget", type=float, default=1800.0, help="seconds at most")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--configs", default=",".join(CONFIGS),
                    help="comma-separated names among " + ", ".join(CONFIGS))
    return ap.parse_args(argv)


def env_scale(scale: float | None) -> float:
    """``scale``, else ``FUZZ_SCALE``, else 1 (-1 when ``FUZZ_SCALE`` is not a number)."""
    if scale is not None:
        return scale
    try:
        return float(os.environ.get("FUZZ_SCALE") or 1)
    except ValueError:
        return -1.0


def campaign_seed(seed: int | None) -> int:
    """``seed``, else ``SPARSA_SEED``, else the time."""
    return seed if seed is not None else int(os.environ.get("SPARSA_SEED") or time.time())


def replay_command(path: Path, replay_file: Callable[[Path], list[str]], module: str) -> int:
    """``--replay``: the mismatches printed (exit 1), or that it passes now (exit 0); a file
    that is no reproducer of ``module`` is one line (exit 2)."""
    try:
        problems = replay_file(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"error: {path} is not a readable reproducer of {module} "
              f"({type(exc).__name__}: {exc})", file=sys.stderr)
        return 2
    print("\n".join(problems) if problems else f"{path}: no mismatch (now passes)")
    return 1 if problems else 0


def config_names(text: str, known: dict) -> list[str] | None:
    """The comma-separated names of ``text``; None (with one line) when one is not ``known``."""
    names = [c for c in text.split(",") if c]
    unknown = [c for c in names if c not in known]
    if unknown:
        print(f"error: unknown configuration {unknown[0]!r}, expected one of "
              f"{', '.join(known)}", file=sys.stderr)
        return None
    return names


def main(argv=None) -> int:
    args = _args(argv)
    if args.replay is not None:
        return replay_command(args.replay, replay, "sparsa.sim.fuzz")
    args.scale = env_scale(args.scale)
    if not args.scale > 0 or args.workers < 1 or not args.budget > 0:
        print(f"error: scale (FUZZ_SCALE) and budget must be positive numbers and workers a "
              f"positive integer, not scale {os.environ.get('FUZZ_SCALE', args.scale)!r}, "
              f"budget {args.budget}, workers {args.workers}", file=sys.stderr)
        return 2
    configs = config_names(args.configs, CONFIGS)
    if configs is None:
        return 2
    seed = campaign_seed(args.seed)
    stats = run_campaign(seed=seed, tiles=round(1e6 * args.scale),
                         programs=round(1e4 * args.scale), budget=args.budget,
                         workers=args.workers, configs=configs)
    print(f"fuzz: {len(configs)} configurations, {stats.tiles:,} tiles and {stats.programs:,} "
          f"programs checked ({stats.cycles:,} simulated cycles) in {stats.seconds:.0f} s; "
          f"seed {seed}; {len(stats.mismatches)} mismatches, {len(stats.errors)} errors")
    print("\n".join(stats.breakdown("tiles")))
    if stats.mismatches or stats.errors:
        print(f"rerun: python -m sparsa.sim.fuzz --seed {seed}")
    return 1 if stats.mismatches or stats.errors else 0


if __name__ == "__main__":
    sys.exit(main())
