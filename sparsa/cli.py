"""The ``sparsa`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .config import PRESETS, ArrayConfig, ConfigError, parse_nm, preset

__all__ = ["add_config_args", "config_from_args", "main"]


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """The array-configuration options every command shares."""
    group = parser.add_argument_group("array configuration")
    source = group.add_mutually_exclusive_group()
    source.add_argument("--preset", default=None,
                        help=f"named configuration ({', '.join(PRESETS)}; default: 'default')")
    source.add_argument("--config", metavar="FILE", default=None,
                        help="configuration file (.toml or .json)")
    group.add_argument("--rows", type=int, help="PE rows (overrides the preset/file)")
    group.add_argument("--cols", type=int, help="PE columns (overrides the preset/file)")
    group.add_argument("--nm", metavar="N:M", help="sparsity pattern, e.g. 2:4 (overrides)")


def config_from_args(args: argparse.Namespace) -> ArrayConfig:
    cfg = ArrayConfig.from_file(args.config) if args.config else preset(args.preset or "default")
    changes: dict = {}
    if args.rows is not None:
        changes["rows"] = args.rows
    if args.cols is not None:
        changes["cols"] = args.cols
    if args.nm is not None:
        changes["n"], changes["m"] = parse_nm(args.nm)
    return cfg.replace(**changes) if changes else cfg


def _cmd_verilog(args: argparse.Namespace) -> int:
    from sparsa.hw.export import export_verilog

    cfg = config_from_args(args)
    paths = export_verilog(cfg, args.output, top=args.top)
    print(f"{cfg.rows}x{cfg.cols} {cfg.nm} {args.top}: wrote {paths.verilog}, {paths.manifest}")
    if args.lint:
        from sparsa.sim.tools import lint

        lint(paths.verilog, paths.waivers, top=paths.module)
        print(f"verilator --lint-only -Wall: clean (waivers: {paths.waivers})")
    return 0


def _cmd_presets(args: argparse.Namespace) -> int:
    for name, cfg in PRESETS.items():
        print(f"{name:10s} {cfg.rows}x{cfg.cols} {cfg.nm:5s} {cfg.multipliers:5d} multipliers, "
              f"K per pass {cfg.k_per_pass}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sparsa", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("verilog", help="write Verilog and a JSON manifest for a configuration")
    add_config_args(p)
    p.add_argument("--top", choices=("array", "pe", "accelerator"), default="array",
                   help="design to export")
    p.add_argument("-o", "--output", default="build/verilog", help="output directory")
    p.add_argument("--lint", action="store_true", help="run verilator --lint-only -Wall on it")
    p.set_defaults(func=_cmd_verilog)

    p = sub.add_parser("presets", help="list the named configurations")
    p.set_defaults(func=_cmd_presets)

    # The subpackages' commands (their modules import heavy dependencies such as torch only
    # inside the command functions).
    from sparsa.hw.fpga_commands import register as register_fpga
    from sparsa.models.commands import register as register_models
    from sparsa.sim.commands import register as register_run
    from sparsa.sw.commands import register as register_report

    for register in (register_models, register_report, register_run, register_fpga):
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as e:
        parser.exit(2, f"sparsa: error: {e}\n")
    except (ValueError, RuntimeError, OSError) as e:
        parser.exit(1, f"sparsa: error: {e}\n")


if __name__ == "__main__":
    sys.exit(main())
