"""Special functions: sin, cos, sinh, cosh, the error function erf and its complement erfc, and
the Gaussian e^(−x²) their derivatives use. NumPy has no erf, so the generated module carries its
own (`_ERF_HELPER`: W. J. Cody's rational approximations), and the Gaussian is computed without
underflow. The eager oracle evaluates erf with Python's math.erf, independently of that helper.
"""
from __future__ import annotations

import math

import numpy as np
import sympy as sp
from sympy.printing.precedence import PRECEDENCE

from .rule import Check, Elementwise, register

_TWO_OVER_SQRT_PI = sp.Float(2 / math.sqrt(math.pi))
_PI = math.pi  # (class bodies below name their display templates `math`)

# W. J. Cody, "Rational Chebyshev approximations for the error function", Math. Comp. 23 (1969),
# as in his CALERF (netlib specfun): erf on |x| <= 0.46875, erfc on 0.46875 < |x| <= 4 and beyond.
_ERF_HELPER = '''\
def _erf_small(x):
    """erf(x) for |x| <= 0.46875: x·P(x²)/Q(x²) (Cody)."""
    x = np.clip(x, -0.46875, 0.46875)
    y = np.abs(x)
    z = np.where(y > 1.11e-16, y, 0.0) ** 2  # no underflow for tiny x
    num = (((0.185777706184603153 * z + 3.16112374387056560) * z + 113.864154151050156) * z
           + 377.485237685302021) * z + 3209.37758913846947
    den = (((z + 23.6012909523441209) * z + 244.024637934444173) * z
           + 1282.61652607737228) * z + 2844.23683343917062
    return x * num / den


def _erfc_abs(a):
    """erfc(a) for a >= 0.46875 (Cody): P(a)/Q(a)·exp(−a²) up to 4, (1/√π − P(z)/Q(z))/a·exp(−a²)
    with z = 1/a² beyond; exp(−a²) in two factors to keep its accuracy; 0 where it would underflow."""
    y = np.clip(a, 0.46875, 26.5)
    t = np.minimum(y, 4.0)
    num, den = 2.15311535474403846e-8 * t, t
    for c, d in ((5.64188496988670089e-1, 1.57449261107098347e01),
                 (8.88314979438837594e00, 1.17693950891312499e02),
                 (6.61191906371416295e01, 5.37181101862009858e02),
                 (2.98635138197400131e02, 1.62138957456669019e03),
                 (8.81952221241769090e02, 3.29079923573345963e03),
                 (1.71204761263407058e03, 4.36261909014324716e03),
                 (2.05107837782607147e03, 3.43936767414372164e03)):
        num, den = (num + c) * t, (den + d) * t
    near = (num + 1.23033935479799725e03) / (den + 1.23033935480374942e03)
    u = np.maximum(y, 4.0)
    z = 1 / (u * u)
    num, den = 1.63153871373020978e-2 * z, z
    for p, q in ((3.05326634961232344e-1, 2.56852019228982242e00),
                 (3.60344899949804439e-1, 1.87295284992346047e00),
                 (1.25781726111229246e-1, 5.27905102951428412e-1),
                 (1.60837851487422766e-2, 6.05183413124413191e-2)):
        num, den = (num + p) * z, (den + q) * z
    far = (0.5641895835477563 - z * (num + 6.58749161529837803e-4) / (den + 2.33520497626869185e-3)) / u
    head = np.trunc(16 * y) / 16
    scale = np.exp(-head * head) * np.exp(-(y - head) * (y + head))
    return np.where(a > 26.5, 0.0, np.where(y <= 4.0, near, far) * scale)


def _erf(x):
    """The error function, to about 1e-16 relative on the whole real line."""
    a = np.abs(x)
    return np.where(a <= 0.46875, _erf_small(x), np.copysign(1 - _erfc_abs(a), x))


def _erfc(x):
    """1 − erf(x), accurate in the right tail where 1 − erf(x) would cancel."""
    a = np.abs(x)
    tail = _erfc_abs(a)
    return np.where(a <= 0.46875, 1 - _erf_small(x), np.where(x < 0, 2 - tail, tail))


def _gauss(x):
    """exp(−x²), 0 where it would underflow (|x| > 26.5)."""
    y = np.minimum(np.abs(x), 26.5)
    return np.where(np.abs(x) > 26.5, 0.0, np.exp(-y * y))
'''


class Special(Elementwise):
    """A unary op printed as a call `name(x)`: NumPy's function or the module's own helper."""
    call: str = ""
    fuse = "libm"   # NumPy's function per element; the module's own helpers take arrays: fuse = ""

    def _numpycode(self, p):
        if self.call.startswith("_"):
            p.helpers.add(erf)  # the helper block that defines _erf, _erfc and _gauss
        return f"{self.call}({p._print(self.args[0])})"


@register
class sin(Special):
    """sin x; its derivative is cos x."""
    temp, math, public, call = "sin", ("sin({0})", r"\sin\left({0}\right)"), "sin", "np.sin"
    check = Check({"a": ((3, 2), (-3, 3))}, "sum(sin(a) * a)",
                  edges=((0.0, 1.0), (_PI, -1.0), (-_PI / 2, 0.0)))

    def fdiff(self, argindex=1):
        return cos(self.args[0])

    @staticmethod
    def eager(x):
        return np.vectorize(math.sin, otypes=[float])(x)


@register
class cos(Special):
    """cos x; its derivative is −sin x."""
    temp, math, public, call = "cos", ("cos({0})", r"\cos\left({0}\right)"), "cos", "np.cos"
    check = Check({"a": ((3, 2), (-3, 3))}, "sum(cos(a) * a)",
                  edges=((0.0, 0.0), (_PI / 2, -1.0), (-_PI / 2, 1.0)))

    def fdiff(self, argindex=1):
        return -sin(self.args[0])

    @staticmethod
    def eager(x):
        return np.vectorize(math.cos, otypes=[float])(x)


@register
class sinh(Special):
    """sinh x = (eˣ − e⁻ˣ)/2; its derivative is cosh x. ±inf beyond |x| ≈ 710, like NumPy."""
    temp, math, public, call = "sinh", ("sinh({0})", r"\sinh\left({0}\right)"), "sinh", "np.sinh"
    check = Check({"a": ((3, 2), (-2, 2))}, "sum(sinh(a) * a)", edges=((0.0, 1.0),))

    def fdiff(self, argindex=1):
        return cosh(self.args[0])

    @staticmethod
    def eager(x):
        e = np.exp(np.asarray(x, dtype=float))
        return (e - 1 / e) / 2


@register
class cosh(Special):
    """cosh x = (eˣ + e⁻ˣ)/2; its derivative is sinh x. inf beyond |x| ≈ 710, like NumPy;
    log(cosh(x)) is rewritten to a form that stays finite (canonical.py)."""
    temp, math, public, call = "cosh", ("cosh({0})", r"\cosh\left({0}\right)"), "cosh", "np.cosh"
    check = Check({"a": ((3, 2), (-2, 2))}, "sum(cosh(a) * a)", edges=((0.0, 0.0),))

    def fdiff(self, argindex=1):
        return sinh(self.args[0])

    @staticmethod
    def eager(x):
        e = np.exp(np.asarray(x, dtype=float))
        return (e + 1 / e) / 2


@register
class erf(Special):
    """erf x = 2/√π ∫₀ˣ e^(−t²) dt; its derivative 2/√π·e^(−x²) is 0 (not an underflow) for |x| > 26.5."""
    fuse = ""
    temp, math, public, call = "erf", ("erf({0})", r"\operatorname{{erf}}\left({0}\right)"), "erf", "_erf"
    helper = _ERF_HELPER
    check = Check({"a": ((3, 2), (-2.5, 2.5))}, "sum(erf(a) * a)",
                  edges=((0.0, float(_TWO_OVER_SQRT_PI)), (800.0, 0.0), (-800.0, 0.0), (30.0, 0.0)))

    def fdiff(self, argindex=1):
        return _TWO_OVER_SQRT_PI * gauss(self.args[0])

    @staticmethod
    def eager(x):
        return np.vectorize(math.erf, otypes=[float])(x)


@register
class erfc(Special):
    """erfc x = 1 − erf x, kept accurate in the tail (the normal CDF of the exact GELU uses it)."""
    fuse = ""
    temp, math, call = "erfc", ("erfc({0})", r"\operatorname{{erfc}}\left({0}\right)"), "_erfc"
    check = Check({"a": ((3, 2), (-2.5, 2.5))}, "sum(apply(P.erfc, a) * a)")

    def fdiff(self, argindex=1):
        return -_TWO_OVER_SQRT_PI * gauss(self.args[0])

    @staticmethod
    def eager(x):
        return np.vectorize(math.erfc, otypes=[float])(x)


@register
class gauss(Special):
    """e^(−x²), 0 instead of an underflow for |x| > 26.5 (backward only: erf's derivative)."""
    fuse = ""
    temp, call = "gauss", "_gauss"
    check = Check({"a": ((3, 2), (-2.5, 2.5))}, "sum(apply(P.gauss, a) * a)")

    def fdiff(self, argindex=1):
        return -2 * self.args[0] * self

    def _mathtext(self, p):
        return f"exp(-{p.parenthesize(self.args[0], PRECEDENCE['Pow'])}²)"

    def _latex(self, p):
        return rf"e^{{-{p.parenthesize(self.args[0], PRECEDENCE['Pow'])}^{{2}}}}"

    @staticmethod
    def eager(x):
        x = np.asarray(x, dtype=float)
        return np.where(np.abs(x) > 26.5, 0.0, np.exp(-np.minimum(x * x, 702.25)))
