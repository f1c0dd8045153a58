"""Energy = action counts x a technology table (a TOML data file; users may bring their own).

The table format is the one of ``sparsa/sw/data/energy_45nm_horowitz.toml`` (the default, with its
source written inside). SRAM energies depend on the buffer size: piecewise linear interpolation in
(log2 size, log2 energy) between the table's points, extrapolated along the end segments.

Zero gating: a MAC whose selected activation is zero (the accelerator's ``gated_macs`` counter,
:mod:`sparsa.sw.activity`) costs ``gated_mac_fraction`` of a MAC, from the table's optional
``[gating]`` section (a table without one claims no saving: fraction 1).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

from sparsa.config import ArrayConfig
from sparsa.files import read_table

from .cost import Actions

__all__ = ["DEFAULT_TABLE", "Energy", "EnergyTable", "EnergyTableError", "energy_of",
           "gating_saving_pj", "load_table"]

DEFAULT_TABLE = "energy_45nm_horowitz.toml"
_SCALARS = ("mult_8b_pj", "add_8b_pj", "add_32b_pj", "register_bit_write_pj", "dram_64b_pj")


class EnergyTableError(ValueError):
    """An energy table is missing a key or holds a bad value."""


@dataclass(frozen=True)
class EnergyTable:
    name: str
    mult_8b_pj: float
    add_8b_pj: float
    add_32b_pj: float
    register_bit_write_pj: float
    dram_64b_pj: float
    sram_points_kib_pj: tuple[tuple[float, float], ...]
    gated_mac_fraction: float = 1.0   # energy of a zero-gated MAC, as a fraction of a MAC

    @property
    def mac_pj(self) -> float:
        return self.mult_8b_pj + self.add_32b_pj

    @property
    def gated_mac_pj(self) -> float:
        return self.mac_pj * self.gated_mac_fraction

    def sram_64b_pj(self, size_kib: float) -> float:
        """Energy of a 64-bit access to an SRAM of ``size_kib``."""
        pts = [(math.log2(s), math.log2(e)) for s, e in self.sram_points_kib_pj]
        x = math.log2(size_kib)
        if len(pts) == 1:
            return self.sram_points_kib_pj[0][1]
        i = 0
        while i < len(pts) - 2 and x > pts[i + 1][0]:
            i += 1
        (x0, y0), (x1, y1) = pts[i], pts[i + 1]
        return 2 ** (y0 + (y1 - y0) * (x - x0) / (x1 - x0))


def _number(source: str, key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise EnergyTableError(f"{source}: {key} must be a non-negative number of pJ, "
                               f"not {value!r}")
    return float(value)


def table_from_dict(values: dict, *, source: str = "energy table") -> EnergyTable:
    if not isinstance(values, dict):
        raise EnergyTableError(f"{source}: expected a TOML table, not {type(values).__name__}")
    pj = values.get("energy_pj")
    if not isinstance(pj, dict):
        raise EnergyTableError(f"{source}: missing [energy_pj] table with keys "
                               f"{', '.join(_SCALARS)}")
    unknown = sorted(set(pj) - set(_SCALARS))
    if unknown:
        raise EnergyTableError(f"{source}: unknown key(s) {', '.join(unknown)} in [energy_pj]; "
                               f"expected {', '.join(_SCALARS)}")
    for key in _SCALARS:
        if key not in pj:
            raise EnergyTableError(f"{source}: missing key energy_pj.{key}")
    sram = values.get("sram")
    points = sram.get("points_kib_pj") if isinstance(sram, dict) else None
    if not isinstance(points, list) or not points:
        raise EnergyTableError(f"{source}: missing key sram.points_kib_pj (a list of "
                               f"[size_kib, pJ per 64-bit access] pairs)")
    clean = []
    for point in points:
        if (not isinstance(point, list) or len(point) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
                           for v in point)):
            raise EnergyTableError(f"{source}: sram.points_kib_pj entries must be "
                                   f"[size_kib, pJ] with positive numbers, not {point!r}")
        clean.append((float(point[0]), float(point[1])))
    clean.sort()
    if len({s for s, _ in clean}) != len(clean):
        raise EnergyTableError(f"{source}: sram.points_kib_pj lists a size twice")
    return EnergyTable(name=str(values.get("name", source)),
                       **{k: _number(source, f"energy_pj.{k}", pj[k]) for k in _SCALARS},
                       sram_points_kib_pj=tuple(clean),
                       gated_mac_fraction=_gating(source, values.get("gating", {})))


def _gating(source: str, gating) -> float:
    """The optional ``[gating]`` section: ``gated_mac_fraction`` between 0 and 1."""
    if not isinstance(gating, dict) or set(gating) - {"gated_mac_fraction"}:
        raise EnergyTableError(f"{source}: [gating] may only hold gated_mac_fraction (a zero-"
                               f"gated MAC's energy as a fraction of a MAC), not {gating!r}")
    value = gating.get("gated_mac_fraction", 1.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise EnergyTableError(f"{source}: gating.gated_mac_fraction must be a number between "
                               f"0 and 1, not {value!r}")
    return float(value)


def load_table(path: str | Path | None = None) -> EnergyTable:
    """The default 45 nm table, or a user's TOML file."""
    values, source = read_table("sparsa.sw", DEFAULT_TABLE, path, "energy table",
                                EnergyTableError)
    return table_from_dict(values, source=source)


@dataclass(frozen=True)
class Energy:
    """Energy by component, in pJ; ``total`` is their sum."""

    mac: float = 0.0
    registers: float = 0.0
    act_sram: float = 0.0
    weight_sram: float = 0.0
    metadata_sram: float = 0.0
    acc_sram: float = 0.0
    dram: float = 0.0

    @property
    def total(self) -> float:
        return sum(getattr(self, f.name) for f in dataclasses.fields(self))

    def __add__(self, other: Energy) -> Energy:
        if not isinstance(other, Energy):
            return NotImplemented
        return Energy(**{f.name: getattr(self, f.name) + getattr(other, f.name)
                         for f in dataclasses.fields(self)})


def energy_of(actions: Actions, cfg: ArrayConfig, table: EnergyTable, *,
              gated_macs: float = 0) -> Energy:
    """Energy of a layer's actions (SRAM energies per 64-bit access, sized by the config);
    ``gated_macs`` of the issued MACs are zero-gated (0: energy without gating)."""
    if not 0 <= gated_macs <= actions.macs_issued:
        raise ValueError(f"gated_macs must be between 0 and the {actions.macs_issued} MACs "
                         f"issued, not {gated_macs}")
    per_byte = 1 / 8  # 64-bit accesses per byte
    act = table.sram_64b_pj(cfg.act_buffer_kib)
    wgt = table.sram_64b_pj(cfg.weight_buffer_kib)
    acc = table.sram_64b_pj(cfg.acc_buffer_kib)
    return Energy(
        mac=(actions.macs_issued - gated_macs) * table.mac_pj + gated_macs * table.gated_mac_pj,
        registers=actions.pe_register_write_bits * table.register_bit_write_pj,
        act_sram=(actions.act_buffer_read_bytes + actions.act_buffer_write_bytes) * per_byte * act,
        weight_sram=((actions.weight_buffer_read_bytes + actions.weight_buffer_write_bytes)
                     * per_byte * wgt),
        metadata_sram=((actions.metadata_buffer_read_bytes + actions.metadata_buffer_write_bytes)
                       * per_byte * wgt),
        acc_sram=(actions.acc_buffer_read_bytes + actions.acc_buffer_write_bytes) * per_byte * acc,
        dram=actions.dram_bytes * per_byte * table.dram_64b_pj,
    )


def gating_saving_pj(table: EnergyTable, gated_macs: float) -> float:
    """Energy zero gating saves on ``gated_macs`` MACs: each costs ``gated_mac_pj`` instead of
    ``mac_pj``."""
    return gated_macs * (table.mac_pj - table.gated_mac_pj)
