"""Beyond the gradient: Hessian-vector products, forward mode and input gradients, all derived by
running reverse mode (ad.py) once more, over the program reverse mode wrote.

    hvp         s(θ) = Σ_p ⟨∇_p f, v_p⟩; reverse mode over the gradient gives ∇s = H·v
    jvp         f's outputs y; reverse mode of ⟨y, u⟩ gives Jᵀu, linear in a dummy cotangent u;
                reverse mode of ⟨Jᵀu, t⟩ with respect to u gives J·t, in which u no longer appears
    input_grad  reverse mode with respect to the float inputs instead of the parameters

The second pass sees the first pass's adjoint symbols as the identity of their expressions, so it
differentiates each VJP rule the way the first differentiated the forward: every op's VJP must be
differentiable again, which the registry checks (tests/test_second_order.py). No second set of
rules exists: the adjoints of the second pass *are* forward-over-reverse's tangents. The adjoint
of a first-pass adjoint d_x is ẋ, the derivative of x along the direction (printed `x_dot`); the
adjoint of a forward value x is the derivative of d_x along it (`d_x_dot`), and the parameters'
`d_W_dot` are the rows of H·v.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import sympy as sp

from .ad import Adjoint, Backward, backward
from .dag import fold, rewrite
from .errors import CompileError, ModelError
from .graph import Graph, Leaf
from .ops import axes_arg, reduce_sum, unless_zero

FUNCTIONS = ("hvp", "jvp", "input_grad", "hessian")   # what `--with` may add


@dataclass
class Derived:
    """What one extra function computes: the adjoints of its passes (first pass first) and its
    results, keyed by parameter, input or output name, with their shapes."""
    name: str
    backward: Backward
    results: dict[str, sp.Expr]
    shapes: dict[str, tuple]
    directions: list[Leaf]         # the direction (tangent) each parameter gets, in PARAMS order
    returns_loss: bool = True      # (loss, ...) first; jvp returns the outputs instead


def direction_leaves(graph: Graph) -> list[Leaf]:
    """One tangent per parameter, `W_dot` in the printed code; symbols no model name can clash with."""
    leaves = []
    for leaf in graph.params:
        symbol = sp.Symbol(f"{leaf.name}~dot", real=True)
        graph.shapes.set(symbol, leaf.shape)
        leaves.append(Leaf(leaf.name, symbol, leaf.shape, "direction", leaf.line))
    return leaves


def inner(pairs) -> sp.Expr:
    """Σ ⟨a, b⟩ over the pairs: the scalar whose gradient the next pass takes."""
    terms = []
    for a, b, shape in pairs:
        if a == 0:
            continue
        terms.append(reduce_sum(a * b, axes_arg(range(len(shape))), sp.Integer(0)) if shape else a * b)
    return sp.Add(*terms)


def in_order(results: dict, leaves: list) -> dict:
    """Results in the leaves' declaration order (reverse mode finishes them in reverse)."""
    return {leaf.name: results[leaf.name] for leaf in leaves}


def _as_tangents(second: Backward, bound: dict, lines: dict, outputs: dict | None = None) -> list[Adjoint]:
    """Second-pass adjoints named for what they are. Of a first-pass d_x (or of the expression it
    is bound to), the tangent ẋ: role "tangent", node x. Of another node that reads first-pass
    adjoints (an intermediate of a VJP), a tangent too, named after that node. Of a forward value x,
    the tangent of d_x: role "grad_tangent". `outputs` maps jvp's dummy cotangents to their outputs."""
    of_expr = {}
    for symbol, adj in bound.items():
        of_expr.setdefault(adj.expr, adj.node)
    outputs = outputs or {}
    reads: dict = {}

    def reads_adjoints(node) -> bool:
        return fold(node, lambda x: x in bound, any, reads)
    out = []
    for adj in second.adjoints:
        node = adj.node
        x = bound[node].node if node in bound else outputs.get(node, of_expr.get(node))
        if x is not None:   # ẋ belongs to the line that computes x
            out.append(replace(adj, node=x, role="tangent", line=lines.get(x, adj.line)))
        else:
            out.append(replace(adj, role="tangent" if reads_adjoints(node) else "grad_tangent"))
    return out


def _along(graph: Graph, first: Backward, wrt: list, prefix: str):
    """The second pass: reverse mode of Σ_p ⟨∇_p, v_p⟩ (the first pass's parameter gradients along
    a direction v) with respect to `wrt`, through the first pass. Returns (directions, bound, second)."""
    directions = direction_leaves(graph)
    s = inner((first.grads[leaf.name], d.symbol, leaf.shape) for leaf, d in zip(graph.params, directions))
    bound = {adj.symbol: adj for adj in first.adjoints}
    return directions, bound, backward(graph, s, wrt, bound, prefix=prefix)


def hvp(graph: Graph, first: Backward) -> Derived:
    directions, bound, second = _along(graph, first, graph.params, "_hvp")
    adjoints = first.adjoints + _as_tangents(second, bound, graph.lines)
    return Derived("hvp", Backward(adjoints, first.grads), in_order(second.grads, graph.params),
                   {leaf.name: leaf.shape for leaf in graph.params}, directions)


def jvp(graph: Graph, outputs: dict[str, sp.Expr]) -> Derived:
    """J·t for the outputs `outputs` (the inference forms: dropout off, running statistics)."""
    if not outputs:
        raise ModelError("forward mode differentiates the model's outputs, and the model file declares none",
                         op="jvp", where=graph.path,
                         fix='declare them, e.g. outputs = {"logits": logits}, or leave jvp out of --with')
    dummies = []
    for name, (_, shape) in graph.outputs.items():
        symbol = sp.Symbol(f"{name}~cotangent", real=True)
        graph.shapes.set(symbol, graph.shapes(outputs[name]))
        dummies.append(Leaf(name, symbol, graph.shapes(outputs[name]), "cotangent", 0))
    linear = inner((outputs[u.name], u.symbol, u.shape) for u in dummies)
    first = backward(graph, linear, graph.params, prefix="_vjp")
    directions, bound, second = _along(graph, first, dummies, "_jvp")
    # the dummy, and the first-pass values it reaches (an adjoint reads only earlier adjoints, so a
    # cached answer never goes stale; SymPy's free_symbols would walk the DAG as a tree)
    left = {u.symbol for u in dummies}
    cache: dict = {}

    def reads_dummy(expr) -> bool:
        return fold(expr, lambda x: x in left, any, cache)
    for adj in first.adjoints:
        if reads_dummy(adj.expr):
            left.add(adj.symbol)
    second = Backward(_unguarded(second.adjoints, reads_dummy), second.grads)
    for adj in second.adjoints:
        if reads_dummy(adj.expr):
            raise CompileError(f"{graph.path}:{adj.line}: internal error: the tangent of "
                               f"{graph.source_line(adj.line)!r} is not linear in the direction; "
                               "this is a symgrad bug, please report it")
    tangents = _as_tangents(second, bound, graph.lines, {u.symbol: outputs[u.name] for u in dummies})
    return Derived("jvp", Backward(first.adjoints + tangents, {}), in_order(second.grads, dummies),
                   {name: shape for name, (_, shape) in graph.outputs.items()}, directions,
                   returns_loss=False)


def _unguarded(adjoints: list, reads_dummy) -> list:
    """Inside a where() branch the first pass guards a singular op's VJP as unless_zero(g, v): 0
    where the cotangent g is 0 (an unselected position). Transposed, the guard tests the dummy
    cotangent, which J·t must not read; the where() itself still selects those positions away, so
    the tangent is v."""
    memo: dict = {}

    def drop(old, fresh):
        if isinstance(fresh, unless_zero) and reads_dummy(fresh.args[0]):
            return fresh.args[1]
        return None
    return [replace(adj, expr=rewrite(adj.expr, memo, after=drop)) for adj in adjoints]


def input_grad(graph: Graph) -> Derived:
    floats = [leaf for leaf in graph.inputs if leaf.kind == "input"]
    if not floats:
        raise ModelError("the gradient with respect to the inputs needs a float input, and this model has "
                         "none (only integer labels or tokens, or no inputs)", op="input_grad", where=graph.path,
                         fix="compile without `--with input_grad`")
    bw = backward(graph, wrt=floats, prefix="_inp")
    return Derived("input_grad", Backward(bw.adjoints, {}), in_order(bw.grads, floats),
                   {leaf.name: leaf.shape for leaf in floats}, [])
