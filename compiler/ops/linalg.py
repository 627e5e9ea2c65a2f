"""Linear algebra: matrix products, their adjoints (outer products, contractions over stacked rows)
and the transpose."""
from __future__ import annotations

import numpy as np
from sympy.printing.precedence import PRECEDENCE

from ..shapes import ShapeMismatch, expr_dim, fmt
from .rule import Check, Op, arg, register


@register
class matmul(Op):
    """a @ b for matrices and vectors."""
    temp, view = "mm", False
    n_tensor = 2
    precedence = PRECEDENCE["Mul"]
    check = Check({"a": ((3, 4), (-1, 1)), "b": ((4, 2), (-1, 1)), "v": ((4,), (-1, 1)),
                   "t": ((2, 3, 4), (-1, 1))},
                  "sum(tanh(a @ b)) + sum(sigmoid(a @ v)) + sum(tanh(v @ b)) + v @ v + sum(tanh(t @ b))")

    @classmethod
    def shape_of(cls, node, arg_shapes):
        a, b = arg_shapes[:2]
        if not (1 <= len(a) <= 2 and 1 <= len(b) <= 2) and not (len(a) >= 3 and len(b) == 2):
            raise ShapeMismatch(f"@ takes vectors and matrices (or a stack of rows @ a matrix), "
                                f"got {fmt(a)} @ {fmt(b)}")
        inner_a, inner_b = a[-1], b[0]
        if inner_a != inner_b:
            raise ShapeMismatch(f"inner dimensions differ: {fmt(a)} @ {fmt(b)} ({inner_a} != {inner_b})")
        return a[:-1] + b[1:]

    def vjp(self, g, shape):
        a, b = self.args
        ra, rb = len(shape(a)), len(shape(b))
        if ra == 2 and rb == 2:
            return matmul(g, transpose(b)), matmul(transpose(a), g)
        if ra == 1 and rb == 2:
            return matmul(b, g), outer(a, g)
        if ra == 2 and rb == 1:
            return outer(g, b), matmul(transpose(a), g)
        if ra >= 3:  # rows stacked in leading axes (a convolution's patches): sum over all of them
            return matmul(g, transpose(b)), contract_leading(a, g)
        return g * b, g * a

    @staticmethod
    def eager(a, b):
        return np.matmul(a, b)

    def _numpycode(self, p):
        level = PRECEDENCE["Mul"]
        return f"{arg(p, self.args[0], level, False)} @ {arg(p, self.args[1], level, False)}"

    def _mathtext(self, p):
        return "·".join(p.parenthesize(a, 50, strict=False) for a in self.args)

    def _latex(self, p):
        return " ".join(p.parenthesize(a, 50, strict=False) for a in self.args)

    @staticmethod
    def flops(node, shapes, count):
        """2nmk: a multiply and an add for each element of `a` and each column of `b`."""
        a, b = (shapes(x) for x in node.args)
        return 2 * count(a) * (count(b) // max(count(b[:1]), 1) if len(b) == 2 else 1)


@register
class contract_leading(Op):
    """Σ over every leading axis of aᵀ·g: (…, n) and (…, m) -> (n, m), the weight gradient of a
    matrix applied to stacked rows."""
    temp, view = "mm", False
    math = ("Σ_rows {0}ᵀ·{1}", r"\sum_{{\text{{rows}}}} {0}^{{\top}} {1}")
    n_tensor = 2
    check = Check({"a": ((2, 3, 4), (-1, 1)), "b": ((2, 3, 2), (-1, 1))},
                  "sum(tanh(apply(P.contract_leading, a, b)))")

    @classmethod
    def shape_of(cls, node, arg_shapes):
        a, g = arg_shapes[:2]
        if a[:-1] != g[:-1]:
            raise ShapeMismatch(f"contract_leading: leading axes differ, {fmt(a)} and {fmt(g)}")
        return (a[-1], g[-1])

    def vjp(self, g, shape):
        a, h = self.args
        return matmul(h, transpose(g)), matmul(a, g)

    @staticmethod
    def eager(a, g):
        return a.reshape(-1, a.shape[-1]).T @ g.reshape(-1, g.shape[-1])

    def _numpycode(self, p):
        axes = list(range(p.rank(self.args[0]) - 1))
        return f"np.tensordot({p._print(self.args[0])}, {p._print(self.args[1])}, axes=({axes}, {axes}))"

    @staticmethod
    def flops(node, shapes, count):
        return 2 * count(shapes(node.args[0])) * shapes(node.args[1])[-1]


@register
class outer(Op):
    """Outer product of two vectors (the VJP of a matrix-vector product)."""
    temp, view = "outer", False
    n_tensor = 2
    check = Check({"a": ((3,), (-1, 1)), "b": ((2,), (-1, 1))}, "sum(tanh(apply(P.outer, a, b)))")

    @classmethod
    def shape_of(cls, node, arg_shapes):
        a, b = arg_shapes[:2]
        if len(a) != 1 or len(b) != 1:
            raise ShapeMismatch(f"outer takes two vectors, got {fmt(a)} and {fmt(b)}")
        return a + b

    def vjp(self, g, shape):
        a, b = self.args
        return matmul(g, b), matmul(transpose(g), a)

    @staticmethod
    def eager(a, b):
        return a[:, None] * b[None, :]

    def _numpycode(self, p):
        return f"np.outer({p._print(self.args[0])}, {p._print(self.args[1])})"

    def _mathtext(self, p):
        return f"{p.parenthesize(self.args[0], 1000)}⊗{p.parenthesize(self.args[1], 1000)}"

    def _latex(self, p):
        return rf"{p.parenthesize(self.args[0], 1000)} \otimes {p.parenthesize(self.args[1], 1000)}"


@register
class transpose(Op):
    """Reverse the axes (`.T`)."""
    temp, view = "T", True
    check = Check({"a": ((3, 2), (-1, 1)), "b": ((3, 4), (-1, 1))}, "sum(tanh(a.T @ b))")

    @classmethod
    def shape_of(cls, node, arg_shapes):
        return tuple(reversed(arg_shapes[0]))

    def vjp(self, g, shape):
        return (transpose(g),)

    @staticmethod
    def eager(x):
        return np.transpose(x)

    @classmethod
    def eval(cls, x):
        """(xᵀ)ᵀ = x: the transposes that a VJP of a VJP makes cancel where they meet."""
        if isinstance(x, transpose):
            return x.args[0]
        return None

    def _numpycode(self, p):
        return f"{arg(p, self.args[0])}.T"

    def _mathtext(self, p):
        return p.parenthesize(self.args[0], 1000, strict=True) + "ᵀ"

    def _latex(self, p):
        return p.parenthesize(self.args[0], 1000, strict=True) + r"^{\top}"


@register
class ones(Op):
    """A vector of n ones: `ones(B) @ g` sums the rows of g in BLAS, about twice as fast as
    g.sum(axis=0) from 32 columns up; one vector serves every bias gradient of a step."""
    temp, view, math = "ones", False, ("1_{0}", r"\mathbf{{1}}_{{{0}}}")
    n_tensor, differentiable = 0, False

    @classmethod
    def shape_of(cls, node, arg_shapes):
        return (expr_dim(node.args[0]),)

    @staticmethod
    def eager(n):
        return np.ones(n)

    def _numpycode(self, p):
        return f"np.ones({p._print(self.args[0])}, dtype=DTYPE)"


