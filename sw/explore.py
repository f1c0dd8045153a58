"""The exploration SPEC of ``sparsa explore``: models x a space of array configurations, with
constraints, objectives and a search, read from TOML and validated at the edge.

A SPEC names::

    base = "default"                       # preset the space starts from (optional)
    constraints = ["multipliers <= 64", "area_kge <= 50"]
    objectives = ["latency", "energy", "area"]
    area = true                            # ASIC area of each configuration (default true)
    fpga = "ecp5"                          # optional: LUTs, FFs, DSPs, BRAMs from an FPGA synthesis
    fpga_fmax = true                       # optional, ECP5: place and route for the Fmax (slow),
                                           # or "estimate": fitted to the arrays placed before
    liberty = "cells.lib"                  # optional: cell area (µm²) with a cell library
    energy_table = "my_table.toml"         # optional, default 45 nm Horowitz

    [[models]]
    name = "digits_cnn"                    # zoo name or a .onnx/.csv/.npz file
    batch = 1                              # zoo models and Hugging Face configs only
    seq = 128                              # transformers only (zoo or Hugging Face config)

    [space]                                # a list, or {min, max, step} / {min, max, factor}
    rows = [2, 4]
    cols = {min = 2, max = 8, factor = 2}
    nm = ["1:1", "2:4", "1:4"]
    dram_bytes_per_cycle = [8, 16]

    [search]
    method = "grid"                        # or "random" / "nsga2" with budget and seed

Everything is checked here, once: a bad field, an empty space or a constraint that no
configuration of the space meets is one :class:`SpecError` naming it.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from sparsa.config import ArrayConfig, ConfigError, preset
from sparsa.nm import parse_nm

from .design_space import (
    CONFIG_QUANTITIES,
    FPGA_TARGETS,
    MAX_SPACE,
    NEEDS,
    OBJECTIVES,
    RESULT_QUANTITIES,
    SPACE_FIELDS,
    Constraint,
    ExploreSpec,
    ModelSpec,
    Objective,
    SearchSpec,
    SpecError,
)

__all__ = ["CONFIG_QUANTITIES", "FPGA_TARGETS", "MAX_SPACE", "OBJECTIVES", "RESULT_QUANTITIES",
           "SPACE_FIELDS", "Constraint", "ExploreSpec", "ModelSpec", "Objective", "SearchSpec",
           "SpecError", "load_spec", "parse_spec"]

METHODS = ("grid", "random", "nsga2")
TOP_KEYS = ("base", "models", "space", "constraints", "objectives", "search", "area",
            "energy_table", "fpga", "fpga_device", "fpga_fmax", "liberty")
_CONSTRAINT = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s*(==|!=|<=|>=|<|>)\s*([-+0-9.eE_]+)\s*$")
_NEED_TEXT = {"area": "the area, but area = false",
              "fpga": "an FPGA synthesis: set fpga = \"ecp5\" (or ice40, xilinx)",
              "liberty": "a cell library: set liberty = \"cells.lib\"",
              "fmax": "place and route: set fpga = \"ecp5\" and fpga_fmax = true"}


def _err(source: str, where: str, value: Any, expected: str) -> SpecError:
    return SpecError(f"{source}: {where} = {value!r}: expected {expected}")


def _int(source: str, where: str, value: Any, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _err(source, where, value, f"an integer >= {minimum}")
    return value


def _range(source: str, name: str, table: dict) -> list[Any]:
    keys = set(table)
    if not ({"min", "max"} <= keys <= {"min", "max", "step", "factor"}) \
            or ("step" in keys and "factor" in keys):
        raise _err(source, f"space.{name}", table,
                   "a list of values or a table {min, max} with step or factor")
    lo, hi = table["min"], table["max"]
    for key in keys:
        v = table[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            raise _err(source, f"space.{name}.{key}", v, "a positive number")
    if hi < lo:
        raise _err(source, f"space.{name}", table, "min <= max (the range is empty)")
    if "factor" in keys and table["factor"] <= 1:
        raise _err(source, f"space.{name}.factor", table["factor"], "a factor above 1")
    values = []
    # each value from min directly (no accumulated rounding); at most MAX_SPACE + 1 of them
    for i in range(MAX_SPACE + 1):
        v = lo * table["factor"] ** i if "factor" in keys else lo + i * table.get("step", 1)
        if v > hi * (1 + 1e-12):
            break
        values.append(round(v, 9) if isinstance(v, float) else v)
    return values


def _space(source: str, base: ArrayConfig, raw: Any) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    if not isinstance(raw, dict) or not raw:
        raise _err(source, "space", raw, f"a table with some of {', '.join(SPACE_FIELDS)}")
    out = []
    for name, spec in raw.items():
        if name not in SPACE_FIELDS:
            raise SpecError(f"{source}: space.{name}: unknown field; expected some of "
                            f"{', '.join(SPACE_FIELDS)}")
        if isinstance(spec, dict):
            values = _range(source, name, spec)
        elif isinstance(spec, list):
            values = spec
        else:
            values = [spec]
        if not values:
            raise _err(source, f"space.{name}", spec, "at least one value (the space is empty)")
        for value in values:
            try:
                if name == "nm":
                    if not isinstance(value, str):
                        raise ConfigError(f"expected a pattern such as \"2:4\", not {value!r}")
                    n, m = parse_nm(value)
                    base.replace(n=n, m=m)
                else:
                    base.replace(**{name: value})
            except (ConfigError, ValueError) as e:
                raise SpecError(f"{source}: space.{name} value {value!r}: {e}") from None
        if len(set(values)) != len(values):
            raise _err(source, f"space.{name}", values, "values without repeats")
        out.append((name, tuple(values)))
    return tuple(out)


def _constraint(source: str, text: Any, computed: set[str]) -> Constraint:
    match = _CONSTRAINT.match(text) if isinstance(text, str) else None
    if not match:
        raise _err(source, "constraints[]", text, "'quantity op number', e.g. 'multipliers == 256'")
    quantity, op, number = match.groups()
    if quantity not in CONFIG_QUANTITIES and quantity not in RESULT_QUANTITIES:
        raise SpecError(f"{source}: constraint {text!r}: unknown quantity {quantity!r}; expected "
                        f"one of {', '.join([*CONFIG_QUANTITIES, *RESULT_QUANTITIES])}")
    needs = NEEDS.get(quantity)
    if needs and needs not in computed:
        raise SpecError(f"{source}: constraint {text!r} needs {_NEED_TEXT[needs]}")
    try:
        value = float(number)
    except ValueError:
        raise _err(source, f"constraint {text!r}", number, "a number") from None
    return Constraint(quantity, op, value)


def _search(source: str, raw: Any) -> SearchSpec:
    if raw is None:
        return SearchSpec()
    if not isinstance(raw, dict):
        raise _err(source, "search", raw, "a table with method, budget, seed")
    unknown = sorted(set(raw) - {"method", "budget", "seed", "population"})
    if unknown:
        raise SpecError(f"{source}: search: unknown key(s) {', '.join(unknown)}; expected "
                        "method, budget, seed, population")
    method = raw.get("method", "grid")
    if method not in METHODS:
        raise _err(source, "search.method", method, f"one of {', '.join(METHODS)}")
    budget = raw.get("budget")
    if method != "grid":
        if budget is None:
            raise SpecError(f"{source}: search.method = {method!r} needs a budget "
                            "(configurations to evaluate)")
        _int(source, "search.budget", budget)
    elif budget is not None:
        raise SpecError(f"{source}: search.budget = {budget!r}: a grid search evaluates the "
                        "whole space; use method = \"random\" or \"nsga2\" for a budget")
    seed = raw.get("seed", 0)
    _int(source, "search.seed", seed, minimum=0)
    population = _int(source, "search.population", raw.get("population", 8), minimum=2)
    return SearchSpec(method=method, budget=budget, seed=seed, population=population)


def _models(source: str, raw: Any) -> tuple[ModelSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise _err(source, "models", raw, "a non-empty array of [[models]] tables with a name")
    out = []
    for i, entry in enumerate(raw):
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) \
                or not entry["name"]:
            raise _err(source, f"models[{i}]", entry, "a table with a model name")
        unknown = sorted(set(entry) - {"name", "batch", "seq"})
        if unknown:
            raise SpecError(f"{source}: models[{i}]: unknown key(s) {', '.join(unknown)}; "
                            "expected name, batch, seq")
        for key in ("batch", "seq"):
            if entry.get(key) is not None:
                _int(source, f"models[{i}].{key}", entry[key])
        out.append(ModelSpec(entry["name"], entry.get("batch"), entry.get("seq")))
    labels = [m.label for m in out]
    if len(set(labels)) != len(labels):
        raise _err(source, "models", labels, "each model once")
    return tuple(out)


def _objectives(source: str, raw: Any, computed: set[str]) -> tuple[Objective, ...]:
    if raw is None:
        raw = ["latency", "energy", "area"] if "area" in computed else ["latency", "energy"]
    if not isinstance(raw, list) or not raw:
        raise _err(source, "objectives", raw, f"a non-empty list of {', '.join(OBJECTIVES)}")
    out = []
    for name in raw:
        if name not in OBJECTIVES:
            raise _err(source, "objectives[]", name, f"one of {', '.join(OBJECTIVES)}")
        needs = OBJECTIVES[name].needs
        if needs and needs not in computed:
            raise SpecError(f"{source}: objective {name!r} needs {_NEED_TEXT[needs]}")
        out.append(OBJECTIVES[name])
    if len(set(out)) != len(out):
        raise _err(source, "objectives", raw, "each objective once")
    return tuple(out)


def _check_feasible(spec: ExploreSpec) -> None:
    """Refuse a space that holds no configuration meeting the configuration constraints,
    naming the constraint that rules everything out when one does alone."""
    if spec.size > MAX_SPACE:
        raise SpecError(f"{spec.source}: the space has {spec.size:,} configurations; at most "
                        f"{MAX_SPACE:,} (narrow the lists or ranges)")
    configs = []
    for point in spec.points():
        try:
            configs.append(spec.config_of(point))
        except ConfigError:
            continue
    if not configs:
        raise SpecError(f"{spec.source}: no combination of the space is a valid configuration")
    for c in (c for c in spec.constraints if c.on_config):
        values = [CONFIG_QUANTITIES[c.quantity](cfg) for cfg in configs]
        if not any(c.holds(v) for v in values):
            raise SpecError(f"{spec.source}: constraint {c.text!r} holds for no configuration "
                            f"of the space ({c.quantity} spans {min(values):g}..{max(values):g})")
    if not any(spec.feasible(cfg) for cfg in configs):
        raise SpecError(f"{spec.source}: the constraints "
                        f"{', '.join(repr(c.text) for c in spec.constraints if c.on_config)} "
                        "together hold for no configuration of the space")


def parse_spec(values: dict, *, source: str = "spec") -> ExploreSpec:
    """An :class:`ExploreSpec` from the parsed TOML table ``values``."""
    if not isinstance(values, dict):
        raise _err(source, "spec", values, "a TOML table")
    unknown = sorted(set(values) - set(TOP_KEYS))
    if unknown:
        raise SpecError(f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; expected "
                        f"some of {', '.join(TOP_KEYS)}")
    try:
        base = preset(values.get("base", "default"))
    except ConfigError as e:
        raise SpecError(f"{source}: base: {e}") from None
    area = values.get("area", True)
    if not isinstance(area, bool):
        raise _err(source, "area", area, "true or false")
    table = values.get("energy_table")
    if table is not None and not isinstance(table, str):
        raise _err(source, "energy_table", table, "a path to a TOML energy table")
    fpga, device = values.get("fpga"), values.get("fpga_device")
    if fpga is not None and fpga not in FPGA_TARGETS:
        raise _err(source, "fpga", fpga, f"one of {', '.join(FPGA_TARGETS)}")
    if device is not None and (fpga is None or not isinstance(device, str)):
        raise _err(source, "fpga_device", device, "a device name, with fpga set")
    fmax = values.get("fpga_fmax", False)
    if not (fmax is True or fmax is False or fmax == "estimate") or (fmax and fpga != "ecp5"):
        raise _err(source, "fpga_fmax", fmax, "true, false or \"estimate\"; not false only "
                   "with fpga = \"ecp5\" (nextpnr-ecp5 places and routes)")
    liberty = values.get("liberty")
    if liberty is not None and (not isinstance(liberty, str) or not Path(liberty).is_file()):
        raise _err(source, "liberty", liberty, "the path of a Liberty (.lib) file")
    computed = {"area"} if area else set()
    if fpga:
        computed.add("fpga")
    if fmax:
        computed.add("fmax")
    if liberty:
        computed.add("liberty")
    raw_constraints = values.get("constraints", [])
    if not isinstance(raw_constraints, list):
        raise _err(source, "constraints", raw_constraints, "a list of strings")
    spec = ExploreSpec(
        models=_models(source, values.get("models")),
        base=base,
        space=_space(source, base, values.get("space")),
        constraints=tuple(_constraint(source, c, computed) for c in raw_constraints),
        objectives=_objectives(source, values.get("objectives"), computed),
        search=_search(source, values.get("search")),
        area=area, energy_table=table, fpga=fpga, fpga_device=device, fpga_fmax=fmax,
        liberty=liberty,
        source=source)
    _check_feasible(spec)
    return spec


def load_spec(path: str | Path) -> ExploreSpec:
    """Read and validate a SPEC file (TOML)."""
    path = Path(path)
    if path.suffix != ".toml":
        raise SpecError(f"SPEC {str(path)!r}: expected a .toml file")
    try:
        text = path.read_text()
    except OSError as e:
        raise SpecError(f"cannot read SPEC {str(path)!r}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise SpecError(f"SPEC {str(path)!r} is not UTF-8 text") from None
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{path}: malformed TOML: {e}") from None
    return parse_spec(values, source=str(path))
