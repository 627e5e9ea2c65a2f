"""Every name the generated code uses is made here: identifiers, adjoints (`d_<name>`), temporaries."""
from __future__ import annotations

import keyword
import re

import sympy as sp

RESERVED = {"np", "DTYPE", "params", "inputs", "dims", "len", "PARAMS", "INPUTS", "OUTPUTS",
            "LABEL_CLASSES", "InputError", "workspace", "Workspace"}

_OP_NAMES = {"Add": "add", "Mul": "mul", "matmul": "mm", "reduce_sum": "total", "reduce_max": "top",
             "expand_dims": "col", "squeeze": "flat", "broadcast_to": "full", "one_hot": "onehot",
             "stop_gradient": "const", "transpose": "tr", "absolute": "abs", "select": "routed"}


def ident(name: str) -> str:
    """A Python identifier for a model name: 'hidden.W' -> 'hidden_W'."""
    out = re.sub(r"\W", "_", name)
    if not out or out[0].isdigit():
        out = "_" + out
    return out


def adjoint(name: str) -> str:
    return "d_" + name


def op_name(expr: sp.Basic) -> str:
    """A short name for a temporary, after what computes it: exp, sum, mm, sq..."""
    if isinstance(expr, sp.Pow):
        return {2: "sq", -1: "inv", sp.S.Half: "sqrt"}.get(expr.exp, "pow")
    head = type(expr).__name__
    return _OP_NAMES.get(head, head.lower())


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
