"""Energy model: action counts x the technology table."""

from __future__ import annotations

import dataclasses

import pytest

from sparsa.config import ArrayConfig
from sparsa.models.graph import Layer
from sparsa.sw.cost import Actions, layer_cost
from sparsa.sw.energy import Energy, EnergyTableError, energy_of, gating_saving_pj, load_table
from sparsa.sw.schedule import schedule_layer

TABLE = """
name = "mine"
[energy_pj]
mult_8b_pj = 1.0
add_8b_pj = 0.5
add_32b_pj = 2.0
register_bit_write_pj = 0.25
dram_64b_pj = 80.0
[sram]
points_kib_pj = [[8, 8.0], [32, 32.0]]
"""


def test_default_table_is_horowitz():
    t = load_table()
    assert (t.mult_8b_pj, t.add_8b_pj, t.add_32b_pj) == (0.2, 0.03, 0.1)
    assert t.sram_64b_pj(8) == pytest.approx(10)
    assert t.sram_64b_pj(32) == pytest.approx(20)
    assert t.sram_64b_pj(1024) == pytest.approx(100)
    assert 10 < t.sram_64b_pj(16) < 20
    assert 1300 <= t.dram_64b_pj <= 2600


def test_energy_by_hand(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text(TABLE)
    table = load_table(path)
    cfg = ArrayConfig(act_buffer_kib=8, weight_buffer_kib=32, acc_buffer_kib=16)
    actions = Actions(macs_issued=10, pe_register_write_bits=4, act_buffer_read_bytes=16,
                      weight_buffer_write_bytes=8, metadata_buffer_read_bytes=8,
                      acc_buffer_read_bytes=8, dram_act_bytes=16)
    e = energy_of(actions, cfg, table)
    assert e.mac == 10 * 3.0
    assert e.registers == 1.0
    assert e.act_sram == 2 * 8.0
    assert e.weight_sram == 32.0
    assert e.metadata_sram == 32.0
    assert e.acc_sram == pytest.approx(16.0)  # log-log midway between 8 pJ and 32 pJ
    assert e.dram == 160.0


def test_totals_equal_sum_of_parts():
    cfg = ArrayConfig(rows=4, cols=4, n=2, m=4)
    table = load_table()
    layers = [Layer("a", "linear", (30, 64), (30, 40), nm=(2, 4)),
              Layer("b", "linear", (30, 40), (30, 10))]
    parts = [energy_of(layer_cost(schedule_layer(x, cfg)).actions, cfg, table) for x in layers]
    total = parts[0] + parts[1]
    for e in [*parts, total]:
        assert e.total == pytest.approx(sum(dataclasses.astuple(e)))
    assert total.total == pytest.approx(parts[0].total + parts[1].total)
    assert isinstance(total, Energy)


@pytest.mark.parametrize(("edit", "match"), [
    (("mult_8b_pj = 1.0", ""), "missing key energy_pj.mult_8b_pj"),
    (("add_8b_pj = 0.5", "add_8b_pj = -1"), "energy_pj.add_8b_pj must be a non-negative"),
    (("dram_64b_pj = 80.0", "dram_64b_pj = 80.0\nflux_pj = 1"), "unknown key.*flux_pj"),
    (("points_kib_pj = [[8, 8.0], [32, 32.0]]", "points = 1"), "sram.points_kib_pj"),
    (("[sram]", "[sram"), "malformed TOML"),
    (("[sram]", "[gating]\ngated_mac_fraction = 1.5\n[sram]"), "gated_mac_fraction must be"),
    (("[sram]", "[gating]\nfraction = 0.5\n[sram]"), r"\[gating\] may only hold"),
])
def test_bad_table(tmp_path, edit, match):
    path = tmp_path / "bad.toml"
    path.write_text(TABLE.replace(*edit))
    with pytest.raises(EnergyTableError, match=match):
        load_table(path)


def test_zero_gating_energy(tmp_path):
    """A gated MAC costs gated_mac_fraction of a MAC: the default table's fraction is the
    multiplier-free share of a MAC (add_32b / (mult_8b + add_32b)); a table without [gating]
    claims no saving."""
    default = load_table()
    assert default.gated_mac_fraction == pytest.approx(
        default.add_32b_pj / default.mac_pj, rel=1e-3)
    path = tmp_path / "t.toml"
    path.write_text(TABLE)
    assert load_table(path).gated_mac_fraction == 1.0
    path.write_text(TABLE + "[gating]\ngated_mac_fraction = 0.25\n")
    table = load_table(path)
    cfg = ArrayConfig()
    actions = Actions(macs_issued=10, dram_act_bytes=16)
    plain, gated = energy_of(actions, cfg, table), energy_of(actions, cfg, table, gated_macs=4)
    assert plain.mac == 30.0
    assert gated.mac == 6 * 3.0 + 4 * 0.75
    assert plain.total - gated.total == pytest.approx(gating_saving_pj(table, 4)) == 9.0
    with pytest.raises(ValueError, match="gated_macs must be between"):
        energy_of(actions, cfg, table, gated_macs=11)
