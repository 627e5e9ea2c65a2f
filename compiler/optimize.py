"""Optimize: turn the traced forward and the SSA adjoints into one list of statements, with common
subexpressions shared across forward *and* backward by `sympy.cse`.

Named forward values (the user's variables, layer outputs) and every structural op (matmul, sums,
max, gather) are bound to symbols first, so the backward reads them by name and `cse` sees many small
expressions instead of one huge tree. Trivial or single-use adjoints are folded into their consumer.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import sympy as sp

from .ad import Backward
from .errors import CompileError
from .dag import fold, forward_nodes, substitute
from .graph import Graph
from .ops import conform, contract_leading, make, matmul, ones, reduce_sum, stop_gradient, transpose
from .shapes import ShapeMismatch, broadcast, fmt

INLINE_LIMIT = 12  # ops: a single-use adjoint smaller than this is folded into its consumer


@dataclass(frozen=True)
class Statement:
    target: sp.Symbol
    expr: sp.Expr
    kind: str                      # "forward" | "backward" | "shared"
    node: sp.Basic | None = None   # forward: the value computed; backward: the value differentiated
    line: int = 0
    priority: tuple = ()           # a deterministic position used by the scheduler
    source: sp.Basic | None = None  # backward: the consumer whose VJP completed this adjoint
    role: str = ""                 # a second pass's adjoint: "tangent" or "grad_tangent" (see Adjoint)

    @property
    def backward(self) -> bool:
        """Part of the backward pass: an adjoint, or a shared value first needed there."""
        return bool(self.priority) and self.priority[0] >= 1


@dataclass
class Program:
    """One function of the generated module, before scheduling."""
    name: str
    statements: list[Statement]
    loss: sp.Expr | None = None
    outputs: dict[str, sp.Expr] = field(default_factory=dict)
    grads: dict[str, sp.Expr] = field(default_factory=dict)
    shared: int = 0                # subexpressions `cse` extracted
    state: dict[str, sp.Expr] = field(default_factory=dict)  # new values of state arrays
    extra: dict[str, sp.Expr] = field(default_factory=dict)  # hvps, output tangents, input gradients
    extra_shapes: dict[str, tuple] = field(default_factory=dict)
    extra_section: int = 2         # the section whose statements compute `extra` (see SECTIONS)
    directions: list = field(default_factory=list)  # Leafs of the direction it takes (hvp, jvp)

    def results(self) -> list[sp.Expr]:
        out = [] if self.loss is None else [self.loss]
        return (out + list(self.outputs.values()) + list(self.grads.values())
                + list(self.extra.values()) + list(self.state.values()))

    def sections(self) -> list[int]:
        """Which part of the function each result belongs to, in `results()` order: 0 forward,
        1 backward, 2 and 3 a second pass (see SECTIONS)."""
        return ([0] * (len(self.results()) - len(self.grads) - len(self.extra) - len(self.state))
                + [1] * len(self.grads) + [self.extra_section] * len(self.extra) + [0] * len(self.state))


def count_ops(expr: sp.Basic, limit: int | None = None) -> int:
    """Operations in `expr` as a tree (a shared node counts at each use); with `limit`, counting
    stops there (enough to know an expression is too large to inline)."""
    n = 0
    for node in sp.preorder_traversal(expr):
        if not node.is_Atom:
            n += 1
            if limit is not None and n >= limit:
                break
    return n


def fold_adjoints(backward: Backward, graph: Graph, keep: set) -> tuple[list, dict]:
    """Fold trivial and single-use adjoints into their consumers; keep the readable ones named.

    Linear in the size of the graph: the forward subtrees that adjoints share are visited once, not
    once per adjoint (walking them again for every adjoint made folding quadratic in depth). The
    memo of the substitution is shared too: an adjoint reads only adjoints made before it, so what
    was substituted stays right."""
    adjoints = list(backward.adjoints)
    defs = {a.symbol: a for a in adjoints}
    reads: dict = {}
    uses: dict = {}
    for a in adjoints:
        read = fold(a.expr, lambda x: frozenset((x,)) if x in defs else frozenset(),
                    lambda facts: frozenset().union(*facts), reads)
        for s in sorted(read, key=lambda s: s.name):
            uses.setdefault(s, []).append(a.symbol)
    for s in keep:
        uses.setdefault(s, []).append(None)
    folded: dict = {}
    memo: dict = {}
    variable: dict = {}  # node -> whether it reads a value (not only sizes such as B)
    kept = []
    for a in adjoints:  # consumers come after producers: fold in order
        expr = substitute(a.expr, folded, memo, graph.shapes) if folded else a.expr
        users = uses.get(a.symbol, [])
        trivial = expr.is_Number or expr.is_Symbol or not fold(
            expr, lambda x: x.is_Symbol and not x.is_integer, any, variable)
        copied_by_user = len(users) == 1 and users[0] is not None and defs[users[0]].expr == a.symbol
        named = a.node in graph.hints and not copied_by_user
        if a.symbol not in keep and (trivial or (len(users) <= 1 and not named
                                                 and count_ops(expr, INLINE_LIMIT) < INLINE_LIMIT)):
            folded[a.symbol] = expr
            continue
        kept.append((a, expr))
    return kept, folded


def _without_stop_gradient(expr: sp.Basic, memo: dict, shapes=None) -> sp.Basic:
    """stop_gradient only matters to reverse mode; afterwards it is the identity."""
    stops = [n for n in sp.preorder_traversal(expr) if isinstance(n, stop_gradient)]
    return substitute(expr, {n: n.args[0] for n in stops}, memo, shapes) if stops else expr


# a statement's priority starts with its section: the scheduler orders ready statements by it
SECTIONS = {"": 1, "tangent": 2, "grad_tangent": 3}


def build_program(name: str, graph: Graph, backward: Backward | None, *, want_loss: bool,
                  want_outputs: bool, outputs: dict | None = None, extra: dict | None = None,
                  extra_shapes: dict | None = None, state: bool = True, directions=(),
                  row_sums_as_products: bool = True) -> Program:
    """Statements for one generated function: forward values, adjoints, shared subexpressions.
    `extra` are further results (adjoint symbols of a second pass, see derivatives.py);
    `row_sums_as_products`: bias gradients as `ones(B) @ g` (BLAS; NumPy's sum over rows is slower)."""
    shapes = graph.shapes
    adjoint_stmts, grads = [], {}
    extra = extra or {}
    if backward is not None:
        keep = {s for s in list(backward.grads.values()) + list(extra.values()) if s.is_Symbol}
        adjoint_stmts, _ = fold_adjoints(backward, graph, keep)
        grads = dict(backward.grads)

    outputs_in = {k: e for k, (e, _) in graph.outputs.items()} if outputs is None else outputs
    state_in = graph.state_updates if backward is not None and state else {}
    forward_roots = ([graph.loss] if want_loss else []) + \
        (list(outputs_in.values()) if want_outputs else []) + list(state_in.values())
    in_forward = forward_nodes([graph.loss] + list(outputs_in.values()) + list(state_in.values()))
    used = set(forward_nodes(forward_roots + [e for _, e in adjoint_stmts]))
    points = [n for n in in_forward if n in used and n in graph.hints]
    bound = {node: sp.Symbol(f"_{name}_fwd{i}", real=True) for i, node in enumerate(points)}
    memo: dict = {}
    plain: dict = {}

    def lower(e):
        return _without_stop_gradient(substitute(e, bound, memo, shapes), plain, shapes)

    statements = []
    for i, node in enumerate(points):
        expr = make(node.func, [substitute(a, bound, memo, shapes) for a in node.args])
        expr = _without_stop_gradient(conform(expr, shapes(node), shapes), plain, shapes)
        shapes.set(bound[node], shapes(node))
        line = graph.lines.get(node, 0)
        statements.append(Statement(bound[node], expr, "forward", node, line, (0, line, i)))
    for j, (adj, expr) in enumerate(adjoint_stmts):
        section = SECTIONS[adj.role]   # tangents run in model order, the other passes in reverse
        statements.append(Statement(adj.symbol, lower(expr), "backward", adj.node, adj.line,
                                    (section, adj.line if section == 2 else -adj.line, j),
                                    adj.source, adj.role))
    loss = lower(graph.loss) if want_loss else None
    outs = {k: lower(e) for k, e in outputs_in.items()} if want_outputs else {}
    new_state = {k: lower(e) for k, e in state_in.items()}
    program = Program(name, statements, loss, outs, grads, state=new_state,
                      extra={k: lower(e) for k, e in extra.items()}, extra_shapes=dict(extra_shapes or {}),
                      extra_section=max((st.priority[0] for st in statements if st.kind == "backward"),
                                        default=1),
                      directions=list(directions))
    if extra:   # a second pass may leave first-pass values unread (jvp reads none of them)
        program.statements = closure(program, set().union(*(e.free_symbols for e in program.results())))
    program = share_subexpressions(program, shapes, row_sums_as_products)
    return verify_shapes(merge_aliases(program, shapes), graph)


def verify_shapes(program: Program, graph: Graph) -> Program:
    """The invariant after every rewrite: each statement computes exactly the shape its target was
    promised, and each result broadcasts to its declared shape. Where SymPy folded a broadcast away,
    an explicit one puts it back; anything else is refused (an internal error naming the model line)
    rather than emitted as wrong code."""
    shapes = graph.shapes

    def check(expr, shape, line, what, exact=True):
        try:
            if exact:
                return conform(expr, shape, shapes)
            if broadcast(shapes(expr), shape) == tuple(shape):
                return expr
            raise ShapeMismatch(f"shape {fmt(shapes(expr))} does not broadcast to {fmt(shape)}")
        except ShapeMismatch as e:
            raise CompileError(f"{graph.path}:{line}: internal error: {what}: {e}; this is a symgrad "
                               "bug, please report it") from None

    statements = [replace(s, expr=check(s.expr, shapes(s.target), s.line, f"statement {s.target}"))
                  for s in program.statements]
    if program.loss is not None:
        check(program.loss, (), graph.lines.get(graph.loss, 0), "the loss")
    declared = {leaf.name: leaf.shape for leaf in graph.leaves.values()}
    for name, g in program.grads.items():
        check(g, declared[name], declared and graph.leaves[name].line, f"the gradient of {name}", False)
    for name, e in program.outputs.items():
        check(e, graph.outputs[name][1], 0, f"output {name!r}", False)
    for name, e in program.state.items():
        check(e, declared[name], graph.leaves[name].line, f"state {name!r}", False)
    for name, e in program.extra.items():
        check(e, program.extra_shapes[name], 0, f"{program.name} result {name!r}", False)
    return replace(program, statements=statements)


def closure(program: Program, roots) -> list[Statement]:
    """The statements that the symbols `roots` depend on, in program order."""
    defs = {s.target: s for s in program.statements}
    needed, stack = set(), list(roots)
    while stack:
        sym = stack.pop()
        if sym in defs and sym not in needed:
            needed.add(sym)
            stack.extend(defs[sym].expr.free_symbols)
    return [s for s in program.statements if s.target in needed]


def slice_program(program: Program, name: str) -> Program:
    """The statements the loss needs, taken from `program` as they are: `loss` computed this way
    rounds exactly like the loss of `loss_and_grad`."""
    kept = closure(program, program.loss.free_symbols)
    shared = sum(1 for s in kept if s.kind == "shared")
    return Program(name, kept, program.loss, {}, {}, shared)   # (a slice keeps no extra results)


def merge_aliases(program: Program, shapes) -> Program:
    """`T = S` where S is an unnamed shared temporary: compute the value as T directly."""
    stmts = program.statements
    temps = {s.target: s for s in stmts if s.kind == "shared"}
    returned = set(program.grads.values()) | set(program.extra.values())  # may be reshaped on return
    rename = {}
    for s in stmts:
        if s.expr.is_Symbol and s.expr in temps and s.expr not in rename and s.target not in returned:
            rename[s.expr] = s.target
    if not rename:
        return program
    out = []
    for s in stmts:
        if s.expr.is_Symbol and rename.get(s.expr) == s.target:
            continue  # the alias itself disappears
        if s.target in rename:  # the temporary now defines the named value
            named = next(t for t in stmts if t.target == rename[s.target])
            s = replace(named, expr=s.expr, priority=s.priority)
        out.append(replace(s, expr=substitute(s.expr, rename, {}, shapes)))
    memo: dict = {}

    def renamed(group: dict) -> dict:
        return {k: substitute(e, rename, memo, shapes) for k, e in group.items()}
    return replace(program, statements=out, shared=program.shared - len(rename),
                   loss=None if program.loss is None else substitute(program.loss, rename, memo, shapes),
                   outputs=renamed(program.outputs), grads=renamed(program.grads),
                   state=renamed(program.state), extra=renamed(program.extra))


def _row_sums_as_products(exprs: list, shapes) -> list:
    """Lowering: every row sum of a matrix becomes ones(rows) @ g, so `cse` shares one ones vector."""
    mapping = {}
    for e in exprs:
        for node in sp.preorder_traversal(e):
            if isinstance(node, reduce_sum) and node not in mapping:
                product = node.as_product(shapes)
                if product is not None:
                    mapping[node] = product
    if not mapping:
        return exprs
    memo: dict = {}
    return [substitute(e, mapping, memo, shapes) for e in exprs]


def _transposed_products(exprs: list, shapes) -> list:
    """(A·B)ᵀ of matrices becomes Bᵀ·Aᵀ, and (Σ_rows Aᵀ·B)ᵀ becomes Σ_rows Bᵀ·A: the product is then
    written in the layout it is read in (reverse mode over a gradient makes these; `d += (A·B)ᵀ` was
    35 % slower than `d += Bᵀ·Aᵀ`)."""
    mapping = {}
    for e in exprs:
        for node in sp.preorder_traversal(e):
            if not isinstance(node, transpose) or node in mapping:
                continue
            inner = node.args[0]
            if isinstance(inner, matmul) and all(len(shapes(a)) == 2 for a in inner.args):
                a, b = inner.args
                mapping[node] = matmul(transpose(b), transpose(a))
            elif isinstance(inner, contract_leading):
                mapping[node] = contract_leading(inner.args[1], inner.args[0])
    if not mapping:
        return exprs
    memo: dict = {}
    return [substitute(e, mapping, memo, shapes) for e in exprs]


def share_subexpressions(program: Program, shapes, row_sums_as_products: bool = True) -> Program:
    """`sympy.cse` over every statement and result together, in canonical (deterministic) order."""
    stmts = program.statements
    results = program.results()
    exprs = _transposed_products([s.expr for s in stmts] + results, shapes)
    if row_sums_as_products:
        exprs = _row_sums_as_products(exprs, shapes)
    symbols = sp.numbered_symbols(f"_{program.name}_cse", real=True)
    replacements, reduced = sp.cse(exprs, symbols=symbols, order="canonical")

    # Put back what is not worth a name: static arguments (axes, shapes), constants such as 1/B,
    # and bare reciprocals (dividing by x rounds exactly like the loss function, x**-1 * a does not)
    inline: dict = {}
    kept = []
    for sym, expr in replacements:
        expr = substitute(expr, inline, {}, shapes) if inline else expr
        if not isinstance(expr, sp.Tuple):
            shapes.set(sym, shapes(expr))
        if (isinstance(expr, sp.Tuple) or expr.is_Atom
                or all(x.is_integer for x in expr.free_symbols) and not isinstance(expr, ones)
                or isinstance(expr, sp.Pow) and expr.exp == -1):
            inline[sym] = expr
        else:
            kept.append((sym, expr))
    if inline:
        reduced = [substitute(e, inline, {}, shapes) for e in reduced]

    new_stmts = [replace(s, expr=e) for s, e in zip(stmts, reduced[: len(stmts)])]
    # a shared value is placed just before its first user (users of users included)
    users: dict = {}
    for s in new_stmts:
        for sym in s.expr.free_symbols:
            users.setdefault(sym, []).append((s.priority, s.line))
    for e, section in zip(reduced[len(stmts):], program.sections()):
        for sym in e.free_symbols:
            users.setdefault(sym, []).append(((section, 10**9), 0))
    for sym, expr in kept:
        shapes.set(sym, shapes(expr))
    shared = []
    for k in reversed(range(len(kept))):
        sym, expr = kept[k]
        priority, line = min(users.get(sym, [((9,), 0)]))
        stmt = Statement(sym, expr, "shared", None, line, priority + (k,))
        shared.append(stmt)
        for other in expr.free_symbols:
            users.setdefault(other, []).append((stmt.priority, line))
    shared.reverse()
    rest = reduced[len(stmts):]
    loss = rest.pop(0) if program.loss is not None else None
    outputs = dict(zip(program.outputs, rest[: len(program.outputs)]))
    rest = rest[len(program.outputs):]
    grads = dict(zip(program.grads, rest[: len(program.grads)]))
    rest = rest[len(program.grads):]
    extra = dict(zip(program.extra, rest[: len(program.extra)]))
    state = dict(zip(program.state, rest[len(program.extra):]))
    return replace(program, statements=shared + new_stmts, loss=loss, outputs=outputs, grads=grads,
                   shared=len(kept), state=state, extra=extra)
