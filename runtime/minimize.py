"""Full-batch minimisation through scipy.optimize, for small models trained to convergence.

    result = runtime.minimize(model, params, {"x": x, "y": y}, method="newton-cg")

`lbfgs` (L-BFGS-B) needs only `loss_and_grad`; `newton-cg` and `trust-ncg` take Hessian-vector
products from the generated `hvp` (compile with `--with hvp`): Newton's method without ever forming
the Hessian. scipy works on one float64 vector; the parameters are packed in PARAMS order and each
call unpacks them into the module's dtype.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .model import Model

METHODS = {"lbfgs": "L-BFGS-B", "newton-cg": "Newton-CG", "trust-ncg": "trust-ncg"}
NEEDS_HVP = ("newton-cg", "trust-ncg")


class FullBatchError(ValueError):
    """A model that full-batch minimisation cannot train as it is (running statistics)."""


@dataclass
class MinimizeResult:
    params: dict
    loss: float
    iterations: int
    evaluations: int      # loss_and_grad calls
    hvps: int             # hvp calls
    seconds: float
    converged: bool
    message: str
    history: list = field(default_factory=list)   # {"iteration", "loss", "seconds"} per iteration


class _Problem:
    """The model as scipy sees it: f(θ), ∇f(θ) and H(θ)·p on flat float64 vectors; the last
    loss_and_grad is kept, since scipy asks for the same point again (its line search, callbacks)."""

    def __init__(self, model: Model, params: dict, inputs: dict):
        self.model, self.inputs = model, inputs
        self.names = list(model.params_spec)
        self.shapes = [model.params_spec[k][0] for k in self.names]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.fixed = {k: v for k, v in params.items() if k not in model.params_spec}  # running statistics
        self.last: tuple | None = None
        self.evaluations = self.hvps = 0

    def pack(self, arrays: dict) -> np.ndarray:
        return np.concatenate([np.asarray(arrays[k], dtype=np.float64).ravel() for k in self.names])

    def unpack(self, theta: np.ndarray) -> dict:
        out, start = dict(self.fixed), 0
        for name, shape, size in zip(self.names, self.shapes, self.sizes):
            out[name] = theta[start:start + size].reshape(shape).astype(self.model.dtype)
            start += size
        return out

    def loss_and_grad(self, theta: np.ndarray):
        if self.last is None or not np.array_equal(self.last[0], theta):
            loss, grads = self.model.loss_and_grad(self.unpack(theta), **self.inputs)[:2]
            self.evaluations += 1
            self.last = (theta.copy(), float(loss), self.pack(grads))
        return self.last[1], self.last[2]

    def hessp(self, theta: np.ndarray, p: np.ndarray) -> np.ndarray:
        self.hvps += 1
        vectors = {k: v for k, v in self.unpack(p).items() if k in self.model.params_spec}
        return self.pack(self.model.hvp(self.unpack(theta), vectors, **self.inputs)[2])


def minimize(model: Model, params: dict, inputs: dict, method: str = "lbfgs", *,
             maxiter: int = 1000, tol: float = 1e-9, callback=None) -> MinimizeResult:
    """Minimise the model's loss over all of `inputs` (one full batch) from `params`.

    `tol` is the gradient tolerance (scipy's gtol; for newton-cg, xtol on the step). After every
    iteration `callback(record, params)` gets {"iteration", "loss", "seconds"} and the iterate."""
    from scipy import optimize

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    model = model.on_host()   # scipy works on host vectors, whatever the module's backend
    if method in NEEDS_HVP and not hasattr(model.module, "hvp"):
        raise AttributeError(f"{method} needs Hessian-vector products: load the model with "
                             "runtime.load(path, functions=('hvp',)) or compile it with --with hvp")
    if model.states_spec:
        raise FullBatchError(f"{method} minimises one fixed loss over the whole data set, and this model has "
                         f"running statistics ({', '.join(model.states_spec)}) that a step updates; "
                         "they would keep their initial values. Train it with a minibatch optimizer "
                         "(--optimizer adam)")
    if model.needs_seed and "seed" not in inputs:
        inputs = {**inputs, "seed": np.int64(0)}   # dropout: one fixed mask, so the loss is one function
    problem = _Problem(model, params, inputs)
    history: list = []
    started = time.perf_counter()

    def record(theta):
        loss, _ = problem.loss_and_grad(theta)
        entry = {"iteration": len(history) + 1, "loss": loss,
                 "seconds": round(time.perf_counter() - started, 6)}
        history.append(entry)
        if callback is not None:
            callback(entry, problem.unpack(theta))

    options = {"maxiter": maxiter}
    options.update({"lbfgs": {"gtol": tol, "ftol": 0.0}, "newton-cg": {"xtol": tol},
                    "trust-ncg": {"gtol": tol}}[method])
    theta0 = problem.pack(params)
    out = optimize.minimize(problem.loss_and_grad, theta0, jac=True, method=METHODS[method],
                            hessp=problem.hessp if method in NEEDS_HVP else None,
                            callback=record, options=options)
    loss, _ = problem.loss_and_grad(out.x)
    return MinimizeResult(problem.unpack(out.x), loss, int(out.nit), problem.evaluations,
                          problem.hvps, time.perf_counter() - started, bool(out.success),
                          str(out.message), history)
