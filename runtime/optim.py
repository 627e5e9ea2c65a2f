"""Optimizers as pure functions over dicts of arrays: `update(params, grads, state, lr)` returns new
params and a new state and changes nothing it was given. State is a dict of named slots
(slot -> {param name -> array}) plus a step count, so a checkpoint stores it as plain arrays. Only
arithmetic: the arrays may be NumPy's, CuPy's, torch's or JAX's, and stay on their device."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .devices import zeros_like


@dataclass(frozen=True)
class Optimizer:
    name: str
    slots: tuple[str, ...]
    update: Callable   # (params, grads, state, lr) -> (params, state)
    hyper: dict

    def init(self, params: dict) -> dict:
        state = {slot: {k: zeros_like(v) for k, v in params.items()} for slot in self.slots}
        state["t"] = 0
        return state


def sgd() -> Optimizer:
    def update(params, grads, state, lr):
        return {k: p - lr * grads[k] for k, p in params.items()}, {"t": state["t"] + 1}
    return Optimizer("sgd", (), update, {})


def momentum(mu: float = 0.9, nesterov: bool = False) -> Optimizer:
    """v ← μv + g;  θ ← θ − lr·v  (Nesterov: θ ← θ − lr·(g + μv))."""
    def update(params, grads, state, lr):
        v = {k: mu * state["v"][k] + grads[k] for k in params}
        step = {k: grads[k] + mu * v[k] for k in params} if nesterov else v
        return {k: p - lr * step[k] for k, p in params.items()}, {"v": v, "t": state["t"] + 1}
    return Optimizer("nesterov" if nesterov else "momentum", ("v",), update,
                     {"momentum": mu, "nesterov": nesterov})


def adam(beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
         weight_decay: float = 0.0) -> Optimizer:
    """Adam with bias correction; weight_decay > 0 gives AdamW (decoupled: θ ← θ − lr·λ·θ)."""
    def update(params, grads, state, lr):
        t = state["t"] + 1
        m = {k: beta1 * state["m"][k] + (1 - beta1) * grads[k] for k in params}
        v = {k: beta2 * state["v"][k] + (1 - beta2) * grads[k] ** 2 for k in params}
        c1, c2 = 1 - beta1 ** t, 1 - beta2 ** t
        new = {}
        for k, p in params.items():
            if weight_decay:
                p = p - lr * weight_decay * p
            new[k] = p - lr * (m[k] / c1) / ((v[k] / c2) ** 0.5 + eps)   # ** 0.5: any array library
        return new, {"m": m, "v": v, "t": t}
    return Optimizer("adamw" if weight_decay else "adam", ("m", "v"), update,
                     {"beta1": beta1, "beta2": beta2, "eps": eps, "weight_decay": weight_decay})


def make(name: str, *, momentum_: float = 0.9, weight_decay: float = 0.0) -> Optimizer:
    if name == "sgd":
        return sgd()
    if name in ("momentum", "nesterov"):
        return momentum(momentum_, nesterov=name == "nesterov")
    if name == "adam":
        return adam(weight_decay=weight_decay)
    if name == "adamw":
        return adam(weight_decay=weight_decay or 1e-2)
    raise ValueError(f"unknown optimizer {name!r}; choose sgd, momentum, nesterov, adam or adamw")


OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw")
