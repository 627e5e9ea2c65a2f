"""Structural ops: a reshape, and the gather of one entry per row with its adjoint, the one-hot
scatter (in place: one entry per row)."""
from __future__ import annotations

import numpy as np

from ..shapes import ShapeMismatch, dim_expr, expr_dim, fmt
from .reductions import broadcast_to, expand_dims, full_shape
from .rule import Check, Op, arg, axes_arg, register


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
        return f"{z}[{p.backend.arange(p.shapes(self.args[1])[0])}, {labels}]"

    fuse = "index"

    def _numbacode(self, p):
        """One element in a fused loop: z[i, labels[i]]."""
        row = p.index()[0]
        return p.operand(self.args[0], (row, p.element(self.args[1], (row,))))


@register
class one_hot(Op):
    """Rows of the identity selected by integer labels, in the module's dtype."""
    temp, view, int_args = "onehot", False, (0,)
    math = ("onehot({0})", r"\operatorname{{onehot}}\left({0}\right)")
    constant = True

    @classmethod
    def shape_of(cls, node, arg_shapes):
        return tuple(arg_shapes[0]) + (expr_dim(node.args[1]),)

    @staticmethod
    def eager(labels, classes):
        return (labels[..., None] == np.arange(classes)).astype(np.float64)

    def _numpycode(self, p):
        return f"{p.backend.new('eye', p._print(self.args[1]))}[{p._print(self.args[0])}]"

    fuse = "index"

    def _numbacode(self, p):
        """One element in a fused loop: 1 where the label is this column's class."""
        index = p.index()
        return p.backend.cast(f"{p.element(self.args[0], index[:-1])} == {index[-1]}")

    @staticmethod
    def update(hot, term, p, buffer: str, op: str) -> str | None:
        """`buffer += c * one_hot(y)` with a scalar c touches one entry per row: `buffer[rows, y] += c`
        instead of building and adding an (N, C) one-hot matrix (the softmax cross-entropy backward)."""
        c = term / hot
        if op not in "+-" or c.has(one_hot) or p.shapes(c) != ():
            return None
        labels = hot.args[0]
        rows = p.shapes(labels)[0]
        if p.backend.name == "torch":   # one scatter, not a gather, a subtraction and a put
            value = p._print(c if op == "+" else -c)
            return (f"{buffer}.scatter_add_(1, {p._print(labels)}[:, None], "
                    f"{buffer}.new_full(({rows}, 1), {value}))")
        return f"{buffer}[{p.backend.arange(rows)}, {p._print(labels)}] {op}= {p._print(c)}"


