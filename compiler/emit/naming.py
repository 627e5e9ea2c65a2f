"""Every name the generated code uses is made here: identifiers, adjoints (`d_<name>`), temporaries.

A temporary is named after the model's names, not only its op: `logits_max`, `logits_exp`, the
stem being the nearest operand the user (or a layer) named. No name shadows a Python builtin or a
name the module itself uses.
"""
from __future__ import annotations

import builtins
import keyword
import re

import sympy as sp

from ..ops import rule_for

# module-level names the generated functions read (the template's, and each function's locals)
RESERVED = {"np", "DTYPE", "params", "inputs", "dims", "PARAMS", "STATE", "INPUTS", "OUTPUTS",
            "LABEL_CLASSES", "InputError", "workspace", "Workspace", "training", "where",
            "_arrays", "_validate", "_validate_fully", "_check_labels", "_shape_text", "_match",
            "_fresh", "SYMGRAD_VERSION", "MODEL_PATH", "MODEL_SHA256", "_directions", "vectors",
            "tangents", "limit", "numba", "_CACHE", "_where", "_clip", "_one", "_labels_ok", "_max"}
BUILTINS = frozenset(name for name in dir(builtins) if not name.startswith("_"))


def ident(name: str) -> str:
    """A Python identifier for a model name: 'hidden.W' -> 'hidden_W'."""
    out = re.sub(r"\W", "_", name)
    if not out or out[0].isdigit():
        out = "_" + out
    return out


def adjoint(name: str) -> str:
    return "d_" + name


def tangent(name: str) -> str:
    """ẋ: the derivative of x along a direction (forward mode)."""
    return ident(name) + "_dot"


def grad_tangent(name: str) -> str:
    """The derivative of d_x along a direction: d_W_dot of a parameter W is its row of H·v."""
    return "d_" + tangent(name)


def op_name(expr: sp.Basic) -> str:
    """A short name for a temporary, after what computes it (its rule's `temp`): exp, sum, mm..."""
    rule = rule_for(expr)
    return rule.temp(expr) if rule is not None else type(expr).__name__.lower()


def temp_name(expr: sp.Basic, named: dict, defs: dict | None = None) -> str:
    """`<stem>_<temp>`: the stem is the name of the operand nearest to `expr` (breadth first) that
    has a user-given or layer name (`named`: node or symbol -> name), looking through the
    definitions `defs` (symbol -> what it computes) of unnamed temporaries; the temp alone without."""
    temp = op_name(expr)
    defs = defs or {}
    queue, seen = list(expr.args), set()
    while queue:
        x = queue.pop(0)
        if x in seen:
            continue
        seen.add(x)
        if x in named:
            return f"{named[x]}_{temp}"
        queue.extend([defs[x]] if x in defs else x.args)
    return temp


class Namer:
    """Hands out unique identifiers in request order (so names are deterministic). A keyword or a
    builtin gets a trailing underscore (`sum_`), a name the module uses a number (`np_2`)."""

    def __init__(self, reserved=()):
        self.used = set(RESERVED) | set(reserved)

    def fresh(self, base: str) -> str:
        base = ident(base)
        if keyword.iskeyword(base) or base in BUILTINS:
            base += "_"
        name, k = base, 1
        while name in self.used:
            k += 1
            name = f"{base}_{k}"
        self.used.add(name)
        return name


def value_names(graph, sched) -> tuple[dict, Namer]:
    """Leaves keep the user's names; forward values their variable or layer names, temporaries
    `<stem>_<temp>`; adjoints d_<name of the value>; a second pass's tangents <name>_dot and
    d_<name>_dot (derivatives.py)."""
    namer = Namer()
    names: dict = {}
    for leaf in graph.leaves.values():
        names[leaf.symbol] = namer.fresh(leaf.name)
    for leaf in sched.program.directions:   # the derivative of each parameter along the direction
        names[leaf.symbol] = namer.fresh(tangent(leaf.name))
    user = dict(names)  # node or symbol -> its name, for the stems of temporaries
    for node, hint in graph.hints.items():
        user.setdefault(node, ident(hint))
    forward_name: dict = {}
    defs: dict = {}  # unnamed temporaries -> what they compute, to find their stems through
    for step in sched.steps:
        st = step.statement
        if st.kind == "forward":
            hint = graph.hints.get(st.node)
            names[st.target] = namer.fresh(hint or temp_name(st.node, user, defs))
            forward_name[st.node] = names[st.target]
            if hint:
                user[st.node] = user[st.target] = names[st.target]
            else:
                defs[st.target] = st.node
        elif st.kind == "shared":
            names[st.target] = namer.fresh(temp_name(st.expr, user, defs))
            defs[st.target] = st.expr
        else:
            base = forward_name.get(st.node) or user.get(st.node) or temp_name(st.node, user, defs)
            names[st.target] = namer.fresh({"tangent": tangent, "grad_tangent": grad_tangent}
                                           .get(st.role, adjoint)(base))
    return names, namer
