"""Backpropagation checked against central differences, (L(θ+ε) − L(θ−ε)) / 2ε, per parameter.

The loss that is differenced should be an independent one (`reference`, e.g. the compiler's eager
oracle): differencing the generated `loss` cannot catch a wrong forward. Two things would otherwise
raise false alarms, and are handled here:

- round-off: a central difference carries an absolute error of about εmach·|L|/ε, so a gradient
  that is truly 0 (a bias before batch norm) is judged on that absolute scale, not relatively;
- kinks: at a point where the loss is not differentiable (relu at 0) the one-sided slopes differ and
  no single number is "the" derivative. A mismatching element is looked at again with a 16× smaller
  step: if the slopes then agree with the analytic value, the kink was merely nearby (avoided); if the
  one-sided slopes still disagree by as much, the point itself is non-differentiable and the element
  is reported as such — accepted when the analytic value lies between the two slopes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .model import Model

ROUNDOFF = 1e3 * np.finfo(np.float64).eps   # the loss's own rounding, relative, with a wide margin
SMALLER = 16                                  # step reduction used to look at a mismatch again


@dataclass(frozen=True)
class GradCheck:
    name: str
    shape: tuple
    checked: int          # elements compared
    rel_error: float      # ‖analytic − numeric‖ / max(‖analytic‖, ‖numeric‖, round-off floor); inf on NaN
    max_abs_error: float
    grad_norm: float
    kinks: int = 0        # elements at a non-differentiable point, analytic between the one-sided slopes
    bad_kinks: int = 0    # elements at a non-differentiable point, analytic outside the slopes
    tol: float = 1e-6

    @property
    def ok(self) -> bool:
        return self.rel_error <= self.tol and not self.bad_kinks

    @property
    def status(self) -> str:
        if not self.ok:
            return "MISMATCH"
        return f"ok, {self.kinks} at non-differentiable points" if self.kinks else "ok"


def random_inputs(model: Model, batch: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs of the compiled shapes: N(0, 1) floats, uniform labels; symbolic sizes set to `batch`."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, (shape, dtype) in model.inputs_spec.items():
        concrete = tuple(batch if isinstance(d, str) else d for d in shape)
        if name not in model.label_classes and dtype == "int64":  # the dropout seed
            out[name] = np.int64(seed)
        elif dtype == "int64":
            out[name] = rng.integers(0, model.label_classes[name], size=concrete)
        else:
            out[name] = rng.standard_normal(concrete).astype(model.dtype)
    return out


def _loss_function(model: Model, reference: Callable | None) -> Callable:
    if reference is not None:
        return lambda params, inputs: float(reference(params, inputs))
    return lambda params, inputs: float(model.loss(params, **inputs))


def _differences(loss, params, inputs, name, eps, indices):
    """(up, down) losses at θ ± ε for each element; θ is restored after every evaluation."""
    theta = params[name]
    up, down = np.zeros(len(indices)), np.zeros(len(indices))
    for k, idx in enumerate(indices):
        saved = theta[idx]
        theta[idx] = saved + eps
        up[k] = loss(params, inputs)
        theta[idx] = saved - eps
        down[k] = loss(params, inputs)
        theta[idx] = saved
    return up, down


def numeric_gradient(model: Model, params: dict, inputs: dict, name: str, eps: float,
                     indices, reference: Callable | None = None) -> np.ndarray:
    """Central differences of the loss (`reference`'s if given) for the elements `indices`."""
    up, down = _differences(_loss_function(model, reference), params, inputs, name, eps, indices)
    return (up - down) / (2 * eps)


def norm(v) -> float:
    """The 2-norm, inf when it is not finite (a NaN anywhere is a mismatch)."""
    n = float(np.linalg.norm(v)) if len(v) else 0.0
    return n if np.isfinite(n) else np.inf


def check_gradients(model: Model, params: dict, inputs: dict, eps: float = 1e-5,
                    max_per_param: int | None = None, seed: int = 0, tol: float = 1e-6,
                    reference: Callable | None = None) -> list[GradCheck]:
    """Compare `loss_and_grad` with central differences of `reference(params, inputs)` (default: the
    module's own loss) for every parameter, or a random sample of `max_per_param` elements each."""
    params = {k: np.array(v, dtype=np.float64 if reference else v.dtype, copy=True)
              for k, v in params.items()}
    loss = _loss_function(model, reference)
    _, grads, _ = model.step({k: v.astype(model.dtype) for k, v in params.items()}, **inputs)
    base = loss(params, inputs)
    atol = ROUNDOFF * max(1.0, abs(base)) / eps  # per element: what rounding alone can produce
    rng = np.random.default_rng(seed)
    results = []
    for name in model.params_spec:  # trainable parameters only (not running statistics)
        theta = params[name]
        idx = list(np.ndindex(theta.shape)) if theta.shape else [()]
        if max_per_param is not None and len(idx) > max_per_param:
            picks = rng.choice(len(idx), size=max_per_param, replace=False)
            idx = [idx[i] for i in sorted(picks)]
        analytic = np.array([grads[name][i] for i in idx], dtype=np.float64)
        up, down = _differences(loss, params, inputs, name, eps, idx)
        numeric = (up - down) / (2 * eps)
        kink = np.zeros(len(idx), dtype=bool)
        bad_kink = np.zeros(len(idx), dtype=bool)
        off = ~(np.abs(analytic - numeric) <= tol * np.maximum(np.abs(analytic), np.abs(numeric)) + atol)
        for k in np.flatnonzero(off):
            numeric[k], kink[k], bad_kink[k] = _look_again(loss, params, inputs, name, idx[k], eps,
                                                           base, up[k], down[k], analytic[k], atol)
        smooth = ~kink
        diff = analytic[smooth] - numeric[smooth]
        scale = max(norm(analytic[smooth]), norm(numeric[smooth]),
                    atol * np.sqrt(max(1, smooth.sum())) / tol)
        rel = norm(diff) / scale if np.all(np.isfinite(diff)) else np.inf
        results.append(GradCheck(name, tuple(theta.shape), len(idx), float(rel),
                                 float(np.max(np.abs(diff))) if diff.size else 0.0,
                                 norm(np.ravel(grads[name])), int((kink & ~bad_kink).sum()),
                                 int(bad_kink.sum()), tol))
    return results


def _look_again(loss, params, inputs, name, index, eps, base, up, down, analytic, atol):
    """A mismatching element, seen with a 16× smaller step: (numeric, at a kink, analytic outside)."""
    small = eps / SMALLER
    (up2,), (down2,) = _differences(loss, params, inputs, name, small, [index])
    numeric = (up2 - down2) / (2 * small)
    gap, gap2 = (up - base - (base - down)) / eps, (up2 - base - (base - down2)) / small
    noise = SMALLER * atol
    if abs(gap2) > 0.5 * abs(gap) and abs(gap2) > 10 * noise:  # slopes that do not converge
        right, left = (up2 - base) / small, (base - down2) / small
        inside = min(left, right) - noise <= analytic <= max(left, right) + noise
        return numeric, True, not inside
    return numeric, False, False


def compare_values(generated: dict, reference: dict) -> dict[str, float]:
    """‖generated − reference‖ / ‖reference‖ per name (inf where shapes differ or a value is NaN)."""
    out = {}
    for name, ref in reference.items():
        ref = np.asarray(ref, dtype=np.float64)
        gen = np.asarray(generated.get(name, np.nan), dtype=np.float64)
        if gen.shape != ref.shape:
            out[name] = np.inf
            continue
        both_nan = np.isnan(gen) & np.isnan(ref)
        same_inf = np.isinf(gen) & (gen == ref)
        finite = ~(both_nan | same_inf)
        diff = norm((gen - ref)[finite].ravel())
        if not np.all(np.isfinite((gen - ref)[finite])):
            out[name] = np.inf
        else:
            out[name] = diff / max(norm(ref[finite].ravel()), np.finfo(np.float64).tiny) if diff else 0.0
    return out
