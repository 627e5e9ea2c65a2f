"""Reductions: sums and maxima over static axes. Their VJPs broadcast the cotangent back (lazily
where they can) and a max routes it to the maxima."""
from __future__ import annotations

import numpy as np
import sympy as sp

from ..shapes import dim_expr, reduce_shape
from .elementwise import equal
from .linalg import matmul, ones
from .rule import Check, Op, arg, axes_arg, axes_of, axis_kw, register
from .structure import expand_dims  # noqa: E402 (structure reads this module lazily)


def input_elements(node, shapes, count) -> int:
    """One add (or compare) per element reduced."""
    return count(shapes(node.args[0]))


@register
class reduce_sum(Op):
    """Sum over `axes` (static), optionally keeping them as size-1 dims."""
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

    def _numpycode(self, p):
        x, axes, keep = arg(p, self.args[0]), axes_of(self), bool(self.args[2])
        if not keep and len(axes) == p.rank(self.args[0]):
            return f"{x}.max()"
        return f"{x}.max({axis_kw(axes)}{', keepdims=True' if keep else ''})"

    def _mathtext(self, p):
        return f"max({p._print(self.args[0])})"

    def _latex(self, p):
        return rf"\max\left({p._print(self.args[0])}\right)"

    flops = staticmethod(input_elements)


