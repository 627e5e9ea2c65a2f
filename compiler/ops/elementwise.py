"""Elementwise ops: SymPy's native heads (so SymPy simplifies them and `cse` shares them) and
symgrad's activations, masks and routers. Each broadcasts its operands by NumPy's rules.

Adding an activation means adding one `Elementwise` class here: its derivative (`fdiff`, or `vjp`
where the output can be reused), its NumPy code, its eager evaluation, its math and its check. The
model-file language picks it up by its `public` name.
"""
from __future__ import annotations

import numpy as np
import sympy as sp
from sympy.printing.precedence import PRECEDENCE

from .rule import Check, Elementwise, arg, native, register

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


def _pow_temp(node) -> str:
    return {2: "sq", -1: "inv", sp.S.Half: "sqrt"}.get(node.exp, "pow")


def _operands_in_place(op: str):
    """`a + b + c` can be computed as `a += b + c` (or `a *= b * c`) into any operand's buffer."""
    def forms(node):
        return tuple((a, op, node.func(*[b for b in node.args if b is not a])) for a in node.args)
    return forms


def _pow_eager(a, b):
    return np.power(a, b)


native(sp.Add, temp="plus", vjp=_add_vjp, eager=np.add, in_place=_operands_in_place("+"),
       check=Check({"a": ((3, 2), (-1, 1)), "b": ((2,), (-1, 1))}, "sum(tanh(a + b + 1) * (a - b))"))
native(sp.Mul, temp="times", vjp=_mul_vjp, eager=np.multiply, in_place=_operands_in_place("*"),
       check=Check({"a": ((3, 2), (-1, 1)), "b": ((2,), (-1, 1))}, "sum(a * b * a * 3 / (b * b + 1))"))
native(sp.Pow, temp=_pow_temp, vjp=_pow_vjp, eager=_pow_eager,
       singular=lambda node: not (node.exp.is_Integer and node.exp >= 0),
       check=Check({"a": ((3, 2), (0.5, 2)), "b": ((2,), (-1, 1))},
                   "sum(a ** 3 + sqrt(a) + a ** 0.7 + 1 / a + a ** b + 2 ** b)"))
native(sp.exp, temp="exp", public="exp", eager=np.exp,
       check=Check({"a": ((3, 2), (-2, 2))}, "sum(exp(a))", edges=((-800.0, 0.0), (0.0, 1.0))))
native(sp.log, temp="log", public="log", eager=np.log, singular=lambda node: True,
       check=Check({"a": ((3, 2), (0.2, 3))}, "sum(log(a))", edges=((1e-300, 1e300),)))
native(sp.tanh, temp="tanh", public="tanh", init_family="xavier", eager=np.tanh,
       check=Check({"a": ((3, 2), (-2, 2))}, "sum(tanh(a) * a)",
                   edges=((0.0, 1.0), (20.0, 0.0), (-20.0, 0.0))))
native(sp.sign, temp="sign", vjp=lambda node, g, shape: (None,), eager=np.sign)
# SymPy writes sqrt(x**2) as Abs(x) for real x; its derivative is sign(x), 0 at 0
native(sp.Abs, temp="abs", vjp=lambda node, g, shape: (g * sp.sign(node.args[0]),), eager=np.abs,
       check=Check({"a": ((3, 2), (-2, 2))}, "sum(sqrt(a * a) * a)"))


# ---------------------------------------------------------------------------------------------
# symgrad's own elementwise heads.

@register
class sigmoid(Elementwise):
    """σ(x) = 1/(1 + e^-x), computed as (1 + tanh(x/2))/2: one transcendental, no overflow; its
    derivative reuses the output."""
    temp, math = "sigmoid", ("σ({0})", r"\sigma\left({0}\right)")
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
        return f"0.5*np.tanh(0.5*{arg(p, self.args[0], PRECEDENCE['Mul'], False)}) + 0.5"


# GELU's tanh approximation (as in GPT-2 and torch's approximate="tanh"): NumPy has no erf
_GELU_C, _GELU_K = sp.Float(0.7978845608028654), sp.Float(0.044715)   # sqrt(2/pi), cubic term


@register
class gelu(Elementwise):
    """x·Φ(x) ≈ x/2·(1 + tanh(√(2/π)(x + 0.044715x³))): the smooth ReLU of transformers."""
    temp, math = "gelu", ("gelu({0})", r"\operatorname{{GELU}}\left({0}\right)")
    public, init_family = "gelu", "he"
    check = Check({"a": ((3, 2), (-3, 3))}, "sum(gelu(a) * a)",
                  edges=((0.0, 0.5), (20.0, 1.0), (-20.0, 0.0)))

    def fdiff(self, argindex=1):
        x = self.args[0]
        t = sp.tanh(_GELU_C * (x + _GELU_K * x**3))
        return (1 + t) / 2 + x * (1 - t**2) * _GELU_C * (1 + 3 * _GELU_K * x**2) / 2

    @staticmethod
    def eager(x):
        return 0.5 * x * (1 + np.tanh(float(_GELU_C) * (x + float(_GELU_K) * x**3)))

    def _numpycode(self, p):
        x = arg(p, self.args[0], PRECEDENCE["Pow"], False)
        return f"0.5*{x}*(1 + np.tanh({float(_GELU_C)!r}*({x} + {float(_GELU_K)!r}*{x}**3)))"


@register
class silu(Elementwise):
    """x·σ(x) (swish): its derivative σ(x)·(1 + x·(1 − σ(x))) reuses the sigmoid."""
    temp, math = "silu", ("silu({0})", r"\operatorname{{SiLU}}\left({0}\right)")
    public, init_family = "silu", "he"
    check = Check({"a": ((3, 2), (-3, 3))}, "sum(silu(a) * a)",
                  edges=((0.0, 0.5), (40.0, 1.0), (-800.0, 0.0)))

    def fdiff(self, argindex=1):
        x = self.args[0]
        s = sigmoid(x)
        return s * (1 + x * (1 - s))

    @staticmethod
    def eager(x):
        return x * sigmoid.eager(x)

    def _numpycode(self, p):
        x = arg(p, self.args[0], PRECEDENCE["Mul"], False)
        return f"{x}*(0.5*np.tanh(0.5*{x}) + 0.5)"


@register
class softplus(Elementwise):
    """log(1 + e^x) via logaddexp: finite for any x; derivative σ(x)."""
    temp, math = "softplus", ("softplus({0})", r"\operatorname{{softplus}}\left({0}\right)")
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
class relu(Elementwise):
    """max(x, 0); relu'(0) = 0 by convention."""
    temp, math = "relu", ("relu({0})", r"\operatorname{{relu}}\left({0}\right)")
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
    temp, math = "leaky", ("leaky_relu({0}, {1})", r"\operatorname{{leaky}}_{{{1}}}\left({0}\right)")
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
    temp, math = "elu", ("elu({0}, {1})", r"\operatorname{{elu}}_{{{1}}}\left({0}\right)")
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
    temp, math = "abs", ("|{0}|", r"\left|{0}\right|")
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
    temp, math = "max", ("max({0}, {1})", r"\max\left({0}, {1}\right)")
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
    temp, math = "min", ("min({0}, {1})", r"\min\left({0}, {1}\right)")
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
class stop_gradient(Elementwise):
    """The identity whose gradient is zero (e.g. the max subtracted inside logsumexp)."""
    temp, view = "const", True  # prints its operand: the same array
    math = ("{0}", "{0}")  # shown as the value itself
    # a loss whose value does not depend on the stopped value (logsumexp's shift), so central
    # differences agree with the gradient that ignores it
    check = Check({"a": ((3, 4), (-1, 1))},
                  "sum(tanh(log(sum(exp(a - stop_gradient(amax(a, axis=1, keepdims=True))), axis=1,"
                  " keepdims=True)) + stop_gradient(amax(a, axis=1, keepdims=True))))")
    public = "stop_gradient"

    def vjp(self, g, shape):
        return (None,)

    @staticmethod
    def eager(x):
        return x

    def _numpycode(self, p):
        return p._print(self.args[0])


@register
class select(Elementwise):
    """where(x > 0, a, b) (or x >= 0 with the static flag): routes the gradient of the ReLU family
    and of `where`. The unselected branch gets a zero cotangent (exactly 0 for the user's where(),
    whose branches may hold inf; a product with the 0/1 mask for the ReLU family)."""
    temp = "routed"
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
            return f"{arg(p, self.args[1], PRECEDENCE['Mul'], False)}*({x} > 0)"
        if len(self.args) == 3 and not self.args[2].is_Number and self.args[1] == 0:
            return f"{arg(p, self.args[2], PRECEDENCE['Mul'], False)}*({x} <= 0)"
        if self.args[1].is_Number and self.args[2].is_Number:
            a = f"DTYPE({a})"  # two Python numbers would make an int64 or float64 array
        return f"np.where({x} {'>=' if self.inclusive() else '>'} 0, {a}, {b})"

    def in_place(self):
        """The ReLU router g*(x > 0) multiplies g's buffer by the mask."""
        if len(self.args) == 3 and self.args[2] == 0:
            return ((self.args[1], "*", positive(self.args[0])),)
        return ()

    def _mathtext(self, p):
        x, a, b = self.args[:3]
        op = "≥" if self.inclusive() else ">"
        if b == 0:
            return f"{p.parenthesize(a, 50, strict=False)} ⊙ [{p._print(x)} {op} 0]"
        return f"where({p._print(x)} {op} 0, {p._print(a)}, {p._print(b)})"

    def _latex(self, p):
        x, a, b = self.args[:3]
        op = r"\geq" if self.inclusive() else ">"
        if b == 0:
            return rf"{p.parenthesize(a, 50, strict=False)} \odot [{p._print(x)} {op} 0]"
        return rf"\operatorname{{where}}({p._print(x)} {op} 0, {p._print(a)}, {p._print(b)})"


@register
class positive(Elementwise):
    """The 0/1 mask x > 0 (backward only: the ReLU router applied in place)."""
    temp, math = "mask", ("[{0} > 0]", r"\left[{0} > 0\right]")
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
    temp, math = "guarded", ("({1} unless {0} = 0)", r"\left({1} \text{{ unless }} {0} = 0\right)")
    n_tensor, differentiable = 2, False

    @staticmethod
    def eager(g, v):
        return np.where(g == 0, 0.0, v)

    def _numpycode(self, p):
        g, v = p._print(self.args[0]), p._print(self.args[1])
        return f"np.where({g} == 0, 0, {v})"


@register
class nonzero(Elementwise):
    """x with zeros replaced by +inf, so g / nonzero(x) is 0 where x is 0: the convention that keeps
    sqrt(x² + y²) and x**0.5 finite at 0 (backward only)."""
    temp, math = "nonzero", ("nonzero({0})", r"\operatorname{{nonzero}}\left({0}\right)")
    differentiable = False

    @staticmethod
    def eager(x):
        return np.where(x == 0, np.inf, x)

    def _numpycode(self, p):
        x = p._print(self.args[0])
        return f"np.where({x} == 0, np.inf, {x})"


@register
class equal(Elementwise):
    """1 where a == b else 0, in the module's dtype: the mask that routes a max's gradient."""
    temp, math = "ties", ("[{0} = {1}]", r"\left[{0} = {1}\right]")
    n_tensor, differentiable = 2, False

    @staticmethod
    def eager(a, b):
        return (a == b).astype(np.float64)

    def _numpycode(self, p):
        return f"({p._print(self.args[0])} == {p._print(self.args[1])}).astype(DTYPE)"


