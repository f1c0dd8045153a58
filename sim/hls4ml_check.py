"""Independent numerical check of the quantized demo models with hls4ml's C simulation.

The N:M-pruned int8 digits models (:func:`quantized_demo`) are rebuilt as PyTorch modules whose
parameters *are* the integers of ``sparsa.sw.quant`` (:func:`integer_torch_model`), converted with
hls4ml's PyTorch frontend and compiled as a C simulation with g++ (``hls_model.compile()``: no
vendor tool). hls4ml then computes the whole integer network with its own dense/conv kernels and
Xilinx arbitrary-precision types; nothing of sparsa's arithmetic runs inside it:

* every GEMM layer (``Linear``/``Conv2d``) has ``ap_fixed<8,8>`` inputs and weights, an
  ``ap_fixed<32,32>`` bias and an ``ap_fixed<32,32,AP_TRN,AP_WRAP>`` accumulator and result: int8 x
  int8 products summed in a wrapping 32-bit register, the bias as the initial partial sum, exactly
  the hardware's contract (``sim.golden.gemm_nm``); hls4ml multiplies the dense (zero-filled)
  weight matrix, sparsa the compressed N:M form;
* requantization is a ``BatchNormalization`` layer (PyTorch ``BatchNorm`` with mean 0, variance
  1, ``eps = 0`` and ``gamma = multiplier / 2**shift`` per output channel, bias 0). Its scale
  type is an unsigned fixed-point type with ``max(shift)`` fractional bits, so every scale is
  exact (checked after conversion; hls4ml prints it with that many decimals). hls4ml computes
  the full-precision product ``acc * scale`` and assigns it to
  ``ap_fixed<W,W,AP_RND,AP_SAT>`` (``W`` = 8, 16 for the classifier): ``AP_RND`` rounds to the
  nearest integer with ties towards plus infinity (``floor(x + 1/2)``, i.e. round half up) and
  ``AP_SAT`` clamps to ``[-2**(W-1), 2**(W-1) - 1]``: ``sim.golden.requantize``;
* ReLU, max-pooling and flatten run on the int8 values (``ap_fixed<8,8>``), channels-last inside
  hls4ml (its automatic conversion, with the flatten reordered back to PyTorch's order).

Heavy imports (torch, hls4ml) stay inside the functions.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sparsa.models.demo import demo_graph, digits_data
from sparsa.nm import gemm_dense, requantize
from sparsa.sw.prune import prune_magnitude
from sparsa.sw.quant import (
    QuantizedGraph,
    forward_int,
    quantize_graph,
    quantize_input,
    set_gemm_weight,
)

__all__ = ["Comparison", "RequantProbe", "build_hls_model", "build_probe_model", "compare",
           "golden_int", "hls_config", "integer_torch_model", "quantized_demo", "requant_probe",
           "run_hls", "scale_precision"]

ACT_T = "ap_fixed<8,8>"
WEIGHT_T = "ap_fixed<8,8>"
BIAS_T = "ap_fixed<32,32>"
ACC_T = "ap_fixed<32,32,AP_TRN,AP_WRAP>"
DEFAULT_OUT = Path("build") / "hls4ml"


def quantized_demo(name: str, n: int = 2, m: int = 4) -> QuantizedGraph:
    """The demo model ``name`` N:M-pruned (magnitude, default policy) and int8-quantized with
    activation scales calibrated on the digits training split."""
    graph = prune_magnitude(demo_graph(name), n, m)
    return quantize_graph(graph, digits_data(name)[0])


def scale_precision(multiplier: np.ndarray, shift: np.ndarray) -> str:
    """An unsigned fixed-point type holding every ``multiplier / 2**shift`` exactly."""
    mult = np.asarray(multiplier, dtype=np.int64).ravel()
    shift = np.asarray(shift, dtype=np.int64).ravel()
    frac = int(shift.max())
    # integer bits: enough for the largest scale, at least one
    integer = max(1, int(np.max(np.ceil(np.log2(mult + 1.0)) - shift)))
    return f"ap_ufixed<{frac + integer},{integer}>"


def integer_torch_model(qgraph: QuantizedGraph) -> Any:
    """A ``torch.nn.Sequential`` computing ``qgraph`` on integers: GEMM layers ``gemm<i>`` with
    the integer weights and biases, each followed by ``rq<i>`` (a BatchNorm whose scale is the
    requantization ``multiplier / 2**shift``); ReLU/pool/flatten as in the source graph."""
    import torch
    from torch import nn

    mods: OrderedDict[str, nn.Module] = OrderedDict()
    for i, layer in enumerate(qgraph.graph.layers):
        op = str(layer.attrs.get("op", "")).lower()
        if layer.has_static_weight:
            ql = qgraph.layers[i]
            if ql.weight.shape[0] != 1:
                raise ValueError(f"layer {layer.name!r}: grouped GEMMs are not converted")
            w = torch.from_numpy(set_gemm_weight(layer, ql.weight).astype(np.float64))
            f64 = torch.float64  # int32 biases are exact in float64, not always in float32
            if layer.kind == "linear":
                gemm: nn.Module = nn.Linear(w.shape[1], w.shape[0], dtype=f64)
                norm: nn.Module = nn.BatchNorm1d(w.shape[0], eps=0.0, dtype=f64)
            else:
                a = layer.attrs
                if tuple(a.get("dilation", (1, 1))) != (1, 1):
                    raise ValueError(f"layer {layer.name!r}: dilated convolutions not converted")
                gemm = nn.Conv2d(w.shape[1], w.shape[0], tuple(a["kernel"]),
                                 stride=tuple(a.get("stride", (1, 1))),
                                 padding=tuple(a.get("padding", (0, 0))), dtype=f64)
                norm = nn.BatchNorm2d(w.shape[0], eps=0.0, dtype=f64)
            scale = ql.multiplier[0].astype(np.float64) / np.exp2(ql.shift[0])
            with torch.no_grad():
                gemm.weight.copy_(w)
                gemm.bias.copy_(torch.from_numpy(ql.bias[0].astype(np.float64)))
                norm.weight.copy_(torch.from_numpy(scale))
                norm.bias.zero_()
                norm.running_mean.zero_()
                norm.running_var.fill_(1.0)
            mods[f"gemm{i}"] = gemm
            mods[f"rq{i}"] = norm
        elif layer.kind == "act" and op == "relu":
            mods[f"relu{i}"] = nn.ReLU()
        elif layer.kind == "pool" and op == "maxpool2d":
            mods[f"pool{i}"] = nn.MaxPool2d(tuple(layer.attrs["kernel_size"]),
                                            stride=tuple(layer.attrs.get(
                                                "stride", layer.attrs["kernel_size"])))
        elif layer.kind == "reshape":
            mods[f"flatten{i}"] = nn.Flatten()
        else:
            raise ValueError(f"layer {layer.name!r}: {layer.kind} {op!r} is not converted")
    return nn.Sequential(mods).eval()


def hls_config(qgraph: QuantizedGraph, model: Any, backend: str = "Vivado") -> dict:
    """hls4ml configuration with every type of every layer set explicitly (no ``auto``)."""
    import hls4ml

    in_shape = tuple(qgraph.graph.input_shape[1:])
    config = hls4ml.utils.config_from_pytorch_model(
        model, in_shape, granularity="name", backend=backend, default_precision=ACT_T,
        channels_last_conversion="full", transpose_outputs=False)
    requant = {f"rq{i}": (ql.multiplier, ql.shift, ql.out_width)
               for i, ql in qgraph.layers.items()}
    _set_types(config, requant)
    return config


def _set_types(config: dict, requant: dict[str, tuple[np.ndarray, np.ndarray, int]]) -> None:
    """Layers named ``gemm*``: int8 weights, int32 bias, wrapping int32 accumulator and result;
    ``rq*`` (``requant[name] = (multiplier, shift, out_width)``): exact scale, round half up and
    saturate to ``out_width`` bits; everything else int8."""
    for name, layer_cfg in config["LayerName"].items():
        prec = layer_cfg.setdefault("Precision", {})
        if name.startswith("gemm"):
            prec.update(weight=WEIGHT_T, bias=BIAS_T, accum=ACC_T, result=ACC_T)
        elif name in requant:
            mult, shift, w = requant[name]
            prec.update(scale=scale_precision(mult, shift), bias=ACT_T,
                        result=f"ap_fixed<{w},{w},AP_RND,AP_SAT>")
        else:
            # input, ReLU, pooling, flatten, transposes: int8 values
            for key in prec:
                if key != "table":
                    prec[key] = ACT_T
            if "accum" in prec:
                prec["accum"] = ACC_T


def build_hls_model(qgraph: QuantizedGraph, output_dir: str | Path, *,
                    backend: str = "Vivado") -> Any:
    """Convert ``qgraph`` with hls4ml into ``output_dir`` and compile its C simulation (g++)."""
    import hls4ml

    model = integer_torch_model(qgraph)
    config = hls_config(qgraph, model, backend)
    hls_model = hls4ml.converters.convert_from_pytorch_model(
        model, hls_config=config, output_dir=str(output_dir), backend=backend,
        io_type="io_parallel", project_name="sparsa_" + qgraph.graph.name)
    _check_exact_scales(hls_model, {f"rq{i}": (ql.multiplier[0], ql.shift[0], ql.out_width)
                                    for i, ql in qgraph.layers.items()})
    _check_exact_biases(hls_model, {f"gemm{i}": ql.bias[0] for i, ql in qgraph.layers.items()})
    hls_model.compile()
    return hls_model


@dataclass(frozen=True)
class RequantProbe:
    """One int8 GEMM + requantization layer with hand-made corner cases the digits models never
    reach: biases near +-2**31 (the int32 accumulator wraps), shifts 0..31 with short multipliers
    (exact ties ``x.5``, positive and negative), and scales that saturate."""

    weight: np.ndarray  # (K, C)
    bias: np.ndarray  # (C,)
    multiplier: np.ndarray  # (C,)
    shift: np.ndarray  # (C,)
    x: np.ndarray  # (P, K)
    out_width: int = 8

    def accumulators(self) -> np.ndarray:
        return gemm_dense(self.x, self.weight, np.broadcast_to(self.bias, (len(self.x),
                                                                           self.bias.size)))

    def corner_cases(self) -> dict[str, int]:
        """How many outputs hit each corner case (in the golden model)."""
        acc = self.accumulators()
        exact = self.x @ self.weight + self.bias
        prod = acc * self.multiplier
        half = np.left_shift(1, np.maximum(self.shift - 1, 0))
        tie = (self.shift > 0) & (np.bitwise_and(prod, np.left_shift(1, self.shift) - 1) == half)
        y = self.golden()
        hi = (1 << (self.out_width - 1)) - 1
        inside = (y > -hi - 1) & (y < hi)
        return {"outputs": int(y.size), "wrapped": int((acc != exact).sum()),
                "ties_positive": int((tie & inside & (prod > 0)).sum()),
                "ties_negative": int((tie & inside & (prod < 0)).sum()),
                "at_limits": int((~inside).sum())}

    def golden(self) -> np.ndarray:
        return requantize(self.accumulators(), self.multiplier, self.shift,
                          out_width=self.out_width)


def requant_probe(seed: int, *, k: int = 4, cols: int = 48, samples: int = 400) -> RequantProbe:
    """Random int8 inputs and three kinds of columns (a third each): *ties* (weights in
    [-1, 1], small biases, shifts 1..6 with odd multipliers: many exact ``x.5`` results inside the
    int8 range, of both signs), *wrap* (int8 weights, biases within a few thousand of +-2**31: the
    sum leaves the int32 range and wraps, flipping the saturated output's sign) and *random*
    (any weights, biases, shifts 0..31 and multipliers)."""
    rng = np.random.default_rng(seed)
    third = cols // 3
    kind = np.repeat([0, 1, 2], [third, third, cols - 2 * third])  # ties, wrap, random
    wmax = np.where(kind == 0, 1, rng.choice([1, 3, 15, 127], size=cols))
    wmax[kind == 1] = 127
    weight = np.stack([rng.integers(-wmax[c], wmax[c] + 1, size=k) for c in range(cols)], 1)
    bias = rng.integers(-2 ** 31, 2 ** 31, size=cols)
    shift = rng.integers(0, 32, size=cols)
    mult = np.maximum(rng.integers(1, 2 ** 15, size=cols) >> rng.integers(0, 15, size=cols), 1)
    ties = kind == 0
    bias[ties] = rng.integers(-64, 65, size=ties.sum())
    shift[ties] = rng.integers(1, 7, size=ties.sum())
    top = np.maximum(1, (np.exp2(shift[ties]) * 127 / (128 * k + 64)).astype(np.int64))
    mult[ties] = 2 * (rng.integers(0, 2 ** 15, size=ties.sum()) % ((top + 1) // 2)) + 1
    wrap = np.nonzero(kind == 1)[0]
    off = rng.integers(0, 4000, size=wrap.size)
    bias[wrap] = np.where(np.arange(wrap.size) % 2, 2 ** 31 - 1 - off, -2 ** 31 + off)
    x = rng.integers(-128, 128, size=(samples, k))
    return RequantProbe(weight=weight, bias=bias, multiplier=mult, shift=shift, x=x)


def build_probe_model(probe: RequantProbe, output_dir: str | Path, *,
                      backend: str = "Vivado") -> Any:
    """hls4ml model ``gemm0`` (Linear) + ``rq0`` (BatchNorm scale) of ``probe``, compiled."""
    import hls4ml
    import torch
    from torch import nn

    k, c = probe.weight.shape
    # float64 parameters: int32 biases near 2**31 are not exact in float32
    gemm = nn.Linear(k, c, dtype=torch.float64)
    norm = nn.BatchNorm1d(c, eps=0.0, dtype=torch.float64)
    with torch.no_grad():
        gemm.weight.copy_(torch.from_numpy(probe.weight.T.astype(np.float64)))
        gemm.bias.copy_(torch.from_numpy(probe.bias.astype(np.float64)))
        norm.weight.copy_(torch.from_numpy(probe.multiplier / np.exp2(probe.shift)))
        norm.bias.zero_()
        norm.running_mean.zero_()
        norm.running_var.fill_(1.0)
    model = nn.Sequential(OrderedDict(gemm0=gemm, rq0=norm)).eval()
    config = hls4ml.utils.config_from_pytorch_model(
        model, (k,), granularity="name", backend=backend, default_precision=ACT_T)
    requant = {"rq0": (probe.multiplier, probe.shift, probe.out_width)}
    _set_types(config, requant)
    hls_model = hls4ml.converters.convert_from_pytorch_model(
        model, hls_config=config, output_dir=str(output_dir), backend=backend,
        io_type="io_parallel", project_name="sparsa_requant_probe")
    _check_exact_scales(hls_model, requant)
    _check_exact_biases(hls_model, {"gemm0": probe.bias})
    hls_model.compile()
    return hls_model


def _check_exact_scales(hls_model: Any,
                        requant: dict[str, tuple[np.ndarray, np.ndarray, int]]) -> None:
    """The requantization scales hls4ml stores are exactly ``multiplier / 2**shift``."""
    for layer in hls_model.get_layers():
        if layer.name in requant:
            mult, shift, _ = requant[layer.name]
            got = np.asarray(layer.weights["scale"].data, dtype=np.float64).ravel()
            want = (np.asarray(mult) / np.exp2(np.asarray(shift))).ravel()
            if not np.array_equal(got, want):
                raise AssertionError(f"{layer.name}: hls4ml scale differs from multiplier/2**shift")


def _check_exact_biases(hls_model: Any, biases: dict[str, np.ndarray]) -> None:
    """hls4ml holds exactly the integer biases and integer int8 weights of every GEMM layer."""
    for layer in hls_model.get_layers():
        if layer.name in biases:
            got = np.asarray(layer.weights["bias"].data, dtype=np.float64).ravel()
            if not np.array_equal(got, np.asarray(biases[layer.name], dtype=np.float64)):
                raise AssertionError(f"{layer.name}: hls4ml bias differs from the int32 bias")
            w = np.asarray(layer.weights["weight"].data, dtype=np.float64)
            if not (np.array_equal(w, np.round(w)) and np.abs(w).max() <= 128):
                raise AssertionError(f"{layer.name}: hls4ml weights are not int8 integers")


def run_hls(hls_model: Any, x_int: np.ndarray) -> np.ndarray:
    """Run the compiled C simulation on integer inputs (NCHW or ``(n, features)``); returns the
    classifier outputs as int64 after checking they are integers."""
    y = np.asarray(hls_model.predict(np.ascontiguousarray(x_int, dtype=np.float64)))
    y = y.reshape(len(x_int), -1)
    if not np.array_equal(y, np.round(y)):
        raise AssertionError("hls4ml produced non-integer outputs")
    return y.astype(np.int64)


def golden_int(qgraph: QuantizedGraph, x_int: np.ndarray) -> np.ndarray:
    """``forward_int`` on already-quantized int8 inputs, ``(n, outputs)`` int64."""
    x_int = np.asarray(x_int, dtype=np.int64)
    x = x_int * qgraph.in_scale
    if not np.array_equal(quantize_input(qgraph, x), x_int):
        raise AssertionError("int8 inputs do not survive the input quantization round trip")
    return forward_int(qgraph, x).reshape(len(x_int), -1)


@dataclass(frozen=True)
class Comparison:
    name: str
    samples: int
    hls: np.ndarray
    golden: np.ndarray
    labels: np.ndarray | None

    @property
    def mismatches(self) -> int:
        """Samples whose output vectors differ in at least one element."""
        return int(np.any(self.hls != self.golden, axis=1).sum())

    @property
    def accuracy(self) -> float | None:
        """Golden top-1 accuracy (``None`` without labels)."""
        if self.labels is None:
            return None
        return float((self.golden.argmax(1) == self.labels).mean())


def compare(name: str, output_dir: str | Path | None = None, *, hls_model: Any = None,
            qgraph: QuantizedGraph | None = None, x_int: np.ndarray | None = None,
            backend: str = "Vivado") -> Comparison:
    """Run int8 inputs through hls4ml's C simulation and through ``forward_int``: the digits test
    split by default, or ``x_int`` (already-quantized inputs, no labels). Without ``hls_model`` the
    model is converted and compiled into ``output_dir`` (default ``build/hls4ml/<name>``)."""
    qgraph = qgraph if qgraph is not None else quantized_demo(name)
    if hls_model is None:
        hls_model = build_hls_model(qgraph, output_dir or DEFAULT_OUT / name, backend=backend)
    labels = None
    if x_int is None:
        _, _, x_te, labels = digits_data(name)
        x_int = quantize_input(qgraph, x_te)
    golden = golden_int(qgraph, x_int)
    hls = run_hls(hls_model, x_int)
    return Comparison(name=name, samples=len(x_int), hls=hls, golden=golden, labels=labels)
