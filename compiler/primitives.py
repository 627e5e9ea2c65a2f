"""The primitive registry: every op's SymPy head, shape rule, VJP and NumPy printing, side by side.

Elementwise math stays native SymPy (Add, Mul, Pow, exp, log, tanh) so SymPy simplifies it and
`cse` shares it; everything else is an `Op` (a `sympy.Function` subclass) that carries its own rules.
`REGISTRY` maps each head to a `Rule`; a head missing from it is an unsupported op.

One VJP signature for all: `vjp(node, g, shape) -> tuple` with one cotangent per tensor argument
(None = zero), where `node` is the forward answer and `shape(expr)` infers the shape of any expression.
Adding an activation means adding one `Op` class here; the model-file language picks it up by its
`public` name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import sympy as sp
from sympy.printing.precedence import PRECEDENCE

from .shapes import ShapeMismatch, broadcast, dim_expr, expr_dim, fmt, reduce_shape

# ---------------------------------------------------------------------------------------------
# Plain data: a rule per head, and how the registry test exercises it.


@dataclass(frozen=True)
class Check:
    """How the registry test exercises a primitive.

    `params` maps a parameter name to (shape, (low, high)) for sampling; `loss` is a model-file
    expression over them; `edges` are (x, derivative) known values for unary elementwise ops at their
    edge points (kinks, saturation), checked exactly by convention rather than by finite differences.
    """
    params: dict
    loss: str
    edges: tuple = ()
    labels: dict = field(default_factory=dict)  # name -> (shape, classes)


@dataclass(frozen=True)
class Rule:
    head: type
    shape_of: Callable          # (node, arg_shapes) -> shape
    vjp: Callable | None        # (node, g, shape) -> tuple of cotangents; None: not differentiable
    n_tensor: int | None = None  # leading tensor args (None: all); the rest are static
    elementwise: bool = True    # broadcasts its operands (NumPy rules)
    lazy: bool = True           # its VJP accepts a cotangent that is still lazily broadcast
    public: str | None = None   # name in the model-file language
    init_family: str | None = None  # "he" or "xavier": which init a preceding linear layer gets
    static: tuple = ()          # (name, default) of static args, for the model-file wrapper
    check: Check | None = None
    eager: Callable | None = None  # (*arrays, *static values) -> array: the oracle's NumPy evaluation

    def tensor_args(self, node: sp.Basic) -> tuple:
        return node.args if self.n_tensor is None else node.args[: self.n_tensor]


REGISTRY: dict[type, Rule] = {}


def rule_for(node: sp.Basic) -> Rule | None:
    for klass in type(node).__mro__:
        if klass in REGISTRY:
            return REGISTRY[klass]
    return None


def elementwise_shape(node, arg_shapes):
    return broadcast(*arg_shapes)


def fdiff_vjp(node, g, shape):
    """Elementwise VJP from SymPy's own scalar derivative (exp' = exp, tanh' = 1 - tanh**2)."""
    return tuple(g * node.fdiff(i + 1) for i in range(len(node.args)))


# ---------------------------------------------------------------------------------------------
# Native SymPy heads.

def _add_vjp(node, g, shape):
    return tuple(g for _ in node.args)


def _mul_vjp(node, g, shape):
    args = node.args
    return tuple(g * sp.Mul(*(args[:i] + args[i + 1:])) for i in range(len(args)))


def _pow_vjp(node, g, shape):
    """d(x**e): reuse the forward answer where that is exact (sqrt, reciprocal)."""
    base, e = node.args
    if e == sp.S.Half:
        d_base = g / (2 * nonzero(node))     # 0 at 0 by convention, not inf or 0/0
    elif e == -1:
        d_base = -g * node**2
    elif e.is_Integer:
        d_base = g * e * base ** (e - 1)
    else:
        d_base = g * e * node / nonzero(base)
    d_exp = None if e.is_Number else g * node * sp.log(base)
    return d_base, d_exp


def _native(head, vjp=fdiff_vjp, **kw):
    REGISTRY[head] = Rule(head=head, shape_of=elementwise_shape, vjp=vjp, **kw)


_native(sp.Add, _add_vjp, check=Check({"a": ((3, 2), (-1, 1)), "b": ((2,), (-1, 1))},
                                    "sum(tanh(a + b + 1) * (a - b))"))
_native(sp.Mul, _mul_vjp, check=Check({"a": ((3, 2), (-1, 1)), "b": ((2,), (-1, 1))},
                                    "sum(a * b * a * 3 / (b * b + 1))"))
_native(sp.Pow, _pow_vjp, check=Check({"a": ((3, 2), (0.5, 2)), "b": ((2,), (-1, 1))},
                                    "sum(a ** 3 + sqrt(a) + a ** 0.7 + 1 / a + a ** b + 2 ** b)",
                                    edges=()))
_native(sp.exp, public="exp", eager=np.exp, check=Check({"a": ((3, 2), (-2, 2))}, "sum(exp(a))",
                                          edges=((-800.0, 0.0), (0.0, 1.0))))
_native(sp.log, public="log", eager=np.log, check=Check({"a": ((3, 2), (0.2, 3))}, "sum(log(a))",
                                          edges=((1e-300, 1e300),)))
_native(sp.tanh, public="tanh", init_family="xavier", eager=np.tanh,
        check=Check({"a": ((3, 2), (-2, 2))}, "sum(tanh(a) * a)",
                    edges=((0.0, 1.0), (20.0, 0.0), (-20.0, 0.0))))
_native(sp.sign, vjp=lambda node, g, shape: (None,))
# SymPy writes sqrt(x**2) as Abs(x) for real x; its derivative is sign(x), 0 at 0
_native(sp.Abs, vjp=lambda node, g, shape: (g * sp.sign(node.args[0]),),
        check=Check({"a": ((3, 2), (-2, 2))}, "sum(sqrt(a * a) * a)"))


def sqrt(x):
    return sp.sqrt(x)


# ---------------------------------------------------------------------------------------------
# symgrad's own heads.

def register(cls):
    REGISTRY[cls] = Rule(
        head=cls, shape_of=cls.shape_of, vjp=(lambda node, g, shape: node.vjp(g, shape))
        if cls.differentiable else None, n_tensor=cls.n_tensor, elementwise=cls.elementwise,
        lazy=cls.elementwise or cls.lazy,
        public=cls.public, init_family=cls.init_family, static=cls.static, check=cls.check,
        eager=cls.eager)
    return cls


def _arg(printer, e, level=PRECEDENCE["Atom"], strict=True):
    return printer.parenthesize(e, level, strict=strict)


def _axes(node, i=1) -> tuple[int, ...]:
    return tuple(int(a) for a in node.args[i])


def axes_arg(axes) -> sp.Tuple:
    return sp.Tuple(*[sp.Integer(a) for a in axes])


def _axis_kw(axes: tuple[int, ...]) -> str:
    return f"axis={axes[0]}" if len(axes) == 1 else f"axis={axes}"


class Op(sp.Function):
    """Base of symgrad's heads. Tensor args come first (`n_tensor` of them); static args follow."""
    n_tensor = 1
    elementwise = False
    lazy = False  # structural VJPs get their cotangent at the node's full shape unless they opt in
    differentiable = True
    public: str | None = None
    init_family: str | None = None
    static: tuple = ()
    check: Check | None = None
    helper: str | None = None  # a module-level function the printed code calls
    eager = None  # staticmethod (*arrays, *static values) -> array, for the eager oracle
    precedence = PRECEDENCE["Func"]

    def _eval_is_real(self):
        return True

    @classmethod
    def shape_of(cls, node, arg_shapes):
        return broadcast(*arg_shapes[: cls.n_tensor])


class Elementwise(Op):
    elementwise = True

    def vjp(self, g, shape):
        return tuple(g * self.fdiff(i + 1) for i in range(self.n_tensor))


@register
class sigmoid(Elementwise):
    """σ(x) = 1/(1 + e^-x), computed as (1 + tanh(x/2))/2: one transcendental, no overflow; its
    derivative reuses the output."""
    public, init_family = "sigmoid", "xavier"
    check = Check({"a": ((3, 2), (-3, 3))}, "sum(sigmoid(a) * a)",
                  edges=((0.0, 0.25), (40.0, 0.0), (-800.0, 0.0)))
    precedence = PRECEDENCE["Add"]

    def fdiff(self, argindex=1):
        return self * (1 - self)

    @staticmethod
    def eager(x):
        e = np.exp(-np.abs(x))  # never overflows: e <= 1
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e))

    def _numpycode(self, p):
        return f"0.5*np.tanh(0.5*{_arg(p, self.args[0], PRECEDENCE['Mul'], False)}) + 0.5"


@register
class softplus(Elementwise):
    """log(1 + e^x) via logaddexp: finite for any x; derivative σ(x)."""
    public, init_family = "softplus", "he"
    check = Check({"a": ((3, 2), (-3, 3))}, "sum(softplus(a) * a)",
                  edges=((0.0, 0.5), (-800.0, 0.0), (800.0, 1.0)))

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])

    @staticmethod
    def eager(x):
        return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))

    def _numpycode(self, p):
        return f"np.logaddexp(0, {p._print(self.args[0])})"


@register
class select(Elementwise):
    """where(x > 0, a, b) (or x >= 0 with the static flag): routes the gradient of the ReLU family
    and of `where`. The unselected branch gets a zero cotangent (exactly 0 for the user's where(),
    whose branches may hold inf; a product with the 0/1 mask for the ReLU family)."""
    n_tensor = 3
    precedence = PRECEDENCE["Mul"]
    check = Check({"a": ((3, 2), (-2, 2)), "b": ((3, 2), (-2, 2)), "c": ((2,), (-2, 2))},
                  "sum(apply(P.select, a, b * b, c) * b) + sum(a * a)")

    def inclusive(self) -> bool:
        return len(self.args) > 3 and bool(self.args[3])

    def vjp(self, g, shape):
        x, flag = self.args[0], self.args[3:]
        return None, select(x, g, 0, *flag), select(x, 0, g, *flag)

    @staticmethod
    def eager(x, a, b, inclusive=0):
        return np.where(x >= 0 if inclusive else x > 0, a, b)

    def _numpycode(self, p):
        x, a, b = (p._print(e) for e in self.args[:3])
        if len(self.args) == 3 and not self.args[1].is_Number and self.args[2] == 0:
            # the ReLU router: a product with the mask is ~10x faster than np.where on random signs
            return f"{_arg(p, self.args[1], PRECEDENCE['Mul'], False)}*({x} > 0)"
        if len(self.args) == 3 and not self.args[2].is_Number and self.args[1] == 0:
            return f"{_arg(p, self.args[2], PRECEDENCE['Mul'], False)}*({x} <= 0)"
        if self.args[1].is_Number and self.args[2].is_Number:
            a = f"DTYPE({a})"  # two Python numbers would make an int64 or float64 array
        return f"np.where({x} {'>=' if self.inclusive() else '>'} 0, {a}, {b})"


@register
class positive(Elementwise):
    """The 0/1 mask x > 0 (backward only: the ReLU router applied in place)."""
    differentiable = False

    @staticmethod
    def eager(x):
        return (x > 0).astype(np.float64)

    def _numpycode(self, p):
        return f"({p._print(self.args[0])} > 0)"


@register
class unless_zero(Elementwise):
    """0 where the cotangent g is 0, else v: inside a where() branch, the VJP of a singular op
    (log, sqrt, 1/x) must not turn 0·inf or 0·NaN from an unselected position into NaN."""
    n_tensor, differentiable = 2, False

    @staticmethod
    def eager(g, v):
        return np.where(g == 0, 0.0, v)

    def _numpycode(self, p):
        g, v = p._print(self.args[0]), p._print(self.args[1])
        return f"np.where({g} == 0, 0, {v})"


def is_singular(node) -> bool:
    """Ops whose derivative is infinite or undefined somewhere in the reals."""
    return isinstance(node, sp.log) or (isinstance(node, sp.Pow) and not (
        node.exp.is_Integer and node.exp >= 0))


@register
class nonzero(Elementwise):
    """x with zeros replaced by +inf, so g / nonzero(x) is 0 where x is 0: the convention that keeps
    sqrt(x² + y²) and x**0.5 finite at 0 (backward only)."""
    differentiable = False

    @staticmethod
    def eager(x):
        return np.where(x == 0, np.inf, x)

    def _numpycode(self, p):
        x = p._print(self.args[0])
        return f"np.where({x} == 0, np.inf, {x})"


@register
class relu(Elementwise):
    """max(x, 0); relu'(0) = 0 by convention."""
    public, init_family = "relu", "he"
    check = Check({"a": ((3, 2), (-2, 2))}, "sum(relu(a) * a)", edges=((0.0, 0.0), (1.0, 1.0)))

    def fdiff(self, argindex=1):
        return select(self.args[0], 1, 0)

    def vjp(self, g, shape):
        return (select(self.args[0], g, 0),)

    @staticmethod
    def eager(x):
        return np.where(x > 0, x, 0.0)

    def _numpycode(self, p):
        return f"np.maximum({p._print(self.args[0])}, 0)"


@register
class leaky_relu(Elementwise):
    """x for x > 0, alpha·x otherwise; the derivative at 0 is alpha."""
    public, init_family, static = "leaky_relu", "he", (("alpha", 0.01),)
    check = Check({"a": ((3, 2), (-2, 2))}, "sum(leaky_relu(a, alpha=0.1) * a)",
                  edges=((0.0, 0.01), (2.0, 1.0)))

    def fdiff(self, argindex=1):
        return select(self.args[0], 1, self.args[1])

    def vjp(self, g, shape):
        return (select(self.args[0], g, self.args[1] * g),)

    @staticmethod
    def eager(x, alpha):
        return np.where(x > 0, x, alpha * x)

    def _numpycode(self, p):
        x, alpha = p._print(self.args[0]), p._print(self.args[1])
        return f"np.where({x} > 0, {x}, {alpha} * {x})"


@register
class elu(Elementwise):
    """x for x > 0, alpha·(e^x − 1) otherwise; its derivative there reuses the output: elu + alpha."""
    public, init_family, static = "elu", "he", (("alpha", 1.0),)
    check = Check({"a": ((3, 2), (-2, 2))}, "sum(elu(a) * a)",
                  edges=((0.0, 1.0), (-800.0, 0.0)))

    def fdiff(self, argindex=1):
        return select(self.args[0], 1, self + self.args[1])

    def vjp(self, g, shape):
        return (select(self.args[0], g, g * (self + self.args[1])),)

    @staticmethod
    def eager(x, alpha):
        return np.where(x > 0, x, alpha * (np.exp(np.minimum(x, 0)) - 1))

    def _numpycode(self, p):
        x, alpha = p._print(self.args[0]), p._print(self.args[1])
        return f"np.where({x} > 0, {x}, {alpha} * np.expm1(np.minimum({x}, 0)))"


@register
class absolute(Elementwise):
    """|x| with |x|'(0) = 0 (sign, never DiracDelta or complex parts)."""
    public = "abs"
    check = Check({"a": ((3, 2), (-2, 2))}, "sum(abs(a) * a)", edges=((0.0, 0.0), (-1.0, -1.0)))

    def fdiff(self, argindex=1):
        return sp.sign(self.args[0])

    @staticmethod
    def eager(x):
        return np.where(x < 0, -x, x)

    def _numpycode(self, p):
        return f"np.abs({p._print(self.args[0])})"


@register
class maximum(Elementwise):
    """Elementwise max: the gradient goes to the larger input; a tie splits it evenly."""
    public, n_tensor = "maximum", 2
    check = Check({"a": ((3, 2), (-2, 2)), "b": ((2,), (-2, 2))}, "sum(maximum(a, b) * a)")

    def fdiff(self, argindex=1):
        s = sp.sign(self.args[0] - self.args[1])
        return (1 + s) / 2 if argindex == 1 else (1 - s) / 2

    @staticmethod
    def eager(a, b):
        return np.maximum(a, b)

    def _numpycode(self, p):
        return f"np.maximum({p._print(self.args[0])}, {p._print(self.args[1])})"


@register
class minimum(Elementwise):
    """Elementwise min: the gradient goes to the smaller input; a tie splits it evenly."""
    public, n_tensor = "minimum", 2
    check = Check({"a": ((3, 2), (-2, 2)), "b": ((2,), (-2, 2))}, "sum(minimum(a, b) * a)")

    def fdiff(self, argindex=1):
        s = sp.sign(self.args[0] - self.args[1])
        return (1 - s) / 2 if argindex == 1 else (1 + s) / 2

    @staticmethod
    def eager(a, b):
        return np.minimum(a, b)

    def _numpycode(self, p):
        return f"np.minimum({p._print(self.args[0])}, {p._print(self.args[1])})"


@register
class equal(Elementwise):
    """1 where a == b else 0, in the module's dtype: the mask that routes a max's gradient."""
    n_tensor, differentiable = 2, False

    @staticmethod
    def eager(a, b):
        return (a == b).astype(np.float64)

    def _numpycode(self, p):
        return f"({p._print(self.args[0])} == {p._print(self.args[1])}).astype(DTYPE)"


@register
class keep_mask(Op):
    """Dropout's mask for `x`: 0 with probability p, else 1/(1-p), drawn from stream k of the
    integer `seed` input so a step is reproducible. No gradient flows into the mask."""
    n_tensor = 2
    lazy = True
    check = Check({"a": ((3, 4), (-1, 1))}, "sum(tanh(dropout(a, 0.5)) * a) + sum(dropout(a * a, 0.2))")
    helper = ("def _keep_mask(seed, stream, shape, p):\n"
              "    \"\"\"Dropout mask: 0 with probability p, else 1/(1 - p); reproducible per (seed, stream).\"\"\"\n"
              "    keep = np.random.default_rng([int(seed), stream]).random(shape) >= p\n"
              "    return keep.astype(DTYPE) / (1 - p)\n")

    @classmethod
    def shape_of(cls, node, arg_shapes):
        return arg_shapes[1]

    def vjp(self, g, shape):
        return None, None

    @staticmethod
    def eager(seed, x, p, stream):
        """The mask is defined by this draw: the generated module makes the same one."""
        rng = np.random.default_rng([int(seed), int(stream)])
        return (rng.random(np.shape(x)) >= p) / (1 - p)

    def _numpycode(self, p):
        p.helpers.add(type(self))
        seed, x = (p._print(a) for a in self.args[:2])
        return f"_keep_mask({seed}, {int(self.args[3])}, {_arg(p, self.args[1])}.shape, {p._print(self.args[2])})"


@register
class stop_gradient(Elementwise):
    """The identity whose gradient is zero (e.g. the max subtracted inside logsumexp)."""
    public = "stop_gradient"

    def vjp(self, g, shape):
        return (None,)

    @staticmethod
    def eager(x):
        return x

    def _numpycode(self, p):
        return p._print(self.args[0])


# ---- structural ops -----------------------------------------------------------------------------

@register
class matmul(Op):
    """a @ b for matrices and vectors."""
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
        return f"{_arg(p, self.args[0], level, False)} @ {_arg(p, self.args[1], level, False)}"


@register
class contract_leading(Op):
    """Σ over every leading axis of aᵀ·g: (…, n) and (…, m) -> (n, m), the weight gradient of a
    matrix applied to stacked rows."""
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


@register
class windows(Op):
    """(N, L, C) -> (N, L_out, k, C): the k taps each output position of a 1-D convolution or
    pooling reads (static: k, stride, padding, dilation). A strided view; its VJP adds back."""
    helper = ("def _windows(x, k, stride, padding, dilation):\n"
              "    \"\"\"(N, L, C) -> (N, L_out, k, C): the taps each output position reads (a view).\"\"\"\n"
              "    if padding:\n"
              "        x = np.pad(x, ((0, 0), (padding, padding), (0, 0)))\n"
              "    span = dilation * (k - 1) + 1\n"
              "    view = np.lib.stride_tricks.sliding_window_view(x, span, axis=1)\n"
              "    return view[:, ::stride, :, ::dilation].transpose(0, 1, 3, 2)\n")
    check = Check({"a": ((2, 7, 3), (-1, 1))},
                  "sum(tanh(apply(P.windows, a, 3, 2, 1, 1)) * apply(P.windows, a, 3, 2, 1, 1))")

    @staticmethod
    def out_length(length: int, k: int, stride: int, padding: int, dilation: int) -> int:
        return (length + 2 * padding - dilation * (k - 1) - 1) // stride + 1

    @classmethod
    def shape_of(cls, node, arg_shapes):
        x = arg_shapes[0]
        k, stride, padding, dilation = (int(v) for v in node.args[1:5])
        if len(x) != 3 or not isinstance(x[1], int):
            raise ShapeMismatch(f"expects (batch, length, channels) with a fixed length, got {fmt(x)}")
        out = cls.out_length(x[1], k, stride, padding, dilation)
        if out < 1:
            raise ShapeMismatch(f"a window of {k} taps (dilation {dilation}) does not fit a length of "
                                f"{x[1]} with padding {padding}")
        return (x[0], out, k, x[2])

    def vjp(self, g, shape):
        length = shape(self.args[0])[1]
        return (unwindows(g, sp.Integer(length), *self.args[1:5]),)

    @staticmethod
    def eager(x, k, stride, padding, dilation):
        x = np.concatenate([np.zeros_like(x[:, :padding]), x, np.zeros_like(x[:, :padding])], axis=1)
        n_out = windows.out_length(x.shape[1] - 2 * padding, k, stride, padding, dilation)
        return np.stack([np.stack([x[:, i * stride + j * dilation] for j in range(k)], axis=1)
                         for i in range(n_out)], axis=1)

    def _numpycode(self, p):
        p.helpers.add(type(self))
        args = ", ".join(str(int(v)) for v in self.args[1:5])
        return f"_windows({p._print(self.args[0])}, {args})"


@register
class unwindows(Op):
    """The adjoint of `windows`: each tap's gradient is added back where it was read."""
    helper = ("def _unwindows(g, length, k, stride, padding, dilation):\n"
              "    \"\"\"Adjoint of _windows: (N, L_out, k, C) -> (N, length, C), overlaps summed.\"\"\"\n"
              "    n, l_out, _, c = g.shape\n"
              "    out = np.zeros((n, length + 2 * padding, c), dtype=g.dtype)\n"
              "    for j in range(k):\n"
              "        start = j * dilation\n"
              "        out[:, start:start + stride * (l_out - 1) + 1:stride, :] += g[:, :, j, :]\n"
              "    return out[:, padding:padding + length, :]\n")
    check = Check({"a": ((2, 4, 3, 2), (-1, 1))},
                  "sum(tanh(apply(P.unwindows, a, 8, 3, 2, 1, 1)))")

    @classmethod
    def shape_of(cls, node, arg_shapes):
        g = arg_shapes[0]
        length, k, stride, padding, dilation = (int(v) for v in node.args[1:6])
        if len(g) != 4 or windows.out_length(length, k, stride, padding, dilation) != g[1]:
            raise ShapeMismatch(f"unwindows: {fmt(g)} are not the windows of a length of {length}")
        return (g[0], length, g[3])

    def vjp(self, g, shape):
        return (windows(g, *self.args[2:6]),)

    @staticmethod
    def eager(g, length, k, stride, padding, dilation):
        out = np.zeros((g.shape[0], length + 2 * padding, g.shape[3]))
        for i in range(g.shape[1]):
            for j in range(k):
                out[:, i * stride + j * dilation] += g[:, i, j]
        return out[:, padding:padding + length]

    def _numpycode(self, p):
        p.helpers.add(type(self))
        args = ", ".join(str(int(v)) for v in self.args[1:6])
        return f"_unwindows({p._print(self.args[0])}, {args})"


@register
class outer(Op):
    """Outer product of two vectors (the VJP of a matrix-vector product)."""
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


@register
class transpose(Op):
    """Reverse the axes (`.T`)."""
    check = Check({"a": ((3, 2), (-1, 1)), "b": ((3, 4), (-1, 1))}, "sum(tanh(a.T @ b))")

    @classmethod
    def shape_of(cls, node, arg_shapes):
        return tuple(reversed(arg_shapes[0]))

    def vjp(self, g, shape):
        return (transpose(g),)

    @staticmethod
    def eager(x):
        return np.transpose(x)

    def _numpycode(self, p):
        return f"{_arg(p, self.args[0])}.T"


@register
class reduce_sum(Op):
    """Sum over `axes` (static), optionally keeping them as size-1 dims."""
    check = Check({"a": ((3, 4), (-1, 1))},
                  "sum(tanh(sum(a, axis=1))) + sum(sigmoid(sum(a, axis=0, keepdims=True)))"
                  " + sum(a) * sum(a)")

    @classmethod
    def shape_of(cls, node, arg_shapes):
        return reduce_shape(arg_shapes[0], _axes(node), bool(node.args[2]))

    def vjp(self, g, shape):
        axes, keep = _axes(self), bool(self.args[2])
        if keep or len(axes) == len(shape(self.args[0])):
            return (g,)  # broadcasts back lazily
        return (expand_dims(g, axes_arg(axes)),)

    def as_product(self, shape_of):
        """sum(g, axis=0) of a matrix as ones(rows) @ g (see `ones`), or None."""
        operand_shape = shape_of(self.args[0])
        if _axes(self) == (0,) and not self.args[2] and len(operand_shape) == 2:
            return matmul(ones(dim_expr(operand_shape[0])), self.args[0])
        return None

    @staticmethod
    def eager(x, axes, keep):
        return np.sum(x, axis=tuple(axes), keepdims=bool(keep))

    def _numpycode(self, p):
        x, axes, keep = _arg(p, self.args[0]), _axes(self), bool(self.args[2])
        if axes == tuple(range(len(axes))) and not keep and len(axes) == p.rank(self.args[0]):
            return f"{x}.sum()"
        return f"{x}.sum({_axis_kw(axes)}{', keepdims=True' if keep else ''})"


@register
class reduce_max(Op):
    """Max over `axes`; the gradient is routed to the maxima, split evenly among ties."""
    check = Check({"a": ((3, 4), (-1, 1))},
                  "sum(tanh(amax(a, axis=1))) + amax(a) + sum(amax(a, axis=0, keepdims=True) * a)")

    @classmethod
    def shape_of(cls, node, arg_shapes):
        return reduce_shape(arg_shapes[0], _axes(node), bool(node.args[2]))

    def vjp(self, g, shape):
        x, axes, keep = self.args[0], _axes(self), bool(self.args[2])
        m = self
        if not keep and len(axes) < len(shape(x)):
            m, g = expand_dims(self, axes_arg(axes)), expand_dims(g, axes_arg(axes))
        mask = equal(x, m)
        return (g * mask / reduce_sum(mask, axes_arg(axes), sp.Integer(1)),)

    @staticmethod
    def eager(x, axes, keep):
        return np.max(x, axis=tuple(axes), keepdims=bool(keep))

    def _numpycode(self, p):
        x, axes, keep = _arg(p, self.args[0]), _axes(self), bool(self.args[2])
        if not keep and len(axes) == p.rank(self.args[0]):
            return f"{x}.max()"
        return f"{x}.max({_axis_kw(axes)}{', keepdims=True' if keep else ''})"


@register
class expand_dims(Op):
    """Insert size-1 axes at `axes` (positions in the result)."""
    check = Check({"a": ((3,), (-1, 1)), "b": ((3, 2), (-1, 1))},
                  "sum(tanh(expand_dims(a, 1) * b))")

    @classmethod
    def shape_of(cls, node, arg_shapes):
        out = list(arg_shapes[0])
        for a in _axes(node):
            out.insert(a, 1)
        return tuple(out)

    lazy = True

    def vjp(self, g, shape):
        if len(shape(g)) == len(shape(self)):  # lazily broadcast or not: summing size-1 axes is exact
            return (reduce_sum(g, self.args[1], sp.Integer(0)),)
        if shape(g) == ():
            return (g,)
        return (squeeze(broadcast_to(g, sp.Tuple(*[dim_expr(d) for d in shape(self)])), self.args[1]),)

    @staticmethod
    def eager(x, axes):
        return np.expand_dims(x, tuple(axes))

    def _numpycode(self, p):
        rank = p.rank(self)
        index = ", ".join("None" if i in _axes(self) else ":" for i in range(rank))
        return f"{_arg(p, self.args[0])}[{index}]"


@register
class squeeze(Op):
    """Drop size-1 axes at `axes` (the VJP of expand_dims)."""
    check = Check({"a": ((3, 1), (-1, 1))}, "sum(tanh(apply(P.squeeze, a, (1,))))")

    @classmethod
    def shape_of(cls, node, arg_shapes):
        shape, axes = arg_shapes[0], _axes(node)
        if any(shape[a] != 1 for a in axes):
            raise ShapeMismatch(f"squeeze: axes {axes} of {fmt(shape)} are not all of size 1")
        return tuple(d for i, d in enumerate(shape) if i not in axes)

    lazy = True

    def vjp(self, g, shape):
        if shape(g) == ():  # a scalar cotangent broadcasts to the operand as it is
            return (g,)
        if shape(g) != shape(self):
            g = broadcast_to(g, sp.Tuple(*[dim_expr(d) for d in shape(self)]))
        return (expand_dims(g, self.args[1]),)

    @staticmethod
    def eager(x, axes):
        return np.squeeze(x, tuple(axes))

    def _numpycode(self, p):
        rank = p.rank(self.args[0])
        index = ", ".join("0" if i in _axes(self) else ":" for i in range(rank))
        return f"{_arg(p, self.args[0])}[{index}]"


@register
class broadcast_to(Op):
    """Materialise a lazily broadcast value at a full shape (static Tuple of dims)."""
    check = Check({"a": ((3, 1), (-1, 1))},
                  "sum(tanh(apply(P.broadcast_to, a, (3, 4))) * apply(P.broadcast_to, a, (3, 4)))")

    @classmethod
    def shape_of(cls, node, arg_shapes):
        target = tuple(expr_dim(d) for d in node.args[1])
        if broadcast(arg_shapes[0], target) != target:
            raise ShapeMismatch(f"cannot broadcast {fmt(arg_shapes[0])} to {fmt(target)}")
        return target

    def vjp(self, g, shape):
        return (unbroadcast(g, shape(g), shape(self.args[0])),)

    @staticmethod
    def eager(x, shape):
        return np.broadcast_to(x, tuple(shape)) * 1.0

    def _numpycode(self, p):
        dims = tuple(p._print(d) for d in self.args[1])
        text = "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"
        if self.args[0].is_Number:  # a constant cotangent: a real array in the module's dtype
            return f"np.full({text}, {p._print(self.args[0])}, dtype=DTYPE)"
        return f"np.broadcast_to({p._print(self.args[0])}, {text})"


@register
class reshape(Op):
    """Same elements, new shape (static Tuple of dims)."""
    check = Check({"a": ((3, 4), (-1, 1))}, "sum(tanh(reshape(a, (2, 6))) * reshape(a, (2, 6)))")

    @classmethod
    def shape_of(cls, node, arg_shapes):
        return tuple(expr_dim(d) for d in node.args[1])

    def vjp(self, g, shape):
        return (reshape(g, sp.Tuple(*[dim_expr(d) for d in shape(self.args[0])])),)

    @staticmethod
    def eager(x, shape):
        return np.reshape(x, tuple(shape))

    def _numpycode(self, p):
        dims = ", ".join(p._print(d) for d in self.args[1])
        return f"{_arg(p, self.args[0])}.reshape(({dims}{',' if len(self.args[1]) == 1 else ''}))"


@register
class pick(Op):
    """z[i, labels[i]] for every row i: the logit of each sample's true class."""
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
            g = broadcast_to(g, sp.Tuple(*[dim_expr(d) for d in shape(self)]))
        return onehot * expand_dims(g, axes_arg((1,))), None

    @staticmethod
    def eager(z, labels):
        return np.take_along_axis(z, labels[:, None], axis=1)[:, 0]

    def _numpycode(self, p):
        z, labels = _arg(p, self.args[0]), p._print(self.args[1])
        return f"{z}[np.arange({p.shapes(self.args[1])[0]}), {labels}]"


@register
class one_hot(Op):
    """Rows of the identity selected by integer labels, in the module's dtype."""
    differentiable = False

    @classmethod
    def shape_of(cls, node, arg_shapes):
        return tuple(arg_shapes[0]) + (expr_dim(node.args[1]),)

    @staticmethod
    def eager(labels, classes):
        return (labels[..., None] == np.arange(classes)).astype(np.float64)

    def _numpycode(self, p):
        return f"np.eye({p._print(self.args[1])}, dtype=DTYPE)[{p._print(self.args[0])}]"

    @staticmethod
    def split_scaled(expr, shapes):
        """`c * one_hot(y, C)` with a scalar c -> (one_hot node, c), else None."""
        hots = [f for f in sp.Mul.make_args(expr) if isinstance(f, one_hot)]
        if len(hots) != 1:
            return None
        c = expr / hots[0]
        return (hots[0], c) if shapes(c) == () else None

    def update_in_place(self, p, buffer: str, op: str, c) -> str:
        """`buffer op= c * one_hot(y)` touches one entry per row: `buffer[rows, y] op= c` instead of
        building and adding a (N, C) one-hot matrix (the softmax cross-entropy backward)."""
        labels = self.args[0]
        rows = p.shapes(labels)[0]
        return f"{buffer}[np.arange({rows}), {p._print(labels)}] {op}= {p._print(c)}"


@register
class ones(Op):
    """A vector of n ones: `ones(B) @ g` sums the rows of g in BLAS, about twice as fast as
    g.sum(axis=0) from 32 columns up; one vector serves every bias gradient of a step."""
    n_tensor, differentiable = 0, False

    @classmethod
    def shape_of(cls, node, arg_shapes):
        return (expr_dim(node.args[0]),)

    @staticmethod
    def eager(n):
        return np.ones(n)

    def _numpycode(self, p):
        return f"np.ones({p._print(self.args[0])}, dtype=DTYPE)"


# ---------------------------------------------------------------------------------------------
# The one place a shape is restored after SymPy's scalar algebra, and the one place broadcasting
# is undone.

class ShapeChanged(ShapeMismatch):
    """A rewrite produced a value that cannot stand for the node it replaces (internal error)."""


def conform(expr, shape, shapes):
    """`expr` with exactly `shape`: SymPy simplifies as if every symbol were a scalar, so
    `(a + b) - b` becomes `a` and `w - w + 1` becomes `1`, dropping the broadcast to `b`'s or `w`'s
    shape. Values are still right position by position, so an explicit broadcast restores the
    shape; a result that does not broadcast to `shape` is a compiler bug and raises ShapeChanged."""
    have = tuple(shapes(expr))
    shape = tuple(shape)
    if have == shape:
        return expr
    try:
        ok = broadcast(have, shape) == shape
    except ShapeMismatch:
        ok = False
    if not ok:
        raise ShapeChanged(f"a rewrite turned a value of shape {fmt(shape)} into one of shape "
                           f"{fmt(have)}: {expr}")
    fixed = broadcast_to(expr, sp.Tuple(*[dim_expr(d) for d in shape]))
    shapes(fixed)
    return fixed


def unbroadcast(g, g_shape, target, logical=None):
    """Sum the cotangent `g` over the axes that broadcasting added or stretched, so it fits `target`.

    `g` may itself be lazily broadcast: its physical shape `g_shape` stands for `logical` (the
    consumer's shape). An axis to be summed that `g` does not physically have (or has as size 1)
    is a sum of identical values, i.e. a multiplication by its length. Axes where the target keeps
    size 1 are summed with keepdims; the result may stay lazily broadcast against `target`.
    """
    logical = tuple(g_shape if logical is None else logical)
    off, lead = len(logical) - len(g_shape), len(logical) - len(target)
    drop, keep, scale = [], [], sp.Integer(1)
    for i, dim in enumerate(logical):
        p = i - off
        physical = p >= 0 and g_shape[p] != 1
        if i < lead:                        # axis absent from the target: sum it away
            if p >= 0:
                drop.append(p)
            if not physical:
                scale *= dim_expr(dim)
        elif target[i - lead] == 1 and dim != 1:   # stretched from 1: sum, keep the axis
            if physical:
                keep.append(p - sum(1 for q in drop if q < p))
            else:
                scale *= dim_expr(dim)
    if drop:
        g = reduce_sum(g, axes_arg(drop), sp.Integer(0))
    if keep:
        g = reduce_sum(g, axes_arg(keep), sp.Integer(1))
    return g * scale if scale != 1 else g


PUBLIC: dict[str, Rule] = {r.public: r for r in REGISTRY.values() if r.public}
