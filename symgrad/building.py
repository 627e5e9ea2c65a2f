"""`symgrad compile` and `symgrad check`: write the generated module; check it against the eager
oracle and central differences."""
from __future__ import annotations

import time

import runtime
from compiler import compile_model
from compiler.eager import Oracle

from .files import default_out, write_atomic

FORWARD_TOL = 1e-12  # float64: the generated forward and the oracle differ only by rounding order


def cmd_compile(args) -> int:
    t = time.perf_counter()
    result = compile_model(args.model, args.dtype, functions=args.functions)
    elapsed = time.perf_counter() - t
    out = args.output or default_out(args.model)
    write_atomic(out, result.source)
    lines = result.source.count("\n")
    extra = f", with {', '.join(args.functions)}" if args.functions else ""
    print(f"wrote {out}: {lines} lines, {args.dtype}{extra}, compiled in {elapsed:.2f} s, "
          f"{result.shared} subexpressions shared by CSE")
    return 0


def cmd_check(args) -> int:
    """Forward values against the eager oracle, then gradients against central differences of the
    oracle's loss (of the module's own loss with --no-oracle)."""
    result = compile_model(args.model, "float64")
    out = args.output or default_out(args.model)
    write_atomic(out, result.source)
    model = runtime.load(out)
    params = model.init_params(args.seed)
    inputs = runtime.random_inputs(model, batch=args.batch, seed=args.seed)
    ok = True
    reference = None
    if args.oracle:
        oracle = Oracle(args.model)
        ok = check_forward(model, oracle, params, inputs)
        reference = oracle.loss
    checks = runtime.check_gradients(model, params, inputs, eps=args.eps, tol=args.tol,
                                     max_per_param=args.max_per_param, seed=args.seed,
                                     reference=reference)
    against = "the eager oracle's loss" if args.oracle else "the module's own loss"
    print(f"gradients vs central differences of {against} (eps {args.eps:g}):")
    return 0 if print_gradient_checks(checks, args.tol, ok) else 1


def print_gradient_checks(checks, tol: float, ok: bool) -> bool:
    """One row per parameter and the summary line, which says MISMATCH if anything failed (the
    forward check included, passed in as `ok`); True if everything passed."""
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
    print(f"max relative error {worst:.2e} (tolerance {tol:g}){note}: {'ok' if ok else 'MISMATCH'}")
    return ok


def check_forward(model, oracle, params, inputs) -> bool:
    """The module's loss, outputs and new state against the oracle's, printed; True if they agree."""
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
