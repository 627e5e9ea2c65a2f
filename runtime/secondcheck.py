"""H·v, J·t and input gradients checked against central differences, as `symgrad check --with` runs
them and the tests do.

    H·v         against (∇L(θ + εv) − ∇L(θ − εv)) / 2ε: differences of the gradient, which
                check_gradients has itself checked against the eager oracle
    J·t         against (f(θ + εt) − f(θ − εt)) / 2ε of the outputs of `reference` (the oracle's forward)
    ∂L/∂input   against central differences of `reference` (the oracle's loss), element by element

A value that does not match is measured again with a 16× smaller step; when the two differences
disagree with each other as much as with the analytic value, the point sits on a kink (relu at 0)
where no derivative exists, and the value is counted as such rather than as a mismatch.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np

from .gradcheck import ROUNDOFF, SMALLER, GradCheck, norm
from .model import Model


def _random_direction(model: Model, params: dict, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(np.shape(params[k])).astype(model.dtype) for k in model.params_spec}


def _shifted(params: dict, direction: dict, step: float) -> dict:
    return {k: (v + step * direction[k]).astype(v.dtype) if k in direction else v for k, v in params.items()}


def _judge(name, analytic, difference: Callable, eps: float, tol: float, floor: float) -> GradCheck:
    """One array: analytic vs difference(eps), looked at again with eps/16 when they differ."""
    analytic = np.asarray(analytic, dtype=np.float64)
    numeric = np.asarray(difference(eps), dtype=np.float64)
    kinks = 0
    error = norm(np.ravel(analytic - numeric))
    scale = max(norm(np.ravel(analytic)), norm(np.ravel(numeric)), floor / tol)
    if not error <= tol * scale:
        finer = np.asarray(difference(eps / SMALLER), dtype=np.float64)
        moved = norm(np.ravel(finer - numeric))
        error_finer = norm(np.ravel(analytic - finer))
        if error_finer <= tol * scale:
            numeric, error = finer, error_finer
        elif moved > 0.5 * error:   # the differences do not converge: a kink within the step
            kinks = int(np.sum(np.abs(finer - numeric) > tol * scale))
            error = 0.0
    rel = error / scale if np.isfinite(error) else np.inf
    return GradCheck(name, tuple(analytic.shape), int(analytic.size), float(rel),
                     float(np.max(np.abs(analytic - numeric))) if analytic.size and not kinks else 0.0,
                     norm(np.ravel(analytic)), kinks, 0, tol)


def check_hvp(model: Model, params: dict, inputs: dict, vectors: dict | None = None,
              eps: float = 1e-5, tol: float = 1e-6, seed: int = 0) -> list[GradCheck]:
    """H·v of every parameter against central differences of the gradient along v."""
    vectors = vectors or _random_direction(model, params, seed)
    _, grads, hv = model.hvp(params, vectors, **inputs)
    floor = ROUNDOFF * max(1.0, max(float(np.max(np.abs(g), initial=0)) for g in grads.values())) / eps

    def difference(name):
        def at(step):
            up = model.loss_and_grad(_shifted(params, vectors, step), **inputs)[1][name]
            down = model.loss_and_grad(_shifted(params, vectors, -step), **inputs)[1][name]
            return (up.astype(np.float64) - down) / (2 * step)
        return at
    return [_judge(name, hv[name], difference(name), eps, tol, floor) for name in model.params_spec]


def check_jvp(model: Model, params: dict, inputs: dict, reference: Callable, tangents: dict | None = None,
              eps: float = 1e-6, tol: float = 1e-6, seed: int = 0) -> list[GradCheck]:
    """The tangent of every output against central differences of `reference(params, inputs)`, a
    forward giving {output: array} (the eager oracle's, independent of the generated code)."""
    tangents = tangents or _random_direction(model, params, seed)
    names = set(model.inputs_spec)
    used = {k: v for k, v in inputs.items() if k in names}
    outputs, dots = model.jvp(params, tangents, **used)
    scale = max([1.0] + [float(np.max(np.abs(o), initial=0)) for o in outputs.values()])

    def difference(name):
        def at(step):
            up = reference(_shifted(params, tangents, step), inputs)[name]
            down = reference(_shifted(params, tangents, -step), inputs)[name]
            return (np.asarray(up, dtype=np.float64) - down) / (2 * step)
        return at
    return [_judge(f"{name} (output)", dots[name], difference(name), eps, tol,
                   ROUNDOFF * scale / eps * np.sqrt(max(1, np.size(dots[name]))))
            for name in dots]


def check_input_grad(model: Model, params: dict, inputs: dict, reference: Callable,
                     eps: float = 1e-5, tol: float = 1e-6, seed: int = 0) -> list[GradCheck]:
    """∂L/∂input of every float input against central differences of `reference(params, inputs)`
    (the oracle's loss): element by element for inputs of at most 64 entries, else along 8 random
    directions (two evaluations each)."""
    loss, grads = model.input_grad(params, **inputs)
    rng = np.random.default_rng(seed)
    floor = ROUNDOFF * max(1.0, abs(float(loss))) / eps
    results = []
    for name, g in grads.items():
        base = np.asarray(inputs[name], dtype=np.float64)
        if base.size <= 64:
            probes = [np.eye(base.size)[i].reshape(base.shape) for i in range(base.size)]
            analytic = np.ravel(g)
        else:
            probes = [rng.standard_normal(base.shape) for _ in range(8)]
            analytic = np.array([np.sum(g * d) for d in probes])

        def difference(step, probes=probes, name=name, base=base):
            out = []
            for d in probes:
                up = reference(params, {**inputs, name: (base + step * d).astype(inputs[name].dtype)})
                down = reference(params, {**inputs, name: (base - step * d).astype(inputs[name].dtype)})
                out.append((up - down) / (2 * step))
            return np.array(out)
        check = _judge(f"{name} (input)", analytic, difference, eps, tol, floor)
        results.append(replace(check, shape=tuple(base.shape)))   # the input's shape, not the probes'

    return results
