"""Backpropagation checked against central differences, (L(θ+ε) − L(θ−ε)) / 2ε, per parameter."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .model import Model


@dataclass(frozen=True)
class GradCheck:
    name: str
    shape: tuple
    checked: int          # elements compared
    rel_error: float      # ‖analytic − numeric‖ / max(‖analytic‖, ‖numeric‖, floor)
    max_abs_error: float
    grad_norm: float


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


def numeric_gradient(model: Model, params: dict, inputs: dict, name: str, eps: float,
                     indices) -> np.ndarray:
    theta = params[name]
    out = np.zeros(len(indices))
    for k, idx in enumerate(indices):
        saved = theta[idx]
        theta[idx] = saved + eps
        up = float(model.loss(params, **inputs))
        theta[idx] = saved - eps
        down = float(model.loss(params, **inputs))
        theta[idx] = saved
        out[k] = (up - down) / (2 * eps)
    return out


def check_gradients(model: Model, params: dict, inputs: dict, eps: float = 1e-5,
                    max_per_param: int | None = None, seed: int = 0, floor: float = 1e-8):
    """Compare `loss_and_grad` with central differences for every parameter (or a sample)."""
    params = {k: np.array(v, copy=True) for k, v in params.items()}
    loss, grads, _ = model.step(params, **inputs)
    # central differences carry round-off of ~1e-16·|L|/ε: gradients far below that are compared
    # on an absolute scale (a bias before batch norm has a true gradient of exactly 0)
    floor = max(floor, 1e-10 / eps * max(1.0, abs(float(loss))))
    rng = np.random.default_rng(seed)
    results = []
    for name in model.params_spec:  # trainable parameters only (not running statistics)
        theta = params[name]
        all_idx = list(np.ndindex(theta.shape)) if theta.shape else [()]
        if max_per_param is not None and len(all_idx) > max_per_param:
            picks = rng.choice(len(all_idx), size=max_per_param, replace=False)
            all_idx = [all_idx[i] for i in sorted(picks)]
        analytic = np.array([grads[name][i] for i in all_idx], dtype=np.float64)
        numeric = numeric_gradient(model, params, inputs, name, eps, all_idx)
        diff = np.linalg.norm(analytic - numeric)
        scale = max(np.linalg.norm(analytic), np.linalg.norm(numeric), floor)
        results.append(GradCheck(name, tuple(theta.shape), len(all_idx), float(diff / scale),
                                 float(np.max(np.abs(analytic - numeric))) if len(all_idx) else 0.0,
                                 float(np.linalg.norm(grads[name]))))
    return results
