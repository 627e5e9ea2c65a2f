"""`symgrad compile` and `symgrad check`: write the generated module; check it against the eager
oracle and central differences."""
from __future__ import annotations

import time

import numpy as np

import runtime
from compiler import compile_model
from compiler.eager import Oracle

from .files import default_out, write_atomic

FORWARD_TOL = 1e-12  # float64: the generated forward and the oracle differ only by rounding order


def cmd_compile(args) -> int:
    t = time.perf_counter()
    result = compile_model(args.model, args.dtype, functions=args.functions, backend=args.backend)
    elapsed = time.perf_counter() - t
    out = args.output or default_out(args.model)
    write_atomic(out, result.source)
    lines = result.source.count("\n")
    extra = f", with {', '.join(args.functions)}" if args.functions else ""
    extra += f", {args.backend} backend" if args.backend != "numpy" else ""
    print(f"wrote {out}: {lines} lines, {args.dtype}{extra}, compiled in {elapsed:.2f} s, "
          f"{result.shared} subexpressions shared by CSE")
    return 0


def cmd_check(args) -> int:
    """Forward values against the eager oracle, then gradients against central differences of the
    oracle's loss (of the module's own loss with --no-oracle)."""
    result = compile_model(args.model, "float64", functions=args.functions, backend=args.backend)
    out = args.output or default_out(args.model)
    write_atomic(out, result.source)
    model = runtime.load(out).on_host()   # another backend's module: NumPy arrays in and out
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
    ok = print_gradient_checks(checks, args.tol, ok)
    return 0 if check_second_order(model, args, params, inputs, oracle if args.oracle else None, ok) else 1


def check_second_order(model, args, params, inputs, oracle, ok: bool) -> bool:
    """What `--with` added, each against central differences (see runtime.secondcheck)."""
    forward = oracle.forward if oracle is not None else (lambda p, i: model.forward(
        p, **{k: v for k, v in i.items() if k in model.inputs_spec}))
    loss = oracle.loss if oracle is not None else (lambda p, i: float(model.loss(p, **i)))
    if "hvp" in args.functions or "hessian" in args.functions:
        print("H·v vs central differences of the gradient along a random v:")
        ok = print_gradient_checks(runtime.check_hvp(model, params, inputs, seed=args.seed),
                                   args.tol, ok)
    if "jvp" in args.functions:
        print("J·t vs central differences of the outputs along a random t:")
        ok = print_gradient_checks(runtime.check_jvp(model, params, inputs, forward, seed=args.seed),
                                   args.tol, ok)
    if "input_grad" in args.functions:
        print("input gradients vs central differences of the loss:")
        ok = print_gradient_checks(runtime.check_input_grad(model, params, inputs, loss, seed=args.seed),
                                   args.tol, ok)
    if "hessian" in args.functions:
        ok = check_hessian(model, params, inputs, args.tol, args.seed) and ok
    return ok


def check_hessian(model, params, inputs, tol: float, seed: int = 0) -> bool:
    """H symmetric, and H·v equal to hvp's for a random v."""
    _, _, H = model.hessian(params, **inputs)
    rng = np.random.default_rng(seed)
    v = {k: rng.standard_normal(np.shape(params[k])) for k in model.params_spec}
    _, _, hv = model.hvp(params, v, **inputs)
    flat_v = np.concatenate([v[k].ravel() for k in model.params_spec])
    flat_hv = np.concatenate([hv[k].ravel() for k in model.params_spec])
    scale = max(np.abs(H).max(initial=0), 1e-300)
    asym = float(np.abs(H - H.T).max(initial=0) / scale)
    product = float(np.abs(H @ flat_v - flat_hv).max(initial=0) / max(np.abs(flat_hv).max(initial=0), 1e-300))
    good = asym <= tol and product <= tol
    print(f"hessian {H.shape}: asymmetry |H − Hᵀ| / |H| = {asym:.2e}; H times a random v against "
          f"the hvp function: {product:.2e} relative: " + ("ok" if good else "MISMATCH"))
    return good


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
