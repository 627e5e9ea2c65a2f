"""The `symgrad` command: the argument parser and the dispatch to the command modules
(building: compile, check; inspecting: show, explain, graph, stats, ir; training: train, sweep,
eval, predict, sample; bench runs the benchmark suite).

User mistakes (ModelError, bad arrays, stale modules) print a message and exit 2, never a traceback.
"""
from __future__ import annotations

import argparse
import sys
import warnings

from benchmarks.suite import main as run_benchmarks
from compiler import BACKENDS, DTYPES, FUNCTIONS, ModelError
from runtime.minimize import METHODS
from runtime.optim import OPTIMIZERS
from runtime.schedules import SCHEDULES

from . import building, inspecting, training

USER_ERRORS = ("InputError", "StaleModuleError", "CheckpointError", "DataError", "NonFiniteError",
               "DistributedError", "FullBatchError")


def function_list(text: str) -> tuple:
    """`hvp,jvp` -> ("hvp", "jvp"), each one of compiler.FUNCTIONS."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in FUNCTIONS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown function(s) {', '.join(unknown)}; choose from "
                                         f"{', '.join(FUNCTIONS)}")
    return names


def add_build_commands(sub) -> None:
    p = sub.add_parser("compile", help="model file -> standalone NumPy (or CuPy, torch, JAX) module")
    p.add_argument("model", help="the model file (.py)")
    p.add_argument("-o", "--output", help="where to write the module (default build/<name>.py)")
    p.add_argument("--dtype", choices=DTYPES, default="float64")
    add_backend_flag(p)
    p.add_argument("--with", dest="functions", type=function_list, default=(), metavar="FN[,FN...]",
                   help=f"also generate any of {', '.join(FUNCTIONS)} (forward, loss and "
                        "loss_and_grad are always there)")
    p.set_defaults(func=building.cmd_compile)

    p = sub.add_parser("check", help="backprop vs central differences, per parameter")
    p.add_argument("model")
    p.add_argument("--with", dest="functions", type=function_list, default=(), metavar="FN[,FN...]",
                   help="also check these generated functions against central differences")
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
    add_backend_flag(p)
    p.set_defaults(func=building.cmd_check)


def add_backend_flag(p, device: bool = False) -> None:
    p.add_argument("--backend", choices=BACKENDS, default="numpy",
                   help="the array library the module calls (default numpy; cupy, torch and jax "
                        "must be installed)")
    if device:
        p.add_argument("--device", choices=("cpu", "cuda"),
                       help="where torch and jax run (default: a GPU when there is one)")


def add_inspection_commands(sub) -> None:
    """show, explain, graph, stats, then bench and ir (the order of `symgrad --help`)."""
    p = sub.add_parser("show", help="print the generated module (or one gradient's code)")
    p.add_argument("model")
    p.add_argument("--grad", metavar="PARAM", help="only the statements that compute d_PARAM (runs as code)")
    p.add_argument("--forward", action="store_true", help="only the forward pass")
    p.add_argument("--with", dest="functions", type=function_list, default=(), metavar="FN[,FN...]",
                   help="the module with these functions too (hvp, jvp, input_grad, hessian)")
    p.add_argument("--dtype", choices=DTYPES, default="float64")
    add_backend_flag(p)
    p.set_defaults(func=inspecting.cmd_show)

    p = sub.add_parser("explain", help="the gradient as mathematics")
    p.add_argument("model")
    p.add_argument("--grad", metavar="PARAM", action="append", help="parameter (repeatable; default all)")
    p.add_argument("--hessian", action="store_true",
                   help="the second derivatives instead, in closed form (models of scalars)")
    p.add_argument("--latex", action="store_true")
    p.set_defaults(func=inspecting.cmd_explain)

    p = sub.add_parser("graph", help="draw the forward + backward DAG (graphviz)")
    p.add_argument("model")
    p.add_argument("-o", "--output", required=True, help="graph.svg, .png, .pdf or .dot")
    p.set_defaults(func=inspecting.cmd_graph)

    p = sub.add_parser("stats", help="ops, FLOPs, sharing, memory, compile time per stage")
    p.add_argument("model")
    p.add_argument("--batch", type=int, default=1, help="batch size for FLOPs and memory (default 1)")
    p.add_argument("--dtype", choices=DTYPES, default="float64")
    p.set_defaults(func=inspecting.cmd_stats)

    sub.add_parser("bench", help="run the benchmark suite (same as python -m benchmarks; options: "
                                 "--quick, --rounds, --models, --impls, --cpu, --dask, --out)")

    p = sub.add_parser("ir", help="the traced DAG, one equation per line")
    p.add_argument("model")
    p.add_argument("--dtype", choices=DTYPES, default="float64")
    p.set_defaults(func=inspecting.cmd_ir)


def add_train_command(sub) -> None:
    p = sub.add_parser("train", help="train a model file on a data set")
    p.add_argument("model")
    p.add_argument("--data", default="digits",
                   help="digits, mnist1d, mnist5k, surnames, or a .npz of arrays named like the "
                        "model's inputs (x, y or t[, x_test, ...]) / a .csv file (labels, or a "
                        "regression target when the model's inputs are all float)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--optimizer", choices=OPTIMIZERS + tuple(METHODS), default="adam",
                   help="a minibatch optimizer, or full batch through scipy: lbfgs, newton-cg and "
                        "trust-ncg (the last two with the generated hvp; --epochs is then the "
                        "iteration limit)")
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
    p.add_argument("--label-column", type=int, default=-1, help="target column of a .csv (default last)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--workers", type=int, help="data-parallel steps on a Dask LocalCluster of N processes")
    p.add_argument("--scheduler", help="join an existing Dask scheduler (tcp://host:port) instead")
    add_backend_flag(p, device=True)
    p.set_defaults(func=training.cmd_train)


def add_sweep_command(sub) -> None:
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
    p.set_defaults(func=training.cmd_sweep)


def add_checkpoint_commands(sub) -> None:
    p = sub.add_parser("eval", help="a checkpoint on a test split: accuracy and confusion matrix, "
                                    "MSE, or NLL per token")
    p.add_argument("model")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", default="digits")
    p.add_argument("--dtype", choices=DTYPES, default="float64")
    p.add_argument("--label-column", type=int, default=-1)
    p.set_defaults(func=training.cmd_eval)

    p = sub.add_parser("predict", help="run forward on the arrays of an .npz and save the outputs")
    p.add_argument("model")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--input", required=True,
                   help=".npz holding the model's inputs by name, raw: the checkpoint's "
                        "standardisation is applied")
    p.add_argument("-o", "--output", help="where to write (default INPUT.pred.npz)")
    p.add_argument("--dtype", choices=DTYPES, default="float64")
    p.set_defaults(func=training.cmd_predict)

    p = sub.add_parser("sample", help="generate names from a character model trained on surnames")
    p.add_argument("model")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("-n", type=int, default=20, help="how many names (default 20)")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="divides the logits: below 1 safer, above 1 wilder (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=DTYPES, default="float64")
    p.set_defaults(func=training.cmd_sample)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="symgrad", description="Compile a model file to readable NumPy forward and backward code.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_build_commands(sub)
    add_inspection_commands(sub)
    add_train_command(sub)
    add_sweep_command(sub)
    add_checkpoint_commands(sub)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # the suite parses its own options (python -m benchmarks --help)
        return run_benchmarks(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = show_warning
            return args.func(args)
    except ModelError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError) as e:
        if type(e).__name__ in USER_ERRORS:
            print(f"error: {e}", file=sys.stderr)
            return 2 if type(e).__name__ != "NonFiniteError" else 3
        raise


def show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
