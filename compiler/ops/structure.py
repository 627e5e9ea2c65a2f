"""Structural ops: axes inserted, dropped, broadcast or reshaped, and the gather of one entry per
row (with its adjoint, the one-hot scatter). Most print as NumPy views of their operand."""
from __future__ import annotations

import numpy as np
import sympy as sp

from ..shapes import ShapeMismatch, broadcast, dim_expr, expr_dim, fmt
from . import broadcasting, reductions  # VJPs only: modules, read when a VJP runs
from .rule import Check, Op, arg, axes_arg, axes_of, register


def full_shape(node, shape) -> sp.Tuple:
    """The static Tuple of `node`'s dims (the argument of broadcast_to and reshape)."""
    return sp.Tuple(*[dim_expr(d) for d in shape(node)])


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
            return (reductions.reduce_sum(g, self.args[1], sp.Integer(0)),)
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
        return (broadcasting.unbroadcast(g, shape(g), shape(self.args[0])),)

    @staticmethod
    def eager(x, shape):
        return np.broadcast_to(x, tuple(shape)) * 1.0

    def _numpycode(self, p):
        dims = tuple(p._print(d) for d in self.args[1])
        text = "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"
        if self.args[0].is_Number:  # a constant cotangent: a real array in the module's dtype
            return f"np.full({text}, {p._print(self.args[0])}, dtype=DTYPE)"
        return f"np.broadcast_to({p._print(self.args[0])}, {text})"


@register
class reshape(Op):
    """Same elements, new shape (static Tuple of dims)."""
    temp, view, math = "reshaped", True, ("reshape({0})", r"\operatorname{{reshape}}\left({0}\right)")
    check = Check({"a": ((3, 4), (-1, 1))}, "sum(tanh(reshape(a, (2, 6))) * reshape(a, (2, 6)))")

    @classmethod
    def shape_of(cls, node, arg_shapes):
        return tuple(expr_dim(d) for d in node.args[1])

    def vjp(self, g, shape):
        return (reshape(g, full_shape(self.args[0], shape)),)

    @staticmethod
    def eager(x, shape):
        return np.reshape(x, tuple(shape))

    def _numpycode(self, p):
        dims = ", ".join(p._print(d) for d in self.args[1])
        return f"{arg(p, self.args[0])}.reshape(({dims}{',' if len(self.args[1]) == 1 else ''}))"


@register
class pick(Op):
    """z[i, labels[i]] for every row i: the logit of each sample's true class."""
    temp, view, int_args = "picked", False, (1,)
    math = ("{0}[{1}]", "{0}_{{{1}}}")
    n_tensor = 2
    check = Check({"a": ((3, 4), (-1, 1))}, "sum(tanh(pick(a, y)))", labels={"y": ((3,), 4)})

    @classmethod
    def shape_of(cls, node, arg_shapes):
        z, labels = arg_shapes[:2]
        if len(z) != 2 or z[:1] != labels:
            raise ShapeMismatch(f"pick takes logits (N, C) and labels (N,), got {fmt(z)} and {fmt(labels)}")
        return labels

    lazy = True

    def vjp(self, g, shape):
        z, labels = self.args
        onehot = one_hot(labels, dim_expr(shape(z)[1]))
        if shape(g) == ():
            return onehot * g, None
        if shape(g) != shape(self):
            g = broadcast_to(g, full_shape(self, shape))
        return onehot * expand_dims(g, axes_arg((1,))), None

    @staticmethod
    def eager(z, labels):
        return np.take_along_axis(z, labels[:, None], axis=1)[:, 0]

    def _numpycode(self, p):
        z, labels = arg(p, self.args[0]), p._print(self.args[1])
        return f"{z}[np.arange({p.shapes(self.args[1])[0]}), {labels}]"


@register
class one_hot(Op):
    """Rows of the identity selected by integer labels, in the module's dtype."""
    temp, view, int_args = "onehot", False, (0,)
    math = ("onehot({0})", r"\operatorname{{onehot}}\left({0}\right)")
    differentiable = False

    @classmethod
    def shape_of(cls, node, arg_shapes):
        return tuple(arg_shapes[0]) + (expr_dim(node.args[1]),)

    @staticmethod
    def eager(labels, classes):
        return (labels[..., None] == np.arange(classes)).astype(np.float64)

    def _numpycode(self, p):
        return f"np.eye({p._print(self.args[1])}, dtype=DTYPE)[{p._print(self.args[0])}]"

    @staticmethod
    def update(hot, term, p, buffer: str, op: str) -> str | None:
        """`buffer += c * one_hot(y)` with a scalar c touches one entry per row: `buffer[rows, y] += c`
        instead of building and adding an (N, C) one-hot matrix (the softmax cross-entropy backward)."""
        c = term / hot
        if op not in "+-" or c.has(one_hot) or p.shapes(c) != ():
            return None
        labels = hot.args[0]
        rows = p.shapes(labels)[0]
        return f"{buffer}[np.arange({rows}), {p._print(labels)}] {op}= {p._print(c)}"


