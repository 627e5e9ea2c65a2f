"""Every name the generated code uses is made here: identifiers, adjoints (`d_<name>`), temporaries."""
from __future__ import annotations

import keyword
import re

import sympy as sp

from .ops import rule_for

RESERVED = {"np", "DTYPE", "params", "inputs", "dims", "len", "PARAMS", "INPUTS", "OUTPUTS",
            "LABEL_CLASSES", "InputError", "workspace", "Workspace"}


def ident(name: str) -> str:
    """A Python identifier for a model name: 'hidden.W' -> 'hidden_W'."""
    out = re.sub(r"\W", "_", name)
    if not out or out[0].isdigit():
        out = "_" + out
    return out


def adjoint(name: str) -> str:
    return "d_" + name


def op_name(expr: sp.Basic) -> str:
    """A short name for a temporary, after what computes it (its rule's `temp`): exp, sum, mm..."""
    rule = rule_for(expr)
    return rule.temp(expr) if rule is not None else type(expr).__name__.lower()


class Namer:
    """Hands out unique identifiers in request order (so names are deterministic)."""

    def __init__(self, reserved=()):
        self.used = set(RESERVED) | set(reserved)

    def fresh(self, base: str) -> str:
        base = ident(base)
        if keyword.iskeyword(base):
            base += "_"
        name, k = base, 1
        while name in self.used:
            k += 1
            name = f"{base}_{k}"
        self.used.add(name)
        return name
