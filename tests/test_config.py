"""ArrayConfig: validation, derived widths, presets, JSON/TOML loading."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import pytest

from sparsa.config import LIMITS, PRESETS, ArrayConfig, ConfigError, preset

# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "m"), [(3, 6), (5, 4), (2, 12), (1, 3), (4, 7), (9, 8)])
def test_invalid_nm_names_the_pattern(n, m):
    with pytest.raises(ConfigError, match=re.escape(f"{n}:{m}")):
        ArrayConfig(n=n, m=m)


@pytest.mark.parametrize(("n", "m"), [(3, 6), (2, 12), (1, 3)])
def test_m_not_power_of_two_is_named(n, m):
    with pytest.raises(ConfigError, match=r"power of two") as info:
        ArrayConfig(n=n, m=m)
    assert str(m) in str(info.value)


@pytest.mark.parametrize(("n", "m", "field", "bad"), [(0, 4, "n", 0), (2, 0, "m", 0),
                                                      (-1, 4, "n", -1), (1, -4, "m", -4)])
def test_non_positive_n_or_m(n, m, field, bad):
    with pytest.raises(ConfigError, match=rf"\b{field}\b.*not {bad}\b"):
        ArrayConfig(n=n, m=m)


@pytest.mark.parametrize("field", ["rows", "cols", "act_buffer_kib", "weight_buffer_kib",
                                   "acc_buffer_kib", "dram_bytes_per_cycle", "axi_latency"])
@pytest.mark.parametrize("bad", [0, -3])
def test_non_positive_sizes_rejected(field, bad):
    with pytest.raises(ConfigError, match=rf"^{field} must be a positive integer, not {bad}$"):
        ArrayConfig(**{field: bad})


@pytest.mark.parametrize("bad", [True, False, 2.0, 2.5, "2", None])
@pytest.mark.parametrize("field", ["rows", "cols"])
def test_non_int_rows_cols_rejected(field, bad):
    with pytest.raises(ConfigError, match=re.escape(f"{field} must be a positive integer, "
                                                    f"not {bad!r}")):
        ArrayConfig(**{field: bad})


@pytest.mark.parametrize("bad", [0, -1.5, 0.0, True, "200", float("nan")])
def test_bad_clock_rejected(bad):
    with pytest.raises(ConfigError, match=r"clock_mhz"):
        ArrayConfig(clock_mhz=bad)


@pytest.mark.parametrize("clock", [100, 250.5])
def test_clock_int_or_float_accepted(clock):
    assert ArrayConfig(clock_mhz=clock).clock_mhz == clock


@pytest.mark.parametrize(("act", "wgt"), [(8, 8), (4, 8), (8, 6), (16, 16)])
def test_acc_width_must_hold_one_product(act, wgt):
    ok = ArrayConfig(act_width=act, weight_width=wgt, acc_width=act + wgt)
    assert ok.acc_width == act + wgt
    bad = act + wgt - 1
    with pytest.raises(ConfigError, match=r"acc_width") as info:
        ArrayConfig(act_width=act, weight_width=wgt, acc_width=bad)
    assert re.search(rf"\b{bad}\b", str(info.value))
    assert re.search(rf"\b{act + wgt}\b", str(info.value))


@pytest.mark.parametrize("field", ["act_width", "weight_width"])
def test_operand_width_at_least_two(field):
    with pytest.raises(ConfigError, match=rf"{field}.*not 1\b"):
        ArrayConfig(**{field: 1})


@pytest.mark.parametrize("dataflow", ["os", "is", "WS", ""])
def test_unknown_dataflow_named(dataflow):
    with pytest.raises(ConfigError, match=re.escape(repr(dataflow))) as info:
        ArrayConfig(dataflow=dataflow)
    assert "dataflow" in str(info.value)


def test_replace_revalidates_and_copies():
    base = PRESETS["tiny"]
    assert base.replace(cols=5).cols == 5
    assert base.cols == 2
    with pytest.raises(ConfigError, match=r"3:6"):
        base.replace(n=3, m=6)


def test_config_is_frozen():
    cfg = ArrayConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.rows = 4


# --- derived properties ---------------------------------------------------------------------


@pytest.mark.parametrize(("n", "m", "width"), [(2, 4, 2), (1, 8, 3), (2, 8, 3), (4, 4, 0),
                                               (1, 1, 0), (1, 2, 1), (1, 4, 2), (4, 8, 3),
                                               (3, 4, 2), (2, 2, 0), (8, 16, 4)])
def test_index_width(n, m, width):
    assert ArrayConfig(n=n, m=m).index_width == width


@pytest.mark.parametrize(("n", "m"), [(1, 2), (1, 4), (3, 4), (2, 8), (5, 16), (1, 32)])
def test_index_width_addresses_every_slot(n, m):
    w = ArrayConfig(n=n, m=m).index_width
    assert 2 ** w >= m > 2 ** (w - 1)


@pytest.mark.parametrize(("rows", "cols", "n", "m"), [(2, 2, 2, 4), (8, 8, 1, 1), (3, 5, 1, 8),
                                                      (16, 4, 4, 8), (1, 1, 2, 2)])
def test_pass_shape(rows, cols, n, m):
    cfg = ArrayConfig(rows=rows, cols=cols, n=n, m=m)
    assert cfg.k_per_pass == rows * m
    assert cfg.act_vector_width == rows * m
    assert cfg.multipliers == rows * cols * n
    assert cfg.macs_per_cycle == rows * cols * n
    assert cfg.nm == f"{n}:{m}"
    assert cfg.is_dense == (n == m)


# --- presets --------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "rows", "cols", "n", "m"), [("tiny", 2, 2, 2, 4),
                                                              ("default", 8, 8, 2, 4),
                                                              ("dense", 8, 8, 1, 1)])
def test_documented_presets(name, rows, cols, n, m):
    cfg = preset(name)
    assert cfg is PRESETS[name]
    assert (cfg.rows, cfg.cols, cfg.n, cfg.m) == (rows, cols, n, m)
    assert (cfg.act_width, cfg.weight_width, cfg.acc_width) == (8, 8, 32)


def test_default_preset_is_the_default_config():
    assert preset("default") == ArrayConfig()


def test_dense_preset_has_no_index_metadata():
    assert preset("dense").is_dense
    assert preset("dense").index_width == 0


def test_unknown_preset_named():
    with pytest.raises(ConfigError, match=r"'nope'") as info:
        preset("nope")
    for name in ("tiny", "default", "dense"):
        assert name in str(info.value)


# --- JSON -----------------------------------------------------------------------------------

CUSTOM = ArrayConfig(rows=3, cols=5, n=1, m=8, act_width=4, weight_width=6, acc_width=24,
                     clock_mhz=312.5, act_buffer_kib=7, weight_buffer_kib=9, acc_buffer_kib=11,
                     dram_bytes_per_cycle=32)


@pytest.mark.parametrize("cfg", [*PRESETS.values(), CUSTOM], ids=[*PRESETS, "custom"])
def test_json_round_trip(cfg):
    text = cfg.to_json()
    assert json.loads(text) == dataclasses.asdict(cfg)
    back = ArrayConfig.from_json(text)
    assert back == cfg
    assert type(back.clock_mhz) is type(cfg.clock_mhz)


def test_json_has_every_field():
    names = {f.name for f in dataclasses.fields(ArrayConfig)}
    assert set(json.loads(CUSTOM.to_json())) == names


def test_json_partial_uses_defaults():
    assert ArrayConfig.from_json('{"rows": 4}') == ArrayConfig(rows=4)


@pytest.mark.parametrize("text", ['{"rows": 4', "", "rows = 4", '{"rows": 4,}'])
def test_malformed_json(text):
    with pytest.raises(ConfigError, match=r"JSON is malformed"):
        ArrayConfig.from_json(text)


def test_json_unknown_field_named():
    with pytest.raises(ConfigError, match=r"'rowz'") as info:
        ArrayConfig.from_json('{"rowz": 4, "cols": 2}')
    assert "'cols'" not in str(info.value).split(";")[0]


@pytest.mark.parametrize(("text", "kind"), [("[1, 2]", "list"), ("4", "int"), ('"x"', "str")])
def test_json_not_an_object(text, kind):
    with pytest.raises(ConfigError, match=rf"\b{kind}\b"):
        ArrayConfig.from_json(text)


def test_json_invalid_value():
    with pytest.raises(ConfigError, match=r"3:6"):
        ArrayConfig.from_json('{"n": 3, "m": 6}')


# --- files ----------------------------------------------------------------------------------


def test_json_file_round_trip(tmp_path):
    path = tmp_path / "cfg.json"
    path.write_text(CUSTOM.to_json())
    assert ArrayConfig.from_file(path) == CUSTOM
    assert ArrayConfig.from_file(str(path)) == CUSTOM


def test_toml_top_level(tmp_path):
    path = tmp_path / "cfg.toml"
    path.write_text('rows = 4\ncols = 3\nn = 1\nm = 8\nclock_mhz = 150.0\ndataflow = "ws"\n')
    assert ArrayConfig.from_file(path) == ArrayConfig(rows=4, cols=3, n=1, m=8, clock_mhz=150.0)


def test_toml_array_table(tmp_path):
    path = tmp_path / "cfg.toml"
    path.write_text("# an accelerator\n[array]\nrows = 6\ncols = 2\nacc_width = 24\n")
    assert ArrayConfig.from_file(path) == ArrayConfig(rows=6, cols=2, acc_width=24)


def test_toml_preset_with_overrides(tmp_path):
    path = tmp_path / "cfg.toml"
    path.write_text('preset = "tiny"\ncols = 4\nclock_mhz = 100.0\n')
    cfg = ArrayConfig.from_file(path)
    tiny = PRESETS["tiny"]
    assert cfg == ArrayConfig(rows=tiny.rows, cols=4, n=tiny.n, m=tiny.m, clock_mhz=100.0)
    assert PRESETS["tiny"].cols == 2  # the preset itself is untouched


def test_toml_preset_inside_array_table(tmp_path):
    path = tmp_path / "cfg.toml"
    path.write_text('[array]\npreset = "dense"\nrows = 4\n')
    assert ArrayConfig.from_file(path) == PRESETS["dense"].replace(rows=4)


def test_toml_preset_alone(tmp_path):
    path = tmp_path / "cfg.toml"
    path.write_text('preset = "tiny"\n')
    assert ArrayConfig.from_file(path) == PRESETS["tiny"]


def test_json_file_preset_with_overrides(tmp_path):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"preset": "tiny", "rows": 3}))
    assert ArrayConfig.from_file(path) == PRESETS["tiny"].replace(rows=3)


def test_file_unknown_preset(tmp_path):
    path = tmp_path / "cfg.toml"
    path.write_text('preset = "huge"\n')
    with pytest.raises(ConfigError, match=r"'huge'"):
        ArrayConfig.from_file(path)


def test_file_non_string_preset(tmp_path):
    path = tmp_path / "cfg.toml"
    path.write_text('preset = ["tiny"]\n')
    with pytest.raises(ConfigError, match=r"preset"):
        ArrayConfig.from_file(path)


@pytest.mark.parametrize("text", ["rows = \n", "[array\nrows = 4\n", "rows = 4\nrows = 5\n",
                                  'dataflow = "ws\n'])
def test_malformed_toml_names_file(tmp_path, text):
    path = tmp_path / "broken.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"malformed TOML") as info:
        ArrayConfig.from_file(path)
    assert str(path) in str(info.value)


def test_malformed_json_file_names_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"rows": 4,')
    with pytest.raises(ConfigError, match=r"malformed JSON") as info:
        ArrayConfig.from_file(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(("name", "text"), [("cfg.toml", "rows = 4\nbogus_width = 3\n"),
                                            ("cfg.toml", "[array]\nrows = 4\nbogus_width = 3\n"),
                                            ("cfg.json", '{"rows": 4, "bogus_width": 3}')])
def test_unknown_field_in_file_names_file_and_field(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"'bogus_width'") as info:
        ArrayConfig.from_file(path)
    assert str(path) in str(info.value)


def test_toml_top_level_keys_beside_array_table_not_ignored(tmp_path):
    path = tmp_path / "cfg.toml"
    path.write_text("rowz = 4\n[array]\ncols = 2\n")
    with pytest.raises(ConfigError, match=r"rowz"):
        ArrayConfig.from_file(path)


def test_toml_invalid_value(tmp_path):
    path = tmp_path / "cfg.toml"
    path.write_text("n = 5\nm = 4\n")
    with pytest.raises(ConfigError, match=r"5:4"):
        ArrayConfig.from_file(path)


def test_toml_float_rows_rejected(tmp_path):
    path = tmp_path / "cfg.toml"
    path.write_text("rows = 4.0\n")
    with pytest.raises(ConfigError, match=r"rows must be a positive integer, not 4\.0"):
        ArrayConfig.from_file(path)


def test_missing_file_named(tmp_path):
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match=r"cannot read") as info:
        ArrayConfig.from_file(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name", ["cfg.yaml", "cfg", "cfg.txt"])
def test_unsupported_suffix(tmp_path, name):
    path = tmp_path / name
    path.write_text("rows = 4\n")
    with pytest.raises(ConfigError, match=r"\.toml or \.json") as info:
        ArrayConfig.from_file(path)
    assert str(path) in str(info.value)


def test_every_preset_is_consistent():
    for name, cfg in PRESETS.items():
        assert ArrayConfig.from_dict(cfg.to_dict(), source=name) == cfg
        assert cfg.index_width == (0 if cfg.n == cfg.m else math.ceil(math.log2(cfg.m)))


@pytest.mark.parametrize(("field", "value"), [("rows", 100_000), ("cols", 4097), ("m", 2048),
                                              ("acc_width", 65), ("act_buffer_kib", 1 << 21),
                                              ("dram_bytes_per_cycle", 1 << 17),
                                              ("clock_mhz", 1e6), ("axi_latency", 10**6)])
def test_absurd_sizes_refused_with_the_bound(field, value):
    with pytest.raises(ConfigError, match=rf"{field} = .* bound of") as info:
        ArrayConfig(**{field: value})
    assert f"{LIMITS[field]:,}" in str(info.value)
    at_limit = {"m": {"n": 1, "m": LIMITS["m"]}}.get(field, {field: LIMITS[field]})
    ArrayConfig(**at_limit)   # the bound itself is accepted


@pytest.mark.parametrize(("field", "bad"), [("axi_data_bits", 96), ("axi_data_bits", 16),
                                            ("axi_data_bits", True), ("axi_addr_bits", 8),
                                            ("axi_addr_bits", 65), ("axi_addr_bits", "32")])
def test_axi_port_widths_checked(field, bad):
    with pytest.raises(ConfigError, match=rf"{field} must be .* not {re.escape(repr(bad))}"):
        ArrayConfig(**{field: bad})
    assert ArrayConfig(axi_data_bits=512, axi_addr_bits=40).axi_data_bits == 512
