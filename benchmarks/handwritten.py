"""Hand-written NumPy backprop for the benchmark MLPs, written as an expert would: fused stable
softmax cross-entropy, activation derivatives from stored outputs, no copies, no gradient for x."""
from __future__ import annotations

import numpy as np


def make_loss_and_grad(names: list[str], activation: str):
    def loss_and_grad(params, x, y):
        B = x.shape[0]
        hs, zs = [x], []
        h = x
        for i, name in enumerate(names):
            z = h @ params[f"{name}.W"]
            z += params[f"{name}.b"]
            if i < len(names) - 1:
                if activation == "relu":
                    h = np.maximum(z, 0)
                elif activation == "tanh":
                    h = np.tanh(z)
                else:
                    h = 0.5 * np.tanh(0.5 * z) + 0.5
                zs.append(z)
                hs.append(h)
            else:
                logits = z
        m = logits.max(axis=1, keepdims=True)
        e = np.exp(logits - m)
        s = e.sum(axis=1, keepdims=True)
        rows = np.arange(B)
        loss = (np.log(s[:, 0]) + m[:, 0] - logits[rows, y]).mean()
        d = e / (s * B)
        d[rows, y] -= 1.0 / B
        grads = {}
        for i in range(len(names) - 1, -1, -1):
            name = names[i]
            grads[f"{name}.W"] = hs[i].T @ d
            grads[f"{name}.b"] = d.sum(axis=0)
            if i > 0:
                dh = d @ params[f"{name}.W"].T
                h = hs[i]
                if activation == "relu":
                    dh *= zs[i - 1] > 0
                elif activation == "tanh":
                    dh *= 1 - h * h
                else:
                    dh *= h * (1 - h)
                d = dh
        return loss, grads
    return loss_and_grad


def make_matmul_floor(names: list[str]):
    """Only the matrix products of one step: forward x@W, backward hᵀ@d and d@Wᵀ (no dX for x)."""
    def floor(params, x, y):
        hs = [x]
        h = x
        for name in names:
            h = h @ params[f"{name}.W"]
            hs.append(h)
        d = h
        for i in range(len(names) - 1, -1, -1):
            hs[i].T @ d
            if i > 0:
                d = d @ params[f"{names[i]}.W"].T
        return None
    return floor
