"""``sparsa verilog`` and ``sparsa presets``: generated RTL and the named configurations."""

from __future__ import annotations

import argparse

from sparsa.config import PRESETS

from .common import add_command, add_config_args, check_output_dir, config_from_args, output_dir

__all__ = ["register"]

# The exportable designs, as sparsa.hw.export.TOPS names them (listed here so that building the
# parser does not import Amaranth; tests/test_cli.py checks the two agree).
TOPS = ("array", "pe", "accelerator", "dma_reader", "dma_writer", "csr", "axi_accelerator")


def _cmd_verilog(args: argparse.Namespace) -> int:
    from sparsa.hw.export import check_export_size, export_verilog

    out = check_output_dir(args.output)
    cfg = config_from_args(args)
    check_export_size(cfg)
    with output_dir(out, "verilog") as tmp:
        paths = export_verilog(cfg, tmp, top=args.top)
        if args.lint:
            from sparsa.sim.tools import lint

            lint(paths.verilog, paths.waivers, top=paths.module)
    print(f"{cfg.rows}x{cfg.cols} {cfg.nm} {args.top}: wrote {out / paths.verilog.name}, "
          f"{out / paths.manifest.name}")
    if args.lint:
        print(f"verilator --lint-only -Wall: clean (waivers: {out / paths.waivers.name})")
    return 0


def _cmd_presets(args: argparse.Namespace) -> int:
    print(f"{'preset':10s} {'array':>7s} {'N:M':>5s} {'multipliers':>11s} {'K/pass':>6s} "
          f"{'buffers act/wt/acc KiB':>22s} {'DRAM B/cycle':>12s} {'clock MHz':>9s}")
    for name, cfg in PRESETS.items():
        buffers = f"{cfg.act_buffer_kib}/{cfg.weight_buffer_kib}/{cfg.acc_buffer_kib}"
        print(f"{name:10s} {cfg.rows:>3d}x{cfg.cols:<3d} {cfg.nm:>5s} {cfg.multipliers:11d} "
              f"{cfg.k_per_pass:6d} {buffers:>22s} {cfg.dram_bytes_per_cycle:12d} "
              f"{cfg.clock_mhz:9g}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``verilog`` and ``presets`` to the ``sparsa`` command line."""
    p = add_command(sub, "verilog", "write Verilog and a JSON manifest for a configuration")
    add_config_args(p)
    p.add_argument("--top", choices=TOPS, default="array", help="design to export")
    p.add_argument("-o", "--output", default="build/verilog", help="output directory")
    p.add_argument("--lint", action="store_true", help="run verilator --lint-only -Wall on it")
    p.set_defaults(func=_cmd_verilog)

    p = add_command(sub, "presets", "list the named configurations")
    p.set_defaults(func=_cmd_presets)
