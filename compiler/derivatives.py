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
from .errors import CompileError
from .graph import Graph, Leaf
from .ops import axes_arg, reduce_sum

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


def _as_tangents(second: Backward, bound: dict) -> list[Adjoint]:
    """Second-pass adjoints renamed to what they are: of a first-pass d_x, the tangent ẋ (role
    "tangent", node x); of a forward value x, the tangent of d_x (role "grad_tangent")."""
    out = []
    for adj in second.adjoints:
        if adj.node in bound:
            out.append(replace(adj, node=bound[adj.node].node, role="tangent"))
        else:
            out.append(replace(adj, role="grad_tangent"))
    return out


def hvp(graph: Graph, first: Backward) -> Derived:
    directions = direction_leaves(graph)
    s = inner((first.grads[leaf.name], d.symbol, leaf.shape) for leaf, d in zip(graph.params, directions))
    bound = {adj.symbol: adj for adj in first.adjoints}
    second = backward(graph, s, graph.params, bound, prefix="_hvp")
    adjoints = first.adjoints + _as_tangents(second, bound)
    return Derived("hvp", Backward(adjoints, first.grads), dict(second.grads),
                   {leaf.name: leaf.shape for leaf in graph.params}, directions)


def jvp(graph: Graph, outputs: dict[str, sp.Expr]) -> Derived:
    """J·t for the outputs `outputs` (the inference forms: dropout off, running statistics)."""
    if not outputs:
        raise CompileError(f"{graph.path}: jvp needs outputs; the model file declares none",
                           fix="declare the values to differentiate with output(name, value)")
    directions = direction_leaves(graph)
    dummies = []
    for name, (_, shape) in graph.outputs.items():
        symbol = sp.Symbol(f"{name}~cotangent", real=True)
        graph.shapes.set(symbol, graph.shapes(outputs[name]))
        dummies.append(Leaf(name, symbol, graph.shapes(outputs[name]), "cotangent", 0))
    linear = inner((outputs[u.name], u.symbol, u.shape) for u in dummies)
    first = backward(graph, linear, graph.params, prefix="_vjp")
    s = inner((first.grads[leaf.name], d.symbol, leaf.shape) for leaf, d in zip(graph.params, directions))
    bound = {adj.symbol: adj for adj in first.adjoints}
    second = backward(graph, s, dummies, bound, prefix="_jvp")
    left = {u.symbol for u in dummies} | set(bound)
    for adj in second.adjoints:
        if adj.expr.free_symbols & left:
            raise CompileError(f"{graph.path}:{adj.line}: internal error: the tangent of "
                               f"{graph.source_line(adj.line)!r} is not linear in the direction; "
                               "this is a symgrad bug, please report it")
    return Derived("jvp", Backward(_as_tangents(second, bound), {}), dict(second.grads),
                   {name: shape for name, (_, shape) in graph.outputs.items()}, directions)


def input_grad(graph: Graph) -> Derived:
    floats = [leaf for leaf in graph.inputs if leaf.kind == "input"]
    if not floats:
        raise CompileError(f"{graph.path}: input_grad needs a float input; this model's inputs are "
                           "all integer labels or tokens", fix="leave input_grad out of --with")
    bw = backward(graph, wrt=floats, prefix="_inp")
    return Derived("input_grad", bw, dict(bw.grads), {leaf.name: leaf.shape for leaf in floats}, [])
