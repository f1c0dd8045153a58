"""The one parameter set of a sparsa accelerator.

:class:`ArrayConfig` is the only place hardware parameters live. The Amaranth elaboration, the
golden model, the cycle/cost model and every testbench read it; nothing re-derives a width by hand.
Generated Verilog carries no parameters, so the config travels next to it as JSON
(:meth:`ArrayConfig.to_json` / :meth:`ArrayConfig.from_json`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .nm import validate_nm

__all__ = ["ADDR_BITS", "PRESETS", "ArrayConfig", "ConfigError", "ConfigWarning", "preset"]


class ConfigError(ValueError):
    """A configuration value is out of range, malformed or unknown."""


class ConfigWarning(UserWarning):
    """A configuration that is valid but probably not what was meant."""


DATAFLOWS = ("ws",)
# AXI4 data bus widths (the specification allows 8 to 1024 bits in powers of two; sparsa's
# DMA moves whole 32-bit words at least).
AXI_DATA_BITS = (32, 64, 128, 256, 512, 1024)

# An instruction addresses scratchpad rows and counts rows in fields of this many bits (the
# ISA's fixed width, :data:`sparsa.isa.FORMATS`), so a scratchpad holds at most 2**ADDR_BITS rows.
ADDR_BITS = 16


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, not {value!r}")


# Upper bounds, far beyond any real accelerator, so an absurd value (a typo such as 100000 rows)
# is refused at once instead of making a cost-model run or an elaboration grow without end.
# (RTL export has its own, lower bound on the PE count: sparsa.hw.export.MAX_PES.)
LIMITS = {"rows": 4096, "cols": 4096, "m": 1024, "act_width": 32, "weight_width": 32,
          "acc_width": 64, "act_buffer_kib": 1 << 20, "weight_buffer_kib": 1 << 20,
          "acc_buffer_kib": 1 << 20, "dram_bytes_per_cycle": 1 << 16, "clock_mhz": 100_000,
          "axi_latency": 100_000}


def _bounded(name: str, value: Any) -> None:
    limit = LIMITS[name]
    if value > limit:
        raise ConfigError(f"{name} = {value!r} is beyond sparsa's bound of {limit:,} (far "
                          "larger than any real accelerator: probably a typo)")


def _positive_number(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{name} must be a positive number, not {value!r}")


@dataclass(frozen=True)
class ArrayConfig:
    """Parameters of an N:M sparse weight-stationary systolic array.

    The array computes ``Y[P x cols] = X[P x K] . W[K x cols]`` where every group of ``m``
    consecutive K indices of a weight column holds at most ``n`` nonzeros. PE(r, c) keeps the
    ``n`` values and ``n`` indices of column ``c`` for one group, so one pass covers
    ``K = rows * m`` with ``rows * cols * n`` multipliers. ``n == m`` is dense hardware: the PE
    has no index multiplexers (1:1 is the classic one-multiplier PE).
    """

    rows: int = 8
    cols: int = 8
    n: int = 2
    m: int = 4
    act_width: int = 8
    weight_width: int = 8
    acc_width: int = 32
    dataflow: str = "ws"
    # Extra register stages inside each PE: 0 = select, multiply and add in one cycle;
    # 1 = a register after the multipliers; 2 = registers after the select and the multipliers.
    pipeline_depth: int = 0
    clock_mhz: float = 200.0
    # Scratchpad and memory-system sizes: reserved for the accelerator and cost model.
    act_buffer_kib: int = 64
    weight_buffer_kib: int = 64
    acc_buffer_kib: int = 64
    dram_bytes_per_cycle: int = 16
    # The AXI4 memory port of the memory-mapped accelerator: data and address widths in bits.
    axi_data_bits: int = 128
    axi_addr_bits: int = 32
    # Read latency of the memory behind that port, in cycles from a burst's address to its first
    # beat (the top's cycle model and the native harness; 20 cycles = 100 ns at 200 MHz).
    axi_latency: int = 20

    def __post_init__(self) -> None:
        for name in ("rows", "cols", "n", "m", "act_width", "weight_width", "acc_width",
                     "act_buffer_kib", "weight_buffer_kib", "acc_buffer_kib",
                     "dram_bytes_per_cycle", "axi_latency"):
            _positive_int(name, getattr(self, name))
        _positive_number("clock_mhz", self.clock_mhz)
        for name in LIMITS:
            _bounded(name, getattr(self, name))
        try:
            validate_nm(self.n, self.m)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        for name in ("act_width", "weight_width"):
            if getattr(self, name) < 2:
                raise ConfigError(f"{name} must be at least 2 bits (signed operands), "
                                  f"not {getattr(self, name)}")
        if self.acc_width < self.act_width + self.weight_width:
            raise ConfigError(
                f"acc_width must hold one product: at least act_width + weight_width = "
                f"{self.act_width + self.weight_width} bits, not {self.acc_width}")
        if isinstance(self.pipeline_depth, bool) or self.pipeline_depth not in (0, 1, 2):
            raise ConfigError(f"pipeline_depth must be 0, 1 or 2, not {self.pipeline_depth!r}")
        if self.dataflow not in DATAFLOWS:
            raise ConfigError(f"dataflow must be one of {', '.join(DATAFLOWS)}, "
                              f"not {self.dataflow!r}")
        if self.axi_data_bits not in AXI_DATA_BITS:
            raise ConfigError(f"axi_data_bits must be one of {', '.join(map(str, AXI_DATA_BITS))}"
                              f" (an AXI4 data bus), not {self.axi_data_bits!r}")
        if isinstance(self.axi_addr_bits, bool) or self.axi_addr_bits not in range(16, 65):
            raise ConfigError(f"axi_addr_bits must be an integer from 16 to 64, "
                              f"not {self.axi_addr_bits!r}")

    # Derived properties: every width in the design comes from here.

    @property
    def nm(self) -> str:
        return f"{self.n}:{self.m}"

    @property
    def is_dense(self) -> bool:
        """Dense hardware (n == m): no index metadata, no activation multiplexers."""
        return self.n == self.m

    @property
    def index_width(self) -> int:
        """Bits per stored index: ceil(log2 m), or 0 for dense hardware."""
        return 0 if self.is_dense else max(1, math.ceil(math.log2(self.m)))

    @property
    def k_per_pass(self) -> int:
        """Reduction length one pass of the array covers: rows * m."""
        return self.rows * self.m

    @property
    def multipliers(self) -> int:
        return self.rows * self.cols * self.n

    @property
    def macs_per_cycle(self) -> int:
        """Multiply-accumulates the array issues per cycle when streaming."""
        return self.multipliers

    @property
    def act_vector_width(self) -> int:
        """Activations per beat of the array's input stream: rows * m."""
        return self.rows * self.m

    @property
    def row_bits(self) -> dict[str, int]:
        """Bits of a scratchpad row: an activation beat, a PE row of compressed weights (values
        and indices), a row of accumulators."""
        return {
            "act": self.act_vector_width * self.act_width,
            "weight": self.cols * self.n * (self.weight_width + self.index_width),
            "acc": self.cols * self.acc_width,
        }

    @property
    def addr_bits(self) -> int:
        """Bits of a scratchpad row address (and row count) in an instruction."""
        return ADDR_BITS

    @property
    def scratchpad_rows(self) -> dict[str, int]:
        """Rows of the accelerator's scratchpads: each buffer's size over its row width, at most
        2**addr_bits (the instruction's address field)."""
        kib = {"act": self.act_buffer_kib, "weight": self.weight_buffer_kib,
               "acc": self.acc_buffer_kib}
        return {k: max(1, min(1 << self.addr_bits, kib[k] * 8192 // bits))
                for k, bits in self.row_bits.items()}

    def replace(self, **changes: Any) -> ArrayConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    # Serialisation.

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> ArrayConfig:
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: expected a table of config fields, "
                              f"not {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown config field(s) {', '.join(map(repr, unknown))}; "
                              f"expected some of {', '.join(sorted(known))}")
        try:
            return cls(**values)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None

    @classmethod
    def from_json(cls, text: str) -> ArrayConfig:
        try:
            values = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"config JSON is malformed: {e}") from None
        return cls.from_dict(values, source="config JSON")

    @classmethod
    def from_file(cls, path: str | Path) -> ArrayConfig:
        """Load a ``.toml`` or ``.json`` file. In TOML the fields may sit at top level or in an
        ``[array]`` table; ``preset = "name"`` starts from a named preset."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as e:
            raise ConfigError(f"cannot read config file {str(path)!r}: {e.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"config file {str(path)!r} is not text (expected UTF-8 TOML or "
                              "JSON)") from None
        if path.suffix == ".json":
            try:
                values = json.loads(text)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path}: malformed JSON: {e}") from None
        elif path.suffix == ".toml":
            try:
                values = tomllib.loads(text)
            except tomllib.TOMLDecodeError as e:
                raise ConfigError(f"{path}: malformed TOML: {e}") from None
            if "array" in values:
                extra = sorted(set(values) - {"array"})
                if extra:
                    raise ConfigError(f"{path}: unknown top-level key(s) "
                                      f"{', '.join(map(repr, extra))} beside the [array] table")
                values = values["array"]
        else:
            raise ConfigError(f"config file {str(path)!r} must end in .toml or .json")
        if values == {}:
            warnings.warn(f"config file {str(path)!r} sets nothing: every field takes its "
                          "default", ConfigWarning, stacklevel=2)
        if isinstance(values, dict) and "preset" in values:
            values = dict(values)
            base = preset(values.pop("preset"))
            values = base.to_dict() | values
        return cls.from_dict(values, source=str(path))


PRESETS: dict[str, ArrayConfig] = {
    "tiny": ArrayConfig(rows=2, cols=2, n=2, m=4),
    "default": ArrayConfig(rows=8, cols=8, n=2, m=4),
    "dense": ArrayConfig(rows=8, cols=8, n=1, m=1),
    "1of4": ArrayConfig(rows=8, cols=8, n=1, m=4),
    # DRAM bandwidth scales with the multipliers: 1/8 byte per multiplier per cycle, as default.
    "large": ArrayConfig(rows=16, cols=16, n=2, m=4, dram_bytes_per_cycle=64),
}


def preset(name: str) -> ArrayConfig:
    if not isinstance(name, str):
        raise ConfigError(f"preset must be a name ({', '.join(PRESETS)}), not {name!r}")
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; expected one of "
                          f"{', '.join(PRESETS)}") from None
