"""Fix hints that only name things that exist.

A hint such as "use symgrad's fft" is worse than none when compiler.dsl has no `fft`. The helpers
here look at what `compiler.dsl` exports *when they are called* (its elementwise functions are
generated from the primitive registry, so a new primitive shows up here with no edit), and name a
symgrad function only if there is one; otherwise they say that symgrad has no such op and list the
elementwise functions and reductions that do exist.
"""
from __future__ import annotations

import inspect

from . import dsl
from . import ops as P

# NumPy names whose symgrad spelling differs. Each target is checked against compiler.dsl at call
# time, so a stale entry falls back to "symgrad has no such op" instead of naming a missing function.
NUMPY_ALIASES = {
    "absolute": "abs",
    "fabs": "abs",
    "max": "amax",
    "average": "mean",
    "concatenate": "concat",
}

# NumPy functions that are a Python operator (or attribute) on traced values.
NUMPY_OPERATORS = {
    "add": "a + b",
    "subtract": "a - b",
    "multiply": "a * b",
    "divide": "a / b",
    "true_divide": "a / b",
    "negative": "-a",
    "positive": "+a",
    "power": "a ** b",
    "float_power": "a ** b",
    "reciprocal": "1 / a",
    "matmul": "a @ b",
    "dot": "a @ b",
    "transpose": "a.T (all axes reversed) or transpose(a, axes)",
}


def dsl_exports() -> list[str]:
    """What `from compiler.dsl import *` gives a model file, read now (not cached)."""
    return list(dsl.__all__)


def exists(name: str) -> bool:
    """Whether compiler.dsl exports `name`."""
    return name in dsl_exports()


def elementwise_functions() -> list[str]:
    """The exported elementwise functions: the registry's elementwise primitives, plus functions
    written by hand in compiler.dsl whose docstring says they are elementwise (sqrt)."""
    public = {rule.public for rule in P.REGISTRY.values() if rule.public and rule.elementwise}
    out = []
    for name in dsl_exports():
        fn = getattr(dsl, name, None)
        if not callable(fn) or isinstance(fn, type):
            continue
        summary = (inspect.getdoc(fn) or "").splitlines()[0:1]
        if name in public or (name != "where" and "elementwise" in "".join(summary).lower()):
            out.append(name)
    return out


def reductions() -> list[str]:
    """The exported reductions: functions that take `axis` and `keepdims` (sum, mean, amax, ...)."""
    out = []
    for name in dsl_exports():
        fn = getattr(dsl, name, None)
        if not callable(fn) or isinstance(fn, type):
            continue
        try:
            parameters = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            continue
        if "axis" in parameters and "keepdims" in parameters:
            out.append(name)
    return out


def available() -> str:
    """One sentence listing what exists instead."""
    where = " and where(a > b, x, y)" if exists("where") else ""
    return (f"the elementwise functions are {', '.join(elementwise_functions())}; the reductions "
            f"are {', '.join(reductions())}; with + - * / ** @ .T{where}")


def numpy_fix(name: str) -> str:
    """The fix for `np.<name>(traced value)`: symgrad's own function when compiler.dsl exports one of
    that name (or of its symgrad spelling), the operator when it is one, else what exists instead."""
    short = name.rsplit(".", 1)[-1]
    target = short if exists(short) else NUMPY_ALIASES.get(short)
    if target is not None and exists(target):
        return f"use symgrad's {target} from compiler.dsl (NumPy cannot see inside a traced value)"
    if short in NUMPY_OPERATORS:
        return (f"write {NUMPY_OPERATORS[short]} on traced values (NumPy cannot see inside a traced "
                "value)")
    return f"symgrad has no {short} op (NumPy cannot see inside a traced value); {available()}"


def unknown_name_fix(name: str | None) -> str:
    """The fix for a NameError in a model file."""
    if name and exists(name):
        return f"add `from compiler.dsl import *` (or import {name} from compiler.dsl) at the top"
    what = f"symgrad has no {name}" if name else "that name is not defined"
    return (f"check the spelling; {what}: the model-file language is `from compiler.dsl import *`, "
            f"where {available()}")
