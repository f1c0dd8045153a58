"""``sparsa models`` and ``sparsa prune``: the command-line side of the zoo, pruning and
quantization. Heavy dependencies (torch, transformers, onnx, scikit-learn) load inside the
command functions only."""

from __future__ import annotations

import argparse

__all__ = ["register"]

METHODS = ("magnitude", "second-order", "gradual")
CALIB_SAMPLES = 512


def _cmd_models(args: argparse.Namespace) -> int:
    from .zoo import get_graph, names

    print(f"{'model':14s} {'layers':>7s} {'GEMMs':>6s} {'GEMM MACs':>16s} {'GEMM weights':>14s}  "
          "source")
    for name in names():
        g = get_graph(name, batch=args.batch)
        params = sum(lay.gemm.k * lay.gemm.cols * lay.gemm.groups
                     for lay in g.layers if lay.has_static_weight)
        print(f"{name:14s} {len(g):7d} {len(g.gemm_layers()):6d} {g.macs:16,d} {params:14,d}  "
              f"{g.source}")
    return 0


def _accuracies(graph, name: str) -> tuple[float, float]:
    from sparsa.sw.quant import accuracy, forward_float, forward_int, quantize_graph

    from .demo import digits_data

    x_tr, _, x_te, y_te = digits_data(name)
    float_acc = accuracy(forward_float(graph, x_te), y_te)
    int_acc = accuracy(forward_int(quantize_graph(graph, x_tr), x_te), y_te)
    return float_acc, int_acc


def _cmd_prune(args: argparse.Namespace) -> int:
    from sparsa.config import parse_nm
    from sparsa.sw.prune import (
        PrunePolicy,
        check_graph_nm,
        prune_gradual,
        prune_magnitude,
        prune_second_order,
        validate_nm,
    )

    from .demo import DEMOS, digits_data
    from .load import load_graph, load_saved, save_graph

    n, m = validate_nm(*parse_nm(args.nm))
    graph = load_graph(args.model)
    demo = graph.name if graph.name in DEMOS and graph.source.startswith("demo:") else None
    policy = PrunePolicy(keep_first_conv=not args.prune_first_conv,
                         keep_classifier=not args.prune_classifier,
                         dense=frozenset(args.dense))
    if args.method != "magnitude" and demo is None:
        raise ValueError(f"--method {args.method} needs calibration/training data, which sparsa "
                         f"has for the demo models ({', '.join(DEMOS)}), not for "
                         f"{args.model!r}; use --method magnitude")
    if demo:
        f_acc, i_acc = _accuracies(graph, demo)
        print(f"{demo} before: float {f_acc:.2%}, int8 {i_acc:.2%} (digits test set)")
    if args.method == "magnitude":
        pruned = prune_magnitude(graph, n, m, policy)
    elif args.method == "second-order":
        x_tr = digits_data(demo)[0][:CALIB_SAMPLES]
        pruned = prune_second_order(graph, n, m, x_tr, policy)
    else:
        pruned = prune_gradual(demo, n, m, policy)
    for lay in pruned.layers:
        if lay.has_static_weight:
            state = f"{lay.nm[0]}:{lay.nm[1]}" if lay.nm else "dense"
            print(f"  {lay.name:24s} {lay.kind:7s} K={lay.gemm.k:<6d} cols={lay.gemm.cols:<6d} "
                  f"{state}")
    if demo:
        f_acc, i_acc = _accuracies(pruned, demo)
        print(f"{demo} after {n}:{m} {args.method}: float {f_acc:.2%}, int8 {i_acc:.2%}")
    path = save_graph(pruned, args.output, meta={"demo": demo, "nm": [n, m],
                                                 "method": args.method})
    checked = check_graph_nm(load_saved(path)[0])
    print(f"wrote {path}; {checked} pruned layers satisfy their N:M pattern")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``models`` and ``prune`` commands to the ``sparsa`` parser."""
    p = subparsers.add_parser("models", help="list the model zoo (layers, GEMM MACs, weights)")
    p.add_argument("--batch", type=int, default=1, help="batch size of the traced graphs")
    p.set_defaults(func=_cmd_models)

    p = subparsers.add_parser("prune", help="prune a model's GEMM weights to an N:M pattern")
    p.add_argument("model", help="zoo name, .onnx file or saved sparsa graph (.npz)")
    p.add_argument("--nm", default="2:4", metavar="N:M", help="pattern along K (default 2:4)")
    p.add_argument("--method", choices=METHODS, default="magnitude",
                   help="magnitude (any model with weights); second-order (SparseGPT-style) and "
                        "gradual (SR-STE training) for the demo models")
    p.add_argument("--dense", action="append", default=[], metavar="LAYER",
                   help="keep this layer dense (repeatable)")
    p.add_argument("--prune-first-conv", action="store_true",
                   help="also prune the first convolution (dense by default)")
    p.add_argument("--prune-classifier", action="store_true",
                   help="also prune the last weight layer (dense by default)")
    p.add_argument("-o", "--output", required=True, help="output file (.npz)")
    p.set_defaults(func=_cmd_prune)
