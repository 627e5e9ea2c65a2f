"""Elementwise ops: SymPy's native heads (so SymPy simplifies them and `cse` shares them), abs,
maximum and minimum, stop_gradient, square, clip, and the masks and routers reverse mode uses. Each broadcasts
its operands by NumPy's rules. Activations are in activations.py.
"""
from __future__ import annotations

import numpy as np
import sympy as sp
from sympy.printing.precedence import PRECEDENCE

from ..shapes import ShapeMismatch, broadcast
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


native(sp.Add, temp="plus", vjp=_add_vjp, eager=np.add, in_place=_operands_in_place("+"),
       check=Check({"a": ((3, 2), (-1, 1)), "b": ((2,), (-1, 1))}, "sum(tanh(a + b + 1) * (a - b))"))
native(sp.Mul, temp="times", vjp=_mul_vjp, eager=np.multiply, in_place=_operands_in_place("*"),
       check=Check({"a": ((3, 2), (-1, 1)), "b": ((2,), (-1, 1))}, "sum(a * b * a * 3 / (b * b + 1))"))
native(sp.Pow, temp=_pow_temp, vjp=_pow_vjp, eager=np.power,  # integer powers and roots: no pow()
       fuse=lambda node: "map" if node.exp.is_Integer or node.exp in (sp.S.Half, -sp.S.Half) else "libm",
       singular=lambda node: not (node.exp.is_Integer and node.exp >= 0),
       check=Check({"a": ((3, 2), (0.5, 2)), "b": ((2,), (-1, 1))},
                   "sum(a ** 3 + sqrt(a) + a ** 0.7 + 1 / a + a ** b + 2 ** b)"))
class exp(sp.exp):
    """SymPy's exp without the algebra a network never needs. SymPy's eval runs `logcombine` on
    each factor of a symbolic operand, a walk of it as a tree (exponential in a DAG: the max in a
    transformer's attention softmax took 10 s), and a product folds its exp factors into one
    exp(a + b), evaluated again. Here a number or log(x) evaluates; every other operand stays."""

    @classmethod
    def eval(cls, arg):
        return sp.exp(arg) if arg.is_Number or isinstance(arg, sp.log) else None

    def as_base_exp(self):
        return self, sp.S.One

    def _eval_power(self, k):
        return self.func(self.args[0] * k)   # exp(a)**k = exp(k·a) for real a: 1/exp(a) is exp(-a)


class tanh(sp.tanh):
    """SymPy's tanh without its eval on a symbolic operand (sign and imaginary-part queries that
    walk the operand as a tree) and with tanh' = 1 − tanh² of this very node (SymPy's own fdiff
    builds a plain tanh, which would not be shared with the forward)."""

    @classmethod
    def eval(cls, arg):
        return sp.tanh(arg) if arg.is_Number else None

    def fdiff(self, argindex=1):
        return 1 - self**2


native(sp.exp, temp="exp", public="exp", eager=np.exp, build=exp, fuse="libm",
       check=Check({"a": ((3, 2), (-2, 2))}, "sum(exp(a))", edges=((-800.0, 0.0), (0.0, 1.0))))
native(sp.log, temp="log", public="log", eager=np.log, fuse="libm", singular=lambda node: True,
       check=Check({"a": ((3, 2), (0.2, 3))}, "sum(log(a))", edges=((1e-300, 1e300),)))
native(sp.tanh, temp="tanh", public="tanh", init_family="xavier", eager=np.tanh, build=tanh, fuse="libm",
       check=Check({"a": ((3, 2), (-2, 2))}, "sum(tanh(a) * a)",
                   edges=((0.0, 1.0), (20.0, 0.0), (-20.0, 0.0))))
native(sp.sign, temp="sign", vjp=lambda node, g, shape: (None,), eager=np.sign)
# SymPy writes sqrt(x**2) as Abs(x) for real x; its derivative is sign(x), 0 at 0
native(sp.Abs, temp="abs", vjp=lambda node, g, shape: (g * sp.sign(node.args[0]),), eager=np.abs,
       check=Check({"a": ((3, 2), (-2, 2))}, "sum(sqrt(a * a) * a)"))


# ---------------------------------------------------------------------------------------------
# symgrad's own elementwise heads.

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
        return f"np.maximum({_number_last(p, self.args)})"


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
        return f"np.minimum({_number_last(p, self.args)})"


def _number_last(p, args) -> str:
    """The operands; for torch a constant second (it clamps a tensor by a number, not the reverse)."""
    return ", ".join(p._print(a) for a in (sorted(args[:2], key=p.is_constant) if p.backend.device else args[:2]))


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
        if all(p.is_constant(e) if p.backend.device else e.is_Number for e in self.args[1:3]):
            a = p.backend.scalar(a)  # two Python numbers would make an int64 or float64 array
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
    constant = True

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
    n_tensor = 2
    check = Check({"a": ((3, 2), (-2, 2)), "b": ((3, 2), (-2, 2))}, "sum(apply(P.unless_zero, a, b) * b) + sum(a * a)")

    def vjp(self, ct, shape):
        """v's cotangent, guarded the same way (second derivatives inside a where() branch)."""
        return None, unless_zero(self.args[0], ct)

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
    check = Check({"a": ((3, 2), (0.5, 2))}, "sum(a / apply(P.nonzero, a * a))")

    def fdiff(self, argindex=1):
        return sp.Integer(1)   # where x = 0 its users divide by +inf: their derivative is 0 there too

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
    n_tensor, constant = 2, True

    @staticmethod
    def eager(a, b):
        return (a == b).astype(np.float64)

    def _numpycode(self, p):
        return p.backend.cast(f"({p._print(self.args[0])} == {p._print(self.args[1])})")


@register
class square(Elementwise):
    """x²; its derivative is 2x."""
    temp, math = "sq", ("{0}²", r"\left({0}\right)^{{2}}")
    public = "square"
    check = Check({"a": ((3, 2), (-2, 2))}, "sum(square(a) * a)", edges=((0.0, 0.0), (3.0, 6.0)))

    def fdiff(self, argindex=1):
        return 2 * self.args[0]

    @staticmethod
    def eager(x):
        return x * x

    def _numpycode(self, p):
        return f"np.square({p._print(self.args[0])})"


def _bound(v) -> str:
    """A static bound as printed code: a float, or ±np.inf for a side left open."""
    f = float(v)
    return repr(f) if np.isfinite(f) else ("np.inf" if f > 0 else "-np.inf")


@register
class clip(Elementwise):
    """x limited to [lo, hi] (static bounds; either may be left open). The derivative is 1 for
    lo ≤ x ≤ hi (also on the bounds, as in torch.clamp) and 0 outside."""
    temp, math = "clip", ("clip({0}, {1}, {2})", r"\operatorname{{clip}}_{{[{1}, {2}]}}\left({0}\right)")
    public, static = "clip", (("lo", float("-inf")), ("hi", float("inf")))
    check = Check({"a": ((4, 3), (-2, 2))}, "sum(clip(a, lo=-1.0, hi=0.5) * a)",
                  edges=((0.0, 1.0), (-800.0, 1.0)))  # clip(a) leaves both sides open: the identity

    @classmethod
    def shape_of(cls, node, arg_shapes):
        lo, hi = float(node.args[1]), float(node.args[2])
        if not lo <= hi:
            raise ShapeMismatch(f"clip needs lo <= hi, got lo={lo!r} and hi={hi!r}; pass the lower "
                                "bound as lo= and the upper one as hi=")
        return broadcast(*arg_shapes[:1])

    def fdiff(self, argindex=1):
        return within(*self.args)

    @staticmethod
    def eager(x, lo, hi):
        return np.minimum(np.maximum(x, lo), hi)

    def _numpycode(self, p):
        lo, hi = float(self.args[1]), float(self.args[2])
        if np.isinf(lo) and np.isinf(hi):
            return f"np.clip({p._print(self.args[0])}, -np.inf, np.inf)"
        bounds = (repr(b) if np.isfinite(b) else "None" for b in (lo, hi))  # None: that side is open
        return f"np.clip({p._print(self.args[0])}, {', '.join(bounds)})"


@register
class within(Elementwise):
    """The 0/1 mask lo ≤ x ≤ hi: clip's derivative (backward only)."""
    temp, constant = "inside", True

    def _bounds(self, p, le: str) -> str:
        """lo ≤ x ≤ hi, an open side left out."""
        lo, hi = (p._print(b) if np.isfinite(float(b)) else None for b in self.args[1:3])
        return le.join(t for t in (lo, p._print(self.args[0]), hi) if t is not None)

    def _mathtext(self, p):
        return f"[{self._bounds(p, ' ≤ ')}]"

    def _latex(self, p):
        return r"\left[" + self._bounds(p, r" \leq ") + r"\right]"

    @staticmethod
    def eager(x, lo, hi):
        return ((x >= lo) & (x <= hi)).astype(np.float64)

    def _numpycode(self, p):
        x = p._print(self.args[0])
        lo, hi = float(self.args[1]), float(self.args[2])
        if not np.isfinite(lo):
            return f"({x} <= {_bound(hi)})" if np.isfinite(hi) else f"np.ones_like({x})"
        if not np.isfinite(hi):
            return f"({x} >= {_bound(lo)})"
        return f"(({x} >= {_bound(lo)}) & ({x} <= {_bound(hi)}))"
