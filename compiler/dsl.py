"""The model-file language: what `from compiler.dsl import *` gives a model file.

A `Tensor` wraps a SymPy expression and its shape; Python operators and the functions below build the
DAG and check shapes as they go. Nothing here computes numbers. Activations and other elementwise
functions are generated from the primitive registry, so adding one there makes it available here.

    x = Input("x", ("B", 64))
    y = Labels("y", ("B",), classes=10)
    h = relu(linear(x, 128, name="hidden"))
    logits = linear(h, 10, name="out")
    loss = softmax_cross_entropy(logits, y)
    outputs = {"logits": logits}
"""
from __future__ import annotations

import contextvars
import re
import sys
from types import SimpleNamespace
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from . import ops as P
from .errors import ModelError
from .hints import numpy_fix
from .graph import Leaf, ShapeTable
from .shapes import (Shape, ShapeMismatch, broadcast, dim_expr, fmt, is_outer_broadcast,
                     normalize_axes, size)

__all__ = ["Input", "Labels", "Param", "Tensor", "where", "linear", "mlp", "sum", "mean", "amax",
           "logsumexp", "softmax", "log_softmax", "softmax_cross_entropy", "mse", "sqrt",
           "expand_dims", "reshape", "pick", "one_hot", "apply", "batch", "conv1d", "max_pool1d",
           "avg_pool1d", "flatten", "layer_norm", "dropout", "batch_norm", "State"]

batch = "B"  # the conventional name of the symbolic batch dimension

INIT_RULES = re.compile(r"^(auto|zeros|ones|he_normal|xavier_normal|"
                        r"normal\([0-9.eE+-]+\)|constant\([0-9.eE+-]+\))$")


@dataclass
class Recorder:
    """Everything a trace collects; one per model file, active only while that file runs."""
    path: str
    leaves: dict[str, Leaf] = field(default_factory=dict)
    shapes: ShapeTable = field(default_factory=ShapeTable)
    lines: dict = field(default_factory=dict)
    hints: dict = field(default_factory=dict)
    pending_init: dict = field(default_factory=dict)  # linear output expr -> (weight name, layer name)
    eval_subs: dict = field(default_factory=dict)     # train-mode expr -> inference expr
    state_updates: dict = field(default_factory=dict)  # state name -> expr of its new value
    dropouts: int = 0
    layer_count: int = 0
    eager: "Eager | None" = None  # set: evaluate on NumPy arrays (the oracle) instead of tracing

    def line(self) -> int:
        frame = sys._getframe(1)
        while frame is not None:
            if frame.f_code.co_filename == self.path:
                return frame.f_lineno
            frame = frame.f_back
        return 0

    def where(self) -> str:
        return f"{self.path}:{self.line()}"


@dataclass
class Eager:
    """The eager oracle's side of a run: the arrays bound to the leaves, the sizes of symbolic dims
    read off them, and train or inference mode (dropout on/off, batch or running statistics)."""
    arrays: dict                       # leaf name -> array (parameters, state and inputs)
    training: bool = True
    dims: dict = field(default_factory=dict)      # symbolic dim -> size
    state: dict = field(default_factory=dict)     # state name -> its new value (training)

    def concrete(self, shape) -> tuple:
        return tuple(self.dims[d] if isinstance(d, str) else d for d in shape)

    def number(self, value) -> float:
        """A compile-time constant (possibly symbolic in the dims, like 1/B) as a float."""
        if isinstance(value, sp.Basic):
            value = value.subs({dim_expr(k): v for k, v in self.dims.items()})
        return float(value)

    def static(self, value):
        """A static argument as a plain Python value: axes and shapes as tuples of ints."""
        if isinstance(value, sp.Tuple):
            return tuple(self.static(v) for v in value)
        if isinstance(value, sp.Basic):
            value = value.subs({dim_expr(k): v for k, v in self.dims.items()})
            return int(value) if value.is_Integer else float(value)
        return value


_ACTIVE: contextvars.ContextVar[Recorder] = contextvars.ContextVar("symgrad_trace")


def recorder() -> Recorder:
    rec = _ACTIVE.get(None)
    if rec is None:
        raise ModelError("model-file functions only work while symgrad traces a model file",
                         fix="run it with `symgrad compile MODEL.py` or compiler.compile_file(path)")
    return rec


def error(problem: str, *, op: str, shapes: str | None = None, fix: str | None = None) -> ModelError:
    return ModelError(problem, op=op, where=recorder().where(), shapes=shapes, fix=fix)


# ---------------------------------------------------------------------------------------------

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
        return globals()["abs"](self)

    def _unsupported(self, *args):
        self._refuse("this operator (%, //, <<, indexing, ...)",
                     "symgrad traces + - * / ** @ .T and the functions of compiler.dsl; "
                     "write the computation with those")

    __mod__ = __rmod__ = __floordiv__ = __rfloordiv__ = __divmod__ = _unsupported
    __lshift__ = __rshift__ = __and__ = __or__ = __xor__ = __invert__ = _unsupported
    __getitem__ = __setitem__ = __round__ = __trunc__ = __floor__ = __ceil__ = _unsupported

    def __iter__(self):
        self._refuse("iteration", "use sum/mean over an axis, or index-free tensor ops")

    def __len__(self):
        self._refuse("len()", "use t.shape[0]")

    def __array__(self, *args, **kwargs):
        self._refuse("np.* (NumPy function)", "use symgrad's functions (exp, log, sum, ...) "
                     "from compiler.dsl instead of NumPy's on traced values")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        self._refuse(f"np.{ufunc.__name__}",
                     numpy_fix(ufunc.__name__))

    def __array_function__(self, func, types, args, kwargs):
        self._refuse(f"np.{func.__name__}",
                     numpy_fix(func.__name__))


class Condition:
    """`a > b` (or >=) on traced values: only `where(cond, x, y)` can use it."""
    __slots__ = ("diff", "inclusive", "shape")

    def __init__(self, diff: Tensor, inclusive: bool):
        self.diff, self.inclusive, self.shape = diff, inclusive, diff.shape

    @staticmethod
    def of(a, b, inclusive: bool) -> "Condition":
        return Condition(_lift(a, "comparison") - _lift(b, "comparison"), inclusive)

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


def _lift(value, op: str) -> Tensor:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise error(f"cannot use a {type(value).__name__} here", op=op,
                    fix="use traced tensors or Python numbers")
    return _constant(sp.Integer(value) if isinstance(value, int) else sp.Float(value))


def _constant(value: sp.Expr) -> Tensor:
    """A scalar known at compile time (a Python number, or a size such as 1/B)."""
    eager = recorder().eager
    return Tensor(value if eager is None else np.float64(eager.number(value)), ())


def _record(expr: sp.Basic, shape: Shape, dtype: str = "float") -> Tensor:
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


def _require_float(t: Tensor, op: str):
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
    a, b = _lift(a, op), _lift(b, op)
    _require_float(a, op)
    _require_float(b, op)
    shape = _elementwise_shape(op, [a, b])
    return _record(build(a.expr, b.expr), shape)


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
    tensors = [_lift(a, op) for a in args[:n]]
    static = [_static(s) for s in args[n:]]
    for i, t in enumerate(tensors):
        if i not in rule.int_args:
            _require_float(t, op)
    if rule.elementwise and len(tensors) > 1:
        _elementwise_shape(op, tensors)
    eager = recorder().eager
    if eager is None:
        expr = head(*[t.expr for t in tensors], *static)
        node = expr if isinstance(expr, head) else None
    else:  # the oracle: the rule's own NumPy evaluation, the shape rule read off the static args
        expr = np.asarray(rule.eager(*[t.expr for t in tensors], *[eager.static(v) for v in static]))
        node = SimpleNamespace(args=tuple(t.expr for t in tensors) + tuple(static))
    try:
        shape = rule.shape_of(node, [t.shape for t in tensors]) if node is not None else \
            broadcast(*[t.shape for t in tensors])
    except ShapeMismatch as e:
        raise error(str(e), op=op, shapes=" and ".join(fmt(t.shape) for t in tensors),
                    fix="check the layer sizes and the order of the operands")
    out = _record(expr, shape)
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
        n = rule.n_tensor or 1
        static = [kwargs.pop(name, default) for name, default in rule.static]
        if kwargs:
            raise error(f"unexpected argument(s) {sorted(kwargs)}", op=rule.public,
                        fix=f"{rule.public} takes {n} tensor(s){' and ' + ', '.join(names) if names else ''}")
        if len(args) != n:
            raise error(f"takes {n} tensor argument(s), got {len(args)}", op=rule.public)
        return apply(rule.head, *args, *static, op=rule.public)
    fn.__name__ = rule.public
    fn.__doc__ = (rule.head.__doc__ or "").strip() or f"{rule.public}, elementwise"
    return fn


for _rule in P.PUBLIC.values():
    globals()[_rule.public] = _wrap(_rule)
    __all__.append(_rule.public)


def sqrt(x):
    """√x, elementwise."""
    x = _lift(x, "sqrt")
    _require_float(x, "sqrt")
    return _record(sp.sqrt(x.expr) if recorder().eager is None else np.sqrt(x.expr), x.shape)


# ---- declarations --------------------------------------------------------------------------

def _declare(name: str, shape, kind: str, **extra) -> Leaf:
    rec = recorder()
    what = {"param": "Param", "input": "Input", "labels": "Labels", "seed": "dropout",
            "state": "State"}[kind]
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", name):
        raise error(f"bad name {name!r}", op=what, fix="use letters, digits, _ and . (e.g. 'hidden.W')")
    if kind in ("input", "labels") and name in ("params", "workspace"):
        raise error(f"the input name {name!r} is taken: the generated functions have an argument of "
                    "that name", op=what, fix="rename the input (e.g. 'x')")
    if name in rec.leaves:
        prev = rec.leaves[name]
        raise error(f"duplicate name {name!r} (first declared on line {prev.line})", op=what,
                    fix="give every input and parameter its own name")
    shape = (shape,) if isinstance(shape, (int, str)) else tuple(shape)
    for d in shape:
        if isinstance(d, bool) or not (isinstance(d, str) and d.isidentifier() or isinstance(d, int) and d > 0):
            raise error(f"bad dimension {d!r} in shape {shape}", op=what,
                        fix="dimensions are positive ints or names of symbolic sizes like 'B'")
    if kind in ("param", "state") and any(isinstance(d, str) for d in shape):
        raise error(f"parameter {name!r} has a symbolic dimension {fmt(shape)}", op=what,
                    fix="parameters have fixed sizes; only inputs carry the batch dimension")
    symbol = sp.Symbol(name, real=True)
    leaf = Leaf(name=name, symbol=symbol, shape=shape, kind=kind, line=rec.line(), **extra)
    rec.leaves[name] = leaf
    rec.shapes.set(symbol, shape)
    return leaf


def Input(name: str, shape) -> Tensor:
    """A float input array; name symbolic dims with strings, e.g. ("B", 64)."""
    return _leaf_tensor(_declare(name, shape, "input"))


def Labels(name: str, shape, classes: int) -> Tensor:
    """Integer class labels in [0, classes)."""
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 2:
        raise error(f"classes must be an int >= 2, got {classes!r}", op="Labels")
    return _leaf_tensor(_declare(name, shape, "labels", classes=classes), "int")


def Param(name: str, shape=(), init="auto", dtype: str = "float") -> Tensor:
    """A trainable float parameter. init: a number, 'zeros', 'ones', 'he_normal',
    'xavier_normal', 'normal(std)', 'constant(v)' or 'auto' (set by the activation that follows)."""
    if dtype not in ("float", "float32", "float64"):
        raise error(f"parameter {name!r} has dtype {dtype!r}; parameters are trainable floats", op="Param",
                    fix="integers and booleans have no gradient: make it an Input or a Python "
                        "constant, or drop dtype (the module's float type is set at compile time)")
    if isinstance(init, bool):
        raise error(f"init of {name!r} is a boolean; parameters are trainable floats", op="Param",
                    fix="use a number such as 1.0 or a rule name such as 'zeros'")
    if isinstance(init, (int, float)):
        init = f"constant({float(init)!r})"
    if not isinstance(init, str) or not INIT_RULES.match(init):
        raise error(f"unknown init rule {init!r} for {name!r}", op="Param",
                    fix="use a number, 'zeros', 'ones', 'he_normal', 'xavier_normal', 'normal(0.01)' "
                        "or 'constant(0.5)'")
    return _leaf_tensor(_declare(name, shape, "param", init=init))


def State(name: str, shape=(), init: str = "zeros") -> Tensor:
    """A non-trainable array carried between steps (e.g. batch norm's running statistics): it is
    read like a parameter, never differentiated, and its new value is returned by loss_and_grad."""
    if not isinstance(init, str) or not INIT_RULES.match(init):
        raise error(f"unknown init rule {init!r} for state {name!r}", op="State")
    return _leaf_tensor(_declare(name, shape, "state", init=init))


def _leaf_tensor(leaf: Leaf, dtype: str = "float") -> Tensor:
    """The traced symbol of a leaf, or under the eager oracle the array bound to it (its symbolic
    dims are read off the first array that has them)."""
    eager = recorder().eager
    if eager is None:
        return Tensor(leaf.symbol, leaf.shape, dtype, leaf)
    if leaf.name not in eager.arrays:
        raise error(f"no array given for {leaf.name!r}", op="eager oracle",
                    fix=f"pass every parameter, state array and input (missing: {leaf.name!r})")
    value = np.asarray(eager.arrays[leaf.name], dtype=np.int64 if dtype == "int" else np.float64)
    if value.ndim != len(leaf.shape):
        raise error(f"{leaf.name!r} has shape {value.shape}, declared {fmt(leaf.shape)}", op="eager oracle")
    for d, n in zip(leaf.shape, value.shape):
        if isinstance(d, str):
            eager.dims.setdefault(d, n)
    if value.shape != eager.concrete(leaf.shape):
        raise error(f"{leaf.name!r} has shape {value.shape}, declared {fmt(leaf.shape)} with "
                    f"{eager.dims}", op="eager oracle")
    return Tensor(value, leaf.shape, dtype, leaf)


# ---- layers ----------------------------------------------------------------------------------

def linear(x: Tensor, n_out: int, name: str | None = None, bias: bool = True, init: str = "auto") -> Tensor:
    """x @ W + b with W: (n_in, n_out) and b: (n_out,), named `name.W` and `name.b`.

    The weight init follows the activation applied to the result: He-normal for the ReLU family,
    Xavier/Glorot for tanh, sigmoid and identity. Biases start at zero.
    """
    rec = recorder()
    x = _lift(x, "linear")
    if x.ndim not in (1, 2) or not isinstance(x.shape[-1], int):
        raise error(f"linear takes (N, features) or (features,), got {fmt(x.shape)}", op="linear",
                    fix="flatten or reshape the input so its last dimension is the feature size")
    if isinstance(n_out, bool) or not isinstance(n_out, int) or n_out < 1:
        raise error(f"n_out must be a positive int, got {n_out!r}", op="linear")
    if name is None:
        rec.layer_count += 1
        name = f"linear{rec.layer_count}"
    W = Param(f"{name}.W", (x.shape[-1], n_out), init=init)
    out = x @ W
    if bias:
        out = out + Param(f"{name}.b", (n_out,), init="zeros")
    _name_layer(rec, out, name, init)
    return out


def _name_layer(rec: Recorder, out: Tensor, name: str, init: str) -> None:
    """Remember a layer's pre-activation: its name in the generated code, and (init 'auto') the
    weight whose init the following activation decides."""
    if rec.eager is not None:
        return
    if init == "auto":
        rec.pending_init[out.expr] = (f"{name}.W", name)
    rec.hints.setdefault(out.expr, f"{name}_pre")


def mlp(x: Tensor, sizes, activation=None, name: str = "layer") -> Tensor:
    """A stack of linear layers with `activation` (default relu) between them, none after the last."""
    act = activation or globals()["relu"]
    for i, n in enumerate(sizes):
        x = linear(x, n, name=f"{name}{i + 1}")
        if i < len(sizes) - 1:
            x = act(x)
    return x


def conv1d(x: Tensor, channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
           dilation: int = 1, name: str | None = None, bias: bool = True, init: str = "auto") -> Tensor:
    """1-D convolution of x: (batch, length, in_channels) -> (batch, out_length, channels).

    Weights `name.W`: (kernel_size, in_channels, channels), He/Xavier by fan-in = kernel_size ·
    in_channels (set by the activation that follows); bias `name.b`: (channels,), zero. Computed as
    im2col (a strided window view) followed by one matrix product.
    """
    rec = recorder()
    x = _lift(x, "conv1d")
    if x.ndim != 3 or not isinstance(x.shape[2], int):
        raise error(f"conv1d takes (batch, length, channels), got {fmt(x.shape)}", op="conv1d",
                    fix='reshape a (B, L) signal with reshape(x, ("B", L, 1)); channels come last')
    for label, v, low in (("channels", channels, 1), ("kernel_size", kernel_size, 1), ("stride", stride, 1),
                          ("padding", padding, 0), ("dilation", dilation, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise error(f"{label} must be an int >= {low}, got {v!r}", op="conv1d")
    if name is None:
        rec.layer_count += 1
        name = f"conv{rec.layer_count}"
    c_in = x.shape[2]
    W = Param(f"{name}.W", (kernel_size, c_in, channels), init=init)
    taps = apply(P.windows, x, kernel_size, stride, padding, dilation, op="conv1d")
    patches = reshape(taps, (x.shape[0], taps.shape[1], kernel_size * c_in))
    out = patches @ reshape(W, (kernel_size * c_in, channels))
    if bias:
        out = out + Param(f"{name}.b", (channels,), init="zeros")
    _name_layer(rec, out, name, init)
    return out


def _pool(x, kernel_size, stride, padding, op):
    x = _lift(x, op)
    if x.ndim != 3:
        raise error(f"{op} takes (batch, length, channels), got {fmt(x.shape)}", op=op,
                    fix='channels come last: reshape(x, ("B", L, 1)) for a single-channel signal')
    return apply(P.windows, x, kernel_size, stride or kernel_size, padding, 1, op=op)


def max_pool1d(x, kernel_size: int, stride: int | None = None, padding: int = 0) -> Tensor:
    """Max over windows of `kernel_size` along the length (stride defaults to the window)."""
    return amax(_pool(x, kernel_size, stride, padding, "max_pool1d"), axis=2)


def avg_pool1d(x, kernel_size: int, stride: int | None = None, padding: int = 0) -> Tensor:
    """Mean over windows of `kernel_size` along the length (stride defaults to the window)."""
    return mean(_pool(x, kernel_size, stride, padding, "avg_pool1d"), axis=2)


def flatten(x) -> Tensor:
    """(batch, ...) -> (batch, features)."""
    x = _lift(x, "flatten")
    features = 1
    for d in x.shape[1:]:
        if not isinstance(d, int):
            raise error(f"flatten needs fixed sizes after the batch axis, got {fmt(x.shape)}", op="flatten")
        features *= d
    return reshape(x, (x.shape[0], features))


def dropout(x, p: float = 0.5) -> Tensor:
    """Training: zero each element with probability p and scale the rest by 1/(1-p), with a mask
    drawn from the integer input `seed` (the runtime passes one per step); inference: identity."""
    rec = recorder()
    x = _lift(x, "dropout")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
        raise error(f"p must be in [0, 1), got {p!r}", op="dropout")
    if p == 0:
        return x
    rec.dropouts += 1
    if rec.eager is not None:
        if not rec.eager.training:
            return x
        seed = rec.leaves.get("seed") or _leaf_tensor(_declare("seed", (), "seed"), "int").leaf
        mask = P.keep_mask.eager(rec.eager.arrays[seed.name], x.expr, p, rec.dropouts)
        return _record(x.expr * mask, x.shape)
    seed = rec.leaves.get("seed") or _declare("seed", (), "seed")
    mask = P.keep_mask(seed.symbol, x.expr, sp.Float(p), sp.Integer(rec.dropouts))
    rec.shapes(mask)
    out = _record(x.expr * mask, x.shape)
    rec.eval_subs[out.expr] = x.expr
    rec.hints.setdefault(out.expr, f"dropped{rec.dropouts}")  # a named node survives SymPy's flattening
    return out


def batch_norm(x, name: str, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalise each channel (the last axis) over the batch (and length) axes, then scale
    `name.gamma` and shift `name.beta`. Training uses the batch's statistics and returns updated
    running statistics (`name.running_mean`, `name.running_var`, state); inference uses those."""
    rec = recorder()
    x = _lift(x, "batch_norm")
    if x.ndim < 2:
        raise error(f"batch_norm takes (batch, ..., channels), got {fmt(x.shape)}", op="batch_norm")
    c = x.shape[-1]
    axes = tuple(range(x.ndim - 1))
    gamma = Param(f"{name}.gamma", (c,), init="ones")
    beta = Param(f"{name}.beta", (c,), init="zeros")
    running_mean = State(f"{name}.running_mean", (c,), init="zeros")
    running_var = State(f"{name}.running_var", (c,), init="ones")
    mu = mean(x, axes, keepdims=True)
    centred = x - mu
    var = mean(centred * centred, axes, keepdims=True)
    if rec.eager is not None and not rec.eager.training:
        return (x - running_mean) / sqrt(running_var + eps) * gamma + beta
    out = centred / sqrt(var + eps) * gamma + beta
    n = size(tuple(x.shape[a] for a in axes))
    new_mean = (1 - momentum) * running_mean + momentum * reshape(mu, (c,))
    new_var = (1 - momentum) * running_var + momentum * reshape(var, (c,)) * _constant(n / (n - 1))
    if rec.eager is not None:
        rec.eager.state.update({running_mean.leaf.name: new_mean.expr, running_var.leaf.name: new_var.expr})
        return out
    inference = (x - running_mean) / sqrt(running_var + eps) * gamma + beta
    rec.eval_subs[out.expr] = inference.expr
    rec.hints.setdefault(inference.expr, name)
    rec.state_updates[running_mean.leaf.name] = new_mean.expr
    rec.state_updates[running_var.leaf.name] = new_var.expr
    rec.hints.setdefault(out.expr, name)
    return out


def layer_norm(x, name: str, eps: float = 1e-5) -> Tensor:
    """Normalise each sample over its last axis, then scale `name.gamma` (ones) and shift
    `name.beta` (zeros)."""
    x = _lift(x, "layer_norm")
    c = x.shape[-1]
    gamma = Param(f"{name}.gamma", (c,), init="ones")
    beta = Param(f"{name}.beta", (c,), init="zeros")
    mu = mean(x, -1, keepdims=True)
    centred = x - mu
    var = mean(centred * centred, -1, keepdims=True)
    out = centred / sqrt(var + eps) * gamma + beta
    if recorder().eager is None:
        recorder().hints.setdefault(out.expr, name)
    return out


# ---- reductions and losses --------------------------------------------------------------------

def _reduce(head, op, x, axis, keepdims) -> Tensor:
    x = _lift(x, op)
    try:
        axes = normalize_axes(axis, x.ndim, op)
    except ShapeMismatch as e:
        raise error(str(e), op=op, shapes=fmt(x.shape), fix="axes count from 0 (or -1 for the last)")
    if not axes:
        return x
    return apply(head, x, P.axes_arg(axes), sp.Integer(int(bool(keepdims))), op=op)


def sum(x, axis=None, keepdims=False) -> Tensor:  # noqa: A001 - the model language's sum
    """Sum over all elements or along `axis`."""
    return _reduce(P.reduce_sum, "sum", x, axis, keepdims)


def mean(x, axis=None, keepdims=False) -> Tensor:
    """Mean over all elements or along `axis` (divides by the symbolic batch size where needed)."""
    x = _lift(x, "mean")
    axes = normalize_axes(axis, x.ndim, "mean")
    count = size(tuple(x.shape[a] for a in axes))
    return sum(x, axis, keepdims) / _constant(count) if count != 1 else sum(x, axis, keepdims)


def amax(x, axis=None, keepdims=False) -> Tensor:
    """Max over all elements or along `axis`; ties share the gradient evenly."""
    return _reduce(P.reduce_max, "amax", x, axis, keepdims)


def expand_dims(x, axis: int) -> Tensor:
    x = _lift(x, "expand_dims")
    axis = axis % (x.ndim + 1)
    return apply(P.expand_dims, x, (axis,))


def reshape(x, shape) -> Tensor:
    x = _lift(x, "reshape")
    shape = tuple(shape)
    if size(shape) != size(x.shape):
        raise error(f"cannot reshape {fmt(x.shape)} to {fmt(shape)}", op="reshape",
                    fix="the number of elements must stay the same")
    return apply(P.reshape, x, shape)


def logsumexp(x, axis=-1, keepdims=False) -> Tensor:
    """log Σ exp(x) along `axis`, stable: the max is subtracted first (and gets no gradient)."""
    x = _lift(x, "logsumexp")
    axes = normalize_axes(axis, x.ndim, "logsumexp")
    m = stop_gradient(amax(x, axes, keepdims=True))  # noqa: F821 - from the registry
    out = log(sum(exp(x - m), axes, keepdims=True)) + m  # noqa: F821
    return out if keepdims else apply(P.squeeze, out, axes)


def softmax(x, axis=-1) -> Tensor:
    """exp(x) / Σ exp(x) along `axis`, stable."""
    x = _lift(x, "softmax")
    axes = normalize_axes(axis, x.ndim, "softmax")
    e = exp(x - stop_gradient(amax(x, axes, keepdims=True)))  # noqa: F821
    return e / sum(e, axes, keepdims=True)


def log_softmax(x, axis=-1) -> Tensor:
    """x − logsumexp(x): the stable form of log(softmax(x))."""
    return x - logsumexp(x, axis, keepdims=True)


def pick(z, labels) -> Tensor:
    """z[i, labels[i]] for every row i."""
    return apply(P.pick, z, labels)


def one_hot(labels, classes: int) -> Tensor:
    return apply(P.one_hot, labels, classes)


def softmax_cross_entropy(logits, labels) -> Tensor:
    """Mean over the batch of −log softmax(logits)[label] = logsumexp(logits) − logits[label]."""
    op = "softmax_cross_entropy"
    logits, labels = _lift(logits, op), _lift(labels, op)
    if labels.dtype != "int":
        raise error("the second argument must be integer Labels", op=op,
                    fix='declare y = Labels("y", ("B",), classes=C)')
    if logits.ndim != 2 or labels.ndim != 1 or logits.shape[0] != labels.shape[0]:
        raise error("logits must be (N, C) and labels (N,)", op=op,
                    shapes=f"{fmt(logits.shape)} and {fmt(labels.shape)}",
                    fix="the logits' rows and the labels must share the batch dimension")
    leaf = labels.leaf
    if logits.shape[1] != leaf.classes:
        raise error(f"logits have {logits.shape[1]} columns but labels {leaf.name!r} have "
                    f"{leaf.classes} classes", op=op, shapes=f"{fmt(logits.shape)} and {fmt(labels.shape)}",
                    fix="make the last layer's width equal to the number of classes")
    return mean(logsumexp(logits, axis=1) - pick(logits, labels))


def mse(pred, target) -> Tensor:
    """Mean squared error over all elements; the shapes must match exactly."""
    pred, target = _lift(pred, "mse"), _lift(target, "mse")
    if pred.shape != target.shape:
        raise error("prediction and target shapes differ", op="mse",
                    shapes=f"{fmt(pred.shape)} and {fmt(target.shape)}",
                    fix="reshape so both have the same shape (no broadcasting in a loss)")
    return mean((pred - target) ** 2)
