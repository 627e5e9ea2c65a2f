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
    import runtime

    result = compile_model(args.model, "float64")
    out = args.output or _default_out(args.model)
    write_atomic(out, result.source)
    model = runtime.load(out)
    params = model.init_params(args.seed)
    inputs = runtime.random_inputs(model, batch=args.batch, seed=args.seed)
    checks = runtime.check_gradients(model, params, inputs, eps=args.eps,
                                     max_per_param=args.max_per_param, seed=args.seed)
    width = max(len(c.name) for c in checks) if checks else 5
    print(f"{'param':<{width}}  {'shape':<12} {'checked':>8} {'|grad|':>11} {'rel error':>10}")
    worst = 0.0
    for c in checks:
        worst = max(worst, c.rel_error)
        flag = "" if c.rel_error <= args.tol else "  MISMATCH"
        print(f"{c.name:<{width}}  {str(c.shape):<12} {c.checked:>8} {c.grad_norm:>11.4g} "
              f"{c.rel_error:>10.2e}{flag}")
    ok = worst <= args.tol
    print(f"max relative error {worst:.2e} (tolerance {args.tol:g}): {'ok' if ok else 'MISMATCH'}")
    return 0 if ok else 1


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
    p.set_defaults(func=cmd_check)
    return parser


def main(argv=None) -> int:
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
        if type(e).__name__ in ("InputError", "StaleModuleError"):
            print(f"error: {e}", file=sys.stderr)
            return 2
        raise


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
