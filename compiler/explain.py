"""The gradient as mathematics.

For a model of scalars, the closed form ∂L/∂θ (SymPy's `diff`, simplified). For a tensor model, the
chain of vector-Jacobian products that the generated code computes, one line per named value from
the loss back to the parameter, in matrix notation: ∂L/∂out.W = hᵀ·∂L/∂logits.
"""
from __future__ import annotations

import sympy as sp
from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter

from . import primitives as P
from .errors import ModelError
from .optimize import substitute


class softmax(sp.Function):
    """Only for display: exp(z − max z) / Σ exp(z − max z) is shown as softmax(z)."""


def _adjoint_label(name: str, loss: str, latex: bool) -> str:
    if latex:
        return rf"\frac{{\partial {loss}}}{{\partial \mathrm{{{name}}}}}"
    return f"∂{loss}/∂{name}"


class MathPrinter(StrPrinter):
    """Unicode math: · for matrix products, ᵀ, Σ over an axis, ⊙[x > 0] for the ReLU family."""

    def __init__(self, names: dict):
        super().__init__()
        self.names = names

    def _print_Symbol(self, expr):
        return self.names.get(expr, expr.name)

    def _print_matmul(self, expr):
        return "·".join(self.parenthesize(a, 50, strict=False) for a in expr.args)

    def _print_transpose(self, expr):
        return self.parenthesize(expr.args[0], 1000, strict=True) + "ᵀ"

    def _print_reduce_sum(self, expr):
        axes = tuple(int(a) for a in expr.args[1])
        return f"Σ_{{axis {','.join(map(str, axes))}}}({self._print(expr.args[0])})"

    def _print_reduce_max(self, expr):
        return f"max({self._print(expr.args[0])})"

    def _print_select(self, expr):
        x, a, b = expr.args[:3]
        op = "≥" if len(expr.args) > 3 and expr.args[3] else ">"
        if b == 0:
            return f"{self.parenthesize(a, 50, strict=False)} ⊙ [{self._print(x)} {op} 0]"
        return f"where({self._print(x)} {op} 0, {self._print(a)}, {self._print(b)})"

    def _print_one_hot(self, expr):
        return f"onehot({self._print(expr.args[0])})"

    def _print_pick(self, expr):
        return f"{self._print(expr.args[0])}[{self._print(expr.args[1])}]"

    def _print_expand_dims(self, expr):
        return self._print(expr.args[0])

    _print_squeeze = _print_broadcast_to = _print_stop_gradient = _print_expand_dims

    def _print_outer(self, expr):
        return f"{self.parenthesize(expr.args[0], 1000)}⊗{self.parenthesize(expr.args[1], 1000)}"

    def _print_sigmoid(self, expr):
        return f"σ({self._print(expr.args[0])})"


class MathLatexPrinter(LatexPrinter):
    def __init__(self, names: dict):
        super().__init__()
        self.names = names

    def _print_Symbol(self, expr, style="plain"):
        name = self.names.get(expr, expr.name)
        if name.startswith("\\frac"):
            return name
        escaped = name.replace("_", "\\_")
        return rf"\mathrm{{{escaped}}}"

    def _print_matmul(self, expr):
        return " ".join(self.parenthesize(a, 50, strict=False) for a in expr.args)

    def _print_transpose(self, expr):
        return self.parenthesize(expr.args[0], 1000, strict=True) + r"^{\top}"

    def _print_reduce_sum(self, expr):
        axes = ",".join(str(int(a)) for a in expr.args[1])
        return rf"\sum_{{\text{{axis }}{axes}}} {self.parenthesize(expr.args[0], 50, strict=False)}"

    def _print_select(self, expr):
        x, a, b = expr.args[:3]
        if b == 0:
            return rf"{self.parenthesize(a, 50, strict=False)} \odot [{self._print(x)} > 0]"
        return rf"\operatorname{{where}}({self._print(x)} > 0, {self._print(a)}, {self._print(b)})"

    def _print_one_hot(self, expr):
        return rf"\operatorname{{onehot}}({self._print(expr.args[0])})"

    def _print_expand_dims(self, expr):
        return self._print(expr.args[0])

    _print_squeeze = _print_broadcast_to = _print_stop_gradient = _print_expand_dims

    def _print_sigmoid(self, expr):
        return rf"\sigma({self._print(expr.args[0])})"

    def _print_softmax(self, expr):
        return rf"\operatorname{{softmax}}({self._print(expr.args[0])})"


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
    new = {}
    for node in sp.postorder_traversal(expr):
        if node.is_Atom:
            continue
        args = tuple(new.get(a, a) for a in node.args)
        rebuilt = node.func(*args) if args != node.args else node
        new[node] = rule(rebuilt) or rebuilt
    return new.get(expr, expr)


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


def _vjp_chain(compiled, param, loss_name, latex) -> list[str]:
    from .emit import _names
    from .inspection import gradient_slice

    graph = compiled.graph
    sched = gradient_slice(compiled, param)
    code_names, _ = _names(graph, sched)
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
