"""Fuse (numba backend only): split each statement into what a compiled loop computes and what NumPy does.

A fused loop visits each element of its output once and computes the statement's whole elementwise
chain there (`relu(x @ W + b)` is one pass: the bias, the activation, nothing stored in between);
matrix products, convolutions' windows and the other structural ops stay NumPy calls (BLAS). So a
statement whose root a loop can compute keeps its elementwise ops and reductions, and every other
subexpression becomes a statement of its own, computed by NumPy before it. Each op's rule says how
a loop treats it (`Rule.fuse`); the loops themselves are printed by emit/kernels.py.
"""
from __future__ import annotations

from dataclasses import replace

import sympy as sp

from .ops import make, rule_for
from .optimize import Program, Statement
from .schedule import Schedule, in_order
from .shapes import numel

# A loop computes exp, log and tanh one element at a time through libm; NumPy's vectorised ufuncs
# are several times faster per element but cost a call each. Up to this many elements per sample
# (a class's logits, a small layer) a loop still wins; wider layers keep their activations in NumPy.
LIBM_IN_LOOPS = 16


def fuse_kind(node) -> str:
    """How a loop computes `node` (Rule.fuse): "map", "libm", "index", "sum", "max" or ""."""
    if node.is_Atom:
        return "map"
    rule = rule_for(node)
    return rule.fuse(node) if rule is not None else ""


def in_loops(node, shapes) -> bool:
    """Whether a loop computes `node` itself (its operands aside), below a statement's root."""
    kind = fuse_kind(node)
    if kind == "libm":
        return numel(shapes(node), {}) <= LIBM_IN_LOOPS   # symbolic sizes count 1: per sample
    return kind in ("map", "index")


def tensor_args(node) -> tuple:
    rule = rule_for(node)
    return node.args if rule is None else rule.tensor_args(node)


def is_loop(expr, shapes) -> bool:
    """Whether a loop computes the whole statement `expr` (a root reduction over a loop's values,
    or an elementwise tree); a bare name or number is NumPy's (an alias, a constant)."""
    if expr.is_Atom:
        return False
    if fuse_kind(expr) in ("sum", "max"):
        return all(_loop_tree(a, shapes) for a in tensor_args(expr))
    return _loop_tree(expr, shapes)


def _loop_tree(expr, shapes) -> bool:
    return expr.is_Atom or (in_loops(expr, shapes) and all(_loop_tree(a, shapes) for a in tensor_args(expr)))


def split_for_loops(program: Program, shapes) -> Program:
    """The program with every subexpression a loop cannot compute, below a root it can, hoisted
    into a statement of its own (named after its op, like any shared temporary)."""
    statements: list[Statement] = []
    count = [0]

    def hoist(expr, st, root: bool):
        if expr.is_Atom:
            return expr
        if (root and fuse_kind(expr) in ("sum", "max")) or in_loops(expr, shapes):
            n = len(tensor_args(expr))
            args = [hoist(a, st, False) for a in expr.args[:n]] + list(expr.args[n:])
            return expr if args == list(expr.args) else make(expr.func, args)
        if root:
            return expr   # NumPy computes this statement as it is
        count[0] += 1
        symbol = sp.Symbol(f"_{program.name}_loop{count[0]}", real=True)
        shapes.set(symbol, shapes(expr))
        statements.append(Statement(symbol, hoist(expr, st, True), "shared", None, st.line, st.priority))
        return symbol

    for st in program.statements:
        expr = hoist(st.expr, st, True)
        statements.append(st if expr is st.expr else replace(st, expr=expr))
    return replace(program, statements=statements)


def cluster(sched: Schedule, shapes) -> Schedule:
    """The schedule with each loop statement moved up to just after the run of loop statements
    that computes what it reads (within its section of the function), so they share a kernel: a
    bias gradient's column sum joins the loop of its cotangent instead of waiting for the weight
    gradient's product scheduled in between."""
    program = sched.program
    position = {st.target: i for i, st in enumerate(program.statements)}
    order: list = []   # statements
    for st in (step.statement for step in sched.steps):
        at = len(order)
        if is_loop(st.expr, shapes):
            reads = st.expr.free_symbols
            last = max((i for i, o in enumerate(order) if o.target in reads), default=-1)
            at = last + 1
            while at < len(order) and (order[at].priority[:1] < st.priority[:1]
                                       or (at > 0 and is_loop(order[at].expr, shapes)
                                           and is_loop(order[at - 1].expr, shapes))):
                at += 1
        order.insert(at, st)
    return in_order(program, [position[st.target] for st in order], shapes)
