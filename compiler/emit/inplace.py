"""The in-place/workspace pass: decide, per scheduled statement, how its array comes to be.

The decisions are plain data (`Plan`), made before anything is printed:

* `fresh`:    `T = expr`, a new array (or a view, when the op's rule says so);
* `update`:   `S op= rest`: S is an operand this function allocated, of T's shape, dying here;
              T then names S's buffer;
* `add_into`: `T = a @ b` then `T op= rest`: the product is a new array the rest is added into;
* `returned`: a gradient returned as it is: exactly the parameter's shape and dtype, never an alias.

`workspace` marks a product written with `out=` into an array the caller keeps between calls.

The pass knows no op by name: the forms `operand op= rest` come from the op's rule (`in_place`),
views from `rule.view`, and a product that can write into a buffer is recognised by its printed
NumPy code being a top-level `a @ b`, which is `np.matmul(a, b)` and takes `out=`.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass

import sympy as sp

from ..ops import rule_for
from ..shapes import ShapeMismatch, broadcast

LARGE = 65536  # elements (sizes such as B taken as 256): worth keeping in a Workspace between calls


@dataclass(frozen=True)
class Action:
    kind: str                          # "fresh" | "update" | "add_into" | "returned"
    buffer: sp.Symbol | None = None    # update: the dying operand whose buffer is updated
    op: str = ""                       # update, add_into: "+", "-" or "*"
    rest: sp.Expr | None = None        # update, add_into: the right-hand side of `op=`
    product: sp.Expr | None = None     # add_into: the term computed first, into a new array
    workspace: bool = False            # the value (add_into: the product) is written with out=
    leaf: object = None                # returned: the parameter whose gradient this is


@dataclass
class Plan:
    actions: list[Action]   # one per step of the schedule
    owned: set              # arrays this function allocated (not views of the caller's arrays)
    returned: dict          # target -> parameter leaf: gradients given their exact shape in place

    @property
    def uses_workspace(self) -> bool:
        return any(a.workspace for a in self.actions)


def matmul_operands(expr, printer) -> tuple[str, str] | None:
    """The printed operands when `expr` prints as a top-level `a @ b` (np.matmul, which takes out=)."""
    if expr.is_Atom:
        return None
    text = printer.doprint(expr)
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError:
        return None
    if not (isinstance(tree, ast.BinOp) and isinstance(tree.op, ast.MatMult)):
        return None
    return ast.get_source_segment(text, tree.left), ast.get_source_segment(text, tree.right)


def plan(sched, graph, printer, workspace: bool) -> Plan:
    """Walk the schedule once, deciding each statement's action (see the module's docstring). A
    backend whose arrays are immutable (JAX) gets no in-place updates: every value its own."""
    in_place = printer.backend.mutable
    shapes = graph.shapes
    program = sched.program
    operands = set()
    for step in sched.steps:
        operands |= step.statement.expr.free_symbols
    # a gradient no other statement reads is given its exact shape in place; one that others
    # read keeps its own shape there and is materialised on return
    returned = {g: leaf for leaf in graph.params
                for g in [program.grads.get(leaf.name)] if g is not None and g.is_Symbol
                and g not in operands}

    def into_workspace(expr, shape=None) -> bool:
        shape = shapes(expr) if shape is None else tuple(shape)
        return (workspace and shapes(expr) == shape and _large(shape)
                and matmul_operands(expr, printer) is not None  # (then its args are both tensors)
                and all(len(shapes(a)) <= 2 for a in expr.args))  # stacked products: slower with out=

    last_read = {s: i for i, step in enumerate(sched.steps) for s in step.release}
    actions, owned, views = [], set(), {}   # views: buffer -> the names that share its memory
    for i, step in enumerate(sched.steps):
        st = step.statement
        target_shape = shapes(st.target)
        if st.target in returned:
            leaf = returned[st.target]
            action = Action("returned", leaf=leaf, workspace=into_workspace(st.expr, leaf.shape))
        elif in_place and (reuse := _reusable(st, step, owned, shapes, _in_use(views, last_read, i))) is not None:
            action = Action("update", buffer=reuse[0], op=reuse[1], rest=reuse[2])
        elif in_place and (product := _fresh_term(st.expr, target_shape, shapes, printer)) is not None:
            rest = st.expr - product
            op, rest = ("-", -rest) if rest.could_extract_minus_sign() else ("+", rest)
            action = Action("add_into", op=op, rest=rest, product=product,
                            workspace=into_workspace(product, target_shape))
        else:
            action = Action("fresh", workspace=into_workspace(st.expr))
        actions.append(action)
        rule = rule_for(st.expr)
        if (not st.expr.is_Atom and not (rule is not None and rule.view)) or st.expr in owned:
            owned.add(st.target)
        base = action.buffer if action.kind == "update" else _viewed(st.expr)
        if base is not None:   # the target shares memory with `base` (and with what it shares)
            root = next((b for b, names in views.items() if base in names), base)
            views.setdefault(root, {root}).add(st.target)
    return Plan(actions, owned, returned)


def _viewed(expr):
    """The named array `expr` is a view of (or a bare name for), else None."""
    while not expr.is_Symbol:
        rule = rule_for(expr)
        if rule is None or not rule.view or expr.is_Atom:
            return None
        expr = rule.tensor_args(expr)[0]
    return expr


def _in_use(views: dict, last_read: dict, i: int):
    """`S` -> whether another name for S's memory (a view: a reshape, a transpose) is read at or
    after step i, or returned: then S must not be updated in place."""
    def busy(s) -> bool:
        names = next((n for n in views.values() if s in n), {s})
        return any(last_read.get(v, len(last_read) + i + 1) >= i for v in names if v != s)
    return busy


def _large(shape) -> bool:
    n = 1
    for d in shape:
        n *= d if isinstance(d, int) else 256
    return n >= LARGE


def _reusable(st, step, owned: set, shapes, busy):
    """`T = S * rest` or `T = S + rest` (the forms the op's rule offers) where S is an array this
    function allocated, of T's shape, that dies at this statement and shares its memory with no
    value read later (`busy`): compute it as `S *= rest` and let T name the same buffer. Returns
    (S, op, rest) or None."""
    expr = st.expr
    rule = rule_for(expr)
    for arg, op, rest in (rule.in_place(expr) if rule is not None else ()):
        if (arg.is_Symbol and arg in step.release and arg in owned and arg != st.target
                and shapes(arg) == shapes(st.target) and not busy(arg)):
            if arg in rest.free_symbols or rest.is_Number and (op == "+" and rest == 0
                                                               or op == "*" and rest == -1):
                continue
            if not _fits_into(rest, shapes(st.target), shapes):
                continue  # the update must not grow the buffer (the shape invariant, once more)
            if op == "+" and rest.could_extract_minus_sign():
                return arg, "-", -rest
            return arg, op, rest
    return None


def _fresh_term(expr, shape, shapes, printer):
    """The matrix product in a sum `a @ b + rest` that already has the sum's full shape: its result is
    a new array the rest can be added into."""
    if not isinstance(expr, sp.Add):
        return None
    for term in expr.args:
        rule = rule_for(term)
        if (rule is not None and not rule.view and shapes(term) == tuple(shape)
                and matmul_operands(term, printer) is not None and _fits_into(expr - term, shape, shapes)):
            return term
    return None


def _fits_into(update, shape, shapes) -> bool:
    """An in-place update `buffer op= update` computes the same as the expression it replaces only
    when `update` broadcasts into the buffer's shape."""
    try:
        return broadcast(shapes(update), shape) == tuple(shape)
    except ShapeMismatch:
        return False
