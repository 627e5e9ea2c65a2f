"""Ops of token models: an embedding table's row gather and its adjoint (a scatter-add of rows), the
gather of one entry per position along the last axis (sequence cross-entropy) and its adjoint, the
0/1 mask of the positions that are not padding, and the offsets i − j of a causal mask.

The scatter-add of rows prints one `np.bincount` over (id, column) pairs. Measured against
`np.add.at` and a one-hot product (one_hot(ids).T @ g) on a 2-core machine, float64 (ms):

    vocab, dim, rows        np.add.at   bincount per column   one-hot matmul   one bincount
    27, 16, 1024·8            1.20           0.28                 0.45             0.26
    27, 64, 256·14            1.97           0.60                 0.36             0.39
    1000, 64, 4096            2.26           0.78                11.76             0.49

The single bincount is the fastest or within 10% of it everywhere and, unlike the one-hot product,
does not grow with the vocabulary, so it is printed for every shape.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from ..shapes import ShapeMismatch, expr_dim, fmt
from .rule import Check, Op, arg, register


@register
class take_rows(Op):
    """table[ids]: one row of a (vocab, dim) table per id, ids of any shape -> ids.shape + (dim,)."""
    temp, view, int_args, n_tensor = "embedded", False, (1,), 2
    math = ("{0}[{1}]", "{0}_{{{1}}}")
    check = Check({"a": ((5, 3), (-1, 1))}, "sum(tanh(apply(P.take_rows, a, y)) * apply(P.take_rows, a, y))",
                  labels={"y": ((2, 4), 5)})

    @classmethod
    def shape_of(cls, node, arg_shapes):
        table, ids = arg_shapes[:2]
        if len(table) != 2:
            raise ShapeMismatch(f"an embedding table is (vocab, dim), got {fmt(table)}")
        return tuple(ids) + (table[1],)

    def vjp(self, g, shape):
        table, ids = self.args
        return scatter_rows(g, ids, sp.Integer(shape(table)[0])), None

    @staticmethod
    def eager(table, ids):
        return np.take(table, ids, axis=0)

    def _numpycode(self, p):
        return f"{arg(p, self.args[0])}[{p._print(self.args[1])}]"


@register
class scatter_rows(Op):
    """The adjoint of take_rows: a (vocab, dim) zeros with each row of g added at its id (repeated
    ids add up), as one bincount over (id, column) pairs (see the measurements above)."""
    temp, view, int_args, n_tensor = "scattered", False, (1,), 2
    math = ("scatter({0}, {1})", r"\operatorname{{scatter}}\left({0}, {1}\right)")
    helper = ("def _scatter_rows(g, ids, vocab):\n"
              "    \"\"\"zeros (vocab, dim) with g[..., :] added into row ids[...] (repeated ids add up).\"\"\"\n"
              "    dim = g.shape[-1]\n"
              "    slots = (ids.reshape(-1, 1) * dim + np.arange(dim)).ravel()\n"
              "    sums = np.bincount(slots, weights=g.ravel(), minlength=vocab * dim)\n"
              "    return sums.reshape(vocab, dim).astype(DTYPE, copy=False)\n")
    helper_torch = (
        "def _scatter_rows(g, ids, vocab):\n"
        "    \"\"\"zeros (vocab, dim) with g[..., :] added into row ids[...] (repeated ids add up).\"\"\"\n"
        "    dim = g.shape[-1]\n"
        "    out = torch.zeros((vocab, dim), dtype=DTYPE, device=g.device)\n"
        "    return out.index_add_(0, ids.reshape(-1), g.reshape(-1, dim))\n")
    helper_jax = (
        "def _scatter_rows(g, ids, vocab):\n"
        "    \"\"\"zeros (vocab, dim) with g[..., :] added into row ids[...] (repeated ids add up).\"\"\"\n"
        "    dim = g.shape[-1]\n"
        "    return np.zeros((vocab, dim), dtype=DTYPE).at[ids.reshape(-1)].add(g.reshape(-1, dim))\n")
    check = Check({"a": ((2, 4, 3), (-1, 1))}, "sum(tanh(apply(P.scatter_rows, a, y, 5)))",
                  labels={"y": ((2, 4), 5)})

    @classmethod
    def shape_of(cls, node, arg_shapes):
        g, ids = arg_shapes[:2]
        if not g or tuple(g[:-1]) != tuple(ids):
            raise ShapeMismatch(f"takes rows (..., dim) and ids (...), got {fmt(g)} and {fmt(ids)}")
        return (expr_dim(node.args[2]), g[-1])

    def vjp(self, g, shape):
        return take_rows(g, self.args[1]), None

    @staticmethod
    def eager(g, ids, vocab):
        out = np.zeros((vocab, g.shape[-1]))
        for index in np.ndindex(ids.shape):  # the definition, one row at a time
            out[ids[index]] += g[index]
        return out

    def _numpycode(self, p):
        p.helpers.add(type(self))
        g, ids = (p._print(a) for a in self.args[:2])
        return f"_scatter_rows({g}, {ids}, {p._print(self.args[2])})"


@register
class pick_last(Op):
    """z[..., ids[...]]: the entry of each position's id along the last axis, (..., C) -> (...)."""
    temp, view, int_args, n_tensor = "picked", False, (1,), 2
    math = ("{0}[{1}]", "{0}_{{{1}}}")
    check = Check({"a": ((2, 3, 4), (-1, 1))}, "sum(tanh(apply(P.pick_last, a, y)))",
                  labels={"y": ((2, 3), 4)})

    @classmethod
    def shape_of(cls, node, arg_shapes):
        z, ids = arg_shapes[:2]
        if not z or tuple(z[:-1]) != tuple(ids):
            raise ShapeMismatch(f"takes values (..., C) and ids (...), got {fmt(z)} and {fmt(ids)}")
        return tuple(ids)

    def vjp(self, g, shape):
        z, ids = self.args
        return put_last(g, ids, sp.Integer(shape(z)[-1])), None

    @staticmethod
    def eager(z, ids):
        return np.take_along_axis(z, ids[..., None], axis=-1)[..., 0]

    def _numpycode(self, p):
        z, ids = arg(p, self.args[0]), p._print(self.args[1])
        return f"np.take_along_axis({z}, {ids}[..., None], axis=-1)[..., 0]"

    def _torchcode(self, p):
        z, ids = arg(p, self.args[0]), p._print(self.args[1])
        return f"torch.take_along_dim({z}, {ids}[..., None], dim=-1)[..., 0]"


@register
class put_last(Op):
    """The adjoint of pick_last: zeros (..., C) with g[...] at position ids[...] of the last axis."""
    temp, view, int_args, n_tensor = "put", False, (1,), 2
    math = ("put({0}, {1})", r"\operatorname{{put}}\left({0}, {1}\right)")
    helper = ("def _put_last(g, ids, classes):\n"
              "    \"\"\"zeros ids.shape + (classes,) holding g[...] at index ids[...] of the last axis.\"\"\"\n"
              "    out = np.zeros(ids.shape + (classes,), DTYPE)\n"
              "    np.put_along_axis(out, ids[..., None], g[..., None], axis=-1)\n"
              "    return out\n")
    helper_torch = (
        "def _put_last(g, ids, classes):\n"
        "    \"\"\"zeros ids.shape + (classes,) holding g[...] at index ids[...] of the last axis.\"\"\"\n"
        "    out = torch.zeros(ids.shape + (classes,), dtype=DTYPE, device=g.device)\n"
        "    return out.scatter_(-1, ids[..., None], g[..., None])\n")
    helper_jax = (
        "def _put_last(g, ids, classes):\n"
        "    \"\"\"zeros ids.shape + (classes,) holding g[...] at index ids[...] of the last axis.\"\"\"\n"
        "    return np.where(ids[..., None] == np.arange(classes), g[..., None], 0).astype(DTYPE)\n")
    check = Check({"a": ((2, 3), (-1, 1))}, "sum(tanh(apply(P.put_last, a, y, 4)))",
                  labels={"y": ((2, 3), 4)})

    @classmethod
    def shape_of(cls, node, arg_shapes):
        g, ids = arg_shapes[:2]
        if tuple(g) != tuple(ids):
            raise ShapeMismatch(f"takes values {fmt(ids)} for ids {fmt(ids)}, got {fmt(g)}")
        return tuple(ids) + (expr_dim(node.args[2]),)

    def vjp(self, g, shape):
        return pick_last(g, self.args[1]), None

    @staticmethod
    def eager(g, ids, classes):
        out = np.zeros(ids.shape + (classes,))
        for index in np.ndindex(ids.shape):
            out[index + (ids[index],)] = g[index]
        return out

    def _numpycode(self, p):
        p.helpers.add(type(self))
        g, ids = (p._print(a) for a in self.args[:2])
        return f"_put_last({g}, {ids}, {p._print(self.args[2])})"


@register
class kept(Op):
    """1.0 where ids differ from the padding id (static), 0.0 at padding: which positions count."""
    temp, view, int_args = "kept", False, (0,)
    math = ("[{0} ≠ pad]", r"\left[{0} \neq \mathrm{{pad}}\right]")
    constant = True

    @classmethod
    def shape_of(cls, node, arg_shapes):
        return tuple(arg_shapes[0])

    @staticmethod
    def eager(ids, pad):
        return np.where(ids == pad, 0.0, 1.0)

    def _numpycode(self, p):
        return p.backend.cast(f"({p._print(self.args[0])} != {p._print(self.args[1])})")


@register
class causal_offsets(Op):
    """The (T, T) matrix of i − j (row minus column): ≥ 0 exactly where position i may see j."""
    temp, view, n_tensor, differentiable = "offsets", False, 0, False
    math = ("(i − j)_{{{0}}}", r"\left(i - j\right)_{{{0}}}")

    @classmethod
    def shape_of(cls, node, arg_shapes):
        n = expr_dim(node.args[0])
        return (n, n)

    @staticmethod
    def eager(n):
        return np.array([[i - j for j in range(n)] for i in range(n)], dtype=np.float64)

    def _numpycode(self, p):
        n = p._print(self.args[0])
        return f"np.subtract.outer(np.arange({n}), np.arange({n}))"

    def _torchcode(self, p):
        n = p._print(self.args[0])
        return f"{p.backend.arange(n)}[:, None] - {p.backend.arange(n)}"
