"""Linear algebra: matrix products, their adjoints (outer products, contractions over stacked rows)
and the transpose."""
from __future__ import annotations

import numpy as np
from sympy.printing.precedence import PRECEDENCE

from ..shapes import ShapeMismatch, broadcast, expr_dim, fmt
from .rule import Check, Op, arg, axes_arg, axes_of, register


@register
class matmul(Op):
    """a @ b with NumPy's matmul semantics: vectors, matrices and stacks of matrices
    (..., n, k) @ (..., k, m) whose batch axes broadcast."""
    temp, view = "mm", False
    n_tensor = 2
    precedence = PRECEDENCE["Mul"]
    check = Check({"a": ((3, 4), (-1, 1)), "b": ((4, 2), (-1, 1)), "v": ((4,), (-1, 1)),
                   "t": ((2, 3, 4), (-1, 1)), "q": ((2, 1, 3, 4), (-1, 1)), "r": ((5, 4, 2), (-1, 1))},
                  "sum(tanh(a @ b)) + sum(sigmoid(a @ v)) + sum(tanh(v @ b)) + v @ v + sum(tanh(t @ b))"
                  " + sum(tanh(q @ r)) + sum(tanh(a @ r)) + sum(sigmoid(v @ r)) + sum(tanh(q @ v))"
                  " + sum(tanh(t @ t[0].T))")

    @classmethod
    def shape_of(cls, node, arg_shapes):
        a, b = (tuple(s) for s in arg_shapes[:2])
        if not a or not b:
            raise ShapeMismatch(f"@ takes vectors, matrices or stacks of matrices, got {fmt(a)} @ {fmt(b)}")
        inner_a, inner_b = a[-1], b[0] if len(b) == 1 else b[-2]
        if inner_a != inner_b:
            raise ShapeMismatch(f"inner dimensions differ: {fmt(a)} @ {fmt(b)} ({inner_a} != {inner_b})")
        try:
            batch = broadcast(a[:-2], b[:-2])
        except ShapeMismatch:
            raise ShapeMismatch(f"the batch axes of {fmt(a)} @ {fmt(b)} do not broadcast "
                                f"({fmt(a[:-2])} and {fmt(b[:-2])})") from None
        return batch + a[-2:-1] + b[-1:] if len(b) > 1 else a[:-1]

    def vjp(self, g, shape):
        a, b = self.args
        ra, rb = len(shape(a)), len(shape(b))
        if ra == 2 and rb == 2:
            return matmul(g, transpose(b)), matmul(transpose(a), g)
        if ra == 1 and rb == 2:
            return matmul(b, g), outer(a, g)
        if ra == 2 and rb == 1:
            return outer(g, b), matmul(transpose(a), g)
        if ra >= 3 and rb == 2:  # rows stacked in leading axes (a convolution's patches): sum over all
            return matmul(g, transpose(b)), contract_leading(a, g)
        if ra == 1 and rb == 1:
            return g * b, g * a
        return matmul.stacked_vjp(self, g, shape)

    def in_njit(self, shapes) -> bool:
        """numba's `@` (BLAS gemm) takes matrices."""
        return all(len(shapes(a)) == 2 for a in self.args)

    @staticmethod
    def stacked_vjp(node, g, shape):
        """The cotangents of a product of stacks; stacks.py installs it (it sums over broadcast batch
        axes with reductions' `unbroadcast`, and reductions imports this module)."""
        raise NotImplementedError("compiler.ops.stacks installs matmul.stacked_vjp")

    @staticmethod
    def eager(a, b):
        """Σ_k a[..., n, k]·b[..., k, m] by einsum over broadcast batch axes (not the printed @)."""
        out = np.einsum("...nk,...km->...nm", a[None, :] if a.ndim == 1 else a,
                        b[:, None] if b.ndim == 1 else b)
        out = out[..., 0] if b.ndim == 1 else out
        return out[..., 0, :] if a.ndim == 1 and b.ndim > 1 else out[..., 0] if a.ndim == 1 else out

    def _numpycode(self, p):
        level = PRECEDENCE["Mul"]
        return f"{arg(p, self.args[0], level, False)} @ {arg(p, self.args[1], level, False)}"

    def _mathtext(self, p):
        return "·".join(p.parenthesize(a, 50, strict=False) for a in self.args)

    def _latex(self, p):
        return " ".join(p.parenthesize(a, 50, strict=False) for a in self.args)

    @staticmethod
    def flops(node, shapes, count):
        """2nmk: a multiply and an add for each element of the result and each inner position."""
        return 2 * count(shapes(node)) * count(shapes(node.args[0])[-1:])


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

    def _torchcode(self, p):
        axes = list(range(p.rank(self.args[0]) - 1))
        return f"torch.tensordot({p._print(self.args[0])}, {p._print(self.args[1])}, dims=({axes}, {axes}))"

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

    def in_njit(self, shapes) -> bool:
        return len(shapes(self)) == 2

    def _torchcode(self, p):
        """torch's .T is for matrices only: other ranks reverse their axes with permute."""
        rank = p.rank(self.args[0])
        if rank == 2:
            return f"{arg(p, self.args[0])}.T"
        return f"{arg(p, self.args[0])}.permute({', '.join(str(i) for i in reversed(range(rank)))})"

    def _mathtext(self, p):
        return p.parenthesize(self.args[0], 1000, strict=True) + "ᵀ"

    def _latex(self, p):
        return p.parenthesize(self.args[0], 1000, strict=True) + r"^{\top}"


@register
class permute(Op):
    """The axes in a static order (`transpose(x, axes)`); a reversal is `transpose` (`.T`)."""
    temp, view = "perm", True
    math = ("permute({0})", r"\operatorname{{permute}}\left({0}\right)")
    check = Check({"t": ((2, 3, 4), (-1, 1)), "s": ((3, 2, 4), (-1, 1))},
                  "sum(tanh(transpose(t, (1, 0, 2))) * s) + sum(sigmoid(transpose(t, (2, 0, 1))))")

    @classmethod
    def eval(cls, x, axes):
        """The identity order is x itself. (A reversal is `transpose`: the language and swap_last
        choose it; eval cannot, since the tracer reads the result's shape off the node it built.)"""
        order = axes_of_arg(axes)
        return x if order == tuple(range(len(order))) else None

    @classmethod
    def shape_of(cls, node, arg_shapes):
        shape, order = arg_shapes[0], axes_of_arg(node.args[1])
        if sorted(order) != list(range(len(shape))):
            raise ShapeMismatch(f"transpose: {order} is not a permutation of the {len(shape)} axes "
                                f"of {fmt(shape)}")
        return tuple(shape[i] for i in order)

    def vjp(self, g, shape):
        order = axes_of_arg(self.args[1])
        return (permute(g, axes_arg(sorted(range(len(order)), key=order.__getitem__))),)

    @staticmethod
    def eager(x, axes):
        letters = "abcdefghijklmnopqrstuvwxyz"[: x.ndim]
        return np.einsum(f"{letters}->{''.join(letters[i] for i in axes)}", x)

    def _numpycode(self, p):
        return f"{arg(p, self.args[0])}.transpose({', '.join(str(i) for i in axes_of(self))})"

    def _torchcode(self, p):
        return f"{arg(p, self.args[0])}.permute({', '.join(str(i) for i in axes_of(self))})"


def axes_of_arg(axes) -> tuple[int, ...]:
    return tuple(int(a) for a in axes)


def swap_last(x, rank: int):
    """x with its last two axes exchanged: `x.T` for a matrix."""
    return transpose(x) if rank == 2 else permute(x, axes_arg(list(range(rank - 2)) + [rank - 1, rank - 2]))


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
        return p.backend.new("ones", p._print(self.args[0]))


