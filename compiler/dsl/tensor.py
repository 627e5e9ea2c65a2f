"""Traced values: `Tensor` (a SymPy expression and its shape, or an array under the eager oracle),
the comparisons `where` takes, and `apply`, which applies a registry primitive and checks shapes.
The registry's public primitives become model-file functions here (`PUBLIC_FUNCTIONS`)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import sympy as sp

from .. import ops as P
from ..errors import NumpyOnTracedValue
from ..graph import Leaf
from ..shapes import Shape, ShapeMismatch, broadcast, dim_expr, fmt, is_outer_broadcast
from .recording import error, recorder


class Tensor:
    """A traced value: a SymPy expression with a shape. Python control flow on it is an error."""
    __slots__ = ("expr", "shape", "dtype", "leaf")

    def __init__(self, expr, shape: Shape, dtype: str = "float", leaf: Leaf | None = None):
        # expr: a SymPy expression while tracing, a NumPy array under the eager oracle
        self.expr, self.shape, self.dtype, self.leaf = expr, tuple(shape), dtype, leaf

    def __repr__(self):
        return f"Tensor({self.expr}, shape={fmt(self.shape)})"

    @property
    def ndim(self) -> int:
        return len(self.shape)

    # arithmetic -------------------------------------------------------------------------------
    def __add__(self, other): return _binary("+", self, other, lambda a, b: a + b)
    def __radd__(self, other): return _binary("+", other, self, lambda a, b: a + b)
    def __sub__(self, other): return _binary("-", self, other, lambda a, b: a - b)
    def __rsub__(self, other): return _binary("-", other, self, lambda a, b: a - b)
    def __mul__(self, other): return _binary("*", self, other, lambda a, b: a * b)
    def __rmul__(self, other): return _binary("*", other, self, lambda a, b: a * b)
    def __truediv__(self, other): return _binary("/", self, other, lambda a, b: a / b)
    def __rtruediv__(self, other): return _binary("/", other, self, lambda a, b: a / b)
    def __pow__(self, other): return _binary("**", self, other, lambda a, b: a ** b)
    def __rpow__(self, other): return _binary("**", other, self, lambda a, b: a ** b)
    def __neg__(self): return _binary("-", 0, self, lambda a, b: -b)
    def __pos__(self): return self
    def __matmul__(self, other): return apply(P.matmul, self, other, op="@")
    def __rmatmul__(self, other): return apply(P.matmul, other, self, op="@")

    @property
    def T(self):
        return apply(P.transpose, self, op=".T")

    # what tracing cannot do -------------------------------------------------------------------
    def _refuse(self, what: str, fix: str):
        raise error(f"{what} on a traced value {fmt(self.shape)}", op="tracing", fix=fix)

    def __bool__(self):
        self._refuse("Python if/while/and/or/not",
                     "a model is one fixed expression; use maximum/minimum/relu or select the "
                     "branch with arithmetic instead of Python control flow")

    def __float__(self):
        self._refuse("float()/math.*", "use symgrad's exp, log, sqrt, tanh... on traced values")

    def __int__(self):
        self._refuse("int()", "shapes are known: use t.shape[i] for sizes")

    __index__ = __int__
    __complex__ = __float__

    def __eq__(self, other):
        self._refuse("==", "equality has no gradient; compare with <, >, <=, >= inside where(), "
                     "or use maximum/minimum")

    __ne__ = __eq__
    __hash__ = object.__hash__

    # comparisons make a Condition, usable only as the first argument of where()
    def __gt__(self, other): return Condition.of(self, other, inclusive=False)
    def __ge__(self, other): return Condition.of(self, other, inclusive=True)
    def __lt__(self, other): return Condition.of(other, self, inclusive=False)
    def __le__(self, other): return Condition.of(other, self, inclusive=True)

    def __abs__(self):
        return PUBLIC_FUNCTIONS["abs"](self)

    def _unsupported(self, *args):
        self._refuse("this operator (%, //, <<, indexing, ...)",
                     "symgrad traces + - * / ** @ .T and the functions of compiler.dsl; "
                     "write the computation with those")

    __mod__ = __rmod__ = __floordiv__ = __rfloordiv__ = __divmod__ = _unsupported
    __lshift__ = __rshift__ = __and__ = __or__ = __xor__ = __invert__ = _unsupported
    __setitem__ = __round__ = __trunc__ = __floor__ = __ceil__ = _unsupported

    def __getitem__(self, key):
        """x[:, 0], x[:, -3:], x[..., ::2], x[0], x[:, None]: static ints, slices, ... and None."""
        parts = key if isinstance(key, tuple) else (key,)
        if any(isinstance(k, (Tensor, Condition, list, np.ndarray)) for k in parts):
            raise error("indexing with a tensor (or a list of positions)", op="indexing",
                        shapes=fmt(self.shape),
                        fix="an index is static (ints, slices, ..., None); to gather by integer "
                            "labels use pick(z, labels), for rows of a table by ids embedding(...)")
        try:
            entries, new_axes = P.parse_key(key, self.shape)
        except (ShapeMismatch, TypeError) as e:
            raise error(f"x[{_key_text(parts)}] on a tensor {fmt(self.shape)}: {e}", op="indexing",
                        shapes=fmt(self.shape),
                        fix="index with ints, slices (start:stop:step), ... and None, within the shape") \
                from None
        out = self
        if any(e != P.indexing.full_entry(d) for e, d in zip(entries, self.shape)):
            out = apply(P.index, self, entries, op="indexing")
        if new_axes:
            out = apply(P.expand_dims, out, new_axes, op="indexing")
        return out

    def __iter__(self):
        self._refuse("iteration", "use sum/mean over an axis, or index-free tensor ops")

    def __len__(self):
        self._refuse("len()", "use t.shape[0]")

    def __array__(self, *args, **kwargs):
        self._refuse("np.* (NumPy function)", "use symgrad's functions (exp, log, sum, ...) "
                     "from compiler.dsl instead of NumPy's on traced values")

    def _refuse_numpy(self, name: str):
        raise NumpyOnTracedValue(f"np.{name} on a traced value {fmt(self.shape)}", function=name,
                                 op="tracing", where=recorder().where())

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        self._refuse_numpy(ufunc.__name__)

    def __array_function__(self, func, types, args, kwargs):
        self._refuse_numpy(func.__name__)


def _key_text(parts) -> str:
    def one(k):
        if k is Ellipsis:
            return "..."
        if isinstance(k, slice):
            return ":".join("" if v is None else str(v) for v in (k.start, k.stop)) + \
                ("" if k.step is None else f":{k.step}")
        return repr(k)
    return ", ".join(one(k) for k in parts)


class Condition:
    """`a > b` (or >=) on traced values: only `where(cond, x, y)` can use it."""
    __slots__ = ("diff", "inclusive", "shape")

    def __init__(self, diff: Tensor, inclusive: bool):
        self.diff, self.inclusive, self.shape = diff, inclusive, diff.shape

    @staticmethod
    def of(a, b, inclusive: bool) -> "Condition":
        return Condition(lift(a, "comparison") - lift(b, "comparison"), inclusive)

    def __bool__(self):
        raise error("Python if/while/and/or/not on a traced comparison", op="comparison",
                    fix="a model is one fixed expression: use where(a > b, x, y) to choose values")


def where(cond: Condition, a, b) -> Tensor:
    """a where cond holds, else b, elementwise. The unselected branch gets no gradient, and its
    singular points (log, sqrt, division at 0) are guarded so they cannot turn it into NaN."""
    if not isinstance(cond, Condition):
        raise error("the first argument must be a comparison such as x > 0", op="where",
                    fix="write where(x > 0, a, b); a tensor is not a condition by itself")
    return apply(P.select, cond.diff, a, b, int(cond.inclusive), op="where")


def lift(value, op: str) -> Tensor:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise error(f"cannot use a {type(value).__name__} here", op=op,
                    fix="use traced tensors or Python numbers")
    return constant(sp.Integer(value) if isinstance(value, int) else sp.Float(value))


def constant(value: sp.Expr) -> Tensor:
    """A scalar known at compile time (a Python number, or a size such as 1/B)."""
    eager = recorder().eager
    return Tensor(value if eager is None else np.float64(eager.number(value)), ())


def record(expr: sp.Basic, shape: Shape, dtype: str = "float") -> Tensor:
    """Bind a traced value to the shape its op promised. SymPy's scalar algebra may have folded a
    broadcast away (`(a + b) - b` is `a`); `conform` puts it back as an explicit broadcast."""
    rec = recorder()
    if rec.eager is not None:
        want = rec.eager.concrete(shape)
        if np.shape(expr) != want:
            raise error(f"internal error: the eager value has shape {np.shape(expr)}, the op promised "
                        f"{fmt(shape)} = {want}", op="eager oracle",
                        fix="this is a symgrad bug; please report it with the model file")
        return Tensor(expr, shape, dtype)
    try:
        expr = P.conform(expr, shape, rec.shapes)  # also infers now: a rule complains at this line
    except P.ShapeChanged as e:
        raise error(f"internal error: {e}", op="shape check",
                    fix="this is a symgrad bug; please report it with the model file") from None
    rec.lines.setdefault(expr, rec.line())
    return Tensor(expr, shape, dtype)


def require_float(t: Tensor, op: str):
    if t.dtype != "float":
        raise error(f"integer labels cannot enter `{op}`", op=op, shapes=fmt(t.shape),
                    fix="labels are class indices; use them with softmax_cross_entropy, pick or one_hot")


def _elementwise_shape(op: str, tensors: list[Tensor]) -> Shape:
    shapes = [t.shape for t in tensors]
    try:
        out = broadcast(*shapes)
    except ShapeMismatch:
        raise error("shapes do not broadcast", op=op, shapes=" and ".join(fmt(s) for s in shapes),
                    fix="make the trailing dimensions equal (or 1); transpose or reshape one operand")
    if is_outer_broadcast(shapes, out):
        raise error(f"silent outer broadcast to {fmt(out)}", op=op,
                    shapes=" and ".join(fmt(s) for s in shapes),
                    fix="the operands have different shapes and broadcasting would grow both "
                        "(as (B,1) - (B,) gives (B,B)); reshape one so the shapes agree")
    return out


def _binary(op: str, a, b, build) -> Tensor:
    a, b = lift(a, op), lift(b, op)
    require_float(a, op)
    require_float(b, op)
    shape = _elementwise_shape(op, [a, b])
    return record(build(a.expr, b.expr), shape)


def _static(value):
    if isinstance(value, sp.Basic):
        return value
    if isinstance(value, (tuple, list)):
        return sp.Tuple(*[_static(v) for v in value])
    if isinstance(value, str):
        return dim_expr(value)
    if isinstance(value, bool):
        return sp.Integer(int(value))
    return sp.Integer(value) if isinstance(value, int) else sp.Float(value)


def apply(head, *args, op: str | None = None) -> Tensor:
    """Apply a registry primitive: leading tensor args, then static args (axes, shapes, alpha)."""
    rule = P.REGISTRY[head]
    op = op or rule.public or head.__name__
    n = len(args) if rule.n_tensor is None else rule.n_tensor
    tensors = [lift(a, op) for a in args[:n]]
    static = [_static(s) for s in args[n:]]
    for i, t in enumerate(tensors):
        if i not in rule.int_args:
            require_float(t, op)
    if rule.elementwise and len(tensors) > 1:
        _elementwise_shape(op, tensors)
    eager = recorder().eager
    if eager is None:  # SymPy may simplify the node away ((xᵀ)ᵀ is x): the op's promise still holds
        expr = P.make(head, [*[t.expr for t in tensors], *static])
    else:  # the oracle: the rule's own NumPy evaluation
        expr = np.asarray(rule.eager(*[t.expr for t in tensors], *[eager.static(v) for v in static]))
    node = SimpleNamespace(args=tuple(t.expr for t in tensors) + tuple(static))  # for static args
    try:
        shape = rule.shape_of(node, [t.shape for t in tensors])
    except ShapeMismatch as e:
        raise error(str(e), op=op, shapes=" and ".join(fmt(t.shape) for t in tensors),
                    fix="check the layer sizes and the order of the operands")
    out = record(expr, shape)
    if rule.init_family and tensors and eager is None:
        _resolve_init(tensors[0], out, rule.init_family)
    return out


def _resolve_init(pre: Tensor, out: Tensor, family: str) -> None:
    """An activation right after `linear` fixes that layer's weight init (He or Xavier)."""
    rec = recorder()
    pending = rec.pending_init.pop(pre.expr, None)
    if pending is None:
        return
    weight, layer = pending
    leaf = rec.leaves[weight]
    if leaf.init == "auto":
        rec.leaves[weight] = Leaf(**{**leaf.__dict__, "init": f"{family}_normal"})
    rec.hints.setdefault(out.expr, layer)


def _wrap(rule: P.Rule):
    names = [n for n, _ in rule.static]

    def fn(*args, **kwargs):
        """Tensors first, then the static arguments by position or by name (clip(x, -1, 1))."""
        n = rule.n_tensor or 1
        usage = f"{rule.public} takes {n} tensor(s){' and ' + ', '.join(names) if names else ''}"
        if len(args) < n or len(args) > n + len(names):
            raise error(f"takes {n} tensor argument(s){f' and up to {len(names)} more' if names else ''}, "
                        f"got {len(args)}", op=rule.public, fix=usage)
        given = dict(zip(names, args[n:]))
        twice = sorted(set(given) & set(kwargs))
        if twice:
            raise error(f"{', '.join(twice)} given by position and by name", op=rule.public, fix=usage)
        given.update(kwargs)
        static = [given.pop(name, default) for name, default in rule.static]
        if given:
            raise error(f"unexpected argument(s) {sorted(given)}", op=rule.public, fix=usage)
        return apply(rule.head, *args[:n], *static, op=rule.public)
    fn.__name__ = rule.public
    fn.__doc__ = (rule.head.__doc__ or "").strip() or f"{rule.public}, elementwise"
    return fn


# public name -> model-file function, one per registry rule that has a public name (registry order)
PUBLIC_FUNCTIONS = {rule.public: _wrap(rule) for rule in P.PUBLIC.values()}
