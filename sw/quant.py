"""int8 quantization and NumPy executors of sequential layer graphs.

* Weights: symmetric int8 per output channel (scale ``max|w| / 127`` per GEMM column).
* Activations: symmetric int8 per tensor, scales calibrated on real inputs (max |x|).
* Accumulators: int32 (bias added as the accumulator's initial partial sum, in the same units).
* Requantization: ``sim.golden.requantize`` with an integer multiplier (15 bits) and a shift per
  output channel, so the integer forward pass here is exactly what the hardware computes. The
  classifier's output is requantized to int16 (host-side argmax).

:func:`forward_float` and :func:`forward_int` run graphs made of ``conv2d``/``linear`` (GEMM view,
host-side im2col), ReLU, max/avg pooling and flatten layers, e.g. the digits demo models.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sparsa.models.graph import Layer, LayerGraph
from sparsa.nm import gemm_dense, gemm_nm, pack_nm, requantize

__all__ = ["QuantLayer", "QuantizedGraph", "accuracy", "forward_float", "forward_int",
           "gemm_input", "gemm_output", "host_layer", "im2col", "quantize_graph",
           "quantize_input", "quantize_multiplier", "set_gemm_weight"]

MULT_BITS = 15
ROWS_PER_CHUNK = 4096


def im2col(x: np.ndarray, layer: Layer) -> np.ndarray:
    """NCHW activations -> ``(groups, P, K)`` with P in (n, h_out, w_out) order and K in
    (kh, kw, c_in) order, ``c_in`` fastest (the order of ``Layer.gemm_weight``)."""
    kh, kw = layer.attrs["kernel"]
    sh, sw = layer.attrs.get("stride", (1, 1))
    ph, pw = layer.attrs.get("padding", (0, 0))
    dh, dw = layer.attrs.get("dilation", (1, 1))
    groups = int(layer.attrs.get("groups", 1))
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    taps = [xp[:, :, i * dh:i * dh + sh * (ho - 1) + 1:sh, j * dw:j * dw + sw * (wo - 1) + 1:sw]
            for i in range(kh) for j in range(kw)]
    cols = np.stack(taps, axis=1)  # (n, kh*kw, c, ho, wo)
    cols = cols.reshape(n, kh * kw, groups, c // groups, ho, wo)
    cols = cols.transpose(2, 0, 4, 5, 1, 3)  # (g, n, ho, wo, kh*kw, c/g)
    return cols.reshape(groups, n * ho * wo, kh * kw * (c // groups))


def gemm_output(y: np.ndarray, layer: Layer) -> np.ndarray:
    """(groups, P, cols) -> the layer's output layout (NCHW for conv)."""
    if layer.kind == "linear":
        return y[0]
    n = y.shape[1] // math.prod(layer.out_shape[2:])
    _, _, ho, wo = layer.out_shape
    g, _, cols = y.shape
    return y.reshape(g, n, ho, wo, cols).transpose(1, 0, 4, 2, 3).reshape(n, g * cols, ho, wo)


def gemm_input(x: np.ndarray, layer: Layer) -> np.ndarray:
    """The ``(groups, P, K)`` GEMM operand of ``layer`` for input ``x``."""
    if layer.kind == "conv2d":
        return im2col(x, layer)
    return x.reshape(-1, x.shape[-1])[None]


def set_gemm_weight(layer: Layer, wg: np.ndarray) -> np.ndarray:
    """Inverse of ``Layer.gemm_weight``: ``(groups, K, cols)`` -> the source weight layout."""
    if layer.kind == "linear":
        return np.ascontiguousarray(wg[0].T)
    c_out, c_in_g, kh, kw = np.shape(layer.weight)
    groups = int(layer.attrs.get("groups", 1))
    w = wg.reshape(groups, kh, kw, c_in_g, c_out // groups).transpose(0, 4, 3, 1, 2)
    return np.ascontiguousarray(w.reshape(c_out, c_in_g, kh, kw))


def host_layer(x: np.ndarray, layer: Layer) -> np.ndarray:
    """A layer the host runs (ReLU, flatten, non-overlapping pooling), integer or float."""
    op = str(layer.attrs.get("op", "")).lower()
    if layer.kind == "act" and op == "relu":
        return np.maximum(x, 0)
    if layer.kind == "reshape":
        return x.reshape(x.shape[0], -1)
    if layer.kind == "pool" and op in ("maxpool2d", "avgpool2d"):
        kh, kw = layer.attrs["kernel_size"]
        sh, sw = layer.attrs.get("stride", (kh, kw))
        if (kh, kw) != (sh, sw) or x.shape[2] % kh or x.shape[3] % kw:
            raise ValueError(f"layer {layer.name!r}: only non-overlapping pooling that tiles "
                             f"the input is supported, not kernel {(kh, kw)} stride {(sh, sw)}")
        n, c, h, w = x.shape
        win = x.reshape(n, c, h // kh, kh, w // kw, kw)
        if op == "maxpool2d":
            return win.max(axis=(3, 5))
        if np.issubdtype(x.dtype, np.integer):  # round half up, integer only
            return (win.sum(axis=(3, 5)) * 2 + kh * kw) // (2 * kh * kw)
        return win.mean(axis=(3, 5))
    raise ValueError(f"layer {layer.name!r}: {layer.kind} {layer.attrs.get('op', '')!r} is not "
                     "supported by the NumPy executor (expected conv2d, linear, ReLU, "
                     "max/avg pooling, flatten)")


def forward_float(graph: LayerGraph, x: np.ndarray,
                  on_gemm: Callable[[int, Layer, np.ndarray], None] | None = None,
                  weights: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """Float forward pass; ``on_gemm(index, layer, X)`` sees each GEMM's ``(g, P, K)`` input.
    ``weights`` overrides GEMM weights (``index -> (g, K, cols)``)."""
    x = np.asarray(x, dtype=np.float64)
    for i, layer in enumerate(graph.layers):
        if layer.has_static_weight:
            cols = gemm_input(x, layer)
            if on_gemm is not None:
                on_gemm(i, layer, cols)
            wg = weights[i] if weights and i in weights else layer.gemm_weight()
            y = gemm_output(np.matmul(cols, wg), layer)
            if layer.bias is not None:
                shape = (1, -1) + (1,) * (y.ndim - 2)
                y = y + np.asarray(layer.bias).reshape(shape)
            x = y
        else:
            x = host_layer(x, layer)
    return x


def quantize_multiplier(real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer ``(multiplier, shift)`` with ``multiplier / 2**shift ~= real`` and the multiplier
    in ``[2**14, 2**15)`` where the shift range allows."""
    real = np.asarray(real, dtype=np.float64)
    if np.any(real <= 0):
        raise ValueError(f"requantization scales must be positive, not {real.min()!r}")
    shift = np.clip(MULT_BITS - 1 - np.floor(np.log2(real)).astype(np.int64), 0, 62)
    mult = np.round(real * np.exp2(shift)).astype(np.int64)
    return mult, shift


@dataclass(frozen=True)
class QuantLayer:
    index: int
    weight: np.ndarray  # (g, K, cols) int8 values as int64
    weight_scale: np.ndarray  # (g, cols)
    in_scale: float
    out_scale: float
    bias: np.ndarray  # (g, cols) int32 units of in_scale * weight_scale
    multiplier: np.ndarray  # (g, cols)
    shift: np.ndarray  # (g, cols)
    out_width: int


@dataclass(frozen=True)
class QuantizedGraph:
    graph: LayerGraph
    layers: dict[int, QuantLayer]
    in_scale: float


def quantize_graph(graph: LayerGraph, calib_x: np.ndarray) -> QuantizedGraph:
    """Quantize every ``conv2d``/``linear`` layer; activation scales from ``calib_x``."""
    maxabs: dict[int, float] = {}

    def seen(i: int, layer: Layer, cols: np.ndarray) -> None:
        maxabs[i] = float(np.abs(cols).max())

    out = forward_float(graph, calib_x, on_gemm=seen)
    order = sorted(maxabs)
    scales = {i: (maxabs[i] / 127.0 if maxabs[i] > 0 else 1.0) for i in order}
    last_max = float(np.abs(out).max()) or 1.0
    qlayers = {}
    for pos, i in enumerate(order):
        layer = graph.layers[i]
        wg = layer.gemm_weight().astype(np.float64)
        w_scale = np.abs(wg).max(axis=1) / 127.0  # (g, cols)
        w_scale = np.where(w_scale > 0, w_scale, 1.0)
        wq = np.clip(np.round(wg / w_scale[:, None, :]), -127, 127).astype(np.int64)
        last = pos == len(order) - 1
        out_width = 16 if last else 8
        out_scale = last_max / (2 ** (out_width - 1) - 1) if last else scales[order[pos + 1]]
        acc_scale = scales[i] * w_scale
        bias = np.zeros_like(w_scale) if layer.bias is None else \
            np.asarray(layer.bias, dtype=np.float64).reshape(w_scale.shape)
        bias_q = np.round(bias / acc_scale).astype(np.int64)
        mult, shift = quantize_multiplier(acc_scale / out_scale)
        qlayers[i] = QuantLayer(index=i, weight=wq, weight_scale=w_scale, in_scale=scales[i],
                                out_scale=out_scale, bias=bias_q, multiplier=mult, shift=shift,
                                out_width=out_width)
    return QuantizedGraph(graph=graph, layers=qlayers, in_scale=scales[order[0]])


def quantize_input(qgraph: QuantizedGraph, x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(x) / qgraph.in_scale), -128, 127).astype(np.int64)


def layer_gemm_int(layer: Layer, ql: QuantLayer, cols: np.ndarray) -> np.ndarray:
    """int32 accumulators ``(g, P, cols)`` of one layer computed by the golden model (N:M layers
    through the compressed format and ``gemm_nm``, dense ones through ``gemm_dense``)."""
    out = []
    for g in range(cols.shape[0]):
        packed = pack_nm(ql.weight[g], *layer.nm) if layer.nm else None
        chunks = []
        for start in range(0, cols.shape[1], ROWS_PER_CHUNK):
            xs = cols[g, start:start + ROWS_PER_CHUNK]
            psum = np.broadcast_to(ql.bias[g], (xs.shape[0], ql.bias.shape[1]))
            if packed is not None:
                chunks.append(gemm_nm(xs, packed, psum))
            else:
                chunks.append(gemm_dense(xs, ql.weight[g], psum))
        out.append(np.concatenate(chunks))
    return np.stack(out)


def forward_int(qgraph: QuantizedGraph, x: np.ndarray,
                on_gemm: Callable[[int, Layer, np.ndarray, np.ndarray], None] | None = None
                ) -> np.ndarray:
    """Integer-only forward pass; returns the classifier's int16 outputs.
    ``on_gemm(index, layer, X_int, acc)`` sees each GEMM's int8 input and int32 accumulators."""
    x = quantize_input(qgraph, x)
    for i, layer in enumerate(qgraph.graph.layers):
        if layer.has_static_weight:
            ql = qgraph.layers[i]
            cols = gemm_input(x, layer)
            acc = layer_gemm_int(layer, ql, cols)
            if on_gemm is not None:
                on_gemm(i, layer, cols, acc)
            y = requantize(acc, ql.multiplier[:, None, :], ql.shift[:, None, :],
                           out_width=ql.out_width)
            x = gemm_output(y, layer)
        else:
            x = host_layer(x, layer)
    return x


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((np.argmax(logits, axis=-1) == labels).mean())
