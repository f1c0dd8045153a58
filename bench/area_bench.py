"""Benchmark of the ASIC area model: modular synthesis (the array's own logic plus each distinct
PE module once, what ``sparsa explore`` uses) against flattened synthesis of the whole array, for
a few configurations: kGE of each, the modular figure's error, and the time of each (cache off).

Run: ``.venv/bin/python bench/area_bench.py [--configs 2x2:2:4,4x4:2:4,8x8:2:4]``.

``--accelerator [--presets tiny,default,large]`` prints instead the whole accelerator's area by
part (:func:`sparsa.hw.area.accelerator_area`): the array, the rest of its logic, the scratchpad
SRAM (CACTI table, also in mm²) and the total, with the time of each (cached parts are not
synthesized again).

``--logic [--presets ...]`` compares the accelerator's logic outside the array synthesized module
by module whole (every requantizer column) against what :func:`~sparsa.hw.area.accelerator_area`
does (the requantizer from its one- and two-column modules, :func:`~sparsa.hw.area.lane_parts`):
kGE of each, the error, and the time of each (the synthesis cache on: a module synthesized before
is read back, so run it with an empty ``SPARSA_CACHE_DIR`` for cold times).
"""

from __future__ import annotations

import argparse
import time

from sparsa.config import PRESETS, ArrayConfig
from sparsa.hw.area import (
    accelerator_area,
    array_area,
    export_text,
    gate_equivalents,
    lane_parts,
    load_gate_table,
    logic_cells,
)
from sparsa.nm import parse_nm

DEFAULT = "2x2:2:4,4x4:1:1,4x4:2:4,4x4:1:4,8x8:2:4"


def parse(text: str) -> ArrayConfig:
    shape, nm = text.split(":", 1)
    rows, cols = (int(x) for x in shape.split("x"))
    n, m = parse_nm(nm)
    return ArrayConfig(rows=rows, cols=cols, n=n, m=m)


def accelerator(presets: str) -> None:
    print(f"{'preset':>8} {'config':>10} {'array kGE':>9} {'logic kGE':>9} {'SRAM kGE':>9} "
          f"{'SRAM mm2':>8} {'total kGE':>9} {'s':>6}")
    for name in presets.split(","):
        cfg = PRESETS[name]
        start = time.perf_counter()
        a = accelerator_area(cfg)
        print(f"{name:>8} {cfg.rows}x{cfg.cols} {cfg.nm:>5} {a['array_kge']:9.1f} "
              f"{a['logic_kge']:9.1f} {a['sram_kge']:9.1f} {a['sram_um2'] / 1e6:8.3f} "
              f"{a['area_kge']:9.1f} {time.perf_counter() - start:6.1f}", flush=True)


def logic(presets: str) -> None:
    table = load_gate_table()
    print(f"{'preset':>8} {'config':>10} {'whole kGE':>9} {'lanes kGE':>9} {'error':>7} "
          f"{'whole s':>7} {'lanes s':>7}")
    for name in presets.split(","):
        cfg = PRESETS[name]
        module, text = export_text(cfg, "accelerator")
        start = time.perf_counter()
        whole, _ = logic_cells(text, module)
        whole_s = time.perf_counter() - start
        start = time.perf_counter()
        lanes, _ = logic_cells(text, module, lanes=lane_parts(cfg))
        lanes_s = time.perf_counter() - start
        a, b = gate_equivalents(whole, table), gate_equivalents(lanes, table)
        print(f"{name:>8} {cfg.rows}x{cfg.cols} {cfg.nm:>5} {a / 1000:9.2f} {b / 1000:9.2f} "
              f"{b / a - 1:+7.2%} {whole_s:7.1f} {lanes_s:7.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=DEFAULT)
    parser.add_argument("--accelerator", action="store_true")
    parser.add_argument("--logic", action="store_true")
    parser.add_argument("--presets", default="tiny,default,dense,large")
    args = parser.parse_args()
    if args.accelerator or args.logic:
        (logic if args.logic else accelerator)(args.presets)
        return
    print(f"{'config':>12} {'flat kGE':>9} {'modular kGE':>11} {'error':>7} {'flat s':>7} "
          f"{'modular s':>9}")
    for text in args.configs.split(","):
        cfg = parse(text)
        start = time.perf_counter()
        flat = array_area(cfg, method="flat", cache=False)
        flat_s = time.perf_counter() - start
        start = time.perf_counter()
        modular = array_area(cfg, method="modular", cache=False)
        modular_s = time.perf_counter() - start
        print(f"{cfg.rows}x{cfg.cols} {cfg.nm:>5} {flat.kge:9.2f} {modular.kge:11.2f} "
              f"{(modular.ge / flat.ge - 1):+7.2%} {flat_s:7.1f} {modular_s:9.1f}", flush=True)


if __name__ == "__main__":
    main()
