"""FPGA resources of a configuration for ``sparsa report --area fpga`` and ``sparsa explore``:
the array's LUTs, flip-flops, DSP blocks and carry cells from the :mod:`sparsa.hw.fpga` synthesis,
the block RAMs of the accelerator's scratchpads (each memory mapped by the same synthesis
script), and the array's Fmax: post-route (nextpnr-ecp5), or, during a search, an estimate fitted
to the arrays placed and routed before, whose leave-one-out error :func:`fmax_estimate_errors`
measures. Everything is cached like :mod:`sparsa.hw.area`.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from pathlib import Path

from sparsa.config import ArrayConfig

from .area import area_cache_dir, cached_cells, index_path, rtl_fingerprint, write_json
from .export import check_export_size
from .sram import scratchpads

__all__ = ["FMAX_MODES", "estimate_fmax", "fmax_estimate_errors", "fpga_brams",
           "fpga_resources", "memory_verilog", "placed_fmax", "record_fmax"]


def memory_verilog(depth: int, width: int, reads: int) -> str:
    """A scratchpad as an FPGA tool sees it: one synchronous write port and ``reads``
    synchronous, non-transparent read ports with enables (the accelerator's
    ``amaranth.lib.memory`` ports), ``depth`` words of ``width`` bits, in a module ``mem``."""
    a = max(1, (depth - 1).bit_length())
    ports = ["input clk", "input we", f"input [{a - 1}:0] wa", f"input [{width - 1}:0] wd"]
    body = [f"  reg [{width - 1}:0] m [0:{depth - 1}];", "  always @(posedge clk) begin",
            "    if (we) m[wa] <= wd;"]
    for i in range(reads):
        ports += [f"input re{i}", f"input [{a - 1}:0] ra{i}", f"output reg [{width - 1}:0] rd{i}"]
        body.append(f"    if (re{i}) rd{i} <= m[ra{i}];")
    return (f"module mem ({', '.join(ports)});\n" + "\n".join([*body, "  end"])
            + "\nendmodule\n")


def fpga_brams(cfg: ArrayConfig, target: str = "ecp5", device: str | None = None, *,
               cache: bool = True) -> int:
    """Block RAMs (ECP5 DP16KD, iCE40 SB_RAM40_4K, Xilinx RAMB18/36) of the accelerator's three
    scratchpads: each one's memory (:func:`memory_verilog`, the shape and ports of
    :func:`sparsa.hw.sram.scratchpads`) mapped by the target's Yosys synthesis script of
    :mod:`sparsa.hw.fpga`, cached by the hash of its Verilog and script."""
    from .fpga import check_target, synth_script

    spec, device = check_target(target, device)
    script = synth_script(spec, device, "{top}", "{top}.netlist.json", "{stats}")
    total = 0
    for pad in scratchpads(cfg):
        reads = int(pad.ports.split("r")[0])
        cells, _ = cached_cells(memory_verilog(pad.depth, pad.width_bits, reads), "mem",
                                script, cache)
        total += sum(n for cell, n in cells.items() if spec.brams and cell.startswith(spec.brams))
    return total


FMAX_MODES = (False, True, "estimate")


def fpga_resources(cfg: ArrayConfig, target: str = "ecp5", device: str | None = None, *,
                   fmax: bool | str = False, cache: bool = True) -> dict[str, float]:
    """LUTs, flip-flops, DSP blocks and carry cells of the array synthesized for an FPGA
    (:func:`sparsa.hw.fpga.synthesize`), the block RAMs of the scratchpads
    (:func:`fpga_brams`) and, with ``fmax`` (ECP5), the array's Fmax in MHz (``fmax_mhz``):
    post-route (nextpnr at ``cfg.clock_mhz``, one seed) with ``fmax=True``; with
    ``"estimate"``, :func:`estimate_fmax` from the arrays placed and routed before, or
    post-route when it has too few. Cached like :func:`array_area` (the index key names the
    target, device and whether it was placed and routed)."""
    if fmax not in FMAX_MODES or (fmax and target != "ecp5"):
        raise ValueError(f"fmax must be false, true or 'estimate', and needs target 'ecp5' "
                         f"(nextpnr-ecp5), not {fmax!r} for {target!r}")
    if fmax == "estimate":
        estimate = estimate_fmax(cfg, placed_fmax(target, device))
        if estimate is not None:
            return fpga_resources(cfg, target, device, cache=cache) | {"fmax_mhz": estimate}
        fmax = True
    figures = _fpga_synthesis(cfg, target, device, bool(fmax), cache)
    if fmax:
        record_fmax(cfg, target, device, figures["fmax_mhz"])
    return figures


def _fpga_synthesis(cfg: ArrayConfig, target: str, device: str | None, pnr: bool,
                    cache: bool) -> dict[str, float]:
    from .fpga import synthesize

    check_export_size(cfg)
    index = index_path(cfg, "array", f"fpga:{target}:{device}{':pnr' if pnr else ''}")
    if cache and index.is_file():
        try:
            return {k: float(v) if k == "fmax_mhz" else int(v)
                    for k, v in json.loads(index.read_text()).items()}
        except (OSError, ValueError, AttributeError):
            pass   # a damaged entry: synthesize again
    with tempfile.TemporaryDirectory(prefix="sparsa-fpga-") as tmp:
        result = synthesize(cfg, target, tmp, device=device, place_and_route=pnr, pe=False)
    figures: dict[str, float] = {
        "luts": result.array.luts, "ffs": result.array.ffs, "dsps": result.array.dsps,
        "carry": result.array.carry, "brams": fpga_brams(cfg, target, device, cache=cache)}
    if pnr:
        figures["fmax_mhz"] = float(result.fmax_mhz)
    if cache:
        write_json(index, figures)
    return figures


# --- a stand-in for place and route during a search ---

def _fmax_dir() -> Path:
    return area_cache_dir() / "fmax"


def record_fmax(cfg: ArrayConfig, target: str, device: str | None, fmax: float) -> None:
    """Remember a post-route Fmax with its configuration, for :func:`placed_fmax`."""
    key = hashlib.sha256(f"{rtl_fingerprint()}\0{target}\0{device}\0{cfg.to_json()}".encode())
    write_json(_fmax_dir() / f"{key.hexdigest()}.json",
                {"rtl": rtl_fingerprint(), "target": target, "device": str(device),
                 "config": cfg.to_dict(), "fmax_mhz": fmax})


def placed_fmax(target: str = "ecp5", device: str | None = None
                ) -> list[tuple[ArrayConfig, float]]:
    """(configuration, post-route Fmax) of every array of this RTL placed and routed on
    ``target``/``device`` so far (through :func:`fpga_resources`)."""
    rtl, found = rtl_fingerprint(), []
    for path in sorted(_fmax_dir().glob("*.json")):
        try:
            entry = json.loads(path.read_text())
            if (entry["rtl"], entry["target"], entry["device"]) == (rtl, target, str(device)):
                found.append((ArrayConfig.from_dict(entry["config"]), float(entry["fmax_mhz"])))
        except (OSError, ValueError, KeyError, TypeError):
            continue   # a damaged record is no evidence
    return found


def _pe_kind(cfg: ArrayConfig) -> tuple:
    return (cfg.n, cfg.m, cfg.act_width, cfg.weight_width, cfg.acc_width, cfg.pipeline_depth)


def estimate_fmax(cfg: ArrayConfig, placed: list[tuple[ArrayConfig, float]]) -> float | None:
    """The Fmax of ``cfg``'s array estimated from ``placed`` results of arrays with the same
    PE (N:M, widths, pipeline depth): a least-squares line of Fmax against log2(PEs) (the PE's
    own path sets Fmax; routing a larger array costs a little more). None with fewer than two
    array sizes of that PE to fit."""
    same = [(math.log2(c.rows * c.cols), f) for c, f in placed if _pe_kind(c) == _pe_kind(cfg)]
    if len({x for x, _ in same}) < 2:
        return None
    n = len(same)
    mx, my = sum(x for x, _ in same) / n, sum(f for _, f in same) / n
    slope = (sum((x - mx) * (f - my) for x, f in same)
             / sum((x - mx) ** 2 for x, _ in same))
    return my + slope * (math.log2(cfg.rows * cfg.cols) - mx)


def fmax_estimate_errors(target: str = "ecp5", device: str | None = None
                         ) -> list[tuple[ArrayConfig, float, float]]:
    """(configuration, post-route Fmax, :func:`estimate_fmax` from all the other placed arrays)
    for every placed array whose estimate exists: the estimate's leave-one-out error."""
    placed = placed_fmax(target, device)
    errors = []
    for cfg, real in placed:
        others = [(c, f) for c, f in placed if c.replace(clock_mhz=1.0)
                  != cfg.replace(clock_mhz=1.0)]
        estimate = estimate_fmax(cfg, others)
        if estimate is not None:
            errors.append((cfg, real, estimate))
    return errors
