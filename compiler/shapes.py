"""Shapes are tuples of dims; a dim is an int or the name of a symbolic size such as "B".

Shape rules never see numbers, only dims, so compile time does not depend on layer width.
"""
from __future__ import annotations

import math

import sympy as sp

Dim = int | str
Shape = tuple[Dim, ...]


class ShapeMismatch(ValueError):
    """Raised by shape rules; the tracer turns it into a ModelError with the model-file line."""


def fmt(shape: Shape) -> str:
    if len(shape) == 1:
        return f"({shape[0]},)"
    return "(" + ", ".join(str(d) for d in shape) + ")"


def fmt_typed(shape: Shape, element: str) -> str:
    """The IR listing's compact notation with the element type: `f64[B,128]`, `i64[B]`, `f64[]`."""
    return f"{element}[{','.join(str(d) for d in shape)}]"


def dim_symbol(name: str) -> sp.Symbol:
    """The SymPy symbol of a symbolic size; it is bound at run time from the inputs' shapes."""
    return sp.Symbol(name, integer=True, positive=True)


def dim_expr(d: Dim) -> sp.Expr:
    return sp.Integer(d) if isinstance(d, int) else dim_symbol(d)


def expr_dim(e: sp.Basic) -> Dim:
    return int(e) if e.is_Integer else str(e)


def size(shape: Shape) -> sp.Expr:
    """Number of elements, symbolic where a dim is symbolic."""
    return sp.Mul(*[dim_expr(d) for d in shape]) if shape else sp.Integer(1)


def broadcast(*shapes: Shape) -> Shape:
    """NumPy broadcasting over dims; a symbolic dim only meets itself or 1."""
    rank = max((len(s) for s in shapes), default=0)
    out: list[Dim] = []
    for i in range(rank):
        dims = {s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0}
        dims.discard(1)
        if len(dims) > 1:
            raise ShapeMismatch("cannot broadcast " + " with ".join(fmt(s) for s in shapes))
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def is_outer_broadcast(shapes: list[Shape], result: Shape) -> bool:
    """True when broadcasting grows every operand, as in (B,1) - (B,) -> (B,B)."""
    def padded(s):
        return (1,) * (len(result) - len(s)) + tuple(s)
    return len(shapes) > 1 and all(padded(s) != result for s in shapes)


def normalize_axes(axis, rank: int, op: str) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(rank))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = []
    for a in axes:
        if not -rank <= a < rank:
            raise ShapeMismatch(f"{op}: axis {a} is out of range for a tensor of rank {rank}")
        out.append(a % rank)
    return tuple(sorted(set(out)))


def reduce_shape(shape: Shape, axes: tuple[int, ...], keepdims: bool) -> Shape:
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def numel(shape: Shape, sizes: dict[str, int]) -> int:
    """Number of elements for the symbolic sizes in `sizes` (a symbolic dim not given counts as 1)."""
    return math.prod(sizes.get(d, 1) if isinstance(d, str) else d for d in shape)
