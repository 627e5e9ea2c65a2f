"""Hand-written NumPy backprop for the benchmark models: the fastest plain NumPy we could write,
chosen by interleaved A/B runs on one pinned thread (tests/test_benchmarks.py checks it computes the
generated module's numbers).

What made it fast, measured on the 2-core benchmark machine:
- `a.dot(b, out)` (positional out) instead of `a @ b`: 0.3 µs a product against 0.9 µs on tiny
  arrays; sums as products with a ones vector (row sums 0.4 µs against 1.4 µs for `.sum(axis=1)`).
- the targets as dense one-hot rows (already divided by B) taken from a cached identity with
  `.take`, 0.3 µs against 1 µs for `eye[y]`; no fancy-indexed update.
- every array of a step lives in buffers kept between calls (per batch size and dtype): a fresh
  array of more than 128 KiB is mapped anew by glibc and page-faults on first touch, 4.5 of the
  MNIST MLP's 22 ms (float64) and two thirds of the CNN's step when each call allocates.
The gradients returned are those buffers: valid until the next call, as with a generated
module's Workspace.
"""
from __future__ import annotations

import numpy as np


class Constants:
    """The ones vectors and the one-hot rows (÷ B) the loss needs, for one batch size and dtype."""

    def __init__(self, B, C, dtype):
        self.onesB, self.onesC = np.ones(B, dtype), np.ones(C, dtype)
        self.eyeB = np.eye(C, dtype=dtype) / B


def cross_entropy(z, y, k: Constants):
    """Mean softmax cross-entropy of the logits z (shifted in place) and its gradient."""
    B = z.shape[0]
    z -= np.maximum.reduce(z, axis=1, keepdims=True)
    e = np.exp(z)
    s = e.dot(k.onesC)
    target = k.eyeB.take(y, axis=0)
    loss = k.onesB.dot(np.log(s)) / B - np.vdot(target, z)
    s *= B
    e /= s[:, None]
    e -= target
    return loss, e


class MLPBuffers:
    """Every (B, width) array of an MLP step and every gradient, for one batch size and dtype."""

    def __init__(self, params, layers, B, dtype):
        widths = [params[kW].shape[1] for kW, _ in layers]
        self.z = [np.empty((B, w), dtype) for w in widths]       # pre-activations, then activations
        self.d = [np.empty((B, w), dtype) for w in widths[:-1]]  # hidden cotangents
        self.g = [np.empty((B, w), dtype) for w in widths[:-1]]  # activation derivatives
        self.gW = [np.empty(params[kW].shape, dtype) for kW, _ in layers]
        self.gb = [np.empty(w, dtype) for w in widths]
        self.k = Constants(B, widths[-1], dtype)


def activate(z, activation):
    """The activation in place: sigmoid through one tanh, as the generated module computes it."""
    if activation == "relu":
        np.maximum(z, 0, out=z)
    elif activation == "tanh":
        np.tanh(z, out=z)
    else:
        z *= 0.5
        np.tanh(z, out=z)
        z *= 0.5
        z += 0.5


def derivative(h, activation, g):
    """The activation's derivative from its output h, written into g."""
    if activation == "relu":
        np.greater(h, 0, out=g)
    elif activation == "tanh":
        np.multiply(h, h, out=g)
        np.subtract(1, g, out=g)
    else:
        np.subtract(1, h, out=g)
        g *= h
    return g


def make_loss_and_grad(names: list[str], activation: str):
    """(params, x, y) -> (loss, grads) for the MLP whose layers are `names` (no gradient for x)."""
    layers = [(name + ".W", name + ".b") for name in names]
    last = len(layers) - 1
    buffers = {}

    def loss_and_grad(params, x, y):
        key = (x.shape[0], x.dtype)
        buf = buffers.get(key) or buffers.setdefault(key, MLPBuffers(params, layers, *key))
        hs, h = [x], x
        for i, (kW, kb) in enumerate(layers):
            z = h.dot(params[kW], buf.z[i])
            z += params[kb]
            if i < last:
                activate(z, activation)
                hs.append(z)
            h = z
        loss, d = cross_entropy(z, y, buf.k)
        grads = {}
        for i in range(last, -1, -1):
            kW, kb = layers[i]
            grads[kW] = hs[i].T.dot(d, buf.gW[i])
            grads[kb] = buf.k.onesB.dot(d, buf.gb[i])
            if i:
                d = d.dot(params[kW].T, buf.d[i - 1])
                d *= derivative(hs[i], activation, buf.g[i - 1])
        return loss, grads
    return loss_and_grad


def make_matmul_floor(names: list[str]):
    """Only the matrix products of one step, into the hand-written step's buffers: forward x·W,
    backward hᵀ·d and d·Wᵀ (no dX for x)."""
    layers = [(name + ".W", name + ".b") for name in names]
    buffers = {}

    def floor(params, x, y):
        key = (x.shape[0], x.dtype)
        buf = buffers.get(key) or buffers.setdefault(key, MLPBuffers(params, layers, *key))
        hs, h = [x], x
        for i, (kW, _) in enumerate(layers):
            h = h.dot(params[kW], buf.z[i])
            hs.append(h)
        d = h
        for i in range(len(layers) - 1, -1, -1):
            hs[i].T.dot(d, buf.gW[i])
            if i:
                d = d.dot(params[layers[i][0]].T, buf.d[i - 1])
        return None
    return floor


class ConvBuffers:
    """One conv1d layer's arrays for one batch size (channels last, as symgrad's conv1d): a
    zero-padded input whose pads stay zero, its window view, the im2col matrix and the rest."""

    def __init__(self, B, L, Cin, Cout, k, stride, pad, dtype):
        self.k, self.stride, self.pad, self.L = k, stride, pad, L
        self.Lout = Lout = (L + 2 * pad - k) // stride + 1
        self.padded = np.zeros((B, L + 2 * pad, Cin), dtype)
        self.inner = self.padded[:, pad:pad + L]        # the layer before writes its output here
        s0, s1, s2 = self.padded.strides
        self.taps = np.lib.stride_tricks.as_strided(self.padded, (B, Lout, k, Cin),
                                                    (s0, stride * s1, s1, s2), writeable=False)
        self.cols = np.empty((B * Lout, k * Cin), dtype)
        self.z = np.empty((B * Lout, Cout), dtype)
        self.mask = np.empty((B, Lout, Cout), bool)
        self.dz = np.empty((B * Lout, Cout), dtype)
        self.dcols = np.empty((B * Lout, k * Cin), dtype)
        self.dx = np.empty((B, L + 2 * pad, Cin), dtype)
        self.ones = np.ones(B * Lout, dtype)
        self.gW = np.empty((k * Cin, Cout), dtype)
        self.gb = np.empty(Cout, dtype)

    def im2col(self):
        np.copyto(self.cols.reshape(self.taps.shape), self.taps)
        return self.cols

    def col2im(self):
        """dcols -> the input's gradient, a (B, L, Cin) view: the first `stride` taps tile the padded
        signal without overlap, so they are assigned; the others are added."""
        B, Lout, k, s = self.dx.shape[0], self.Lout, self.k, self.stride
        dcols, dx, span = self.dcols.reshape(B, Lout, k, -1), self.dx, s * (Lout - 1) + 1
        for j in range(s):
            dx[:, j:j + span:s] = dcols[:, :, j]
        dx[:, s * Lout:] = 0
        for j in range(s, k):
            dx[:, j:j + span:s] += dcols[:, :, j]
        return dx[:, self.pad:self.pad + self.L]


class CNNBuffers:
    def __init__(self, params, layers, B, L, dtype):
        self.convs, Cin = [], 1
        for name, k, stride, pad in layers:
            Cout = params[f"{name}.W"].shape[2]
            self.convs.append(ConvBuffers(B, L, Cin, Cout, k, stride, pad, dtype))
            L, Cin = self.convs[-1].Lout, Cout
        self.flat = np.empty((B, L * Cin), dtype)
        self.k = Constants(B, params["out.b"].shape[0], dtype)


def make_cnn_loss_and_grad(layers):
    """The MNIST-1D CNN by hand (ReLU after each conv1d, then a linear read-out): im2col as one copy
    out of a window view of the padded input, one 2-D product per layer, ReLU written straight into
    the next layer's padded input, col2im by strided assignments and adds."""
    keys = [(f"{name}.W", f"{name}.b") for name, *_ in layers]
    buffers = {}

    def loss_and_grad(params, x, y):
        B, L = x.shape
        key = (B, L, x.dtype)
        buf = buffers.get(key) or buffers.setdefault(key, CNNBuffers(params, layers, *key))
        convs = buf.convs
        convs[0].inner[:, :, 0] = x
        for i, c in enumerate(convs):
            W = params[keys[i][0]]
            cols = c.im2col()
            z = cols.dot(W.reshape(cols.shape[1], W.shape[2]), c.z)
            z += params[keys[i][1]]
            z3 = z.reshape(c.mask.shape)
            nxt = convs[i + 1].inner if i + 1 < len(convs) else buf.flat.reshape(z3.shape)
            np.maximum(z3, 0, out=nxt)
            np.greater(z3, 0, out=c.mask)
        logits = buf.flat.dot(params["out.W"])
        logits += params["out.b"]
        loss, d = cross_entropy(logits, y, buf.k)
        grads = {"out.W": buf.flat.T.dot(d), "out.b": buf.k.onesB.dot(d)}
        dh = d.dot(params["out.W"].T)
        for i in range(len(convs) - 1, -1, -1):
            c, (kW, kb) = convs[i], keys[i]
            W = params[kW]
            np.multiply(dh.reshape(c.mask.shape), c.mask, out=c.dz.reshape(c.mask.shape))
            grads[kW] = c.cols.T.dot(c.dz, c.gW).reshape(W.shape)
            grads[kb] = c.ones.dot(c.dz, c.gb)
            if i:
                c.dz.dot(W.reshape(-1, W.shape[2]).T, c.dcols)
                dh = c.col2im()
        return loss, grads
    return loss_and_grad
