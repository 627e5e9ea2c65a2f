"""Static indexing and joining: `x[...]` with ints and slices (a view), its adjoint that places a
cotangent into zeros of the operand's shape, and the concatenation of tensors along an axis (whose
adjoint is one slice per operand).

An index is a static Tuple with one entry per operand axis: an Integer takes one position and drops
the axis; a Tuple (start, stop, step) keeps the positions of range(start, stop, step). A full axis
of symbolic size B is (0, B, 1). `None` (new axes) is not part of it: the language inserts those with
expand_dims. `parse_key` turns a Python key into this form and says what is wrong with a bad one.
"""
from __future__ import annotations

from numbers import Integral

import numpy as np
import sympy as sp

from ..shapes import ShapeMismatch, dim_expr, expr_dim, fmt
from .reductions import expand_dims, full_shape
from .rule import Check, Op, arg, register


def full_entry(dim):
    """The index entry that keeps a whole axis of size `dim`."""
    return (0, dim, 1)


def _int(v) -> bool:
    return isinstance(v, (Integral, np.integer)) and not isinstance(v, (bool, np.bool_))


def _slice_entry(k: slice, dim, axis: int):
    if not all(v is None or _int(v) for v in (k.start, k.stop, k.step)):
        raise ShapeMismatch(f"slice bounds must be Python ints or None, got {k} on axis {axis}")
    if not isinstance(dim, int):
        if k.start in (None, 0) and k.stop is None and k.step in (None, 1):
            return full_entry(dim)
        raise ShapeMismatch(f"axis {axis} has the symbolic size {dim}: only `:` can slice it "
                            f"(the result's size would not be known at compile time), got {k}")
    if k.step == 0:
        raise ShapeMismatch(f"slice step cannot be zero (axis {axis})")
    start, stop, step = k.indices(dim)
    if len(range(start, stop, step)) == 0:
        raise ShapeMismatch(f"the slice {k} of axis {axis} (size {dim}) is empty")
    return (start, stop, step)


def _int_entry(i, dim, axis: int):
    i = int(i)
    if isinstance(dim, int):
        if not -dim <= i < dim:
            raise ShapeMismatch(f"index {i} is out of range for axis {axis} of size {dim}")
        return i % dim
    return i


def parse_key(key, shape) -> tuple[tuple, tuple[int, ...]]:
    """`x[key]` for a tensor of `shape` -> (index entries, positions of new axes in the result).
    Raises ShapeMismatch for keys out of range and TypeError for keys of a kind it does not take."""
    key = key if isinstance(key, tuple) else (key,)
    for k in key:
        if not (k is None or k is Ellipsis or isinstance(k, slice) or _int(k)):
            raise TypeError(f"an index of type {type(k).__name__}")
    if sum(k is Ellipsis for k in key) > 1:
        raise ShapeMismatch("an index can hold one ellipsis (...) at most")
    used = sum(1 for k in key if k is not None and k is not Ellipsis)
    if used > len(shape):
        raise ShapeMismatch(f"too many indices ({used}) for a tensor of rank {len(shape)} {fmt(shape)}")
    if Ellipsis not in key:
        key = key + (Ellipsis,)
    entries, new_axes = [], []
    for k in key:
        axis = len(entries)
        if k is None:
            new_axes.append(sum(1 for e in entries if isinstance(e, tuple)) + len(new_axes))
        elif k is Ellipsis:
            entries += [full_entry(d) for d in shape[axis: axis + len(shape) - used]]
        elif isinstance(k, slice):
            entries.append(_slice_entry(k, shape[axis], axis))
        else:
            entries.append(_int_entry(k, shape[axis], axis))
    return tuple(entries), tuple(new_axes)


def index_shape(shape, entries) -> tuple:
    """The shape of x[entries]: int entries drop their axis, a range keeps its length."""
    if len(entries) != len(shape):
        raise ShapeMismatch(f"an index of {len(entries)} entries for a tensor of rank {len(shape)}")
    out = []
    for d, e in zip(shape, entries):
        if isinstance(e, (tuple, sp.Tuple)):
            start, stop, step = e
            if not isinstance(d, int):
                out.append(d)
            else:
                out.append(len(range(int(start), int(stop), int(step))))
    return tuple(out)


def _entries(node, i=1) -> tuple:
    return tuple(tuple(e) if isinstance(e, sp.Tuple) else e for e in node.args[i])


def _subscripts(p, entries, shape, as_slice) -> list[str]:
    """Each entry printed: an int as it is, a range as `as_slice(start, stop, step, axis size)`."""
    return [p._print(e) if not isinstance(e, tuple) else
            as_slice(*(int(v) if v.is_Integer else expr_dim(v) for v in e), d)
            for e, d in zip(entries, shape)]


def _colons(start, stop, step, d) -> str:
    last = d - 1 if isinstance(d, int) else None
    begin = "" if (start == 0 if step > 0 else start == last) else str(start)
    end = "" if (stop == d if step > 0 else stop == -1) else str(stop)
    return f"{begin}:{end}" + ("" if step == 1 else f":{step}")


def index_text(p, entries, shape) -> str:
    """The NumPy subscript of an index: `:, 0`, `7:`, `..., ::2`."""
    items = _subscripts(p, entries, shape, _colons)
    last = len(items)
    while items and items[-1] == ":":
        items.pop()
    lead = next((i for i, t in enumerate(items) if t != ":"), len(items))
    if lead >= 2 and len(items) == last:  # `...` stands for the leading axes only if none follow
        items = ["..."] + items[lead:]
    return ", ".join(items) or "..."


def ascending(entries) -> tuple[tuple, list[int]]:
    """The same positions with every step positive, and the result axes then to flip (torch
    slices step forward only): range(7, 0, -3) keeps 7, 4, 1, which is range(1, 8, 3) reversed."""
    out, flips, axis = [], [], 0
    for e in entries:
        if isinstance(e, tuple):
            start, stop, step = (int(v) if getattr(v, "is_Integer", False) else v for v in e)
            if isinstance(step, int) and step < 0:
                n = len(range(start, stop, step))
                e = tuple(sp.Integer(v) for v in (start + step * (n - 1), start + 1, -step))
                flips.append(axis)
            axis += 1
        out.append(e)
    return tuple(out), flips


def slices_text(p, entries, shape) -> str:
    """An index as a tuple a function can take: `(slice(None), 1, slice(0, 6, 2))`."""
    items = _subscripts(p, entries, shape, lambda start, stop, step, d: "slice(None)" if (
        start, stop, step) == (0, d, 1) else f"slice({start}, {stop}, {step})")
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def _positions(entries, shape):
    """For each operand axis, the operand positions the result's positions come from."""
    return [np.arange(*e) if isinstance(e, tuple) else e for e, _ in zip(entries, shape)]


@register
class index(Op):
    """x[entries]: static ints and slices, one entry per axis (a view)."""
    temp, view = "sliced", True
    math = ("{0}[…]", r"{0}\left[\dots\right]")
    check = Check({"a": ((3, 5), (-1, 1)), "t": ((2, 3, 4), (-1, 1))},
                  "sum(tanh(a[:, 1:4]) * a[0, ::2]) + sum(sigmoid(a[-1]) * a[1, ::-1])"
                  " + sum(tanh(t[..., ::2]) * t[:, -3:, 2:]) + sum(t[1][:, None] * a[:, None, -1:])")

    @classmethod
    def shape_of(cls, node, arg_shapes):
        return index_shape(arg_shapes[0], _entries(node))

    def vjp(self, g, shape):
        return (unindex(g, self.args[1], full_shape(self.args[0], shape)),)

    @staticmethod
    def eager(x, entries):
        for axis in reversed(range(len(entries))):  # the last axis first: earlier axes keep their number
            e = entries[axis]
            x = np.take(x, np.arange(*e) if isinstance(e, tuple) else e, axis=axis)
        return x

    def _numpycode(self, p):
        return f"{arg(p, self.args[0])}[{index_text(p, _entries(self), p.shapes(self.args[0]))}]"

    def _torchcode(self, p):
        entries, flips = ascending(_entries(self))
        text = f"{arg(p, self.args[0])}[{index_text(p, entries, p.shapes(self.args[0]))}]"
        return f"{text}.flip({tuple(flips)})" if flips else text


@register
class unindex(Op):
    """The adjoint of x[entries]: g placed at those positions of zeros of x's shape (static)."""
    temp, view = "unsliced", False
    math = ("unindex({0})", r"\operatorname{{unindex}}\left({0}\right)")
    helper = ("def _unindex(g, shape, index):\n"
              "    \"\"\"Adjoint of x[index]: g placed into zeros of x's shape.\"\"\"\n"
              "    out = np.zeros(shape, dtype=DTYPE)\n"
              "    out[index] = g\n"
              "    return out\n")
    helper_torch = helper.replace("dtype=DTYPE)", "dtype=DTYPE, device=g.device)")
    helper_jax = ("def _unindex(g, shape, index):\n"
                  "    \"\"\"Adjoint of x[index]: g placed into zeros of x's shape.\"\"\"\n"
                  "    return np.zeros(shape, dtype=DTYPE).at[index].set(g)\n")
    check = Check({"a": ((3,), (-1, 1)), "b": ((2, 2), (-1, 1))},
                  "sum(tanh(apply(P.unindex, a, ((0, 3, 1), 1), (3, 4))))"
                  " + sum(sigmoid(apply(P.unindex, b, (1, (3, -1, -2), (0, 2, 1)), (2, 4, 3))))")

    @classmethod
    def shape_of(cls, node, arg_shapes):
        shape = tuple(expr_dim(d) for d in node.args[2])
        if index_shape(shape, _entries(node)) != tuple(arg_shapes[0]):
            raise ShapeMismatch(f"unindex: {fmt(arg_shapes[0])} is not the shape of an index of {fmt(shape)}")
        return shape

    def vjp(self, g, shape):
        return (index(g, self.args[1]),)

    @staticmethod
    def eager(g, entries, shape):
        out = np.zeros(shape)
        for pos in np.ndindex(*g.shape):  # result position -> operand position, one at a time
            ranks = iter(pos)
            source = tuple(range(*e)[next(ranks)] if isinstance(e, tuple) else e for e in entries)
            out[source] += g[pos]
        return out

    def _numpycode(self, p):
        p.helpers.add(type(self))
        shape = p.shapes(self)
        dims = ", ".join(p._print(dim_expr(d)) for d in shape) + ("," if len(shape) == 1 else "")
        return f"_unindex({p._print(self.args[0])}, ({dims}), np.s_[{index_text(p, _entries(self), shape)}])"

    def _torchcode(self, p):
        p.helpers.add(type(self))
        shape = p.shapes(self)
        dims = ", ".join(p._print(dim_expr(d)) for d in shape) + ("," if len(shape) == 1 else "")
        entries, flips = ascending(_entries(self))
        g = f"{arg(p, self.args[0])}.flip({tuple(flips)})" if flips else p.tensor(self.args[0])
        return f"_unindex({g}, ({dims}), {slices_text(p, entries, shape)})"


@register
class concat(Op):
    """Tensors joined along a static axis. Every argument but the last is a tensor (`n_tensor = -1`:
    `node.args[:-1]`); the last is the axis. Prints as np.stack where each operand gains that axis."""
    temp, view = "cat", False
    n_tensor = -1
    check = Check({"a": ((3, 2), (-1, 1)), "b": ((3, 4), (-1, 1)), "v": ((3,), (-1, 1))},
                  "sum(tanh(apply(P.concat, a, b, a, 1)) * apply(P.concat, b, a, a, 1))"
                  " + sum(tanh(stack([v, v * v], 0)) * stack([v * 2, v], 1).T)")

    @classmethod
    def shape_of(cls, node, arg_shapes):
        axis, shapes = int(node.args[-1]), [tuple(s) for s in arg_shapes]
        first = shapes[0]
        if not 0 <= axis < len(first):
            raise ShapeMismatch(f"concat: axis {axis} is out of range for rank {len(first)}")
        for s in shapes:
            if len(s) != len(first) or s[:axis] + s[axis + 1:] != first[:axis] + first[axis + 1:]:
                raise ShapeMismatch(f"concat along axis {axis}: shapes {', '.join(fmt(t) for t in shapes)} "
                                    f"differ off that axis")
        if not all(isinstance(s[axis], int) for s in shapes):
            raise ShapeMismatch(f"concat along axis {axis} of symbolic size: the sizes must be numbers")
        return first[:axis] + (sum(s[axis] for s in shapes),) + first[axis + 1:]

    def vjp(self, g, shape):
        axis, start, out = int(self.args[-1]), 0, []
        for t in self.args[:-1]:
            dims = shape(t)
            entries = [full_entry(dim_expr(d)) for d in dims]
            entries[axis] = (start, start + dims[axis], 1)
            start += dims[axis]
            whole = dims[axis] == shape(self)[axis]  # the only operand: g itself
            out.append(g if whole else index(g, sp.Tuple(*[sp.Tuple(*e) for e in entries])))
        return tuple(out)

    @staticmethod
    def eager(*args):
        *tensors, axis = args
        shape = list(tensors[0].shape)
        shape[axis] = sum(t.shape[axis] for t in tensors)
        out, start = np.empty(shape), 0
        for t in tensors:  # each operand copied into its block along the axis
            out[(slice(None),) * axis + (slice(start, start + t.shape[axis]),)] = t
            start += t.shape[axis]
        return out

    def _numpycode(self, p):
        axis, tensors = int(self.args[-1]), self.args[:-1]
        if all(isinstance(t, expand_dims) and tuple(t.args[1]) == (axis,) for t in tensors):
            items = ", ".join(p._print(t.args[0]) for t in tensors)
            return f"np.stack([{items}], axis={axis})"
        return f"np.concatenate([{', '.join(p._print(t) for t in tensors)}], axis={axis})"

    def _mathtext(self, p):
        return f"concat({', '.join(p._print(t) for t in self.args[:-1])})"

    def _latex(self, p):
        return rf"\operatorname{{concat}}\left({', '.join(p._print(t) for t in self.args[:-1])}\right)"
