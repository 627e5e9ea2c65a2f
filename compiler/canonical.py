"""Canonicalize the traced graph before reverse mode: stable rewrites, guarded `where` branches, and
named values made visible as nodes again.

Stable rewrites: log(sigmoid(x)) = -softplus(-x), log(1 - sigmoid(x)) = -softplus(x),
log(1 + exp(x)) = softplus(x), log(exp(a)·r) = a + log(r), log(1/r) = -log(r) (so
log(softmax(z)) becomes z - max - log Σ exp(z - max)), log(cosh(x)) = |x| + softplus(-2|x|) - log 2
(finite where cosh overflows). Each rewrite that fires is noted with its line.

Guarded where: in where(c, a, b) every argument u of a singular op (log, sqrt, division, fractional
power) inside `a` is replaced by where(c, u, 1), and inside `b` by where(c, 1, u), so the branch
that is not selected computes finite values and its zero cotangent cannot become 0·inf = NaN.

SymPy flattens sums and products, so `z - m` with `z = x @ W + b` becomes one Add(b, x@W, -m) and the
node `z` has fewer consumers than the model file says. Regrouping such sums around the named value
(Add(z, -m), kept unevaluated) restores the DAG the user wrote: `d_z` is then z's whole gradient and
the backward reads `z` by name.
"""
from __future__ import annotations

import math

import sympy as sp

from .dag import rewrite
from .graph import Graph
from .errors import CompileError
from .ops import (absolute, conform, cosh, is_singular, make, maximum, reduce_max, reduce_sum,
                  rule_for, select, sigmoid, softplus, squeeze, stop_gradient)
from .shapes import ShapeMismatch, broadcast


def canonicalize(graph: Graph) -> Graph:
    rebuild(graph, _expand)
    rebuild(graph, _stable_rewrite)
    rebuild(graph, _guard_where)
    return expose_named_values(graph)


def rebuild(graph: Graph, rule, extra: tuple = ()) -> dict:
    """Rebuild the DAG bottom-up, applying `rule(node, graph)` to each node with rebuilt operands.
    Lines and names follow the nodes they belonged to. `extra` roots (adjoints) are rebuilt with
    the same memo, which is returned: old node -> its replacement."""
    def after(node, fresh):
        fresh = rule(fresh, graph, graph.lines.get(node, 0)) or fresh
        if fresh is not node:
            if node in graph.lines:
                graph.lines.setdefault(fresh, graph.lines[node])
            if node in graph.hints and fresh not in graph.hints:
                graph.hints[fresh] = graph.hints[node]
        return _keep_shape(fresh, node, graph)
    new: dict = {}
    for root in _roots(graph) + list(extra):
        rewrite(root, new, after=after)
    _remap(graph, new)
    return new


def _keep_shape(fresh, node, graph: Graph):
    """A rewritten node keeps the shape of the node it replaces (SymPy may have folded a broadcast
    away); a rewrite that cannot is a compiler bug, refused with the model line."""
    if fresh is node:
        return node
    try:
        return conform(fresh, graph.shapes(node), graph.shapes)
    except ShapeMismatch as e:
        line = graph.lines.get(node, 0)
        raise CompileError(f"{graph.path}:{line}: internal error in a rewrite: {e}; this is a "
                           "symgrad bug, please report it") from None


def _roots(graph: Graph) -> list:
    """Everything the later stages read: the loss, the outputs, their inference forms, and the
    running-statistics updates."""
    return ([graph.loss] + [e for e, _ in graph.outputs.values()] + list(graph.eval_subs.values())
            + list(graph.state_updates.values()))


def _remap(graph: Graph, new: dict) -> None:
    graph.loss = new.get(graph.loss, graph.loss)
    graph.outputs = {k: (new.get(e, e), s) for k, (e, s) in graph.outputs.items()}
    graph.eval_subs = {new.get(k, k): new.get(v, v) for k, v in graph.eval_subs.items()}
    graph.state_updates = {k: new.get(v, v) for k, v in graph.state_updates.items()}


def _expand(node, graph: Graph, line: int):
    """An op whose rule expands it (gelu) becomes its simpler ops, so their values are shared."""
    rule = rule_for(node)
    return rule.expand(node) if rule is not None and rule.expand is not None else None


def _stable_rewrite(node, graph: Graph, line: int):
    if not isinstance(node, sp.log):
        return None
    (u,) = node.args
    out, note = None, None
    if isinstance(u, sigmoid):
        out, note = -softplus(-u.args[0]), "log(sigmoid(x)) = -softplus(-x)"
    elif isinstance(u, sp.Add) and len(u.args) == 2 and sp.S.One in u.args:
        other = u.args[0] if u.args[1] == 1 else u.args[1]
        if isinstance(other, sp.exp):
            out, note = softplus(other.args[0]), "log(1 + exp(x)) = softplus(x)"
        elif isinstance(-other, sigmoid):
            out, note = -softplus((-other).args[0]), "log(1 - sigmoid(x)) = -softplus(x)"
    elif (isinstance(u, sp.Add) and len(u.args) > 1 and all(isinstance(t, sp.exp) for t in u.args)
          and not u.has(stop_gradient)):  # not one this rewrite made
        out = _log_add_exp([t.args[0] for t in u.args])
        note = "log(exp(a) + exp(b)) = m + log(exp(a - m) + exp(b - m)), m = max(a, b)"
    elif isinstance(u, reduce_sum) and isinstance(u.args[0], sp.exp) and not u.args[0].has(stop_gradient):
        out, note = _log_sum_exp(u), "log(sum(exp(x))) = m + log(sum(exp(x - m))), m = max(x)"
    elif isinstance(u, sp.Mul) and any(isinstance(f, sp.exp) for f in u.args):
        exps = [f for f in u.args if isinstance(f, sp.exp)]
        rest = sp.Mul(*[f for f in u.args if not isinstance(f, sp.exp)])
        out = sp.Add(*[f.args[0] for f in exps]) + (sp.log(rest) if rest != 1 else 0)
        note = "log(exp(a)·r) = a + log(r): log(softmax(z)) = z - logsumexp(z)"
    elif isinstance(u, sp.Pow) and u.exp == -1:
        out, note = -sp.log(u.base), "log(1/r) = -log(r)"
    elif isinstance(u, cosh):
        out, note = _log_cosh(u.args[0]), "log(cosh(x)) = |x| + softplus(-2|x|) - log(2)"
    if out is None:
        return None
    out = _stable_rewrite(out, graph, line) if isinstance(out, sp.log) else out
    graph.notes.append((line, note))
    for sub in sp.preorder_traversal(out):  # nested logs made by the rewrite get the same care
        if isinstance(sub, sp.log) and sub is not out:
            again = _stable_rewrite(sub, graph, line)
            if again is not None:
                out = out.xreplace({sub: again})
    return out


def _log_add_exp(terms: list):
    """log Σ_i exp(a_i) with the largest a_i subtracted first (it gets no gradient: the result does
    not depend on it), so no exp overflows."""
    m = terms[0]
    for t in terms[1:]:
        m = maximum(m, t)
    m = stop_gradient(m)
    return m + sp.log(sp.Add(*[make(sp.exp, [t - m]) for t in terms]))


def _log_cosh(x):
    """|x| + log(1 + e^(-2|x|)) - log 2: cosh never overflows; the gradient is tanh(x), ±1 far out."""
    a = absolute(x)
    return a + softplus(-2 * a) - sp.Float(math.log(2))


def _log_sum_exp(total):
    """log(sum(exp(x), axes)) as the max along `axes` plus the log of the sum of exp(x - max)."""
    x, axes, keep = total.args[0].args[0], total.args[1], total.args[2]
    m = stop_gradient(reduce_max(x, axes, sp.Integer(1)))
    return sp.log(reduce_sum(make(sp.exp, [x - m]), axes, keep)) + (m if keep else squeeze(m, axes))


def _guard_where(node, graph: Graph, line: int):
    if not isinstance(node, select) or len(node.args) < 4:
        return None  # only the user's where(); the ReLU family's routers have no singular branch
    c, a, b, flag = node.args
    ga = _guard_branch(a, c, graph, lambda u: select(c, u, 1, flag))
    gb = _guard_branch(b, c, graph, lambda u: select(c, 1, u, flag))
    if ga is a and gb is b:
        return None
    graph.notes.append((line, "where(): singular ops in the unselected branch are guarded"))
    return select(c, ga, gb, flag)


def _guard_branch(expr, cond, graph: Graph, guard):
    """Guard singular ops reachable from `expr` through elementwise ops only, where the condition
    lines up with the operand position by position (it broadcasts into the operand's shape)."""
    shapes, c_shape = graph.shapes, graph.shapes(cond)

    def outside(node):
        """Structural ops (matmul, reductions) end the region: positions no longer line up."""
        rule = rule_for(node)
        return node if rule is None or not rule.elementwise else None

    def build(node, args):
        if is_singular(node) and _fits(c_shape, shapes(node.args[0])):
            args = (guard(args[0]),) + args[1:]
        return node if args == node.args else make(node.func, args)
    return rewrite(expr, {}, before=outside, build=build)


def _fits(c_shape, u_shape) -> bool:
    try:
        return broadcast(c_shape, u_shape) == tuple(u_shape)
    except ShapeMismatch:
        return False


def expose_named_values(graph: Graph) -> Graph:
    # every named sum or product, also one SymPy flattened into its only user (so no longer a node)
    named = [n for n in graph.hints if isinstance(n, (sp.Add, sp.Mul))]
    new: dict = {}

    def build(node, args):
        if isinstance(node, (sp.Add, sp.Mul)):
            args = _regroup(node, args, named, lambda h: rewrite(h, new, build=build))
        if args == node.args:
            return node
        if isinstance(node, (sp.Add, sp.Mul, sp.Pow)):  # unevaluated: SymPy must not flatten again
            return _keep_shape(node.func(*args, evaluate=False), node, graph)
        return _keep_shape(make(node.func, args), node, graph)
    for root in _roots(graph):
        rewrite(root, new, build=build)
    for old, fresh in new.items():
        if fresh is not old:
            if old in graph.lines:
                graph.lines.setdefault(fresh, graph.lines[old])
            if old in graph.hints:
                graph.hints[fresh] = graph.hints.pop(old)
    _remap(graph, new)
    return graph


def _regroup(node, args, named, rewritten):
    """Replace the operands of a named sum/product found inside `node` by that named node
    (`rewritten(h)`: the named node with its own operands rewritten)."""
    rest = list(node.args)
    grouped = []
    for h in sorted((h for h in named if type(h) is type(node) and h is not node),
                    key=lambda h: -len(h.args)):
        if len(h.args) < len(rest) + (1 if grouped else 0) and all(a in rest for a in h.args):
            for a in h.args:
                rest.remove(a)
            grouped.append(rewritten(h))
    if not grouped:
        return args
    return tuple(grouped) + tuple(args[node.args.index(a)] for a in rest)
