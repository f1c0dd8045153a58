"""Wall time of one digits-CNN inference on each backend (issue 5 goal: < 30 s on Verilator).

For every backend the script runs ``sparsa run digits_cnn --images 1`` twice on the default
8x8 2:4 configuration: the first run includes building the simulator (Verilator/Icarus model,
pyverilator library), the second reuses the build, so its time is the inference itself (plus
model preparation and, for cocotb, starting the simulator).

Run: ``.venv/bin/python bench/run_bench.py [--images N] [--backends golden,pyverilator,...]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from sparsa.cli import main


def run(backend: str, images: int, out: Path) -> tuple[float, dict]:
    start = time.perf_counter()
    code = main(["run", "digits_cnn", "--sim", backend, "--images", str(images), "-o", str(out)])
    seconds = time.perf_counter() - start
    result = json.loads((out / "run.json").read_text())
    if code != 0:
        raise SystemExit(f"{backend}: the run broke a contract (see the table above)")
    return seconds, result


def bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=1)
    parser.add_argument("--backends", default="golden,pyverilator,verilator,icarus")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            out = Path(tmp) / backend
            cold, _ = run(backend, args.images, out)
            warm, result = run(backend, args.images, out)
            rows.append((backend, cold, warm, result["measured"], result["accuracy"]))
    print(f"\n== digits_cnn, {args.images} image(s), default 8x8 2:4 accelerator ==")
    print(f"{'backend':12s} {'first run s':>12s} {'warm run s':>11s} {'cycles':>8s} "
          f"{'cycles/s':>9s}  accuracy")
    for backend, cold, warm, cycles, acc in rows:
        print(f"{backend:12s} {cold:12.1f} {warm:11.1f} {cycles:8d} {cycles / warm:9.0f}  "
              f"{acc:.0%}")


if __name__ == "__main__":
    bench()
