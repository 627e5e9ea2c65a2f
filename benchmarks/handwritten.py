"""Hand-written NumPy backprop for the benchmark MLPs, written as an expert would: fused stable
softmax cross-entropy, activation derivatives from stored outputs, no copies, no gradient for x."""
from __future__ import annotations

import numpy as np


def softmax_cross_entropy(logits, y):
    """Mean cross-entropy and its gradient with respect to the logits, fused and stable."""
    B = logits.shape[0]
    m = logits.max(axis=1, keepdims=True)
    e = np.exp(logits - m)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(B)
    loss = (np.log(s[:, 0]) + m[:, 0] - logits[rows, y]).mean()
    d = e / (s * B)
    d[rows, y] -= 1.0 / B
    return loss, d


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
        loss, d = softmax_cross_entropy(logits, y)
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


def make_cnn_loss_and_grad(layers):
    """The MNIST-1D CNN by hand: im2col through a strided window view, one matmul per layer, col2im by
    adding each tap back (channels last, as symgrad's conv1d)."""
    def windows(x, k, stride, padding):
        x = np.pad(x, ((0, 0), (padding, padding), (0, 0)))
        v = np.lib.stride_tricks.sliding_window_view(x, k, axis=1)[:, ::stride]  # (N, L_out, C, k)
        return v.transpose(0, 1, 3, 2)

    def loss_and_grad(params, x, y):
        B = x.shape[0]
        h = x.reshape(B, -1, 1)
        cache = []
        for name, k, stride, padding in layers:
            W = params[f"{name}.W"]
            patches = windows(h, k, stride, padding).reshape(B, -1, k * h.shape[2])
            z = patches @ W.reshape(-1, W.shape[2])
            z += params[f"{name}.b"]
            cache.append((h.shape, patches, z))
            h = np.maximum(z, 0)
        flat = h.reshape(B, -1)
        logits = flat @ params["out.W"] + params["out.b"]
        loss, d = softmax_cross_entropy(logits, y)
        grads = {"out.W": flat.T @ d, "out.b": d.sum(axis=0)}
        dh = (d @ params["out.W"].T).reshape(h.shape)
        for (name, k, stride, padding), (in_shape, patches, z) in zip(reversed(layers), reversed(cache)):
            W = params[f"{name}.W"]
            dz = dh * (z > 0)
            grads[f"{name}.W"] = np.tensordot(patches, dz, axes=([0, 1], [0, 1])).reshape(W.shape)
            grads[f"{name}.b"] = dz.sum(axis=(0, 1))
            if name == layers[0][0]:
                break
            dpatches = (dz @ W.reshape(-1, W.shape[2]).T).reshape(B, -1, k, in_shape[2])
            dx = np.zeros((B, in_shape[1] + 2 * padding, in_shape[2]))
            l_out = dpatches.shape[1]
            for j in range(k):
                dx[:, j:j + stride * (l_out - 1) + 1:stride] += dpatches[:, :, j]
            dh = dx[:, padding:padding + in_shape[1]]
        return loss, grads
    return loss_and_grad
