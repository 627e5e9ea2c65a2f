"""Expressions as mathematics: Unicode (`MathPrinter`) and LaTeX (`MathLatexPrinter`).

Each op shows itself through its rule's `_mathtext` / `_latex` (see compiler/ops/); symbols print
as the names given. At the bottom of the compiler (it imports no stage), so that emit's comments
(`h = relu(hidden_pre)`) and `explain` (the gradient as mathematics) share one printer.
"""
from __future__ import annotations

from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter


class MathPrinter(StrPrinter):
    """Unicode math; each op shows itself through its rule's `_mathtext` (see compiler/ops/)."""
    printmethod = "_mathtext"

    def __init__(self, names: dict):
        super().__init__()
        self.names = names

    def _print_Symbol(self, expr):
        return self.names.get(expr, expr.name)


class MathLatexPrinter(LatexPrinter):
    """LaTeX; each op shows itself through its rule's `_latex`."""

    def __init__(self, names: dict):
        super().__init__()
        self.names = names

    def _print_Symbol(self, expr, style="plain"):
        name = self.names.get(expr, expr.name)
        if name.startswith("\\frac"):
            return name
        escaped = name.replace("_", "\\_")
        return rf"\mathrm{{{escaped}}}"
