"""The design space of an exploration, as validated data: what a SPEC names once
:func:`sparsa.sw.explore.parse_spec` has checked it (models, a space of ArrayConfig values,
constraints, objectives, a search), and the quantities constraints and objectives may name.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sparsa.config import ArrayConfig, ConfigError
from sparsa.nm import parse_nm

__all__ = ["CONFIG_QUANTITIES", "FPGA_TARGETS", "MAX_SPACE", "NEEDS", "OBJECTIVES",
           "RESULT_QUANTITIES", "SPACE_FIELDS", "Constraint", "ExploreSpec", "ModelSpec",
           "Objective", "SearchSpec", "SpecError"]

# Fields of ArrayConfig a space may vary ("nm" stands for n and m together).
SPACE_FIELDS = ("rows", "cols", "nm", "pipeline_depth", "act_buffer_kib", "weight_buffer_kib",
                "acc_buffer_kib", "dram_bytes_per_cycle", "clock_mhz")
# A grid larger than this is refused (enumerated in memory; use a smaller space).
MAX_SPACE = 200_000

# Quantities a constraint can name, known before evaluation (from the configuration) ...
CONFIG_QUANTITIES: dict[str, Callable[[ArrayConfig], float]] = {
    "rows": lambda c: c.rows, "cols": lambda c: c.cols, "n": lambda c: c.n, "m": lambda c: c.m,
    "pes": lambda c: c.rows * c.cols, "multipliers": lambda c: c.multipliers,
    "k_per_pass": lambda c: c.k_per_pass, "pipeline_depth": lambda c: c.pipeline_depth,
    "act_buffer_kib": lambda c: c.act_buffer_kib,
    "weight_buffer_kib": lambda c: c.weight_buffer_kib,
    "acc_buffer_kib": lambda c: c.acc_buffer_kib,
    "buffer_kib": lambda c: c.act_buffer_kib + c.weight_buffer_kib + c.acc_buffer_kib,
    "dram_bytes_per_cycle": lambda c: c.dram_bytes_per_cycle, "clock_mhz": lambda c: c.clock_mhz,
}
# ... and after (fields of sparsa.sw.evaluate.Evaluation.metrics).
RESULT_QUANTITIES = ("cycles", "latency_s", "energy_uj", "edp_uj_s", "dram_bytes", "speedup",
                     "area_kge", "throughput_per_kge", "luts", "ffs", "dsps",
                     "throughput_per_dsp", "area_um2", "array_kge", "logic_kge", "sram_kge",
                     "brams", "fmax_mhz")
# Result quantities that need the ASIC area or an FPGA synthesis.
NEEDS = {"area_kge": "area", "throughput_per_kge": "area", "luts": "fpga", "ffs": "fpga",
         "dsps": "fpga", "throughput_per_dsp": "fpga", "area_um2": "liberty",
         "array_kge": "area", "logic_kge": "area", "sram_kge": "area", "brams": "fpga",
         "fmax_mhz": "fmax"}
# The FPGA families of sparsa.hw.fpga.TARGETS (sw may not import hw; a test ties the two).
FPGA_TARGETS = ("ecp5", "ice40", "xilinx")

_OPS: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<=": operator.le, ">=": operator.ge,
    "<": operator.lt, ">": operator.gt}


class SpecError(ConfigError):
    """An exploration SPEC is malformed, empty or impossible (names the field and value)."""


@dataclass(frozen=True)
class Objective:
    """One objective: the metric it reads, minimized or maximized, its axis label."""

    name: str
    metric: str
    sense: str          # "min" or "max"
    label: str
    needs: str = ""     # "area", "fpga", "fmax" or "liberty": what the sweep must compute

    def sign(self) -> int:
        """+1 to minimize the metric, -1 for a maximized one (so smaller is always better)."""
        return 1 if self.sense == "min" else -1


OBJECTIVES: dict[str, Objective] = {o.name: o for o in (
    Objective("latency", "latency_s", "min", "latency per inference (s)"),
    Objective("energy", "energy_uj", "min", "energy per inference (µJ)"),
    Objective("area", "area_kge", "min", "accelerator area (kGE)", needs="area"),
    Objective("edp", "edp_uj_s", "min", "energy x delay (µJ·s)"),
    Objective("throughput_per_area", "throughput_per_kge", "max",
              "throughput per area (inferences/s/kGE)", needs="area"),
    Objective("cell_area", "area_um2", "min", "cell area with the Liberty library (µm²)",
              needs="liberty"),
    Objective("luts", "luts", "min", "FPGA LUTs", needs="fpga"),
    Objective("dsps", "dsps", "min", "FPGA DSP blocks", needs="fpga"),
    Objective("throughput_per_dsp", "throughput_per_dsp", "max",
              "throughput per DSP block (inferences/s/DSP)", needs="fpga"),
    Objective("brams", "brams", "min", "FPGA block RAMs of the scratchpads", needs="fpga"),
    Objective("fmax", "fmax_mhz", "max", "post-route Fmax of the array (MHz)", needs="fmax"),
    Objective("cycles", "cycles", "min", "cycles per inference"),
    Objective("dram", "dram_bytes", "min", "DRAM traffic (bytes)"),
)}


@dataclass(frozen=True)
class Constraint:
    """``quantity op value``, e.g. ``multipliers == 256`` or ``area_kge <= 500``."""

    quantity: str
    op: str
    value: float

    @property
    def text(self) -> str:
        return f"{self.quantity} {self.op} {self.value:g}"

    @property
    def on_config(self) -> bool:
        """Known from the configuration alone (checked before any evaluation)."""
        return self.quantity in CONFIG_QUANTITIES

    def holds(self, value: float) -> bool:
        return _OPS[self.op](value, self.value)

    def holds_for_config(self, cfg: ArrayConfig) -> bool:
        return self.holds(CONFIG_QUANTITIES[self.quantity](cfg))


@dataclass(frozen=True)
class ModelSpec:
    """A model to evaluate: a zoo name or a model file, with a batch (zoo models, Hugging Face
    configs) and a sequence length (transformers)."""

    name: str
    batch: int | None = None
    seq: int | None = None

    @property
    def label(self) -> str:
        batch = "" if self.batch in (None, 1) else f"@b{self.batch}"
        return f"{self.name}{batch}{'' if self.seq is None else f'@s{self.seq}'}"


@dataclass(frozen=True)
class SearchSpec:
    method: str = "grid"
    budget: int | None = None       # configurations to evaluate (random, nsga2)
    seed: int = 0
    population: int = 8             # nsga2 generation size


@dataclass(frozen=True)
class ExploreSpec:
    models: tuple[ModelSpec, ...]
    base: ArrayConfig
    space: tuple[tuple[str, tuple[Any, ...]], ...]
    constraints: tuple[Constraint, ...]
    objectives: tuple[Objective, ...]
    search: SearchSpec
    area: bool = True
    energy_table: str | None = None
    fpga: str | None = None             # an FPGA family to synthesize each array for
    fpga_device: str | None = None
    fpga_fmax: bool | str = False       # ECP5 Fmax: True (place and route) or "estimate"
    liberty: str | None = None          # a Liberty cell library: cell area in µm² as well
    source: str = "spec"

    @property
    def size(self) -> int:
        """Configurations in the whole space (before constraints)."""
        return math.prod(len(values) for _, values in self.space)

    def config_of(self, point: Mapping[str, Any]) -> ArrayConfig:
        """The configuration of one point of the space (``nm`` as ``"n:m"``)."""
        changes = {k: v for k, v in point.items() if k != "nm"}
        if "nm" in point:
            changes["n"], changes["m"] = parse_nm(point["nm"])
        return self.base.replace(**changes)

    def points(self) -> Iterator[dict[str, Any]]:
        names = [name for name, _ in self.space]
        for values in itertools.product(*(v for _, v in self.space)):
            yield dict(zip(names, values, strict=True))

    def feasible(self, cfg: ArrayConfig) -> bool:
        return all(c.holds_for_config(cfg) for c in self.constraints if c.on_config)

    def configs(self) -> list[ArrayConfig]:
        """Every configuration of the space that meets the configuration constraints, in grid
        order (combinations ArrayConfig refuses are left out)."""
        out = []
        for point in self.points():
            try:
                cfg = self.config_of(point)
            except ConfigError:
                continue
            if self.feasible(cfg):
                out.append(cfg)
        return out

    @property
    def result_constraints(self) -> tuple[Constraint, ...]:
        return tuple(c for c in self.constraints if not c.on_config)
