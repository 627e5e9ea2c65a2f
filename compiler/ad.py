"""Reverse mode: one walk over the DAG from the loss back to the parameters.

Each node's adjoint is the sum of its consumers' cotangents, bound to a fresh symbol (SSA), so the
cost stays linear in the graph size and no expression swells. VJPs come from the registry.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import sympy as sp

from .errors import CompileError
from .dag import postorder, tensor_operands
from .graph import Graph
from .ops import (broadcast_to, conform, is_singular, reduce_sum, rule_for, select, unbroadcast,
                         unless_zero)
from .shapes import ShapeMismatch, broadcast, dim_expr, fmt


class UnusedParameterWarning(UserWarning):
    """A parameter does not reach the loss; its gradient is identically zero."""


@dataclass(frozen=True)
class Adjoint:
    symbol: sp.Symbol   # the bound name of this adjoint
    expr: sp.Expr       # the sum of cotangents flowing into `node`
    node: sp.Basic      # the forward value this is the gradient of
    source: sp.Basic | None = None  # the consumer whose VJP completed it (None for the loss's seed)
    line: int = 0       # the model-file line of that consumer: the line whose backward computes it
    role: str = ""      # second pass (derivatives.py): "tangent" (ẋ) or "grad_tangent" (the tangent of d_x)


@dataclass
class Backward:
    adjoints: list[Adjoint]          # in execution order (reverse topological order of the forward)
    grads: dict[str, sp.Expr]        # param name -> its adjoint symbol, or 0 when unused


def topological_order(root: sp.Basic, bound: dict | None = None) -> list[sp.Basic]:
    """Every distinct node under `root`, leaves included, operands before users. A `bound` symbol
    (an adjoint of an earlier pass) stands for its expression: its operand is that expression."""
    bound = bound or {}

    def operands(node):
        return (bound[node].expr,) if node in bound else tensor_operands(node)
    order = postorder([root], operands, atoms=True)
    for node in order:
        if not node.is_Atom and rule_for(node) is None:
            raise CompileError(f"no rule for op {type(node).__name__}")
    return order


def accumulate(parts: list, shapes) -> sp.Expr:
    """Sum a node's cotangents; sums over the same axes of operands of the same shape are fused:
    Σ_axes(a) + Σ_axes(b) = Σ_axes(a+b). (A parameter used at two broadcast shapes, as a scale in a
    (B, 4) and a (B, 3) product, has sums whose operands cannot be added: they stay apart.)"""
    groups: dict = {}
    rest = []
    for part in parts:
        if isinstance(part, reduce_sum):
            groups.setdefault((part.args[1:], shapes(part.args[0])), []).append(part.args[0])
        else:
            rest.append(part)
    fused = []
    for (static, shape), xs in groups.items():
        total = sp.Add(*xs)
        if total != 0:  # contributions that cancel exactly are no contribution
            fused.append(reduce_sum(conform(total, shape, shapes), *static))
    return sp.Add(*rest, *fused)


def _where_branches(order, bound) -> set:
    """Nodes inside the branches of a user's where(): their cotangent is 0 where not selected."""
    inside: set = set()
    for node in order:
        if isinstance(node, select) and len(node.args) > 3:
            inside |= set(topological_order(node.args[1], bound))
            inside |= set(topological_order(node.args[2], bound))
    return inside


def _adjoint_shape(total, node, graph: Graph):
    """The physical shape of an adjoint, which must broadcast to its node's shape (cotangents stay
    lazily broadcast); anything else is a wrong VJP rule, refused before any code is emitted."""
    shapes = graph.shapes
    try:
        have = shapes(total)
        if broadcast(have, shapes(node)) == tuple(shapes(node)):
            return have
        problem = f"has shape {fmt(have)}"
    except ShapeMismatch as e:
        problem = f"does not have a shape ({e})"
    line = graph.lines.get(node, 0)
    raise CompileError(f"{graph.path}:{line}: internal error: the gradient of a {fmt(shapes(node))} "
                       f"{type(node).__name__} {problem}; this is a symgrad bug, please report it")


def _completing(consumers: list, lines: dict):
    """Of the consumers that sent a node cotangents, the one on the earliest model-file line (the
    last whose VJP runs): its backward is where the node's gradient is complete."""
    if not consumers:
        return None
    return min(consumers, key=lambda c: (lines.get(c, 0) or 10**9, -consumers.index(c)))


def backward(graph: Graph, loss: sp.Expr | None = None, wrt: list | None = None,
             bound: dict | None = None, prefix: str = "_adj") -> Backward:
    """The adjoint of every node between the leaves `wrt` (the parameters by default) and the
    scalar `loss` (the model's by default). `bound` maps the adjoint symbols of an earlier pass to
    their `Adjoint`s: reverse mode then runs through that pass too (second derivatives), each
    bound symbol the identity of its expression. `prefix` keeps the passes' symbols apart."""
    shapes = graph.shapes
    default = wrt is None
    wrt = graph.params if default else wrt
    loss = graph.loss if loss is None else loss
    bound = bound or {}
    lines = dict(graph.lines)
    lines.update({symbol: adj.line for symbol, adj in bound.items()})
    leaves = {leaf.symbol: leaf for leaf in wrt}
    order = topological_order(loss, bound)

    needs_grad: set = set()
    for node in order:
        if node in leaves or (bound[node].expr in needs_grad if node in bound else not node.is_Atom
                              and any(a in needs_grad for a in rule_for(node).tensor_args(node))):
            needs_grad.add(node)

    under_where = _where_branches(order, bound)
    cotangents: dict[sp.Basic, list] = {loss: [sp.Integer(1)]}
    consumers: dict[sp.Basic, list] = {}   # node -> the nodes whose VJPs sent it a cotangent
    adjoints: list[Adjoint] = []
    grads: dict[str, sp.Expr] = {}
    for node in reversed(order):
        parts = cotangents.pop(node, None)
        if not parts or node not in needs_grad:
            continue
        total = accumulate(parts, shapes)
        if total == 0:
            continue
        symbol = sp.Symbol(f"{prefix}{len(adjoints)}", real=True)
        shapes.set(symbol, _adjoint_shape(total, node, graph))
        source = _completing(consumers.pop(node, []), lines)
        adjoints.append(Adjoint(symbol, total, node, source,
                                lines.get(node if source is None else source, 0)))
        if node in leaves:
            grads[leaves[node].name] = symbol
            continue
        if node in bound:  # the identity: its expression gets the whole cotangent
            cotangents.setdefault(bound[node].expr, []).append(symbol)
            consumers.setdefault(bound[node].expr, []).append(node)
            continue
        rule = rule_for(node)
        g = symbol
        if not rule.lazy and shapes(g) != shapes(node):
            g = broadcast_to(g, sp.Tuple(*[dim_expr(d) for d in shapes(node)]))
        if rule.vjp is None:
            raise CompileError(f"op {type(node).__name__} has no gradient rule but lies between "
                               "a parameter and the loss")
        cts = rule.vjp(node, g, shapes)
        if node in under_where and is_singular(node):  # 0 from an unselected position stays 0
            cts = tuple(None if ct is None else unless_zero(g, ct) for ct in cts)
        for arg, ct in zip(rule.tensor_args(node), cts):
            if ct is None or arg not in needs_grad or ct == 0:
                continue
            logical = shapes(node) if rule.elementwise else shapes(arg)
            cotangents.setdefault(arg, []).append(unbroadcast(ct, shapes(ct), shapes(arg), logical))
            consumers.setdefault(arg, []).append(node)

    for leaf in wrt:
        if leaf.name not in grads:
            grads[leaf.name] = sp.Integer(0)
            if default:
                warnings.warn(f"{graph.path}:{leaf.line}: parameter {leaf.name!r} does not reach "
                              "the loss; its gradient is zero", UnusedParameterWarning, stacklevel=2)
    return Backward(adjoints=adjoints, grads=grads)
