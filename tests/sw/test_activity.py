"""Activation sparsity: the gated-MAC prediction from data equals the golden executor's count on
assembled GEMMs; declared densities are validated; measured densities come from the int8 data."""

from __future__ import annotations

import numpy as np
import pytest

from sparsa.config import ArrayConfig
from sparsa.models.graph import Layer, LayerGraph
from sparsa.sim.golden_accel import GoldenAccelerator
from sparsa.sim.stimulus import random_nm_weights
from sparsa.sw.activity import (
    ActDensityError,
    calibrated_densities,
    density_of,
    expected_gated_macs,
    gemm_gated_macs,
    layer_density,
    layer_gated_macs,
    load_densities,
    load_inputs,
)
from sparsa.sw.assemble import assemble_gemm, assemble_layer
from sparsa.sw.schedule import schedule_layer

SMALL = dict(act_buffer_kib=1, weight_buffer_kib=1, acc_buffer_kib=1)
CONFIGS = [ArrayConfig(rows=2, cols=2, n=2, m=4, **SMALL),
           ArrayConfig(rows=2, cols=3, n=1, m=8, **SMALL),
           ArrayConfig(rows=3, cols=2, n=1, m=1, **SMALL)]


@pytest.mark.parametrize(("cfg", "sparse"), [(c, s) for c in CONFIGS for s in (True, False)
                                              if not (s and c.is_dense)],
                         ids=lambda v: f"{v.rows}x{v.cols}-{v.nm}" if hasattr(v, "nm") else
                         ("sparse" if v else "dense"))
def test_prediction_equals_golden_executor(cfg, sparse, rng):
    """Odd shapes (K and C not multiples of a pass or a tile: padding lanes, the unused lanes of
    dense phases, padded columns) and half the activations zero."""
    for _ in range(4):
        p, k, c = (int(v) for v in rng.integers(1, 30, 3))
        w = random_nm_weights(rng, k, c, cfg.n, cfg.m) if sparse else \
            rng.integers(-128, 128, (k, c))
        x = np.where(rng.random((p, k)) < 0.5, 0, rng.integers(-128, 128, (p, k)))
        asm = assemble_gemm(cfg, x, w, sparse=sparse, raw=True)
        golden = GoldenAccelerator(cfg)
        golden.run(asm.program, asm.data_in)
        assert gemm_gated_macs(cfg, x, w, sparse=sparse) == golden.gated_macs


def random_conv(rng: np.random.Generator, cfg: ArrayConfig, *, sparse: bool) -> Layer:
    """A small conv with weights (pruned along K = (i, j, channel) when ``sparse``): kernel up
    to 3x3, stride, padding, groups or depthwise, sometimes a larger (SCALE-Sim) output."""
    kh, kw = (int(v) for v in rng.integers(1, 4, 2))
    sh, sw = (int(v) for v in rng.integers(1, 3, 2))
    ph, pw = int(rng.integers(0, kh)), int(rng.integers(0, kw))
    groups, cin_g, cout_g = int(rng.choice([1, 2])), int(rng.integers(1, 2 * cfg.k_per_pass)), 2
    if rng.random() < 0.3:
        groups, cin_g, cout_g = int(rng.integers(2, 2 * cfg.k_per_pass)), 1, 1
    if sparse and cin_g > cfg.n:
        cin_g = max(cfg.m, cin_g // cfg.m * cfg.m)
    h, w = int(rng.integers(kh, kh + 7)), int(rng.integers(kw, kw + 7))
    ho, wo = (h + 2 * ph - kh) // sh + 1 + int(rng.random() < 0.2), (w + 2 * pw - kw) // sw + 1
    weight = rng.integers(-128, 128, (groups * cout_g, cin_g, kh, kw))
    if sparse:
        k = kh * kw * cin_g
        mask = np.stack([random_nm_weights(rng, k, cout_g, cfg.n, cfg.m) != 0
                         for _ in range(groups)])                     # (g, K, cols) along K
        weight = weight * mask.reshape(groups, kh, kw, cin_g, cout_g).transpose(
            0, 4, 3, 1, 2).reshape(weight.shape)
    images = int(rng.integers(1, 3))
    return Layer("conv", "conv2d", (images, groups * cin_g, h, w),
                 (images, groups * cout_g, ho, wo), weight=weight,
                 nm=(cfg.n, cfg.m) if sparse else None,
                 attrs={"kernel": (kh, kw), "stride": (sh, sw), "padding": (ph, pw),
                        "groups": groups})


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.rows}x{c.cols}-{c.nm}")
def test_conv_prediction_equals_golden_executor(cfg, node_seed):
    """Convs through the on-chip im2col (padding beats are all-zero activations, phases read the
    same beats again), grouped and depthwise, host im2col stems, sized outputs."""
    rng = np.random.default_rng(node_seed)
    for sparse in (False, True) if not cfg.is_dense else (False,):
        for _ in range(4):
            layer = random_conv(rng, cfg, sparse=sparse)
            t = schedule_layer(layer, cfg).tiling
            n, c, h, w = layer.in_shape
            x = np.where(rng.random((n, h, w, c)) < 0.5, 0, rng.integers(-128, 128, (n, h, w, c)))
            asm = assemble_layer(cfg, t, x, layer.gemm_weight(), raw=True)
            golden = GoldenAccelerator(cfg)
            golden.run(asm.program, asm.data_in)
            assert layer_gated_macs(cfg, t, x, layer.gemm_weight()) == golden.gated_macs, \
                (layer, t)


def test_no_zeros_gates_only_padding():
    """Without zero activations only padding is gated: none when K and C fill the array."""
    cfg = CONFIGS[0]
    x = np.ones((5, cfg.k_per_pass), np.int64)
    w = np.zeros((cfg.k_per_pass, cfg.cols), np.int64)
    assert gemm_gated_macs(cfg, x, w, sparse=True) == 0
    assert gemm_gated_macs(cfg, 0 * x, w, sparse=True) == 5 * cfg.macs_per_cycle


def test_densities():
    assert density_of(np.array([0, 1, 2, 0])) == 0.5
    assert expected_gated_macs(1000, 0.1) == pytest.approx(900)
    assert load_densities("0.1") == 0.1
    assert layer_density(0.1, "any") == 0.1
    assert layer_density({"a": 0.2}, "b") == 1.0
    with pytest.raises(ActDensityError, match="between 0 and 1"):
        load_densities("1.5")
    with pytest.raises(ActDensityError, match="neither a number nor a readable TOML"):
        load_densities("no-such-file.toml")


def test_density_file(tmp_path):
    path = tmp_path / "d.toml"
    path.write_text('"layers.0.mlp.down_proj" = 0.107\nfc = 1\n')
    assert load_densities(path) == {"layers.0.mlp.down_proj": 0.107, "fc": 1.0}
    path.write_text('fc = "dense"\n')
    with pytest.raises(ActDensityError, match="fc: an activation density"):
        load_densities(path)


def test_report_gating(tmp_path):
    """Declared densities give expected gated MACs per layer, and the report shows energy with
    and without gating (JSON, Markdown)."""
    import dataclasses

    from sparsa.models.graph import Layer, LayerGraph
    from sparsa.sw.activity import gating_of
    from sparsa.sw.energy import load_table
    from sparsa.sw.model_report import build_report
    from sparsa.sw.report import render_markdown, report_to_dict

    cfg = ArrayConfig(rows=4, cols=4, n=2, m=4)
    graph = LayerGraph("two", (Layer("a.up", "linear", (30, 64), (30, 40), nm=(2, 4)),
                               Layer("a.down", "linear", (30, 40), (30, 10))))
    report = build_report(graph, cfg)
    path = tmp_path / "d.toml"
    path.write_text('"*.down" = 0.25\n')
    table = load_table()
    gating = gating_of(report, load_densities(path), table, "declared")
    up, down = gating.layers
    assert (up.density, down.density) == (1.0, 0.25)
    assert up.gated_macs == 0
    assert up.energy_gated_pj == pytest.approx(up.energy_pj)
    assert down.gated_macs == pytest.approx(0.75 * down.macs_issued)
    assert gating.saved_pj == pytest.approx(
        down.gated_macs * table.mac_pj * (1 - table.gated_mac_fraction))
    report = dataclasses.replace(report, gating=gating)
    assert report_to_dict(report)["gating"]["saved_pj"] == pytest.approx(gating.saved_pj)
    assert "Zero gating (activation density declared)" in render_markdown(report)


def test_report_command_act_density(tmp_path, capsys):
    """--act-density is checked as it is parsed; a digits demo's densities are measured."""
    import json

    from sparsa.cli import main

    with pytest.raises(SystemExit) as e:
        main(["report", "digits_mlp", "--act-density", "1.5", "--format", "table"])
    assert e.value.code == 2
    assert "between 0 and 1" in capsys.readouterr().err
    out = tmp_path / "r"
    assert main(["report", "digits_mlp", "--act-density", "0.2", "--format", "json", "--area",
                 "none", "-o", str(out)]) == 0
    gating = json.loads((out / "report.json").read_text())["gating"]
    assert gating["source"] == "declared: 0.2 for every layer"
    assert gating["saved_pj"] > 0
    assert main(["report", "digits_mlp", "--format", "json", "--area", "none", "-o",
                 str(out)]) == 0
    gating = json.loads((out / "report.json").read_text())["gating"]
    assert gating["source"].startswith("measured on the")
    assert all(0 < x["density"] <= 1 for x in gating["layers"])


def _mlp() -> LayerGraph:
    """fc1 (4 -> 3), ReLU, fc2 (3 -> 2), with weights chosen so that signs are clear."""
    w1 = np.array([[1.0, 0.5, -1.0, 0.25], [-1.0, -0.5, 1.0, -0.25], [2.0, 0.0, 0.0, 1.0]],
                  np.float32)
    w2 = np.array([[1.0, -1.0, 0.5], [0.5, 0.5, -1.0]], np.float32)
    layers = (Layer("fc1", "linear", (6, 4), (6, 3), weight=w1, bias=np.zeros(3, np.float32)),
              Layer("relu", "act", (6, 3), (6, 3), attrs={"op": "relu"}),
              Layer("fc2", "linear", (6, 3), (6, 2), weight=w2, bias=np.zeros(2, np.float32)))
    return LayerGraph(name="mlp", layers=layers, input_shape=(6, 4), source="test")


def test_calibrated_densities_against_numpy():
    """Densities measured on the user's inputs: fc1 sees the inputs (exact zeros stay zero
    after quantization, the other values are far from the rounding threshold), fc2 sees the
    ReLU of fc1, whose signs the test computes with a float matmul."""
    x = np.array([[1, 0, 2, 0], [0, 0, 3, 1], [2, 2, 0, 0], [1, 1, 1, 1], [0, 0, 0, 4],
                  [3, 0, 0, 0]], np.float32)
    got = calibrated_densities(_mlp(), x, n=1, m=1)
    hidden = np.maximum(x @ _mlp().layers[0].weight.T, 0)
    assert got["fc1"] == pytest.approx(np.count_nonzero(x) / x.size)
    assert got["fc2"] == pytest.approx(np.count_nonzero(hidden) / hidden.size)


def test_calibration_inputs_checked(tmp_path):
    good = tmp_path / "x.npy"
    np.save(good, np.ones((5, 4), np.float32))
    assert load_inputs(good, (1, 4)).shape == (5, 4)
    np.save(tmp_path / "bad.npy", np.ones((5, 3)))
    np.savez(tmp_path / "arc.npz", a=np.ones(3))
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    for name, match in [("bad.npy", r"shape \(N, 4\)"), ("arc.npz", "an .npz archive"),
                        ("junk.npy", "not one"), ("none.npy", "cannot read")]:
        with pytest.raises(ActDensityError, match=match):
            load_inputs(tmp_path / name, (1, 4))
    shapes_only = LayerGraph(name="s", layers=(Layer("fc", "linear", (1, 4), (1, 2)),),
                             input_shape=(1, 4), source="test")
    with pytest.raises(ActDensityError, match="carries no weights"):
        calibrated_densities(shapes_only, np.ones((2, 4), np.float32), n=2, m=4)
