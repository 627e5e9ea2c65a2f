"""Layers: linear, mlp, conv1d, conv2d, 1-D and 2-D pooling, flatten, dropout, batch_norm and
layer_norm. Each declares its parameters (named after the layer) and records the names and init
hints the compiler uses."""
from __future__ import annotations

import sympy as sp

from .. import ops as P
from ..ops.layers import image_out
from ..shapes import fmt, size
from .declarations import Param, State, declare, leaf_tensor
from .functions import amax, mean, reshape, sqrt
from .recording import Recorder, error, recorder
from .tensor import PUBLIC_FUNCTIONS, Tensor, apply, constant, lift, record

relu = PUBLIC_FUNCTIONS["relu"]  # mlp's default activation


def linear(x: Tensor, n_out: int, name: str | None = None, bias: bool = True, init: str = "auto") -> Tensor:
    """x @ W + b over the last axis of x (any leading axes, e.g. (B, T, n_in)), with W: (n_in, n_out)
    and b: (n_out,), named `name.W` and `name.b`.

    The weight init follows the activation applied to the result: He-normal for the ReLU family,
    Xavier/Glorot for tanh, sigmoid and identity. Biases start at zero.
    """
    rec = recorder()
    x = lift(x, "linear")
    if x.ndim < 1 or not isinstance(x.shape[-1], int):
        raise error(f"linear maps the last axis (features) of (..., features), got {fmt(x.shape)}",
                    op="linear",
                    fix="flatten or reshape the input so its last dimension is the feature size")
    if isinstance(n_out, bool) or not isinstance(n_out, int) or n_out < 1:
        raise error(f"n_out must be a positive int, got {n_out!r}", op="linear")
    if name is None:
        rec.layer_count += 1
        name = f"linear{rec.layer_count}"
    W = Param(f"{name}.W", (x.shape[-1], n_out), init=init)
    out = x @ W
    if bias:
        out = out + Param(f"{name}.b", (n_out,), init="zeros")
    _name_layer(rec, out, name, init)
    return out


def _name_layer(rec: Recorder, out: Tensor, name: str, init: str) -> None:
    """Remember a layer's pre-activation: its name in the generated code, and (init 'auto') the
    weight whose init the following activation decides."""
    if rec.eager is not None:
        return
    if init == "auto":
        rec.pending_init[out.expr] = (f"{name}.W", name)
    rec.hints.setdefault(out.expr, f"{name}_pre")


def mlp(x: Tensor, sizes, activation=None, name: str = "layer") -> Tensor:
    """A stack of linear layers with `activation` (default relu) between them, none after the last."""
    act = activation or relu
    for i, n in enumerate(sizes):
        x = linear(x, n, name=f"{name}{i + 1}")
        if i < len(sizes) - 1:
            x = act(x)
    return x


def conv1d(x: Tensor, channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
           dilation: int = 1, name: str | None = None, bias: bool = True, init: str = "auto") -> Tensor:
    """1-D convolution of x: (batch, length, in_channels) -> (batch, out_length, channels).

    Weights `name.W`: (kernel_size, in_channels, channels), He/Xavier by fan-in = kernel_size ·
    in_channels (set by the activation that follows); bias `name.b`: (channels,), zero. Computed as
    im2col (a strided window view) followed by one matrix product.
    """
    rec = recorder()
    x = lift(x, "conv1d")
    if x.ndim != 3 or not isinstance(x.shape[2], int):
        raise error(f"conv1d takes (batch, length, channels), got {fmt(x.shape)}", op="conv1d",
                    fix='reshape a (B, L) signal with reshape(x, ("B", L, 1)); channels come last')
    for label, v, low in (("channels", channels, 1), ("kernel_size", kernel_size, 1), ("stride", stride, 1),
                          ("padding", padding, 0), ("dilation", dilation, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise error(f"{label} must be an int >= {low}, got {v!r}", op="conv1d")
    if name is None:
        rec.layer_count += 1
        name = f"conv{rec.layer_count}"
    c_in = x.shape[2]
    W = Param(f"{name}.W", (kernel_size, c_in, channels), init=init)
    taps = apply(P.windows, x, kernel_size, stride, padding, dilation, op="conv1d")
    patches = reshape(taps, (x.shape[0], taps.shape[1], kernel_size * c_in))
    out = patches @ reshape(W, (kernel_size * c_in, channels))
    if bias:
        out = out + Param(f"{name}.b", (channels,), init="zeros")
    _name_layer(rec, out, name, init)
    return out


def _pool(x, kernel_size, stride, padding, op):
    x = lift(x, op)
    if x.ndim != 3:
        raise error(f"{op} takes (batch, length, channels), got {fmt(x.shape)}", op=op,
                    fix='channels come last: reshape(x, ("B", L, 1)) for a single-channel signal')
    return apply(P.windows, x, kernel_size, stride or kernel_size, padding, 1, op=op)


def max_pool1d(x, kernel_size: int, stride: int | None = None, padding: int = 0) -> Tensor:
    """Max over windows of `kernel_size` along the length (stride defaults to the window)."""
    return amax(_pool(x, kernel_size, stride, padding, "max_pool1d"), axis=2)


def avg_pool1d(x, kernel_size: int, stride: int | None = None, padding: int = 0) -> Tensor:
    """Mean over windows of `kernel_size` along the length (stride defaults to the window)."""
    return mean(_pool(x, kernel_size, stride, padding, "avg_pool1d"), axis=2)


IMAGE_FIX = ('images are (batch, height, width, channels): reshape a flat (B, 784) batch with '
             'reshape(x, ("B", 28, 28, 1)); move channels last with transpose(x, (0, 2, 3, 1))')


def _pair(value, label: str, low: int, op: str) -> tuple[int, int]:
    """An int or a (rows, columns) pair of ints >= low, as a pair."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < low for v in pair):
        raise error(f"{label} must be an int >= {low} or a (rows, columns) pair of them, got {value!r}",
                    op=op, fix=f"write {label}=3 or {label}=(3, 5)")
    return pair


def _image_windows(x, kernel_size, stride, padding, dilation, op: str) -> Tensor:
    """The windows (B, H_out, W_out, kh, kw, C) of x, checked to be a batch of images."""
    x, pairs = _image_args(x, kernel_size, stride, padding, dilation, op)
    return apply(P.windows2d, x, *pairs, op=op)


def _image_args(x, kernel_size, stride, padding, dilation, op: str):
    """x as a batch of images and (kernel, stride, padding, dilation) as (rows, columns) pairs whose
    windows fit it; refused with the fix otherwise."""
    x = lift(x, op)
    if x.ndim != 4 or not all(isinstance(d, int) for d in x.shape[1:]):
        raise error(f"{op} takes images (batch, height, width, channels) of fixed sizes, got "
                    f"{fmt(x.shape)}", op=op, shapes=fmt(x.shape), fix=IMAGE_FIX)
    k, s, p, d = (_pair(v, label, low, op) for v, label, low in
                  ((kernel_size, "kernel_size", 1), (stride, "stride", 1), (padding, "padding", 0),
                   (dilation, "dilation", 1)))
    if min(image_out(x.shape[1:3], k, s, p, d)) < 1:
        span = tuple(d[i] * (k[i] - 1) + 1 for i in (0, 1))
        raise error(f"the {k[0]}×{k[1]} window (dilation {d[0]}×{d[1]}) spans {span[0]}×{span[1]} pixels, "
                    f"more than the {x.shape[1] + 2 * p[0]}×{x.shape[2] + 2 * p[1]} padded image",
                    op=op, shapes=fmt(x.shape),
                    fix="use a smaller window or dilation, add padding, or downsample less before it")
    return x, (k, s, p, d)


def conv2d(x: Tensor, channels: int, kernel_size, stride=1, padding=0, dilation=1, name: str | None = None,
           bias: bool = True, init: str = "auto") -> Tensor:
    """2-D convolution of images x: (batch, height, width, in_channels) -> (batch, H_out, W_out,
    channels); kernel_size, stride, padding (zeros) and dilation are ints or (rows, columns) pairs.

    Weights `name.W`: (kh, kw, in_channels, channels), He/Xavier by fan-in = kh · kw · in_channels
    (set by the activation that follows); bias `name.b`: (channels,), zero. Computed as im2col (a
    strided window view) followed by one matrix product per image; with stride 1 and no dilation
    the input gradient is a convolution too (compiler/ops/convolution.py).
    """
    rec = recorder()
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise error(f"channels must be an int >= 1, got {channels!r}", op="conv2d",
                    fix="the second argument is the number of output channels")
    x, pairs = _image_args(x, kernel_size, stride, padding, dilation, "conv2d")
    if name is None:
        rec.layer_count += 1
        name = f"conv{rec.layer_count}"
    (kh, kw), c_in = pairs[0], x.shape[3]
    W = Param(f"{name}.W", (kh, kw, c_in, channels), init=init)
    out = apply(P.conv2d, x, W, *pairs, op="conv2d")   # one op: its VJP picks the input gradient
    if rec.eager is None:  # the im2col rows it is lowered to after reverse mode
        batch, h_out, w_out, _ = out.shape
        patches = apply(P.reshape, apply(P.windows2d, x, *pairs), (batch, h_out * w_out, kh * kw * c_in))
        rec.hints.setdefault(patches.expr, f"{name}_patches")
    if bias:
        out = out + Param(f"{name}.b", (channels,), init="zeros")
    _name_layer(rec, out, name, init)
    return out


def max_pool2d(x, size, stride=None, padding=0) -> Tensor:
    """Max over size×size (or (rows, columns)) windows of each channel; stride defaults to the
    window. Padding adds zeros (as max_pool1d does), so it only matters for negative inputs."""
    taps = _image_windows(x, size, size if stride is None else stride, padding, 1, "max_pool2d")
    return amax(taps, axis=(3, 4))


def avg_pool2d(x, size, stride=None, padding=0) -> Tensor:
    """Mean over size×size (or (rows, columns)) windows of each channel; stride defaults to the
    window; padded zeros count in the mean. Global average pooling is mean(x, axis=(1, 2))."""
    taps = _image_windows(x, size, size if stride is None else stride, padding, 1, "avg_pool2d")
    return mean(taps, axis=(3, 4))


def flatten(x) -> Tensor:
    """(batch, ...) -> (batch, features)."""
    x = lift(x, "flatten")
    features = 1
    for d in x.shape[1:]:
        if not isinstance(d, int):
            raise error(f"flatten needs fixed sizes after the batch axis, got {fmt(x.shape)}", op="flatten")
        features *= d
    return reshape(x, (x.shape[0], features))


def dropout(x, p: float = 0.5) -> Tensor:
    """Training: zero each element with probability p and scale the rest by 1/(1-p), with a mask
    drawn from the integer input `seed` (the runtime passes one per step); inference: identity."""
    rec = recorder()
    x = lift(x, "dropout")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
        raise error(f"p must be in [0, 1), got {p!r}", op="dropout")
    if p == 0:
        return x
    rec.dropouts += 1
    if rec.eager is not None:
        if not rec.eager.training:
            return x
        seed = rec.leaves.get("seed") or leaf_tensor(declare("seed", (), "seed"), "int").leaf
        mask = P.keep_mask.eager(rec.eager.arrays[seed.name], x.expr, p, rec.dropouts)
        return record(x.expr * mask, x.shape)
    seed = rec.leaves.get("seed") or declare("seed", (), "seed")
    mask = P.keep_mask(seed.symbol, x.expr, sp.Float(p), sp.Integer(rec.dropouts))
    rec.shapes(mask)
    out = record(x.expr * mask, x.shape)
    rec.eval_subs[out.expr] = x.expr
    rec.hints.setdefault(out.expr, f"dropped{rec.dropouts}")  # a named node survives SymPy's flattening
    return out


def batch_norm(x, name: str, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalise each channel (the last axis) over the batch (and length) axes, then scale
    `name.gamma` and shift `name.beta`. Training uses the batch's statistics and returns updated
    running statistics (`name.running_mean`, `name.running_var`, state); inference uses those."""
    rec = recorder()
    x = lift(x, "batch_norm")
    if x.ndim < 2:
        raise error(f"batch_norm takes (batch, ..., channels), got {fmt(x.shape)}", op="batch_norm")
    c = x.shape[-1]
    axes = tuple(range(x.ndim - 1))
    gamma = Param(f"{name}.gamma", (c,), init="ones")
    beta = Param(f"{name}.beta", (c,), init="zeros")
    running_mean = State(f"{name}.running_mean", (c,), init="zeros")
    running_var = State(f"{name}.running_var", (c,), init="ones")
    mu = mean(x, axes, keepdims=True)
    centred = x - mu
    var = mean(centred * centred, axes, keepdims=True)
    if rec.eager is not None and not rec.eager.training:
        return (x - running_mean) / sqrt(running_var + eps) * gamma + beta
    out = centred / sqrt(var + eps) * gamma + beta
    n = size(tuple(x.shape[a] for a in axes))
    new_mean = (1 - momentum) * running_mean + momentum * reshape(mu, (c,))
    new_var = (1 - momentum) * running_var + momentum * reshape(var, (c,)) * constant(n / (n - 1))
    if rec.eager is not None:
        rec.eager.state.update({running_mean.leaf.name: new_mean.expr, running_var.leaf.name: new_var.expr})
        return out
    inference = (x - running_mean) / sqrt(running_var + eps) * gamma + beta
    rec.eval_subs[out.expr] = inference.expr
    rec.hints.setdefault(inference.expr, name)
    rec.state_updates[running_mean.leaf.name] = new_mean.expr
    rec.state_updates[running_var.leaf.name] = new_var.expr
    rec.hints.setdefault(out.expr, name)
    return out


def layer_norm(x, name: str, eps: float = 1e-5) -> Tensor:
    """Normalise each sample over its last axis, then scale `name.gamma` (ones) and shift
    `name.beta` (zeros)."""
    x = lift(x, "layer_norm")
    c = x.shape[-1]
    gamma = Param(f"{name}.gamma", (c,), init="ones")
    beta = Param(f"{name}.beta", (c,), init="zeros")
    mu = mean(x, -1, keepdims=True)
    centred = x - mu
    var = mean(centred * centred, -1, keepdims=True)
    out = centred / sqrt(var + eps) * gamma + beta
    if recorder().eager is None:
        recorder().hints.setdefault(out.expr, name)
    return out

