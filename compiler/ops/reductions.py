"""Reductions and broadcasting, the two adjoint halves of each other: sums and maxima over
static axes, size-1 axes inserted and dropped, broadcasts materialised; `conform` (the one place a
shape is restored after SymPy's scalar algebra) and `unbroadcast` (the one place reverse mode sums
a cotangent back to its operand's shape). They live in one file because their VJPs refer to each
other: the VJP of a sum is a broadcast and the VJP of a broadcast is a sum.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from ..shapes import ShapeMismatch, broadcast, dim_expr, expr_dim, fmt, reduce_shape
from .elementwise import equal
from .linalg import matmul, ones
from .rule import Check, Op, arg, axes_arg, axes_of, axis_kw, register


def full_shape(node, shape) -> sp.Tuple:
    """The static Tuple of `node`'s dims (the argument of broadcast_to and reshape)."""
    return sp.Tuple(*[dim_expr(d) for d in shape(node)])


def input_elements(node, shapes, count) -> int:
    """One add (or compare) per element reduced."""
    return count(shapes(node.args[0]))


@register
class reduce_sum(Op):
    """Sum over `axes` (static), optionally keeping them as size-1 dims."""
    fuse = "sum"   # a fused loop adds each element of its operand into the result
    temp, view = "sum", False
    check = Check({"a": ((3, 4), (-1, 1))},
                  "sum(tanh(sum(a, axis=1))) + sum(sigmoid(sum(a, axis=0, keepdims=True)))"
                  " + sum(a) * sum(a)")

    @classmethod
    def shape_of(cls, node, arg_shapes):
        return reduce_shape(arg_shapes[0], axes_of(node), bool(node.args[2]))

    def vjp(self, g, shape):
        axes, keep = axes_of(self), bool(self.args[2])
        if keep or len(axes) == len(shape(self.args[0])):
            return (g,)  # broadcasts back lazily
        return (expand_dims(g, axes_arg(axes)),)

    def as_product(self, shape_of):
        """sum(g, axis=0) of a matrix as ones(rows) @ g (see `ones`), or None."""
        operand_shape = shape_of(self.args[0])
        if axes_of(self) == (0,) and not self.args[2] and len(operand_shape) == 2:
            return matmul(ones(dim_expr(operand_shape[0])), self.args[0])
        return None

    @staticmethod
    def eager(x, axes, keep):
        return np.sum(x, axis=tuple(axes), keepdims=bool(keep))

    def _numpycode(self, p):
        x, axes, keep = arg(p, self.args[0]), axes_of(self), bool(self.args[2])
        if axes == tuple(range(len(axes))) and not keep and len(axes) == p.rank(self.args[0]):
            return f"{x}.sum()"
        return f"{x}.sum({axis_kw(axes)}{', keepdims=True' if keep else ''})"

    def _mathtext(self, p):
        axes = ",".join(map(str, axes_of(self)))
        return f"Σ_{{axis {axes}}}({p._print(self.args[0])})"

    def _latex(self, p):
        axes = ",".join(map(str, axes_of(self)))
        return rf"\sum_{{\text{{axis }}{axes}}} {p.parenthesize(self.args[0], 50, strict=False)}"

    flops = staticmethod(input_elements)


@register
class reduce_max(Op):
    """Max over `axes`; the gradient is routed to the maxima, split evenly among ties."""
    fuse = "max"
    temp, view = "max", False
    check = Check({"a": ((3, 4), (-1, 1))},
                  "sum(tanh(amax(a, axis=1))) + amax(a) + sum(amax(a, axis=0, keepdims=True) * a)")

    @classmethod
    def shape_of(cls, node, arg_shapes):
        return reduce_shape(arg_shapes[0], axes_of(node), bool(node.args[2]))

    def vjp(self, g, shape):
        x, axes, keep = self.args[0], axes_of(self), bool(self.args[2])
        m = self
        if not keep and len(axes) < len(shape(x)):
            m, g = expand_dims(self, axes_arg(axes)), expand_dims(g, axes_arg(axes))
        mask = equal(x, m)
        return (g * mask / reduce_sum(mask, axes_arg(axes), sp.Integer(1)),)

    @staticmethod
    def eager(x, axes, keep):
        return np.max(x, axis=tuple(axes), keepdims=bool(keep))

    helper = ("def _max_over_taps(w, axes):\n"
              "    \"\"\"max over a few entries along middle axes (pooling windows): a running np.maximum of\n"
              "    strided slices, 3-7x faster than NumPy's reduction over small, scattered axes.\"\"\"\n"
              "    index, m = [slice(None)] * w.ndim, None\n"
              "    for taps in np.ndindex(*(w.shape[a] for a in axes)):\n"
              "        for a, t in zip(axes, taps):\n"
              "            index[a] = t\n"
              "        tap = w[tuple(index)]\n"
              "        m = tap.copy() if m is None else np.maximum(m, tap, out=m)\n"
              "    return m\n")

    def _numpycode(self, p):
        x, axes, keep = arg(p, self.args[0]), axes_of(self), bool(self.args[2])
        if not keep and len(axes) == p.rank(self.args[0]):
            return f"{x}.max()"
        shape = p.shapes(self.args[0])
        taps = [shape[a] for a in axes]
        if (not keep and all(isinstance(t, int) for t in taps) and int(np.prod(taps)) <= 32
                and len(shape) - 1 not in axes):  # few entries along middle axes: pooling windows
            p.helpers.add(type(self))
            return f"_max_over_taps({x}, {axes})"
        return f"{x}.max({axis_kw(axes)}{', keepdims=True' if keep else ''})"

    def _jaxcode(self, p):
        """XLA reduces small windows well: no helper, one reduction."""
        return self._reduction(p, "max")

    def _torchcode(self, p):
        """torch's max(axis) also returns the indices: amax is the reduction alone."""
        return self._reduction(p, "amax")

    def _reduction(self, p, method: str) -> str:
        x, axes, keep = arg(p, self.args[0]), axes_of(self), bool(self.args[2])
        if not keep and len(axes) == p.rank(self.args[0]):
            return f"{x}.{method}()"
        return f"{x}.{method}({axis_kw(axes)}{', keepdims=True' if keep else ''})"

    def _mathtext(self, p):
        return f"max({p._print(self.args[0])})"

    def _latex(self, p):
        return rf"\max\left({p._print(self.args[0])}\right)"

    flops = staticmethod(input_elements)


@register
class expand_dims(Op):
    """Insert size-1 axes at `axes` (positions in the result)."""
    temp, view, math = "col", True, ("{0}", "{0}")  # shown as the value itself
    check = Check({"a": ((3,), (-1, 1)), "b": ((3, 2), (-1, 1))},
                  "sum(tanh(expand_dims(a, 1) * b))")

    @classmethod
    def shape_of(cls, node, arg_shapes):
        out = list(arg_shapes[0])
        for a in axes_of(node):
            out.insert(a, 1)
        return tuple(out)

    lazy = True

    def vjp(self, g, shape):
        if len(shape(g)) == len(shape(self)):  # lazily broadcast or not: summing size-1 axes is exact
            return (reduce_sum(g, self.args[1], sp.Integer(0)),)
        if shape(g) == ():
            return (g,)
        return (squeeze(broadcast_to(g, full_shape(self, shape)), self.args[1]),)

    @staticmethod
    def eager(x, axes):
        return np.expand_dims(x, tuple(axes))

    def _numpycode(self, p):
        rank = p.rank(self)
        index = ", ".join("None" if i in axes_of(self) else ":" for i in range(rank))
        return f"{arg(p, self.args[0])}[{index}]"

    fuse = "index"

    def _numbacode(self, p):
        """One element in a fused loop: the operand's, without the inserted axes."""
        return p.operand(self.args[0], tuple(i for k, i in enumerate(p.index()) if k not in axes_of(self)))


@register
class squeeze(Op):
    """Drop size-1 axes at `axes` (the VJP of expand_dims)."""
    temp, view, math = "flat", True, ("{0}", "{0}")
    check = Check({"a": ((3, 1), (-1, 1))}, "sum(tanh(apply(P.squeeze, a, (1,))))")

    @classmethod
    def shape_of(cls, node, arg_shapes):
        shape, axes = arg_shapes[0], axes_of(node)
        if any(shape[a] != 1 for a in axes):
            raise ShapeMismatch(f"squeeze: axes {axes} of {fmt(shape)} are not all of size 1")
        return tuple(d for i, d in enumerate(shape) if i not in axes)

    lazy = True

    def vjp(self, g, shape):
        if shape(g) == ():  # a scalar cotangent broadcasts to the operand as it is
            return (g,)
        if shape(g) != shape(self):
            g = broadcast_to(g, full_shape(self, shape))
        return (expand_dims(g, self.args[1]),)

    @staticmethod
    def eager(x, axes):
        return np.squeeze(x, tuple(axes))

    def _numpycode(self, p):
        rank = p.rank(self.args[0])
        index = ", ".join("0" if i in axes_of(self) else ":" for i in range(rank))
        return f"{arg(p, self.args[0])}[{index}]"

    fuse = "index"

    def _numbacode(self, p):
        """One element in a fused loop: the operand's, at 0 on the dropped axes."""
        index = iter(p.index())
        return p.operand(self.args[0], tuple("0" if k in axes_of(self) else next(index)
                                             for k in range(p.rank(self.args[0]))))


@register
class broadcast_to(Op):
    """Materialise a lazily broadcast value at a full shape (static Tuple of dims)."""
    temp, view, math = "full", True, ("{0}", "{0}")
    check = Check({"a": ((3, 1), (-1, 1))},
                  "sum(tanh(apply(P.broadcast_to, a, (3, 4))) * apply(P.broadcast_to, a, (3, 4)))")

    @classmethod
    def shape_of(cls, node, arg_shapes):
        target = tuple(expr_dim(d) for d in node.args[1])
        if broadcast(arg_shapes[0], target) != target:
            raise ShapeMismatch(f"cannot broadcast {fmt(arg_shapes[0])} to {fmt(target)}")
        return target

    def vjp(self, g, shape):
        return (unbroadcast(g, shape(g), shape(self.args[0])),)

    @staticmethod
    def eager(x, shape):
        return np.broadcast_to(x, tuple(shape)) * 1.0

    def _numpycode(self, p):
        dims = tuple(p._print(d) for d in self.args[1])
        text = "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"
        if self.args[0].is_Number:  # a constant cotangent: a real array in the module's dtype
            return p.backend.new("full", f"{text}, {p._print(self.args[0])}")
        return f"np.broadcast_to({p._print(self.args[0])}, {text})"

    fuse = "index"

    def _numbacode(self, p):
        """One element in a fused loop: the operand's, broadcast (a loop never materialises it)."""
        return p.operand(self.args[0], p.index_of(self.args[0]))


# ---- shapes after rewrites, and cotangents summed back ---------------------------------

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
    fixed = broadcast_to(expr, sp.Tuple(*[dim_expr(d) for d in shape]))
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
        g = reduce_sum(g, axes_arg(drop), sp.Integer(0))
    if keep:
        g = reduce_sum(g, axes_arg(keep), sp.Integer(1))
    return g * scale if scale != 1 else g
