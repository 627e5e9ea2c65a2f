"""Canonicalize the traced graph before reverse mode: make named values visible as nodes again.

SymPy flattens sums and products, so `z - m` with `z = x @ W + b` becomes one Add(b, x@W, -m) and the
node `z` has fewer consumers than the model file says. Regrouping such sums around the named value
(Add(z, -m), kept unevaluated) restores the DAG the user wrote: `d_z` is then z's whole gradient and
the backward reads `z` by name.
"""
from __future__ import annotations

import sympy as sp

from .graph import Graph
from .optimize import forward_nodes


def expose_named_values(graph: Graph) -> Graph:
    roots = [graph.loss] + [e for e, _ in graph.outputs.values()]
    order = forward_nodes(roots)
    named = [n for n in order if isinstance(n, (sp.Add, sp.Mul)) and n in graph.hints]
    new: dict = {}
    for node in order:
        args = tuple(new.get(a, a) for a in node.args)
        if isinstance(node, (sp.Add, sp.Mul)):
            args = _regroup(node, args, named, new)
        if args == node.args:
            new[node] = node
        elif isinstance(node, (sp.Add, sp.Mul, sp.Pow)):
            new[node] = node.func(*args, evaluate=False)
        else:
            new[node] = node.func(*args)
    for old, fresh in new.items():
        if fresh is not old:
            if old in graph.lines:
                graph.lines.setdefault(fresh, graph.lines[old])
            if old in graph.hints:
                graph.hints[fresh] = graph.hints.pop(old)
    graph.loss = new.get(graph.loss, graph.loss)
    graph.outputs = {k: (new.get(e, e), s) for k, (e, s) in graph.outputs.items()}
    return graph


def _regroup(node, args, named, new):
    """Replace the operands of a named sum/product found inside `node` by that named node."""
    rest = list(node.args)
    grouped = []
    for h in sorted((h for h in named if type(h) is type(node) and h is not node),
                    key=lambda h: -len(h.args)):
        if len(h.args) < len(rest) + (1 if grouped else 0) and all(a in rest for a in h.args):
            for a in h.args:
                rest.remove(a)
            grouped.append(new.get(h, h))
    if not grouped:
        return args
    return tuple(grouped) + tuple(new.get(a, a) for a in rest)
