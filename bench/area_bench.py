"""Benchmark of the ASIC area model: modular synthesis (the array's own logic plus each distinct
PE module once, what ``sparsa explore`` uses) against flattened synthesis of the whole array, for
a few configurations: kGE of each, the modular figure's error, and the time of each (cache off).

Run: ``.venv/bin/python bench/area_bench.py [--configs 2x2:2:4,4x4:2:4,8x8:2:4]``.
"""

from __future__ import annotations

import argparse
import time

from sparsa.config import ArrayConfig
from sparsa.hw.area import array_area
from sparsa.nm import parse_nm

DEFAULT = "2x2:2:4,4x4:1:1,4x4:2:4,4x4:1:4,8x8:2:4"


def parse(text: str) -> ArrayConfig:
    shape, nm = text.split(":", 1)
    rows, cols = (int(x) for x in shape.split("x"))
    n, m = parse_nm(nm)
    return ArrayConfig(rows=rows, cols=cols, n=n, m=m)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=DEFAULT)
    args = parser.parse_args()
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
