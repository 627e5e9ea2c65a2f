"""Functions of traced values written with the registry's primitives: reductions, reshapes,
softmax and its relatives, label lookups and the losses (softmax and binary cross-entropy, mse), and
sqrt."""
from __future__ import annotations

import numpy as np
import sympy as sp

from .. import ops as P
from ..shapes import ShapeMismatch, fmt, normalize_axes, size
from .recording import error, recorder
from .tensor import PUBLIC_FUNCTIONS, Tensor, apply, constant, lift, record, require_float

# registry primitives the functions below are written with
exp = PUBLIC_FUNCTIONS["exp"]
log = PUBLIC_FUNCTIONS["log"]
stop_gradient = PUBLIC_FUNCTIONS["stop_gradient"]

def sqrt(x):
    """√x, elementwise."""
    x = lift(x, "sqrt")
    require_float(x, "sqrt")
    return record(sp.sqrt(x.expr) if recorder().eager is None else np.sqrt(x.expr), x.shape)

def _reduce(head, op, x, axis, keepdims) -> Tensor:
    x = lift(x, op)
    try:
        axes = normalize_axes(axis, x.ndim, op)
    except ShapeMismatch as e:
        raise error(str(e), op=op, shapes=fmt(x.shape), fix="axes count from 0 (or -1 for the last)")
    if not axes:
        return x
    return apply(head, x, P.axes_arg(axes), sp.Integer(int(bool(keepdims))), op=op)

def sum(x, axis=None, keepdims=False) -> Tensor:  # noqa: A001 - the model language's sum
    """Sum over all elements or along `axis`."""
    return _reduce(P.reduce_sum, "sum", x, axis, keepdims)

def mean(x, axis=None, keepdims=False) -> Tensor:
    """Mean over all elements or along `axis` (divides by the symbolic batch size where needed)."""
    x = lift(x, "mean")
    axes = normalize_axes(axis, x.ndim, "mean")
    count = size(tuple(x.shape[a] for a in axes))
    return sum(x, axis, keepdims) / constant(count) if count != 1 else sum(x, axis, keepdims)

def amax(x, axis=None, keepdims=False) -> Tensor:
    """Max over all elements or along `axis`; ties share the gradient evenly."""
    return _reduce(P.reduce_max, "amax", x, axis, keepdims)

def expand_dims(x, axis: int) -> Tensor:
    x = lift(x, "expand_dims")
    axis = axis % (x.ndim + 1)
    return apply(P.expand_dims, x, (axis,))

def reshape(x, shape) -> Tensor:
    x = lift(x, "reshape")
    shape = tuple(shape)
    if size(shape) != size(x.shape):
        raise error(f"cannot reshape {fmt(x.shape)} to {fmt(shape)}", op="reshape",
                    fix="the number of elements must stay the same")
    return apply(P.reshape, x, shape)

def logsumexp(x, axis=-1, keepdims=False) -> Tensor:
    """log Σ exp(x) along `axis`, stable: the max is subtracted first (and gets no gradient)."""
    x = lift(x, "logsumexp")
    axes = normalize_axes(axis, x.ndim, "logsumexp")
    m = stop_gradient(amax(x, axes, keepdims=True))
    out = log(sum(exp(x - m), axes, keepdims=True)) + m
    return out if keepdims else apply(P.squeeze, out, axes)

def softmax(x, axis=-1) -> Tensor:
    """exp(x) / Σ exp(x) along `axis`, stable."""
    x = lift(x, "softmax")
    axes = normalize_axes(axis, x.ndim, "softmax")
    e = exp(x - stop_gradient(amax(x, axes, keepdims=True)))
    return e / sum(e, axes, keepdims=True)

def log_softmax(x, axis=-1) -> Tensor:
    """x − logsumexp(x): the stable form of log(softmax(x))."""
    return x - logsumexp(x, axis, keepdims=True)

def pick(z, labels) -> Tensor:
    """z[i, labels[i]] for every row i."""
    return apply(P.pick, z, labels)

def one_hot(labels, classes: int) -> Tensor:
    return apply(P.one_hot, labels, classes)

def softmax_cross_entropy(logits, labels, ignore: int | None = None) -> Tensor:
    """Mean of −log softmax(logits)[label] = logsumexp(logits) − logits[label]: over the batch for
    (N, C) logits and (N,) labels; over the positions for (B, T, C) logits and (B, T) targets
    (Labels or Tokens). `ignore`: a padding id whose positions count for nothing (the mean is over
    the others, counted in the generated code; 0 when every position is padding)."""
    op = "softmax_cross_entropy"
    logits, labels = lift(logits, op), lift(labels, op)
    if labels.dtype != "int":
        raise error("the second argument must be integer Labels or Tokens", op=op,
                    fix='declare y = Labels("y", ("B",), classes=C)')
    if logits.ndim < 2 or logits.shape[:-1] != labels.shape:
        raise error("logits must be (N, C) with labels (N,), or (B, T, C) with targets (B, T)", op=op,
                    shapes=f"{fmt(logits.shape)} and {fmt(labels.shape)}",
                    fix="the logits' leading dimensions and the labels' must be the same")
    leaf = labels.leaf
    if logits.shape[-1] != leaf.classes:
        raise error(f"logits have {logits.shape[-1]} columns but labels {leaf.name!r} have "
                    f"{leaf.classes} classes", op=op, shapes=f"{fmt(logits.shape)} and {fmt(labels.shape)}",
                    fix="make the last layer's width equal to the number of classes")
    if ignore is not None and (isinstance(ignore, bool) or not isinstance(ignore, int)
                               or not 0 <= ignore < leaf.classes):
        raise error(f"ignore must be a padding id in [0, {leaf.classes}), got {ignore!r}", op=op,
                    fix=f"name the id your padding positions hold, e.g. ignore=0 (the targets are "
                        f"checked to lie in [0, {leaf.classes}))")
    if logits.ndim == 2 and ignore is None:
        return mean(logsumexp(logits, axis=1) - pick(logits, labels))
    each = logsumexp(logits, axis=-1) - apply(P.pick_last, logits, labels, op=op)
    if ignore is None:
        return mean(each)
    counted = apply(P.kept, labels, ignore, op=op)
    positions = sum(counted)
    return sum(each * counted) / PUBLIC_FUNCTIONS["maximum"](positions, 1)

def binary_cross_entropy_with_logits(z, t) -> Tensor:
    """Mean of −t·log σ(z) − (1 − t)·log(1 − σ(z)) = softplus(z) − t·z over all elements, for float
    targets t in [0, 1]; stable for any z (softplus is log(1 + eᶻ) computed as logaddexp(0, z))."""
    op = "binary_cross_entropy_with_logits"
    z, t = lift(z, op), lift(t, op)
    require_float(t, op)
    if z.shape != t.shape:
        raise error("logits and target shapes differ", op=op, shapes=f"{fmt(z.shape)} and {fmt(t.shape)}",
                    fix="one float target in [0, 1] per logit; reshape so both have the same shape")
    return mean(PUBLIC_FUNCTIONS["softplus"](z) - t * z)

def mse(pred, target) -> Tensor:
    """Mean squared error over all elements; the shapes must match exactly."""
    pred, target = lift(pred, "mse"), lift(target, "mse")
    if pred.shape != target.shape:
        raise error("prediction and target shapes differ", op="mse",
                    shapes=f"{fmt(pred.shape)} and {fmt(target.shape)}",
                    fix="reshape so both have the same shape (no broadcasting in a loss)")
    return mean((pred - target) ** 2)
