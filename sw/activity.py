"""Activation sparsity: the zero-gated MACs of a GEMM, measured on data or expected from a density.

The PEs isolate a multiplier whose selected activation is zero
(:class:`sparsa.hw.pe.SparsePE`), and the accelerator counts those products in its
``gated_macs`` counter. This module predicts that counter without a simulator:

* :func:`layer_gated_macs` (:func:`gemm_gated_macs` for a linear layer): exactly, for a layer
  with real data, by the rule the hardware applies to the program
  :func:`sparsa.sw.assemble.assemble_layer` builds: every output pixel meets every weight tile
  (K pass, column tile) that exists, as one beat: the input pixel the im2col walk reaches at
  the pass's kernel offset, in the pass's channel block, or all zeros where that pixel lies in
  the padding; the phases of a dense layer read the same beats again. Each PE slot selects the
  activation at its index (:func:`sparsa.sw.assemble.weight_tile`) in its group of ``m``; the
  product is gated when that activation is zero. Padding is data like any other: padding beats,
  the zero channels of the last block and the zero-padded columns of the last tile all select
  zeros. Zero *weights* do not gate.
* :func:`expected_gated_macs`: for shape-only models, from a declared activation density (the
  fraction of nonzero activations entering the layer): ``(1 - density) * MACs issued``, an
  expected value that treats padding slots like real activations.

Densities are measured on real data (:func:`measured_densities`: the quantized int8 GEMM inputs
of a model on its inputs; :func:`calibrated_densities` for any model with weights on a user's
calibration inputs, :func:`load_inputs`) or declared (:func:`load_densities`: one number, or a
TOML file of layer name or glob pattern -> density). :func:`gating_of` turns them into a
report's gated MACs and its energy with and without gating (:class:`Gating`).

Example of a declared density: ProSparse (C. Song et al., "ProSparse: Introducing and Enhancing
Intrinsic Activation Sparsity within Large Language Models", arXiv:2402.13516, 2024) makes
Llama-2-7B's FFN ReLU-activated with 89.32% activation sparsity, so the FFN down projection,
whose input is that activation, sees a density of about 0.107 (``"*mlp.down_proj" = 0.107``).
"""

from __future__ import annotations

import fnmatch
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sparsa.config import ArrayConfig
from sparsa.models.graph import Gemm

from .assemble import host_input, layer_weights, weight_tile
from .energy import EnergyTable, energy_of
from .schedule import Tiling, schedule_gemm

__all__ = [
    "ActDensityError",
    "Gating",
    "LayerGating",
    "calibrated_densities",
    "density_of",
    "expected_gated_macs",
    "gating_lines",
    "gating_of",
    "gemm_gated_macs",
    "layer_density",
    "layer_gated_macs",
    "load_densities",
    "load_inputs",
    "measured_densities",
]


class ActDensityError(ValueError):
    """A declared activation density is malformed or out of range."""


def density_of(x: np.ndarray) -> float:
    """Fraction of nonzero entries of ``x`` (1.0 for an empty array)."""
    x = np.asarray(x)
    return float(np.count_nonzero(x) / x.size) if x.size else 1.0


def _zero_beats(cfg: ArrayConfig, t: Tiling, x: np.ndarray) -> list[np.ndarray]:
    """Per stacked GEMM, per kernel offset and channel lane (``(offsets, C_blocks *
    K_pass)``): how many of its beats at that offset hold a zero in that lane (padding beats:
    every lane)."""
    low = t.low
    g = low.geom
    xs = host_input(low, x)
    lanes = t.c_blocks * cfg.k_per_pass
    zero = np.ones((xs.shape[0], lanes), bool)
    zero[:, :xs.shape[1]] = xs == 0
    if g.pixels is not None:             # a linear layer: every pixel is one beat
        per = low.stack_p
        return [zero[s * per:(s + 1) * per].sum(axis=0)[None] for s in range(low.stack)]
    (h, w), (kh, kw), (sh, sw), (ph, pw) = g.in_size, g.kernel, g.stride, g.padding
    ho, wo = g.out_size
    pad = np.ones((g.images, max(h + ph, (ho - 1) * sh + kh), max(w + pw, (wo - 1) * sw + kw),
                   lanes), np.int64)
    pad[:, ph:ph + h, pw:pw + w] = zero.reshape(g.images, h, w, lanes)
    return [np.stack([pad[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw].sum(
        axis=(0, 1, 2)) for i in range(kh) for j in range(kw)])]


def layer_gated_macs(cfg: ArrayConfig, t: Tiling, x: np.ndarray, w: np.ndarray) -> int:
    """The ``gated_macs`` counter of the tiled layer's program (:func:`sparsa.sw.assemble.
    assemble_layer` with input ``x`` and weights ``w``), as the RTL counts it."""
    kp, m = cfg.k_per_pass, cfg.m
    rows = np.arange(cfg.rows)[:, None, None]
    total = 0
    for zeros, wfull in zip(_zero_beats(cfg, t, x), layer_weights(cfg, t.low, w), strict=True):
        for c in range(t.col_tiles):
            for k, offset, block in t.passes_of(c):
                z = zeros[offset, block * kp:(block + 1) * kp].reshape(cfg.rows, m)
                total += int(z[rows, weight_tile(cfg, t.low, wfull, c, k).indices].sum())
    return total


def gemm_gated_macs(cfg: ArrayConfig, x: np.ndarray, w: np.ndarray, *, sparse: bool) -> int:
    """The ``gated_macs`` counter of the assembled linear layer ``x (P, K) . w (K, C)`` (int8
    data; ``sparse``: ``w`` runs as N:M, else dense), as the RTL counts it."""
    x, w = np.asarray(x, dtype=np.int64), np.asarray(w, dtype=np.int64)
    (p, k), c = x.shape, w.shape[1]
    return layer_gated_macs(cfg, schedule_gemm(Gemm(p=p, k=k, cols=c), cfg, sparse=sparse),
                            x, w[None])


def expected_gated_macs(macs_issued: int, density: float) -> float:
    """Expected gated MACs of a layer issuing ``macs_issued`` MACs on activations of
    ``density`` (fraction nonzero)."""
    return (1.0 - density) * macs_issued


def _check_density(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ActDensityError(f"{where}: an activation density must be a number between 0 and "
                              f"1 (the fraction of nonzero activations), not {value!r}")
    return float(value)


def load_densities(spec: str | float | Path) -> float | dict[str, float]:
    """A declared density: a number (every layer), or the path of a TOML file mapping layer
    names to densities (``"blocks.0.mlp.down" = 0.11``; layers it does not name are dense)."""
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return _check_density(spec, "--act-density")
    text = str(spec)
    try:
        return _check_density(float(text), "--act-density")
    except ValueError as e:
        if isinstance(e, ActDensityError):
            raise
    try:
        values = tomllib.loads(Path(text).read_text())
    except OSError as e:
        raise ActDensityError(f"--act-density: {text!r} is neither a number nor a readable "
                              f"TOML file ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise ActDensityError(f"{text}: malformed TOML: {e}") from None
    return {str(name): _check_density(v, f"{text}: {name}") for name, v in values.items()}


def layer_density(densities: float | Mapping[str, float] | None, name: str) -> float:
    """The density declared for layer ``name`` (1.0 when none is): its own entry, else the
    first glob pattern that matches it."""
    if densities is None:
        return 1.0
    if isinstance(densities, Mapping):
        if name in densities:
            return densities[name]
        return next((d for pattern, d in densities.items()
                     if fnmatch.fnmatchcase(name, pattern)), 1.0)
    return densities


def measured_densities(qgraph, x: np.ndarray) -> dict[str, float]:
    """Per GEMM layer, the density of its quantized int8 input over ``x`` (the integer forward
    pass, :func:`sparsa.sw.quant.forward_int`)."""
    from .quant import forward_int

    seen: dict[str, float] = {}

    def on_gemm(_i, layer, cols, _acc) -> None:
        seen[layer.name] = density_of(cols)

    forward_int(qgraph, x, on_gemm=on_gemm)
    return seen


def load_inputs(path: str | Path, input_shape: tuple[int, ...]) -> np.ndarray:
    """Calibration inputs from a NumPy ``.npy`` file: ``(N, *input_shape[1:])`` numbers."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            x = np.load(f, allow_pickle=False)
            if not isinstance(x, np.ndarray):
                raise ValueError("is an .npz archive")
    except OSError as e:
        raise ActDensityError(f"calibration inputs {str(path)!r}: cannot read it "
                              f"({e.strerror or type(e).__name__})") from None
    except (ValueError, EOFError) as e:
        what = "it " + str(e) if str(e).startswith("is ") else "it is not one (or is damaged)"
        raise ActDensityError(f"calibration inputs {str(path)!r}: expected a NumPy .npy array "
                              f"of numbers, but {what}") from None
    want = tuple(input_shape[1:])
    if x.dtype.kind not in "iuf" or x.ndim != len(want) + 1 or x.shape[1:] != want \
            or not len(x):
        raise ActDensityError(f"calibration inputs {str(path)!r}: expected numbers of shape "
                              f"(N, {', '.join(map(str, want))}), not {x.dtype} {x.shape}")
    return x.astype(np.float32)


def require_weights(graph) -> None:
    """Raise unless every weight layer of ``graph`` carries its weights."""
    if any(layer.has_static_weight and layer.weight is None for layer in graph.layers):
        raise ActDensityError(f"{graph.name!r} carries no weights, so its activations cannot be "
                              "measured; declare them with --act-density")


def calibrated_densities(graph, x_calib: np.ndarray, x: np.ndarray | None = None,
                         *, n: int, m: int, policy=None) -> dict[str, float]:
    """Densities of a model with weights on real inputs: pruned to ``n:m`` by magnitude under
    ``policy`` (unless it carries its own patterns, or ``n == m``), quantized on ``x_calib`` and
    measured on ``x`` (default: ``x_calib``), as :func:`measured_densities`."""
    from .prune import prune_magnitude
    from .quant import quantize_graph

    require_weights(graph)
    if n < m and not any(layer.nm is not None for layer in graph.layers):
        graph = prune_magnitude(graph, n, m, policy)
    return measured_densities(quantize_graph(graph, x_calib), x_calib if x is None else x)


@dataclass(frozen=True)
class LayerGating:
    name: str
    density: float            # fraction of nonzero activations entering the layer
    macs_issued: int
    gated_macs: float         # expected: (1 - density) * MACs issued
    energy_pj: float          # the layer's energy without gating ...
    energy_gated_pj: float    # ... and with its gated MACs zero-gated


@dataclass(frozen=True)
class Gating:
    """Zero gating in a report: where the densities come from and the per-layer effect."""

    source: str
    layers: tuple[LayerGating, ...]
    gated_mac_fraction: float

    def total(self, field: str) -> float:
        return sum(getattr(x, field) for x in self.layers)

    @property
    def saved_pj(self) -> float:
        return self.total("energy_pj") - self.total("energy_gated_pj")

    def to_dict(self) -> dict:
        return {"source": self.source, "expected_value": True,
                "gated_mac_fraction": self.gated_mac_fraction,
                "layers": [vars(x) for x in self.layers],
                "gated_macs": self.total("gated_macs"),
                "energy_pj": self.total("energy_pj"),
                "energy_gated_pj": self.total("energy_gated_pj"), "saved_pj": self.saved_pj}


def gating_of(report, densities: float | Mapping[str, float], table: EnergyTable,
              source: str) -> Gating:
    """The gated MACs and energies of ``report``'s layers (a :class:`~sparsa.sw.model_report.
    ModelReport`) at ``densities`` (one for all layers, or per layer name / pattern)."""
    rows = []
    for x in report.layers:
        d = layer_density(densities, x.name)
        macs = x.sparse.actions.macs_issued
        gated = expected_gated_macs(macs, d)
        rows.append(LayerGating(
            name=x.name, density=d, macs_issued=macs, gated_macs=gated,
            energy_pj=x.energy.total,
            energy_gated_pj=energy_of(x.sparse.actions, report.cfg, table,
                                      gated_macs=gated).total))
    return Gating(source=source, layers=tuple(rows),
                  gated_mac_fraction=table.gated_mac_fraction)


def gating_lines(report, prefix: str = "") -> list[str]:
    """Summary lines of a report's zero gating (none when the report has no densities)."""
    from .model_report import si

    g = getattr(report, "gating", None)
    if g is None:
        return []
    macs, gated = g.total("macs_issued"), g.total("gated_macs")
    plain, with_gating = g.total("energy_pj"), g.total("energy_gated_pj")
    low = sorted(g.layers, key=lambda x: x.density)[:3]
    return [
        f"{prefix}Zero gating (activation density {g.source}): expected gated MACs "
        f"{gated:,.0f} of {macs:,} issued ({gated / max(macs, 1):.1%}; expected values, "
        f"(1 - density) x MACs issued). A gated MAC costs {g.gated_mac_fraction:.3g} of a MAC.",
        f"{prefix}Energy without gating {si(plain * 1e-12, 'J')}, with gating "
        f"{si(with_gating * 1e-12, 'J')}: {si(g.saved_pj * 1e-12, 'J')} saved "
        f"({g.saved_pj / max(plain, 1e-12):.1%}). Sparsest inputs: "
        + ", ".join(f"{x.name} {x.density:.0%}" for x in low) + ".",
    ]
