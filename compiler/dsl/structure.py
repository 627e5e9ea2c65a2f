"""Joining, splitting and rearranging traced tensors: concat, stack, split, transpose with an axis
order, and two-operand einsum (indexing `x[...]` is `Tensor.__getitem__`)."""
from __future__ import annotations

import numpy as np

from .. import ops as P
from ..shapes import ShapeMismatch, fmt
from .recording import error
from .tensor import Tensor, apply, lift


def _axis(axis, rank: int, op: str, shapes: str) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -rank <= axis < rank:
        raise error(f"axis {axis!r} is out of range for tensors of rank {rank}", op=op, shapes=shapes,
                    fix=f"give an int axis in [{-rank}, {rank - 1}] (negative counts from the end)")
    return int(axis) % rank


def _tensors(tensors, op: str) -> list[Tensor]:
    if isinstance(tensors, Tensor) or not isinstance(tensors, (list, tuple)) or not tensors:
        raise error("the first argument must be a non-empty list of tensors", op=op,
                    fix=f"write {op}([a, b, ...], axis)")
    return [lift(t, op) for t in tensors]


def concat(tensors, axis: int = 0) -> Tensor:
    """The tensors joined along `axis`; every other axis must agree."""
    tensors = _tensors(tensors, "concat")
    shapes = ", ".join(fmt(t.shape) for t in tensors)
    rank = tensors[0].ndim
    if any(t.ndim != rank for t in tensors) or rank == 0:
        raise error("concat takes tensors of one rank (at least 1)", op="concat", shapes=shapes,
                    fix="reshape or expand_dims the operands to the same rank; stack adds a new axis")
    axis = _axis(axis, rank, "concat", shapes)
    if len(tensors) == 1:
        return tensors[0]
    return apply(P.concat, *tensors, axis, op="concat")


def stack(tensors, axis: int = 0) -> Tensor:
    """The tensors, all of one shape, along a new axis `axis`."""
    tensors = _tensors(tensors, "stack")
    shapes = ", ".join(fmt(t.shape) for t in tensors)
    if any(t.shape != tensors[0].shape for t in tensors):
        raise error("stack takes tensors of one shape", op="stack", shapes=shapes,
                    fix="make the shapes equal; concat joins along an existing axis")
    axis = _axis(axis, tensors[0].ndim + 1, "stack", shapes)
    parts = [apply(P.expand_dims, t, (axis,), op="stack") for t in tensors]
    return parts[0] if len(parts) == 1 else apply(P.concat, *parts, axis, op="stack")


def split(x, sizes, axis: int = 0) -> list[Tensor]:
    """`x` cut along `axis` into pieces of the given sizes (a list of ints), or into `sizes` equal
    pieces (an int); a list of tensors, each a slice of `x`."""
    x = lift(x, "split")
    axis = _axis(axis, x.ndim, "split", fmt(x.shape)) if x.ndim else _axis(axis, 0, "split", "()")
    dim = x.shape[axis]
    if not isinstance(dim, int):
        raise error(f"axis {axis} has the symbolic size {dim}", op="split", shapes=fmt(x.shape),
                    fix="split an axis whose size is a number")
    if isinstance(sizes, (int, np.integer)) and not isinstance(sizes, bool):
        if sizes < 1 or dim % sizes:
            raise error(f"cannot cut axis {axis} of size {dim} into {sizes} equal parts", op="split",
                        shapes=fmt(x.shape), fix="give a count that divides the size, or a list of sizes")
        sizes = [dim // int(sizes)] * int(sizes)
    sizes = list(sizes) if isinstance(sizes, (list, tuple)) else None
    if not sizes or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in sizes) \
            or sum(sizes) != dim:
        raise error(f"the sizes must be positive ints adding up to {dim} (axis {axis})", op="split",
                    shapes=fmt(x.shape), fix=f"e.g. split(x, [{dim // 2}, {dim - dim // 2}], {axis}) or "
                                             f"split(x, 2, {axis})")
    pieces, start = [], 0
    for s in sizes:
        key = (slice(None),) * axis + (slice(start, start + int(s)),)
        pieces.append(x[key])
        start += int(s)
    return pieces


def transpose(x, axes=None) -> Tensor:
    """The axes of `x` in the order `axes` (a permutation); without it, all axes reversed (`x.T`)."""
    x = lift(x, "transpose")
    if axes is None:
        return x.T
    order = tuple(axes) if isinstance(axes, (list, tuple)) else None
    if order is None or any(isinstance(a, bool) or not isinstance(a, (int, np.integer)) for a in order) \
            or sorted(a % x.ndim if -x.ndim <= a < x.ndim else a for a in order) != list(range(x.ndim)):
        raise error(f"axes {axes!r} are not a permutation of the {x.ndim} axes", op="transpose",
                    shapes=fmt(x.shape), fix=f"list each axis 0..{x.ndim - 1} once, e.g. "
                                             f"{tuple(reversed(range(x.ndim)))}")
    order = tuple(int(a) % x.ndim for a in order)
    if order == tuple(range(x.ndim)):
        return x
    if order == tuple(reversed(range(x.ndim))):
        return x.T
    return apply(P.permute, x, order, op="transpose")


def _parse_spec(spec, ranks: tuple[int, ...]):
    """'bhtd,bhsd->bhts' -> the subscripts of each operand and of the result (NumPy's implicit
    result, the letters used once in alphabetical order, where there is no '->')."""
    if not isinstance(spec, str):
        raise TypeError("the spec must be a string such as 'bhtd,bhsd->bhts'")
    text = spec.replace(" ", "")
    inputs, arrow, out = text.partition("->")
    operands = inputs.split(",")
    if "." in text or not all(c.isalpha() for c in inputs.replace(",", "") + out):
        raise ShapeMismatch("subscripts are letters (no '...')")
    if len(operands) != len(ranks):
        raise ShapeMismatch(f"the spec names {len(operands)} operand(s) but {len(ranks)} tensor(s) are given")
    if not arrow:
        letters = "".join(operands)
        out = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    return [tuple(map(ord, w)) for w in operands], tuple(map(ord, out))


def einsum(spec, *tensors) -> Tensor:
    """np.einsum for two tensors with no subscript repeated within one: 'bhtd,bhsd->bhts' (attention
    scores), 'bhts,bhsd->bhtd' (weighted values), 'ij,jk->ik', ..."""
    tensors = [lift(t, "einsum") for t in tensors]
    shapes = " and ".join(fmt(t.shape) for t in tensors)
    if len(tensors) != 2:
        raise error(f"einsum takes two tensors, got {len(tensors)}", op="einsum", shapes=shapes,
                    fix="for one tensor use transpose(x, axes) and sum(x, axis); chain einsums for more")
    try:
        (la, lb), lo = _parse_spec(spec, (tensors[0].ndim, tensors[1].ndim))
        P.stacks.einsum_shape(tensors[0].shape, tensors[1].shape, la, lb, lo)
    except (ShapeMismatch, TypeError) as e:
        raise error(f"{e} (spec {spec!r})", op="einsum", shapes=shapes,
                    fix="one letter per axis of each operand, each used once per operand; a letter "
                        "shared by both operands has one size; the output's letters come from the operands")
    return apply(P.einsum, *tensors, la, lb, lo, op="einsum")
