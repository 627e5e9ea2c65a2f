"""The gradient as mathematics.

For a model of scalars, the closed form ∂L/∂θ (SymPy's `diff`, simplified). For a tensor model, the
chain of vector-Jacobian products that the generated code computes, one line per named value from
the loss back to the parameter, in matrix notation: ∂L/∂out.W = hᵀ·∂L/∂logits.
"""
from __future__ import annotations

import sympy as sp

from . import ops as P
from .dag import rewrite, substitute
from .emit import value_names
from .errors import ModelError
from .inspection import gradient_slice
from .mathtext import MathLatexPrinter, MathPrinter


class softmax(sp.Function):
    """Only for display: exp(z − max z) / Σ exp(z − max z) is shown as softmax(z)."""

    def _mathtext(self, p):
        return f"softmax({p._print(self.args[0])})"

    def _latex(self, p):
        return rf"\operatorname{{softmax}}({p._print(self.args[0])})"


def _adjoint_label(name: str, loss: str, latex: bool) -> str:
    if latex:
        return rf"\frac{{\partial {loss}}}{{\partial \mathrm{{{name}}}}}"
    return f"∂{loss}/∂{name}"


def _recognize_softmax(expr):
    """exp(E)·(Σ exp(E))⁻¹ with E = z − max(z)  →  softmax(z)."""
    def rule(node):
        if not isinstance(node, sp.Mul):
            return None
        exps = [f for f in node.args if isinstance(f, sp.exp)]
        sums = [f for f in node.args if isinstance(f, sp.Pow) and f.exp == -1
                and isinstance(f.base, P.reduce_sum) and f.base.args[0] in exps]
        if not sums:
            return None
        e = sums[0].base.args[0]
        z = sp.Add(*[t for t in sp.Add.make_args(e.args[0])
                     if not (isinstance(-t, P.reduce_max) or isinstance(t, P.reduce_max))])
        rest = [f for f in node.args if f is not e and f is not sums[0]]
        return sp.Mul(softmax(z), *rest)
    return rewrite(expr, {}, after=lambda old, fresh: rule(fresh))


def explain(compiled, param: str, latex: bool = False) -> str:
    graph = compiled.graph
    leaves = {leaf.name: leaf for leaf in graph.params}
    if param not in leaves:
        raise ModelError(f"no parameter named {param!r}", fix=f"choose one of {', '.join(leaves)}")
    loss_name = graph.hints.get(graph.loss, "L")
    loss_name = "L" if loss_name == "loss" else loss_name
    if all(leaf.shape == () for leaf in graph.leaves.values()):
        d = sp.diff(graph.loss, leaves[param].symbol)
        if not d.has(sp.sign, P.Op):  # simplify would turn sign() into Piecewise/Abs clutter
            d = sp.simplify(d)
        names = {leaf.symbol: leaf.name for leaf in graph.leaves.values()}
        printer = MathLatexPrinter(names) if latex else MathPrinter(names)
        return f"{_adjoint_label(param, loss_name, latex)} = {printer.doprint(d)}"
    return "\n".join(_vjp_chain(compiled, param, loss_name, latex))


def explain_hessian(compiled, latex: bool = False, only: list | None = None) -> str:
    """Every second derivative ∂²L/∂θi∂θj (i ≤ j) of a model of scalars, in closed form: SymPy's own
    `diff`, twice, so it is independent of the generated hvp that the tests compare it with. With
    `only` (parameter names), the rows that involve one of them."""
    graph = compiled.graph
    if not all(leaf.shape == () for leaf in graph.leaves.values()):
        raise ModelError("--hessian shows the second derivatives of a model of scalars in closed form, "
                         "and this model has tensors", where=graph.path,
                         fix="compile with `symgrad compile MODEL --with hessian`, whose hessian function "
                             "returns H, or read the code of H·v with `symgrad compile MODEL --with hvp`")
    loss_name = graph.hints.get(graph.loss, "L")
    loss_name = "L" if loss_name == "loss" else loss_name
    names = {leaf.symbol: leaf.name for leaf in graph.leaves.values()}
    printer = MathLatexPrinter(names) if latex else MathPrinter(names)
    lines = []
    params = graph.params
    unknown = sorted(set(only or ()) - {leaf.name for leaf in params})
    if unknown:
        raise ModelError(f"no parameter named {', '.join(map(repr, unknown))}",
                         fix=f"choose from {', '.join(leaf.name for leaf in params)}")
    for i, p in enumerate(params):
        for q in params[i:]:
            if only and p.name not in only and q.name not in only:
                continue
            d = sp.diff(graph.loss, p.symbol, q.symbol)
            if not d.has(sp.sign, P.Op):
                d = sp.simplify(d)
            lines.append(f"{_second_label(p.name, q.name, loss_name, latex)} = {printer.doprint(d)}")
    return "\n".join(lines)


def _second_label(a: str, b: str, loss: str, latex: bool) -> str:
    if latex:
        wrt = rf"\partial \mathrm{{{a}}}^{{2}}" if a == b else rf"\partial \mathrm{{{a}}} \partial \mathrm{{{b}}}"
        return rf"\frac{{\partial^{{2}} {loss}}}{{{wrt}}}"
    return f"∂²{loss}/∂{a}²" if a == b else f"∂²{loss}/∂{a}∂{b}"


def _vjp_chain(compiled, param, loss_name, latex) -> list[str]:
    graph = compiled.graph
    sched = gradient_slice(compiled, param)
    code_names, _ = value_names(graph, sched)
    leaf_symbols = {leaf.symbol for leaf in graph.leaves.values()}
    named_nodes = set(graph.hints) | leaf_symbols
    grad_symbol = sched.program.grads[param]
    inline: dict = {}
    shown = []
    for step in sched.steps:
        st = step.statement
        expr = substitute(st.expr, inline, {}) if inline else st.expr
        keep = st.kind == "backward" and (st.node in named_nodes or st.target == grad_symbol)
        if st.kind == "forward" or keep:
            if keep:
                shown.append((st, expr))
            continue
        inline[st.target] = expr  # temporaries and unnamed adjoints read as their definitions
    names = {}
    for st, _ in shown:
        base = code_names[st.target][2:] if code_names[st.target].startswith("d_") else code_names[st.target]
        node_name = next((leaf.name for leaf in graph.leaves.values() if leaf.symbol == st.node), None)
        names[st.target] = _adjoint_label(node_name or graph.hints.get(st.node, base), loss_name, latex)
    for sym, name in code_names.items():
        names.setdefault(sym, name)
    for leaf in graph.leaves.values():
        names[leaf.symbol] = leaf.name
    printer = MathLatexPrinter(names) if latex else MathPrinter(names)
    lines = []
    for st, expr in shown:
        pretty = sp.factor_terms(_recognize_softmax(expr))
        lines.append(f"{names[st.target]} = {printer.doprint(pretty)}")
    return lines
