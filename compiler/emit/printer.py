"""The NumPy printer: SymPy's, with `np.` names, symgrad's symbol names, and each Op printing itself.

Ops carry a `_numpycode(printer)` method next to their other rules (see compiler/ops/); this class
only adds what every expression needs: names, shapes, and plain forms of powers. With another
backend (backends.py) an op's own form for it (`_torchcode`, ...) comes first, and the finished
text is read in that library's names.
"""
from __future__ import annotations

import sympy as sp
from sympy.printing.numpy import NumPyPrinter
from sympy.printing.precedence import PRECEDENCE, precedence

from .backends import NUMPY, Backend


class Printer(NumPyPrinter):
    printmethod = "_numpycode"

    def __init__(self, names: dict, shapes, backend: Backend = NUMPY):
        super().__init__({"fully_qualified_modules": True, "allow_unknown_functions": False})
        self.names = names
        self.shapes = shapes
        self.backend = backend
        self.printmethod = backend.printmethod
        self.helpers: set = set()   # Op classes whose module-level helper the code calls

    def doprint(self, expr, assign_to=None):
        return self.backend.translate(super().doprint(expr, assign_to))

    def _print(self, expr, **kwargs):
        """An op without a form of its own for this backend prints its NumPy form (translated by
        doprint), never SymPy's printer of a function that happens to share its name (`maximum`)."""
        if (self.printmethod != "_numpycode" and not isinstance(expr, type)
                and hasattr(expr, "_numpycode") and not hasattr(expr, self.printmethod)):
            return expr._numpycode(self)
        if self.backend.name == "torch" and isinstance(expr, sp.Expr) and expr.is_number and not expr.is_Number:
            try:   # log(2): torch.log takes tensors only
                return repr(float(expr))
            except TypeError:   # an op of constants (a causal mask's offsets) prints itself
                pass
        return super()._print(expr, **kwargs)

    def rank(self, expr) -> int:
        return len(self.shapes(expr))

    def is_constant(self, expr) -> bool:
        """A number, or an expression of numbers only (√2), that is a scalar."""
        return not expr.free_symbols and self.shapes(expr) == ()

    def tensor(self, expr) -> str:
        """`expr` printed as an array where the library takes arrays only (torch: a constant becomes
        a 0-d tensor of the module's dtype on the function's device)."""
        text = self._print(expr)
        return self.backend.scalar(text) if self.backend.device and self.is_constant(expr) else text

    def _module_format(self, fqn, register=True):
        if fqn.startswith("numpy."):
            fqn = "np." + fqn[len("numpy."):]
        return super()._module_format(fqn, register=False)

    def _print_Symbol(self, expr):
        return self.names.get(expr, expr.name)

    def _print_Pow(self, expr, rational=False):
        base, e = expr.args
        prec = precedence(expr)
        if e == sp.S.Half:
            return f"np.sqrt({self._print(base)})"
        if e == -sp.S.Half:
            return f"1/np.sqrt({self._print(base)})"
        if e.is_Integer and e < 0:
            inner = self.parenthesize(base, prec, strict=False) + ("" if e == -1 else f"**{-e}")
            return f"1/{inner}"
        if e == 3 and base.is_Symbol:  # NumPy's power with exponent 3 is ~5x slower than two products
            name = self._print(base)
            return f"({name}*{name}*{name})"
        return f"{self.parenthesize(base, prec, strict=False)}**{self.parenthesize(e, prec, strict=False)}"

    def parenthesize(self, item, level, strict=False):
        """`1/x` and `1/np.sqrt(x)` print as quotients, so they bind like *, not like **: on the right
        of `@` (left-associative with * and /) `a @ 1/x` would be `(a @ 1)/x`."""
        if isinstance(item, sp.Pow) and item.exp.is_Number and item.exp < 0 and (
                item.exp.is_Integer or item.exp == -sp.S.Half):
            prec = PRECEDENCE["Mul"]
            text = self._print(item)
            return f"({text})" if prec < level or (not strict and prec <= level) else text
        return super().parenthesize(item, level, strict)

    def _print_Mul(self, expr):
        """With a negative coefficient SymPy compares factors against Add's precedence, so a product
        `-2*b*(a.T @ g)` lost the parentheses around its matmul (`@` binds like *): print the
        positive product and negate it."""
        coeff, _ = expr.as_coeff_Mul()
        if coeff < 0 and (-expr).is_Mul:
            return "-" + self._print_Mul(-expr)
        return super()._print_Mul(expr)

    def _print_Add(self, expr, order=None):
        """Positive terms first, then ` - t` for each negative one: `logits - top`, not `-top + logits`
        (one NumPy call fewer per negated term, and it reads as written). The order is fixed by
        SymPy's canonical term order, so output stays deterministic."""
        terms = self._as_ordered_terms(expr, order=order)
        # compound terms, then names, then numbers: `x @ W + b`, `b + 1`
        terms = sorted(terms, key=lambda t: 2 if t.is_Number else 1 if t.is_Atom else 0)
        positive = [t for t in terms if not t.could_extract_minus_sign()]
        negative = [t for t in terms if t.could_extract_minus_sign()]
        if not positive:
            return super()._print_Add(expr, order=order)
        level = PRECEDENCE["Add"]
        text = " + ".join(self.parenthesize(t, level, strict=True) for t in positive)
        for t in negative:
            text += " - " + self.parenthesize(-t, level, strict=False)
        return text

    def _print_Abs(self, expr):
        return f"np.abs({self._print(expr.args[0])})"

    def _print_sign(self, expr):
        return f"np.sign({self._print(expr.args[0])})"

    def _print_Float(self, expr):
        value = float(expr)
        if value != value or value in (float("inf"), float("-inf")):  # a constant folded past float
            return {"nan": "np.nan", "inf": "np.inf", "-inf": "-np.inf"}[repr(value)]
        return repr(value)
