"""``sparsa models`` and ``sparsa prune``: the command-line side of the zoo, pruning and
quantization. Heavy dependencies (torch, transformers, onnx, scikit-learn) load inside the
command functions only."""

from __future__ import annotations

import argparse

from sparsa.sw.prune import POLICY_HELP

from .common import (
    UsageError,
    add_command,
    add_prune_args,
    check_output_file,
    load_model,
    output_file,
    prune_policy_from_args,
)

__all__ = ["register"]

METHODS = ("magnitude", "second-order", "gradual")
CALIB_SAMPLES = 512


def _cmd_models(args: argparse.Namespace) -> int:
    from rich.console import Console

    from sparsa.models.zoo import get_graph, is_text, names

    status = Console(stderr=True).status("")
    print(f"{'model':13s} {'layers':>6s} {'GEMMs':>5s} {'GEMM MACs':>17s} {'GEMM weights':>13s} "
          f"{'batch':>5s} {'seq':>5s} {'input':>16s}  weights")
    for name in names():
        with status:
            status.update(f"loading {name} (traced or trained on first use, then cached)")
            g = get_graph(name, batch=1 if args.batch is None else args.batch,
                          seq=args.seq if is_text(name) else None)
        params = sum(lay.gemm.k * lay.gemm.cols * lay.gemm.groups
                     for lay in g.layers if lay.has_static_weight)
        shape = "x".join(map(str, g.input_shape))
        trained = any(lay.weight is not None for lay in g.layers)
        seq = str(g.meta.get("seq", "-"))
        print(f"{name:13s} {len(g):6d} {len(g.gemm_layers()):5d} {g.macs:17,d} {params:13,d} "
              f"{g.meta.get('batch', 1):5d} {seq:>5s} {shape:>16s}  "
              f"{'trained' if trained else 'shapes only'}", flush=True)
    return 0


def _accuracies(graph, name: str) -> tuple[float, float]:
    from sparsa.models.demo import digits_data
    from sparsa.sw.quant import accuracy, forward_float, forward_int, quantize_graph

    x_tr, _, x_te, y_te = digits_data(name)
    float_acc = accuracy(forward_float(graph, x_te), y_te)
    int_acc = accuracy(forward_int(quantize_graph(graph, x_tr), x_te), y_te)
    return float_acc, int_acc


def _cmd_prune(args: argparse.Namespace) -> int:
    from sparsa.models.demo import DEMOS, digits_data
    from sparsa.models.store import load_saved, save_graph
    from sparsa.nm import parse_nm
    from sparsa.sw.prune import check_graph_nm, prune_gradual, prune_magnitude, prune_second_order

    out = check_output_file(args.output, ".npz")
    n, m = parse_nm(args.nm)
    policy = prune_policy_from_args(args)
    graph = load_model(args.model)
    demo = graph.name if graph.name in DEMOS and graph.source.startswith("demo:") else None
    if args.method != "magnitude" and demo is None:
        raise UsageError(f"--method {args.method} needs calibration or training data, which "
                         f"sparsa has for the demo models ({', '.join(DEMOS)}), not for "
                         f"{args.model!r}")
    if graph.layers and all(lay.weight is None for lay in graph.layers if lay.has_static_weight):
        raise UsageError(f"{args.model!r} carries layer shapes but no weights, so there is "
                         "nothing to prune; 'sparsa report' costs it as N:M-pruned directly")
    if demo:
        f_acc, i_acc = _accuracies(graph, demo)
        print(f"{demo} before: float {f_acc:.2%}, int8 {i_acc:.2%} (digits test set)")
    if args.method == "magnitude":
        pruned = prune_magnitude(graph, n, m, policy)
    elif args.method == "second-order":
        x_tr = digits_data(demo)[0][:CALIB_SAMPLES]
        pruned = prune_second_order(graph, n, m, x_tr, policy)
    else:
        from rich.console import Console
        from rich.progress import Progress

        with Progress(transient=True, console=Console(stderr=True)) as bar:
            task = bar.add_task(f"gradual {n}:{m} training of {demo}", total=None)
            pruned = prune_gradual(demo, n, m, policy, progress=lambda step, total: bar.update(
                task, completed=step, total=total))
    for lay in pruned.layers:
        if lay.has_static_weight:
            state = f"{lay.nm[0]}:{lay.nm[1]}" if lay.nm else "dense"
            print(f"  {lay.name:24s} {lay.kind:7s} K={lay.gemm.k:<6d} cols={lay.gemm.cols:<6d} "
                  f"{state}")
    if demo:
        f_acc, i_acc = _accuracies(pruned, demo)
        print(f"{demo} after {n}:{m} {args.method}: float {f_acc:.2%}, int8 {i_acc:.2%}")
    with output_file(out) as tmp:
        save_graph(pruned, tmp, meta={"demo": demo, "nm": [n, m], "method": args.method})
        checked = check_graph_nm(load_saved(tmp)[0])
    print(f"wrote {out}; {checked} pruned layers satisfy their N:M pattern")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``models`` and ``prune`` commands to the ``sparsa`` parser."""
    p = add_command(subparsers, "models", "list the model zoo (layers, GEMM MACs, weights)")
    p.add_argument("--batch", type=int, default=None,
                   help="batch size of the traced graphs (default: 1)")
    p.add_argument("--seq", type=int, default=None,
                   help="tokens per sequence of the text models (default: 128)")
    p.set_defaults(func=_cmd_models)

    p = add_command(subparsers, "prune", "prune a model's GEMM weights to an N:M pattern")
    p.add_argument("model", help="zoo name, .onnx file or saved sparsa graph (.npz)")
    p.add_argument("--nm", default="2:4", metavar="N:M", help="pattern along K")
    p.add_argument("--method", choices=METHODS, default="magnitude",
                   help="magnitude (any model with weights); second-order (SparseGPT-style) and "
                        "gradual (SR-STE training) for the demo models, which have data")
    p.add_argument("-o", "--output", required=True, help="output file (.npz)")
    add_prune_args(p, POLICY_HELP)
    p.set_defaults(func=_cmd_prune)
