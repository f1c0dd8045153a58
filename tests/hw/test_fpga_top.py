# amaranth: UnusedElaboratable=no
"""The whole accelerator on the FPGA: its synthesis maps the scratchpads to block RAM, and the
board design (:class:`~sparsa.hw.board_soc.BoardSoc`: the memory-mapped accelerator, an on-chip
AXI RAM holding a linked test program, a host FSM that writes the CSRs, waits for done and
checksums the outputs) runs in Amaranth's simulator to the golden model's memory and checksum."""

from __future__ import annotations

import json
import math
import re

import pytest
from amaranth.sim import Simulator

from sparsa.cli import main
from sparsa.config import ArrayConfig
from sparsa.hw import fpga
from sparsa.hw.board_soc import AxiRam, BoardSoc
from sparsa.hw.sram import scratchpads
from sparsa.sim.board_image import board_image, checksum, leds

SMALL = dict(act_buffer_kib=1, weight_buffer_kib=1, acc_buffer_kib=1)
TINY = ArrayConfig(rows=2, cols=2, n=2, m=4, **SMALL)

pytestmark = pytest.mark.xdist_group("fpga")


def pdp_brams(cfg: ArrayConfig) -> int:
    """Block RAMs the scratchpads need as ECP5 512 x 36 simple dual-port blocks (PDPW16KD, one
    write and one read port each; a memory with two read ports is built once per read port)."""
    total = 0
    for pad in scratchpads(cfg):
        reads = int(pad.ports.split("r")[0])
        total += reads * math.ceil(pad.width_bits / 36) * math.ceil(pad.depth / 512)
    return total


@pytest.mark.rtl
def test_accelerator_scratchpads_are_block_ram(tmp_path):
    result = fpga.synthesize(TINY, "ecp5", tmp_path, top="accelerator", place_and_route=False)
    memory_bits = sum(p.depth * p.width_bits for p in scratchpads(TINY))
    assert result.top == "accelerator"
    assert result.array.brams == result.array.cells["DP16KD"] == pdp_brams(TINY) > 0
    # Not in fabric: fewer flip-flops than the scratchpads hold bits, no LUT RAM for them.
    assert result.array.ffs < memory_bits
    assert 64 * result.array.cells.get("TRELLIS_DPR16X4", 0) < memory_bits // 10
    # the array's multipliers, and per column the requantizer's 32 x 16-bit product: two
    # 18 x 18 blocks (the 32-bit operand in two pieces)
    assert result.array.dsps == TINY.multipliers + 2 * TINY.cols
    assert result.pe.cells == {}                               # no PE alone for a whole top
    header, rows = fpga.result_rows(result)
    assert header[4] == "BRAMs"
    assert rows[0][4] == str(pdp_brams(TINY))


@pytest.mark.rtl
def test_synth_command_axi_accelerator(tmp_path, capsys):
    """``sparsa synth --top axi_accelerator``: the memory-mapped accelerator's scratchpads in
    block RAM too (the AXI top adds FIFOs, no memory of that size)."""
    config = tmp_path / "tiny.json"
    config.write_text(TINY.to_json())
    assert main(["synth", "--config", str(config), "--top", "axi_accelerator", "--target",
                 "ecp5", "--no-pnr", "-o", str(tmp_path / "out"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["top"] == "axi_accelerator"
    assert result["array"]["brams"] == pdp_brams(TINY)
    assert result["placed"] is None
    assert result["fmax_mhz"] is None


def run_board(cfg: ArrayConfig, image, max_cycles: int = 50_000):
    """Simulate :class:`BoardSoc` from reset until ``done``; return the cycles, the checksum,
    the LEDs, ``error`` and the RAM's words."""
    dut = BoardSoc(cfg, **image.soc_args())
    seen = {}

    async def bench(ctx):
        for cycle in range(max_cycles):
            if ctx.get(dut.done):
                seen.update(cycles=cycle, checksum=ctx.get(dut.checksum), leds=ctx.get(dut.leds),
                            error=ctx.get(dut.error),
                            memory=[ctx.get(dut.ram.data[i]) for i in range(image.depth)])
                return
            assert ctx.get(dut.leds) == 0, "the LEDs stay dark until the checksum is complete"
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen, f"the board design did not finish in {max_cycles} cycles"
    return seen


@pytest.mark.parametrize("bus", [32, 128])
def test_board_design_shows_the_golden_checksum(bus, seed_for, request):
    """The component the bitstream wraps, without the platform: from reset it starts the
    accelerator, which runs the linked program out of the on-chip RAM; the RAM then equals the
    golden model's memory, and the checksum and LEDs equal the golden ones, computed in Python
    from the golden memory."""
    cfg = TINY.replace(axi_data_bits=bus)
    image = board_image(cfg, seed=seed_for(request.node.nodeid) % 1000)
    initial = list(image.words) + [0] * (image.depth - len(image.words))
    outputs = slice(image.check_first, image.check_first + image.check_words)
    assert checksum(initial[outputs], bus) != image.checksum, "the outputs change the checksum"
    seen = run_board(cfg, image)
    assert seen["memory"] == list(image.expected)
    assert seen["error"] == 0
    assert seen["checksum"] == image.checksum
    assert seen["leds"] == leds(image.checksum)


def test_constructor_checks():
    with pytest.raises(ValueError, match="depth must be a power of two"):
        AxiRam(addr_bits=32, data_bits=64, depth=100)
    with pytest.raises(ValueError, match="the image has 5 words, more than the RAM's 4"):
        AxiRam(addr_bits=32, data_bits=64, depth=4, init=[0] * 5)
    with pytest.raises(ValueError, match=r"checked words 6\.\.9 must lie in the RAM's 8 words"):
        BoardSoc(TINY, image=[], depth=8, prog_base=0, prog_len=16, check_first=6,
                 check_words=4)
    with pytest.raises(ValueError, match="unknown top 'core'"):
        fpga.synthesize(TINY, "ecp5", "unused", top="core")


def test_cli_rejects_a_bad_top(capsys):
    for command in (["synth", "--target", "ecp5"], ["bitstream", "--board", "ulx3s-85f"]):
        with pytest.raises(SystemExit) as e:
            main([*command, "--top", "cpu"])
        assert e.value.code == 2
        assert "invalid choice: 'cpu'" in capsys.readouterr().err


@pytest.mark.rtl
@pytest.mark.slow
def test_bitstream_ulx3s_accelerator(tmp_path):
    """The board flow of the tiny accelerator with its test program (the same design as
    :func:`test_board_design_shows_the_golden_checksum`, on the ULX3S platform)."""
    from sparsa.hw import bitstream

    image = board_image(TINY)
    result = bitstream.build_bitstream(TINY, "ulx3s-85f", tmp_path, soc=image.soc_args())
    assert result.bitstream.name == "sparsa_soc.bit"
    assert result.bitstream.stat().st_size > 100_000
    assert result.fmax_mhz > result.clock_mhz == 25 / bitstream.SOC_CLOCK_DIVIDE
    report = (tmp_path / "sparsa_soc.rpt").read_text()
    cells = {name: int(n) for n, name in re.findall(r"^\s+(\d+)\s+(\w+)$", report, re.M)}
    # the accelerator's multipliers (and the AXI top's address arithmetic) are all there
    assert cells["MULT18X18D"] >= TINY.multipliers + 2 * TINY.cols
    # the scratchpads and the on-chip RAM (512 x 36 blocks side by side) in block RAM
    ram = math.ceil(TINY.axi_data_bits / 36) * math.ceil(image.depth / 512)
    assert cells["DP16KD"] == pdp_brams(TINY) + ram


def test_bitstream_command_prints_the_golden_checksum(tmp_path, monkeypatch, capsys):
    """``sparsa bitstream --top accelerator`` builds the board design from the image of
    :func:`board_image` and prints its golden checksum and LED byte (the build itself is
    replaced here; :func:`test_bitstream_ulx3s_accelerator` runs it)."""
    from sparsa.hw import bitstream

    built = {}

    def fake_build(cfg, board, out_dir, *, soc=None, name=None):
        built.update(cfg=cfg, board=board, soc=soc)
        bit = out_dir / "sparsa_soc.bit"
        bit.write_bytes(b"")
        return bitstream.Bitstream(board=board, bitstream=bit, fmax_mhz=30.0, clock_mhz=25.0,
                                   seconds=1.0)

    monkeypatch.setattr(bitstream, "build_bitstream", fake_build)
    config = tmp_path / "tiny.json"
    config.write_text(TINY.to_json())
    assert main(["bitstream", "--config", str(config), "--top", "accelerator", "--board",
                 "ulx3s-85f", "--seed", "3", "-o", str(tmp_path / "out")]) == 0
    image = board_image(TINY, seed=3)
    assert built["cfg"] == TINY
    assert built["soc"] == image.soc_args()
    out = capsys.readouterr().out
    assert f"checksum {image.checksum:#010x}" in out
    assert f"LEDs {image.leds:#04x} = {image.leds:08b}" in out
    assert (tmp_path / "out" / "sparsa_soc.bit").is_file()
