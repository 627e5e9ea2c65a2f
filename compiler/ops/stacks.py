"""Products of stacks of matrices: the adjoint of `@` on (..., n, k) @ (..., k, m) with broadcast
batch axes (installed into matmul, whose file reductions imports), and two-operand `einsum`, printed
as `@` where it is a batched matrix product (attention's scores and weighted values).

An einsum's subscripts are static Tuples of letter codes (ord), one per operand and one for the
result: `einsum(q, k, (b, h, t, d), (b, h, s, d), (b, h, t, s))`.
"""
from __future__ import annotations

import numpy as np
import sympy as sp
from sympy.printing.precedence import PRECEDENCE

from ..shapes import ShapeMismatch, dim_expr, fmt
from .linalg import matmul, swap_last
from .reductions import broadcast_to, expand_dims, squeeze, unbroadcast
from .rule import Check, Op, arg, axes_arg, register


def _stacked_vjp(node, g, shape):
    """Vectors become (1, k) and (k, 1) matrices; each operand's cotangent is a product with the
    other's last two axes swapped, summed over the batch axes it was broadcast along (`unbroadcast`);
    the vectors' axes are dropped again."""
    a, b = node.args
    ra, rb = len(shape(a)), len(shape(b))
    a2 = expand_dims(a, axes_arg((0,))) if ra == 1 else a
    b2 = expand_dims(b, axes_arg((1,))) if rb == 1 else b
    g2 = expand_dims(g, axes_arg((len(shape(g)),))) if rb == 1 else g
    g2 = expand_dims(g2, axes_arg((len(shape(g2)) - 1,))) if ra == 1 else g2
    da = matmul(g2, swap_last(b2, len(shape(b2))))
    db = matmul(swap_last(a2, len(shape(a2))), g2)
    da = unbroadcast(da, shape(da), shape(a2))
    db = unbroadcast(db, shape(db), shape(b2))
    return (squeeze(da, axes_arg((0,))) if ra == 1 else da,
            squeeze(db, axes_arg((1,))) if rb == 1 else db)


matmul.stacked_vjp = staticmethod(_stacked_vjp)


def letters_of(node, i) -> tuple[int, ...]:
    return tuple(int(c) for c in node.args[i])


def spec_text(la, lb, lo) -> str:
    word = lambda codes: "".join(chr(c) for c in codes)  # noqa: E731
    return f"{word(la)},{word(lb)}->{word(lo)}"


def einsum_shape(a, b, la, lb, lo) -> tuple:
    """The result's shape; every subscript problem is a ShapeMismatch naming the spec."""
    spec = spec_text(la, lb, lo)
    for shape, letters, which in ((a, la, "first"), (b, lb, "second")):
        if len(shape) != len(letters):
            raise ShapeMismatch(f"einsum {spec!r}: the {which} operand {fmt(shape)} has rank {len(shape)}"
                                f" but {len(letters)} subscripts")
        if len(set(letters)) != len(letters):
            raise ShapeMismatch(f"einsum {spec!r}: a subscript repeats within the {which} operand")
    sizes: dict = {}
    for shape, letters in ((a, la), (b, lb)):
        for d, c in zip(shape, letters):
            if sizes.setdefault(c, d) != d:
                raise ShapeMismatch(f"einsum {spec!r}: subscript {chr(c)!r} is {sizes[c]} in one operand "
                                    f"and {d} in the other ({fmt(a)} and {fmt(b)})")
    if len(set(lo)) != len(lo) or any(c not in sizes for c in lo):
        raise ShapeMismatch(f"einsum {spec!r}: each output subscript must appear once, and in an operand")
    return tuple(sizes[c] for c in lo)


def as_matmul(la, lb, lo):
    """(swap a, swap b) when the einsum is (P, i, j) @ (P, j, k) -> (P, i, k) up to swapping an
    operand's last two axes; None otherwise."""
    if not len(la) == len(lb) == len(lo) >= 2 or la[:-2] != lo[:-2] or lb[:-2] != lo[:-2]:
        return None
    i, k = lo[-2:]
    if i not in la[-2:] or k not in lb[-2:]:
        return None
    j = la[-1] if la[-2] == i else la[-2]
    if j in lo or set(lb[-2:]) != {j, k}:
        return None
    return la[-2:] != (i, j), lb[-2:] != (j, k)


@register
class einsum(Op):
    """Σ over the subscripts of two operands that the result does not keep (NumPy's einsum, two
    operands, no subscript repeated within one)."""
    temp, view = "ein", False
    n_tensor = 2
    check = Check({"q": ((2, 2, 3, 4), (-1, 1)), "k": ((2, 2, 5, 4), (-1, 1)), "v": ((2, 2, 5, 4), (-1, 1)),
                   "a": ((3, 4), (-1, 1)), "b": ((4, 5), (-1, 1))},
                  "sum(tanh(einsum('bhtd,bhsd->bhts', q, k)) * einsum('bhts,bhsd->bhtd', "
                  "softmax(einsum('bhtd,bhsd->bhts', q, k)), v)[..., :1]) + sum(tanh(einsum('ij,jk->ki', a, b)))"
                  " + sum(sigmoid(einsum('ij,kl->jl', a, b))) + einsum('ij,ij', a, a)")

    @classmethod
    def shape_of(cls, node, arg_shapes):
        a, b = arg_shapes[:2]
        return einsum_shape(a, b, letters_of(node, 2), letters_of(node, 3), letters_of(node, 4))

    def vjp(self, g, shape):
        a, b = self.args[:2]
        la, lb, lo = (letters_of(self, i) for i in (2, 3, 4))
        return (_operand_cotangent(g, lo, b, lb, la, shape(a)),
                _operand_cotangent(g, lo, a, la, lb, shape(b)))

    @staticmethod
    def eager(a, b, la, lb, lo):
        """Both operands laid out over every subscript (size 1 where absent), multiplied, summed over
        the subscripts the result drops, and put in the result's order: no einsum."""
        every = list(dict.fromkeys(la + lb))

        def spread(x, letters):
            x = np.transpose(x, [letters.index(c) for c in every if c in letters])
            return x.reshape([x.shape[[c for c in every if c in letters].index(c)] if c in letters else 1
                              for c in every])
        product = spread(a, la) * spread(b, lb)
        product = product.sum(axis=tuple(i for i, c in enumerate(every) if c not in lo))
        kept = [c for c in every if c in lo]
        return np.transpose(product, [kept.index(c) for c in lo])

    def _numpycode(self, p):
        a, b = self.args[:2]
        la, lb, lo = (letters_of(self, i) for i in (2, 3, 4))
        swaps = as_matmul(la, lb, lo)
        if swaps is None:
            x, y = p.tensor(a), p.tensor(b)   # torch's einsum takes tensors only
            return f'np.einsum("{spec_text(la, lb, lo)}", {x}, {y}{p.backend.einsum_options})'
        level = PRECEDENCE["Mul"]
        left, right = (_swapped(p, x, swap, len(la), level) for x, swap in zip((a, b), swaps))
        return f"{left} @ {right}"

    def _mathtext(self, p):
        return f"einsum[{spec_text(*(letters_of(self, i) for i in (2, 3, 4)))}]({p._print(self.args[0])}, " \
               f"{p._print(self.args[1])})"

    def _latex(self, p):
        spec = spec_text(*(letters_of(self, i) for i in (2, 3, 4)))
        return rf"\operatorname{{einsum}}_{{\text{{{spec}}}}}\left({p._print(self.args[0])}, " \
               rf"{p._print(self.args[1])}\right)"

    @staticmethod
    def flops(node, shapes, count):
        """A multiply and an add per combination of all subscripts."""
        a, b = (shapes(x) for x in node.args[:2])
        sizes = dict(zip(letters_of(node, 2), a)) | dict(zip(letters_of(node, 3), b))
        return 2 * count(tuple(sizes.values()))


def _swapped(p, x, swap: bool, rank: int, level) -> str:
    if not swap:
        return arg(p, x, level, False)
    return f"{arg(p, x)}.T" if rank == 2 else f"{arg(p, x)}.swapaxes(-1, -2)"


def _operand_cotangent(g, lo, other, lother, target, target_shape):
    """∂/∂x of Σ g·einsum(x, other): an einsum of g and the other operand onto x's subscripts; a
    subscript only x has (summed in x alone) comes back as a broadcast."""
    kept = tuple(c for c in target if c in lo or c in lother)
    ct = einsum(g, other, sp.Tuple(*lo), sp.Tuple(*lother), sp.Tuple(*kept))
    if len(kept) == len(target):
        return ct
    ct = expand_dims(ct, axes_arg([i for i, c in enumerate(target) if c not in kept]))
    return broadcast_to(ct, sp.Tuple(*[dim_expr(d) for d in target_shape]))
