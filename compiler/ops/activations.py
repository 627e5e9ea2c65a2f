"""Activations: the nonlinearities a layer applies, each one elementwise class with its derivative
(`fdiff`, or `vjp` where the output can be reused), NumPy code, eager evaluation, math and check.

Adding an activation means adding one class here; the model-file language picks it up by its
`public` name, and `init_family` sets the weight init of a `linear` layer right before it.
"""
from __future__ import annotations

import math

import numpy as np
import sympy as sp
from sympy.printing.precedence import PRECEDENCE

from .elementwise import select, tanh
from .rule import Check, Elementwise, arg, register
from .special import erfc, gauss


@register
class sigmoid(Elementwise):
    """σ(x) = 1/(1 + e^-x), computed as (1 + tanh(x/2))/2: one transcendental, no overflow; its
    derivative reuses the output."""
    fuse = "libm"   # exp/tanh per element: NumPy vectorises it, a loop does not
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

    def _torchcode(self, p):
        """One kernel instead of four: torch launches each op separately."""
        return f"torch.sigmoid({p._print(self.args[0])})"


# GELU's tanh approximation (as in GPT-2 and torch's approximate="tanh"); gelu(x, exact=True) is
# x·Φ(x) itself, with the module's own erfc (special.py)
_GELU_C, _GELU_K = sp.Float(0.7978845608028654), sp.Float(0.044715)   # sqrt(2/pi), cubic term
_SQRT_HALF, _INV_SQRT_2PI = sp.Float(math.sqrt(0.5)), sp.Float(1 / math.sqrt(2 * math.pi))


def _gelu_tanh(x, evaluate=True):
    return tanh(sp.Mul(_GELU_C, sp.Add(x, _GELU_K * x**3, evaluate=evaluate), evaluate=evaluate))


@register
class gelu(Elementwise):
    """x·Φ(x) ≈ x/2·(1 + tanh(√(2/π)(x + 0.044715x³))): the smooth ReLU of transformers;
    gelu(x, exact=True) is x·Φ(x) with the error function."""
    fuse = "libm"   # exp/tanh per element: NumPy vectorises it, a loop does not
    temp, math = "gelu", ("gelu({0})", r"\operatorname{{GELU}}\left({0}\right)")
    public, init_family, static = "gelu", "he", (("exact", False),)
    check = Check({"a": ((3, 2), (-3, 3))}, "sum(gelu(a) * a)",
                  edges=((0.0, 0.5), (20.0, 1.0), (-20.0, 0.0), (800.0, 1.0), (-800.0, 0.0)))

    @classmethod
    def eval(cls, x, exact=None):
        """The static flag picks the head: gelu(x, 0) is the tanh form gelu(x), gelu(x, 1) the exact
        gelu_exact(x)."""
        if exact is not None:
            return gelu_exact(x) if exact else cls(x)
        return None

    def expand(self):
        """Before reverse mode, gelu becomes x/2·(1 + t) with t = tanh(...) a value of its own:
        the backward reads t instead of computing the tanh again (a third of a GPT block's
        elementwise time)."""
        x = self.args[0]  # kept whole: SymPy would spread 1/2 and √(2/π) over the sum x = xW + b
        return sp.Mul(sp.Rational(1, 2), x, 1 + _gelu_tanh(x, evaluate=False), evaluate=False)

    def fdiff(self, argindex=1):
        x = self.args[0]
        t = _gelu_tanh(x)
        return (1 + t) / 2 + x * (1 - t**2) * _GELU_C * (1 + 3 * _GELU_K * x**2) / 2

    @staticmethod
    def eager(x, exact=False):
        if exact:
            return gelu_exact.eager(x)
        return 0.5 * x * (1 + np.tanh(float(_GELU_C) * (x + float(_GELU_K) * x**3)))

    def _numpycode(self, p):
        x = arg(p, self.args[0], PRECEDENCE["Pow"], False)
        # x*x*x: NumPy's power with exponent 3 is about 5x slower than two products
        return f"0.5*{x}*(1 + np.tanh({float(_GELU_C)!r}*({x} + {float(_GELU_K)!r}*{x}*{x}*{x})))"


@register
class gelu_exact(Elementwise):
    """x·Φ(x) = x/2·erfc(−x/√2) (the model language's gelu(x, exact=True)); its derivative is
    Φ(x) + x·φ(x), φ(x) = e^(−x²/2)/√(2π). erfc keeps Φ accurate in the left tail, where
    1 + erf(x/√2) would cancel; at x = −800 both are exactly 0, with no underflow."""
    fuse = ""   # its erfc is an array helper
    temp, math = "gelu", ("gelu_exact({0})", r"\operatorname{{GELU}}_{{\mathrm{{erf}}}}\left({0}\right)")
    check = Check({"a": ((3, 2), (-3, 3))}, "sum(gelu(a, exact=True) * a)")
    edges = ((0.0, 0.5), (800.0, 1.0), (-800.0, 0.0), (-40.0, 0.0))  # tested in test_elementwise_ops

    def fdiff(self, argindex=1):
        x = self.args[0]
        return erfc(-_SQRT_HALF * x) / 2 + _INV_SQRT_2PI * x * gauss(_SQRT_HALF * x)

    @staticmethod
    def eager(x):
        phi = 0.5 * np.vectorize(math.erfc, otypes=[float])(-np.asarray(x) / math.sqrt(2))
        return x * phi

    def _numpycode(self, p):
        x = arg(p, self.args[0], PRECEDENCE["Mul"], False)
        return f"0.5*{x}*{p._print(erfc(-_SQRT_HALF * self.args[0]))}"


@register
class silu(Elementwise):
    """x·σ(x) (swish): its derivative σ(x)·(1 + x·(1 − σ(x))) reuses the sigmoid."""
    fuse = "libm"   # exp/tanh per element: NumPy vectorises it, a loop does not
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
    fuse = "libm"   # exp/tanh per element: NumPy vectorises it, a loop does not
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

    def _torchcode(self, p):
        x = p._print(self.args[0])
        return f"torch.logaddexp(torch.zeros_like({x}), {x})"


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
    fuse = "libm"   # exp/tanh per element: NumPy vectorises it, a loop does not
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
