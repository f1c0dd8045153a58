"""One design point: a configuration costed on one model, as a pure function.

:func:`evaluate` calls :func:`sparsa.sw.report.build_report` and keeps the totals an exploration
compares (cycles, latency, energy, DRAM traffic, speedup over dense) in a small frozen
:class:`Evaluation`, plus the configuration's area when one is given (the area is computed
elsewhere and passed in: sw never imports hw). :func:`point_key` is the content hash that names a
point in the result store and as a Dask task.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from sparsa.config import ArrayConfig
from sparsa.models.graph import LayerGraph

from .energy import EnergyTable
from .prune import PrunePolicy
from .report import build_report

__all__ = ["ALL_MODELS", "AREA_PARTS", "Evaluation", "combine", "evaluate", "point_key",
           "sparsa_version"]

# The model label of a configuration's results over all models together (:func:`combine`).
ALL_MODELS = "all models"


def sparsa_version() -> str:
    """The installed version of sparsa. (A checkout whose cost model is edited without a version
    bump keeps the version: delete its result stores, or give sweeps a new directory.)"""
    try:
        return version("sparsa")
    except PackageNotFoundError:
        return "unknown"


def point_key(cfg: ArrayConfig, model: str, table: str, area: str,
              code: str | None = None) -> str:
    """SHA-256 of (configuration JSON, model, sparsa version, energy table, area model);
    ``code`` is :func:`sparsa_version`, looked up once by a caller keying many points."""
    text = json.dumps({"config": cfg.to_dict(), "model": model,
                       "sparsa": sparsa_version() if code is None else code,
                       "energy_table": table, "area": area}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Evaluation:
    """The totals of one model on one configuration (energy in µJ, latency in seconds)."""

    key: str
    model: str
    config: ArrayConfig
    cycles: int
    dense_cycles: int
    latency_s: float
    energy_uj: float
    dram_bytes: int
    speedup: float
    energy_ratio: float
    multipliers: int
    area_kge: float | None = None      # the accelerator: array + logic + scratchpad SRAM
    array_kge: float | None = None     # ... of which the array (PEs, skew, control)
    logic_kge: float | None = None     # ... the rest of its logic (engines, dispatch, im2col)
    sram_kge: float | None = None      # ... the scratchpad SRAM
    # FPGA resources of the array, when the sweep synthesizes for an FPGA
    luts: int | None = None
    ffs: int | None = None
    dsps: int | None = None
    brams: int | None = None            # block RAMs of the scratchpads
    fmax_mhz: float | None = None       # the array's post-route Fmax (ECP5, place and route)
    area_um2: float | None = None       # cell area with a Liberty library

    @property
    def metrics(self) -> dict[str, float | None]:
        """Every quantity an objective or constraint may name."""
        area = self.area_kge
        return {
            "cycles": self.cycles, "latency_s": self.latency_s, "energy_uj": self.energy_uj,
            "edp_uj_s": self.energy_uj * self.latency_s, "dram_bytes": self.dram_bytes,
            "speedup": self.speedup, "area_kge": area,
            "throughput_per_kge": None if not area else 1 / self.latency_s / area,
            "luts": self.luts, "ffs": self.ffs, "dsps": self.dsps,
            "throughput_per_dsp": None if not self.dsps else 1 / self.latency_s / self.dsps,
            "area_um2": self.area_um2, "array_kge": self.array_kge, "brams": self.brams,
            "fmax_mhz": self.fmax_mhz,
            "logic_kge": self.logic_kge, "sram_kge": self.sram_kge,
        }

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["config"] = self.config.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Evaluation:
        return cls(**(d | {"config": ArrayConfig.from_dict(d["config"])}))


AREA_PARTS = ("area_kge", "array_kge", "logic_kge", "sram_kge")


def _area_parts(area: float | Mapping[str, float | None] | None) -> dict[str, float | None]:
    """The area fields of an :class:`Evaluation` from a total in kGE or from the parts
    (``area_kge`` and any of ``array_kge``, ``logic_kge``, ``sram_kge``)."""
    if area is None:
        return {}
    if not isinstance(area, Mapping):
        return {"area_kge": float(area)}
    return {k: None if area.get(k) is None else float(area[k]) for k in AREA_PARTS}


def _fpga_fields(fpga: Mapping[str, float] | None) -> dict[str, Any]:
    """The FPGA fields of an :class:`Evaluation`: LUTs, FFs and DSPs, and the block RAMs and the
    post-route Fmax when the synthesis gave them."""
    if fpga is None:
        return {}
    fields: dict[str, Any] = {k: int(fpga[k]) for k in ("luts", "ffs", "dsps")}
    if fpga.get("brams") is not None:
        fields["brams"] = int(fpga["brams"])
    if fpga.get("fmax_mhz") is not None:
        fields["fmax_mhz"] = float(fpga["fmax_mhz"])
    return fields


def evaluate(cfg: ArrayConfig, graph: LayerGraph,
             area_kge: float | Mapping[str, float | None] | None = None,
             fpga: Mapping[str, int] | None = None, area_um2: float | None = None, *,
             point: str = "", model: str = "", table: EnergyTable | None = None,
             policy: PrunePolicy | None = None) -> Evaluation:
    """Cost ``graph`` on ``cfg`` (with ``build_report``, the same model as ``sparsa report``);
    ``area_kge`` (a total in kGE, or its parts: :data:`AREA_PARTS`), the ``fpga`` resources
    (luts, ffs, dsps) and ``area_um2`` are the configuration's, computed elsewhere; ``point`` is
    the key the result is stored under, ``model`` the label of the model."""
    report = build_report(graph, cfg, table=table, policy=policy)
    cycles = report.total.cycles.total
    return Evaluation(
        key=point, model=model or graph.name, config=cfg, cycles=cycles,
        dense_cycles=report.dense_total.cycles.total,
        latency_s=cycles / (cfg.clock_mhz * 1e6), energy_uj=report.energy.total / 1e6,
        dram_bytes=report.total.actions.dram_bytes, speedup=report.speedup,
        energy_ratio=report.energy_ratio, multipliers=cfg.multipliers,
        **_area_parts(area_kge),
        area_um2=None if area_um2 is None else float(area_um2),
        **_fpga_fields(fpga))


def combine(results: Sequence[Evaluation]) -> Evaluation:
    """One configuration's results on several models as one: running them all one after the
    other (cycles, latency, energy and traffic add up; the area is the configuration's)."""
    if not results:
        raise ValueError("nothing to combine")
    cfg = results[0].config
    if any(r.config != cfg for r in results):
        raise ValueError("combine() takes the results of one configuration")
    cycles = sum(r.cycles for r in results)
    dense = sum(r.dense_cycles for r in results)
    energy = sum(r.energy_uj for r in results)
    dense_energy = sum(r.energy_uj * r.energy_ratio for r in results)
    key = hashlib.sha256("\0".join(sorted(r.key for r in results)).encode()).hexdigest()
    return Evaluation(key=key, model=ALL_MODELS, config=cfg, cycles=cycles, dense_cycles=dense,
                      latency_s=sum(r.latency_s for r in results), energy_uj=energy,
                      dram_bytes=sum(r.dram_bytes for r in results), speedup=dense / cycles,
                      energy_ratio=dense_energy / energy, multipliers=results[0].multipliers,
                      **{k: getattr(results[0], k) for k in AREA_PARTS}, luts=results[0].luts,
                      ffs=results[0].ffs, dsps=results[0].dsps, brams=results[0].brams,
                      fmax_mhz=results[0].fmax_mhz,
                      area_um2=results[0].area_um2)
