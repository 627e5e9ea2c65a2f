"""The `symgrad` command: compile, check (and the runtime's commands as they land).

User mistakes (ModelError, bad arrays, stale modules) print a message and exit 2, never a traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

from . import DTYPES, ModelError, compile_model


USER_ERRORS = ("InputError", "StaleModuleError", "CheckpointError", "DataError", "NonFiniteError",
               "DistributedError")


def _default_out(model: str) -> str:
    return os.path.join("build", os.path.splitext(os.path.basename(model))[0] + ".py")


def write_atomic(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def cmd_compile(args) -> int:
    t = time.perf_counter()
    result = compile_model(args.model, args.dtype)
    elapsed = time.perf_counter() - t
    out = args.output or _default_out(args.model)
    write_atomic(out, result.source)
    lines = result.source.count("\n")
    print(f"wrote {out}: {lines} lines, {args.dtype}, compiled in {elapsed:.2f} s, "
          f"{result.shared} subexpressions shared by CSE")
    return 0


def cmd_check(args) -> int:
    """Forward values against the eager oracle, then gradients against central differences of the
    oracle's loss (of the module's own loss with --no-oracle)."""
    import runtime
    from .eager import Oracle

    result = compile_model(args.model, "float64")
    out = args.output or _default_out(args.model)
    write_atomic(out, result.source)
    model = runtime.load(out)
    params = model.init_params(args.seed)
    inputs = runtime.random_inputs(model, batch=args.batch, seed=args.seed)
    ok = True
    reference = None
    if args.oracle:
        oracle = Oracle(args.model)
        ok = _check_forward(model, oracle, params, inputs)
        reference = oracle.loss
    checks = runtime.check_gradients(model, params, inputs, eps=args.eps, tol=args.tol,
                                     max_per_param=args.max_per_param, seed=args.seed,
                                     reference=reference)
    against = "the eager oracle's loss" if args.oracle else "the module's own loss"
    print(f"gradients vs central differences of {against} (eps {args.eps:g}):")
    width = max(len(c.name) for c in checks) if checks else 5
    print(f"{'param':<{width}}  {'shape':<12} {'checked':>8} {'|grad|':>11} {'rel error':>10}")
    worst = 0.0
    for c in checks:
        worst = max(worst, c.rel_error)
        ok = ok and c.ok
        flag = "" if c.status == "ok" else f"  {c.status}"
        if c.bad_kinks:
            flag += f" ({c.bad_kinks} at non-differentiable points, outside the one-sided slopes)"
        print(f"{c.name:<{width}}  {str(c.shape):<12} {c.checked:>8} {c.grad_norm:>11.4g} "
              f"{c.rel_error:>10.2e}{flag}")
    kinks = sum(c.kinks for c in checks)
    note = f"; {kinks} elements at non-differentiable points (analytic between the one-sided slopes)" \
        if kinks else ""
    print(f"max relative error {worst:.2e} (tolerance {args.tol:g}){note}: {'ok' if ok else 'MISMATCH'}")
    return 0 if ok else 1


FORWARD_TOL = 1e-12  # float64: the generated forward and the oracle differ only by rounding order


def _check_forward(model, oracle, params, inputs) -> bool:
    """The module's loss, outputs and new state against the oracle's, printed; True if they agree."""
    import runtime
    trained = oracle.run(params, inputs, training=True)
    loss, _, state = model.step(params, **inputs)
    generated = {"loss": loss, **{f"state {k}": v for k, v in state.items()}}
    expected = {"loss": trained.loss, **{f"state {k}": v for k, v in trained.state.items()}}
    names = set(model.inputs_spec)
    outputs = model.forward(params, **{k: v for k, v in inputs.items() if k in names})
    generated.update({f"output {k}": v for k, v in outputs.items()})
    expected.update({f"output {k}": v for k, v in oracle.forward(params, inputs).items()})
    errors = runtime.gradcheck.compare_values(generated, expected)
    print(f"forward vs the eager oracle (tolerance {FORWARD_TOL:g}):")
    for name, err in errors.items():
        print(f"  {name:<30} rel error {err:.2e}{'' if err <= FORWARD_TOL else '  MISMATCH'}")
    return all(err <= FORWARD_TOL for err in errors.values())


def _load_model(args):
    import runtime
    return runtime.load(args.model, dtype=getattr(args, "dtype", "float64"))


def cmd_train(args) -> int:
    from runtime.data import load_dataset
    from runtime.train import TrainConfig, train

    model = _load_model(args)
    data = load_dataset(args.data, seed=args.seed, label_column=args.label_column)
    out = args.out or os.path.join("runs", os.path.splitext(os.path.basename(args.model))[0])
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer,
                         lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
                         schedule=args.schedule, step_size=args.step_size, gamma=args.gamma,
                         seed=args.seed, out=out, resume=args.resume, progress=not args.quiet)
    print(f"training {args.model} on {data.describe()}; {config.optimizer} lr={config.lr} "
          f"batch={config.batch_size} epochs={config.epochs} seed={config.seed}")
    stepper, client = None, None
    if args.workers or args.scheduler:
        from runtime.distributed import DataParallel, connect
        from runtime.train import bind
        client = connect(args.workers, args.scheduler)
        binding = bind(model, data)
        stepper = DataParallel(client, model, model.module.__file__, data.x_train.astype(model.dtype),
                               data.y_train, (binding.x, binding.y))
        print(f"data parallel on {len(stepper.workers)} Dask worker(s)")
    try:
        result = train(model, data, config, stepper=stepper)
    finally:
        if client is not None:
            client.close()
    final = result.final
    parts = [f"{k}={final[k]:.4f}" for k in ("train_loss", "test_loss", "train_acc", "test_acc") if k in final]
    print(f"epoch {final.get('epoch', 0)}/{config.epochs}: " + " ".join(parts)
          + f"  ({result.seconds:.1f} s training)")
    print(f"wrote {out}/checkpoint.npz, {out}/metrics.jsonl, {out}/curves.png")
    if "test_acc" in final:
        print(f"test_acc {final['test_acc']:.4f}")
    return 130 if result.stopped == "interrupted" else 0


def cmd_sweep(args) -> int:
    import csv
    import itertools

    from runtime.data import load_dataset
    from runtime.distributed import connect, sweep
    from runtime.train import TrainConfig

    model = _load_model(args)  # compile once, here; the workers load the generated module
    data = load_dataset(args.data, label_column=args.label_column)
    grid = {}
    for item in args.grid or []:
        key, _, values = item.partition("=")
        if key not in ("lr", "batch_size", "epochs", "momentum", "weight_decay") or not values:
            print(f"error: --grid takes lr=, batch_size=, epochs=, momentum= or weight_decay= with "
                  f"comma-separated values, got {item!r}", file=sys.stderr)
            return 2
        cast = int if key in ("batch_size", "epochs") else float
        grid[key] = [cast(v) for v in values.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    out = args.out or os.path.join("runs", "sweep_" + os.path.splitext(os.path.basename(args.model))[0])
    keys = sorted(grid)
    configs = []
    for values in itertools.product(*[grid[k] for k in keys]):
        for seed in seeds:
            chosen = dict(zip(keys, values))
            name = "_".join(f"{k}{v}" for k, v in chosen.items()) + f"_seed{seed}"
            base = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer,
                               lr=args.lr, seed=seed, out=os.path.join(out, name or f"seed{seed}"),
                               progress=False, plot=False)
            configs.append({**base.__dict__, **chosen})
    client = connect(args.workers, args.scheduler) if (args.workers or args.scheduler) else None
    try:
        rows = sweep(model.module.__file__, data, configs, client)
    finally:
        if client is not None:
            client.close()
    os.makedirs(out, exist_ok=True)
    columns = ["lr", "batch_size", "epochs", "optimizer", "seed", "test_acc", "test_loss", "seconds"]
    with open(os.path.join(out, "sweep.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    print(" ".join(f"{c:>10}" for c in columns))
    for r in rows:
        print(" ".join(f"{(f'{r[c]:.4f}' if isinstance(r[c], float) else str(r[c])):>10}" for c in columns))
    print(f"wrote {os.path.join(out, 'sweep.csv')}")
    return 0


def cmd_eval(args) -> int:
    import numpy as np

    from runtime import checkpoint as ckpt
    from runtime.data import load_dataset
    from runtime.train import bind, evaluate

    model = _load_model(args)
    state = ckpt.load(args.checkpoint, model)
    data = load_dataset(args.data, seed=state.meta.get("config", {}).get("seed", 0),
                        label_column=args.label_column)
    binding = bind(model, data)
    result = evaluate(model, state.params, data.x_test.astype(model.dtype), data.y_test, binding)
    print(f"{data.name} test split: {len(data.y_test)} samples, loss {result['loss']:.4f}")
    if "acc" in result:
        print(f"accuracy {result['acc']:.4f}")
        k = max(data.classes, int(result["pred"].max()) + 1)
        confusion = np.zeros((k, k), dtype=np.int64)
        np.add.at(confusion, (data.y_test, result["pred"]), 1)
        print("confusion matrix (rows: true class, columns: predicted)")
        print("      " + "".join(f"{j:>6}" for j in range(k)))
        for i in range(k):
            print(f"{i:>6}" + "".join(f"{confusion[i, j]:>6}" for j in range(k)))
    return 0


def cmd_predict(args) -> int:
    import numpy as np

    from runtime import checkpoint as ckpt

    model = _load_model(args)
    state = ckpt.load(args.checkpoint, model)
    with np.load(args.input, allow_pickle=False) as f:
        arrays = dict(f)
    floats = [n for n, (_, dtype) in model.inputs_spec.items() if dtype != "int64"]
    missing = [n for n in floats if n not in arrays]
    if missing:
        print(f"error: {args.input} has no array named {missing[0]!r} (it holds {sorted(arrays)})",
              file=sys.stderr)
        return 2
    inputs = {n: arrays[n].astype(model.dtype) for n in floats}
    outputs = model.forward(state.params, **inputs)
    saved = dict(outputs)
    for name, value in outputs.items():
        if value.ndim == 2:
            saved[f"{name}_argmax"] = np.argmax(value, axis=1)
    out = args.output or os.path.splitext(args.input)[0] + ".pred.npz"
    np.savez(out, **saved)
    print(f"wrote {out}: " + ", ".join(f"{k} {v.shape}" for k, v in saved.items()))
    return 0


def _print_code(text: str) -> None:
    """Syntax-highlighted on a terminal (rich), plain when piped."""
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.syntax import Syntax
        Console().print(Syntax(text, "python", theme="ansi_dark", word_wrap=False))
    else:
        sys.stdout.write(text)


def cmd_show(args) -> int:
    from . import inspection
    result = compile_model(args.model, args.dtype)
    if args.grad:
        text = inspection.show_gradient(result, args.grad)
    elif args.forward:
        text = inspection.show_forward(result)
    else:
        text = result.source
    _print_code(text)
    return 0


def cmd_explain(args) -> int:
    from .explain import explain
    result = compile_model(args.model, "float64")
    params = args.grad or [leaf.name for leaf in result.graph.params]
    for name in params:
        print(explain(result, name, latex=args.latex))
        if len(params) > 1:
            print()
    return 0


def cmd_graph(args) -> int:
    from .draw import render
    result = compile_model(args.model, "float64")
    print(f"wrote {render(result, args.output)}")
    return 0


def cmd_stats(args) -> int:
    from . import inspection
    result = compile_model(args.model, args.dtype)
    table = inspection.stats(result, batch=args.batch)
    width = max(map(len, table))
    for key, value in table.items():
        shown = f"{value:,}" if isinstance(value, int) else str(value)
        print(f"{key:<{width}}  {shown}")
    return 0


def cmd_ir(args) -> int:
    from . import inspection
    result = compile_model(args.model, args.dtype)
    print("\n".join(inspection.ir_lines(result.graph, args.dtype)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="symgrad", description="Compile a model file to readable NumPy forward and backward code.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compile", help="model file -> standalone NumPy module")
    p.add_argument("model", help="the model file (.py)")
    p.add_argument("-o", "--output", help="where to write the module (default build/<name>.py)")
    p.add_argument("--dtype", choices=DTYPES, default="float64")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("check", help="backprop vs central differences, per parameter")
    p.add_argument("model")
    p.add_argument("-o", "--output", help="where to write the float64 module (default build/<name>.py)")
    p.add_argument("--batch", type=int, default=4, help="size of the random batch (default 4)")
    p.add_argument("--eps", type=float, default=1e-5, help="finite-difference step (default 1e-5)")
    p.add_argument("--tol", type=float, default=1e-6, help="max relative error (default 1e-6)")
    p.add_argument("--max-per-param", type=int, default=None,
                   help="check a random sample of this many elements per parameter")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--oracle", action=argparse.BooleanOptionalAction, default=True,
                   help="check the forward against the eager oracle and difference the oracle's "
                        "loss (default); --no-oracle differences the module's own loss")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("show", help="print the generated module (or one gradient's code)")
    p.add_argument("model")
    p.add_argument("--grad", metavar="PARAM", help="only the statements that compute d_PARAM (runs as code)")
    p.add_argument("--forward", action="store_true", help="only the forward pass")
    p.add_argument("--dtype", choices=DTYPES, default="float64")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("explain", help="the gradient as mathematics")
    p.add_argument("model")
    p.add_argument("--grad", metavar="PARAM", action="append", help="parameter (repeatable; default all)")
    p.add_argument("--latex", action="store_true")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("graph", help="draw the forward + backward DAG (graphviz)")
    p.add_argument("model")
    p.add_argument("-o", "--output", required=True, help="graph.svg, .png, .pdf or .dot")
    p.set_defaults(func=cmd_graph)

    p = sub.add_parser("stats", help="ops, FLOPs, sharing, memory, compile time per stage")
    p.add_argument("model")
    p.add_argument("--batch", type=int, default=1, help="batch size for FLOPs and memory (default 1)")
    p.add_argument("--dtype", choices=DTYPES, default="float64")
    p.set_defaults(func=cmd_stats)

    sub.add_parser("bench", help="run the benchmark suite (same as python -m benchmarks; "
                                 "options: --quick, --models, --out)")

    p = sub.add_parser("ir", help="the traced DAG, one equation per line")
    p.add_argument("model")
    p.add_argument("--dtype", choices=DTYPES, default="float64")
    p.set_defaults(func=cmd_ir)

    from runtime.optim import OPTIMIZERS
    from runtime.schedules import SCHEDULES
    p = sub.add_parser("train", help="train a model file on a data set")
    p.add_argument("model")
    p.add_argument("--data", default="digits",
                   help="digits, mnist1d, mnist5k, or a .npz (x, y[, x_test, y_test]) / .csv file")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--schedule", choices=SCHEDULES, default="constant")
    p.add_argument("--step-size", type=int, default=30, help="epochs between decays (step schedule)")
    p.add_argument("--gamma", type=float, default=0.1, help="decay factor (step schedule)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=DTYPES, default="float64")
    p.add_argument("--out", help="output folder (default runs/<model name>)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    p.add_argument("--label-column", type=int, default=-1, help="label column of a .csv (default last)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--workers", type=int, help="data-parallel steps on a Dask LocalCluster of N processes")
    p.add_argument("--scheduler", help="join an existing Dask scheduler (tcp://host:port) instead")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sweep", help="train every combination of a grid and seeds as Dask tasks")
    p.add_argument("model")
    p.add_argument("--data", default="digits")
    p.add_argument("--grid", action="append", metavar="KEY=V1,V2",
                   help="lr=1e-3,1e-2 (also batch_size, epochs, momentum, weight_decay); repeatable")
    p.add_argument("--seeds", default="0")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--dtype", choices=DTYPES, default="float64")
    p.add_argument("--label-column", type=int, default=-1)
    p.add_argument("--workers", type=int, help="run the tasks on a Dask LocalCluster of N processes")
    p.add_argument("--scheduler", help="or on an existing Dask scheduler (tcp://host:port)")
    p.add_argument("--out", help="folder for the runs and sweep.csv (default runs/sweep_<model>)")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("eval", help="accuracy and confusion matrix of a checkpoint on a test split")
    p.add_argument("model")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", default="digits")
    p.add_argument("--dtype", choices=DTYPES, default="float64")
    p.add_argument("--label-column", type=int, default=-1)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="run forward on the arrays of an .npz and save the outputs")
    p.add_argument("model")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--input", required=True, help=".npz holding the model's float inputs by name")
    p.add_argument("-o", "--output", help="where to write (default INPUT.pred.npz)")
    p.add_argument("--dtype", choices=DTYPES, default="float64")
    p.set_defaults(func=cmd_predict)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # the suite parses its own options (--quick, --models, --out)
        from benchmarks.suite import main as bench
        return bench(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = _show_warning
            return args.func(args)
    except ModelError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError) as e:
        if type(e).__name__ in USER_ERRORS:
            print(f"error: {e}", file=sys.stderr)
            return 2 if type(e).__name__ != "NonFiniteError" else 3
        raise


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
