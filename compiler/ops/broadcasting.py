"""The one place a shape is restored after SymPy's scalar algebra (`conform`), and the one place
broadcasting is undone in reverse mode (`unbroadcast`)."""
from __future__ import annotations

import sympy as sp

from ..shapes import ShapeMismatch, broadcast, dim_expr, fmt
from . import reductions, structure
from .rule import axes_arg


class ShapeChanged(ShapeMismatch):
    """A rewrite produced a value that cannot stand for the node it replaces (internal error)."""


def conform(expr, shape, shapes):
    """`expr` with exactly `shape`: SymPy simplifies as if every symbol were a scalar, so
    `(a + b) - b` becomes `a` and `w - w + 1` becomes `1`, dropping the broadcast to `b`'s or `w`'s
    shape. Values are still right position by position, so an explicit broadcast restores the
    shape; a result that does not broadcast to `shape` is a compiler bug and raises ShapeChanged."""
    have = tuple(shapes(expr))
    shape = tuple(shape)
    if have == shape:
        return expr
    try:
        ok = broadcast(have, shape) == shape
    except ShapeMismatch:
        ok = False
    if not ok:
        raise ShapeChanged(f"a rewrite turned a value of shape {fmt(shape)} into one of shape "
                           f"{fmt(have)}: {expr}")
    fixed = structure.broadcast_to(expr, sp.Tuple(*[dim_expr(d) for d in shape]))
    shapes(fixed)
    return fixed


def unbroadcast(g, g_shape, target, logical=None):
    """Sum the cotangent `g` over the axes that broadcasting added or stretched, so it fits `target`.

    `g` may itself be lazily broadcast: its physical shape `g_shape` stands for `logical` (the
    consumer's shape). An axis to be summed that `g` does not physically have (or has as size 1)
    is a sum of identical values, i.e. a multiplication by its length. Axes where the target keeps
    size 1 are summed with keepdims; the result may stay lazily broadcast against `target`.
    """
    logical = tuple(g_shape if logical is None else logical)
    off, lead = len(logical) - len(g_shape), len(logical) - len(target)
    drop, keep, scale = [], [], sp.Integer(1)
    for i, dim in enumerate(logical):
        p = i - off
        physical = p >= 0 and g_shape[p] != 1
        if i < lead:                        # axis absent from the target: sum it away
            if p >= 0:
                drop.append(p)
            if not physical:
                scale *= dim_expr(dim)
        elif target[i - lead] == 1 and dim != 1:   # stretched from 1: sum, keep the axis
            if physical:
                keep.append(p - sum(1 for q in drop if q < p))
            else:
                scale *= dim_expr(dim)
    if drop:
        g = reductions.reduce_sum(g, axes_arg(drop), sp.Integer(0))
    if keep:
        g = reductions.reduce_sum(g, axes_arg(keep), sp.Integer(1))
    return g * scale if scale != 1 else g

