"""Unit tests of the compiler's stages, one at a time: canonical rewrites, adjoint accumulation and
reverse mode, adjoint folding, and liveness. Each asserts the stage's own data structures (SymPy
heads, adjoints, statements, releases) and numbers, never generated names or generated text."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import sympy as sp

import compiler
import compiler.ops as P
import runtime
from compiler.ad import Adjoint, Backward, UnusedParameterWarning, accumulate, backward
from compiler.canonical import canonicalize
from compiler.graph import ShapeTable
from compiler.optimize import INLINE_LIMIT, Program, Statement, fold_adjoints
from compiler.emit.printer import Printer
from compiler.schedule import peak_bytes, schedule
from compiler.shapes import dim_symbol
from compiler.trace import trace_source
from helpers import PRELUDE

PATH = "/tmp/symgrad_stage_model.py"


# ---- helpers ----------------------------------------------------------------------------------

def trace(body: str):
    """The traced (not yet canonical) graph of a model-file body."""
    return trace_source(PRELUDE + body, PATH)


def canonical(body: str):
    return canonicalize(trace(body))


def line_of(body: str, text: str) -> int:
    """The model-file line (1-based, PRELUDE included) of the first line of `body` holding `text`."""
    lines = (PRELUDE + body).splitlines()
    return next(i + 1 for i, line in enumerate(lines) if text in line)


def nodes(expr) -> list:
    """Every distinct sub-expression of `expr` (atoms included)."""
    return list(dict.fromkeys(sp.preorder_traversal(expr)))


def heads(expr, head) -> list:
    return [n for n in nodes(expr) if isinstance(n, head)]


def axes(node) -> tuple:
    """The static axes of a reduction."""
    return tuple(int(a) for a in node.args[1])


def named(graph, name: str):
    """The node the user bound to `name` (graph.hints maps node -> name)."""
    found = [n for n, h in graph.hints.items() if h == name]
    assert len(found) == 1, (name, found)
    return found[0]


def evaluate(expr, shapes, values: dict, sizes: dict | None = None):
    """NumPy value of `expr`: printed by symgrad's Printer with our own names for the symbols,
    then evaluated with `values` (symbol -> array) and symbolic sizes (dim name -> int)."""
    names, namespace = {}, {"np": np, "DTYPE": np.float64}
    for i, (sym, value) in enumerate(values.items()):
        names[sym] = f"v{i}"
        namespace[f"v{i}"] = value
    for i, (dim, size) in enumerate((sizes or {}).items()):
        names[dim_symbol(dim)] = f"dim{i}"
        namespace[f"dim{i}"] = size
    printer = Printer(names, shapes)
    text = printer.doprint(expr)
    for head in printer.helpers:
        exec(head.helper, namespace)
    return eval(text, namespace)


def leaf_values(graph, values: dict) -> dict:
    """leaf symbol -> array, from leaf name -> array."""
    return {graph.leaves[name].symbol: np.asarray(v, dtype=np.float64) for name, v in values.items()}


def run_backward(graph, bw: Backward, values: dict, sizes: dict | None = None) -> dict:
    """Evaluate every adjoint in execution order (each may read the leaves and earlier adjoints) and
    return param name -> gradient."""
    env = leaf_values(graph, values)
    for adj in bw.adjoints:
        env[adj.symbol] = evaluate(adj.expr, graph.shapes, env, sizes)
    return {name: (env[g] if g in env else evaluate(g, graph.shapes, env, sizes))
            for name, g in bw.grads.items()}


# ---- 0. how nodes are built ------------------------------------------------------------------

def test_exp_and_tanh_nodes_skip_sympys_eval_but_keep_its_identities():
    """SymPy's exp eval walks its operand as a tree (logcombine) and a product merges exp factors:
    on a transformer's DAG that took 17.8 s. The rule's builder keeps the node as written."""
    a, b = sp.symbols("a b", real=True)
    e, f = P.make(sp.exp, [a - b]), P.make(sp.exp, [b])
    assert isinstance(e, sp.exp) and e.args == (a - b,)
    product = e * f / P.make(sp.exp, [a])
    assert sorted(map(str, product.args)) == ["exp(-a)", "exp(a - b)", "exp(b)"]  # not merged into exp(0)
    assert P.make(sp.exp, [sp.Integer(0)]) == 1 and P.make(sp.exp, [sp.log(a)]) == a
    t = P.make(sp.tanh, [a * b])
    assert isinstance(t, sp.tanh) and t.diff(a) == b * (1 - t**2)  # the same node, not a new tanh
    assert P.make(sp.tanh, [sp.Integer(0)]) == 0
    chain = a
    for _ in range(60):  # 2**60 paths from the top: only a walk of the DAG as a tree would notice
        chain = chain * chain + b
    assert P.make(sp.exp, [-P.stop_gradient(chain)]).args[0] == -P.stop_gradient(chain)


def test_gelu_expands_so_the_backward_reads_its_tanh():
    g = canonical('x = Input("x", ("B", 3))\nloss = sum(gelu(linear(x, 4, name="l")))\n')
    assert not heads(g.loss, P.gelu)
    (t,) = heads(g.loss, sp.tanh)
    bw = backward(g)
    assert all(not heads(adj.expr, sp.tanh) or t in nodes(adj.expr) for adj in bw.adjoints)
    assert not any(h != t for adj in bw.adjoints for h in heads(adj.expr, sp.tanh))


# ---- 1. canonical rewrites ---------------------------------------------------------------------

def test_log_sigmoid_becomes_negated_softplus_of_negation():
    body = 'x = Param("x", (3,))\nloss = sum(log(sigmoid(x)))\n'
    before = trace(body)
    x = before.leaves["x"].symbol
    assert heads(before.loss, P.sigmoid) and heads(before.loss, sp.log)
    graph = canonicalize(before)
    assert heads(graph.loss, sp.log) == [] and heads(graph.loss, P.sigmoid) == []
    (sp_node,) = heads(graph.loss, P.softplus)
    assert sp_node.args[0] == -x
    assert -sp_node in nodes(graph.loss)  # -softplus(-x): the negated softplus is a node
    assert graph.notes == [(line_of(body, "loss ="), "log(sigmoid(x)) = -softplus(-x)")]
    # same values where the naive form is finite, finite where it is not (log(0) = -inf)
    xs = np.array([-2.0, 0.5, 3.0])
    naive = np.log(1 / (1 + np.exp(-xs))).sum()
    assert evaluate(graph.loss, graph.shapes, leaf_values(graph, {"x": xs})) == pytest.approx(naive, rel=1e-14)
    far = evaluate(graph.loss, graph.shapes, leaf_values(graph, {"x": [-800.0, 0.0, 800.0]}))
    assert far == pytest.approx(-800.0 - np.log(2.0), rel=1e-14)


def test_log_one_minus_sigmoid_becomes_negated_softplus():
    graph = canonical('x = Param("x", (3,))\nloss = sum(log(1 - sigmoid(x)))\n')
    x = graph.leaves["x"].symbol
    assert heads(graph.loss, sp.log) == [] and heads(graph.loss, P.sigmoid) == []
    (node,) = heads(graph.loss, P.softplus)
    assert node.args[0] == x
    far = evaluate(graph.loss, graph.shapes, leaf_values(graph, {"x": [800.0, 0.0, -800.0]}))
    assert far == pytest.approx(-800.0 - np.log(2.0), rel=1e-14)


def test_log_one_plus_exp_becomes_softplus():
    body = 'x = Param("x", (2, 3))\nloss = sum(log(1 + exp(x)))\n'
    graph = canonical(body)
    x = graph.leaves["x"].symbol
    assert heads(graph.loss, sp.log) == [] and heads(graph.loss, sp.exp) == []
    (node,) = heads(graph.loss, P.softplus)
    assert node.args[0] == x
    assert isinstance(graph.loss, P.reduce_sum) and graph.loss.args[0] == node
    assert graph.notes == [(line_of(body, "loss ="), "log(1 + exp(x)) = softplus(x)")]
    xs = np.array([[1000.0, -1000.0, 0.0], [1.0, 2.0, -3.0]])
    got = evaluate(graph.loss, graph.shapes, leaf_values(graph, {"x": xs}))
    assert got == pytest.approx(1000.0 + np.log(2.0) + np.log1p(np.exp([1.0, 2.0, -3.0])).sum(), rel=1e-14)


def test_log_sum_exp_subtracts_a_stopped_max():
    body = 'x = Param("x", (2, 3))\nloss = sum(log(sum(exp(x), axis=1)))\n'
    graph = canonical(body)
    x = graph.leaves["x"].symbol
    stops = heads(graph.loss, P.stop_gradient)
    assert stops and all(isinstance(s.args[0], P.reduce_max) for s in stops)
    (m,) = {s.args[0] for s in stops}
    assert m.args[0] == x and axes(m) == (1,) and bool(m.args[2])  # max over axis 1, kept
    # the exp now reads x - max: no exp of x itself is left
    (e,) = heads(graph.loss, sp.exp)
    assert e.args[0] != x and x in e.args[0].free_symbols and e.args[0].has(P.reduce_max)
    assert graph.notes == [(line_of(body, "loss ="),
                            "log(sum(exp(x))) = m + log(sum(exp(x - m))), m = max(x)")]
    xs = np.array([[1000.0, 999.0, 998.0], [0.1, 0.2, 0.3]])
    want = 1000.0 + np.log(1 + np.exp(-1.0) + np.exp(-2.0)) + np.log(np.exp([0.1, 0.2, 0.3]).sum())
    got = evaluate(graph.loss, graph.shapes, leaf_values(graph, {"x": xs}))
    assert np.isfinite(got) and got == pytest.approx(want, rel=1e-14)


def test_logsumexp_of_two_terms_subtracts_their_maximum():
    graph = canonical('a = Param("a", (3,))\nb = Param("b", (3,))\nloss = sum(log(exp(a) + exp(b)))\n')
    (stop,) = heads(graph.loss, P.stop_gradient)
    assert isinstance(stop.args[0], P.maximum)
    got = evaluate(graph.loss, graph.shapes, leaf_values(graph, {"a": [900.0, 0.0, -5.0],
                                                                 "b": [899.0, 0.0, 5.0]}))
    want = 900.0 + np.log1p(np.exp(-1.0)) + np.log(2.0) + 5.0 + np.log1p(np.exp(-10.0))
    assert got == pytest.approx(want, rel=1e-14)


def test_where_guards_singular_op_in_selected_branch():
    """where(x > 0, log(x), x): log reads where(x > 0, x, 1), finite at x <= 0."""
    body = 'x = Param("x", (3,))\nloss = sum(where(x > 0, log(x), x))\n'
    before = trace(body)
    graph = canonicalize(before)
    x = graph.leaves["x"].symbol
    (outer,) = [s for s in heads(graph.loss, P.select) if len(s.args) == 4 and isinstance(s.args[1], sp.log)]
    (log,) = heads(graph.loss, sp.log)
    guard = log.args[0]
    assert isinstance(guard, P.select)
    assert guard.args[0] == outer.args[0] and guard.args[1] == x and guard.args[2] == 1
    assert guard.args[3] == outer.args[3]  # the same comparison (> or >=)
    assert (line_of(body, "loss ="), "where(): singular ops in the unselected branch are guarded") in graph.notes
    values = leaf_values(graph, {"x": [-1.0, 0.0, 2.0]})
    assert np.all(np.isfinite(evaluate(log, graph.shapes, values)))
    assert evaluate(graph.loss, graph.shapes, values) == pytest.approx(-1.0 + 0.0 + np.log(2.0), rel=1e-14)


def test_where_guards_singular_op_in_unselected_branch():
    """where(x > 1, x, log(1 - x)): log reads where(x > 1, 1, 1 - x), finite where x > 1."""
    graph = canonical('x = Param("x", (3,))\nloss = sum(where(x > 1, x, log(1 - x)))\n')
    x = graph.leaves["x"].symbol
    (log,) = heads(graph.loss, sp.log)
    guard = log.args[0]
    assert isinstance(guard, P.select) and guard.args[1] == 1 and guard.args[2] == 1 - x
    assert sp.simplify(guard.args[0] - (x - 1)) == 0
    values = leaf_values(graph, {"x": [2.0, 3.0, -1.0]})  # log(1 - x) alone: NaN at 2 and 3
    np.testing.assert_array_equal(evaluate(log, graph.shapes, values), [0.0, 0.0, np.log(2.0)])
    assert evaluate(graph.loss, graph.shapes, values) == pytest.approx(2.0 + 3.0 + np.log(2.0), rel=1e-14)


def test_relu_router_is_not_guarded():
    """Only the user's where() (4 args) is guarded: the ReLU family's routers have no singular branch."""
    graph = canonical('x = Param("x", (3,))\nloss = sum(relu(x) * log(x))\n')
    assert not any(isinstance(n.args[0], P.select) for n in heads(graph.loss, sp.log))
    assert graph.notes == []


def test_named_sum_survives_flattening():
    """z = x @ W + b used as z - m and z * z: SymPy flattens z - m into Add(b, x@W, -m); the
    canonical graph has Add(z, -m) with the node z itself as an operand."""
    body = ('x = Input("x", ("B", 4))\nW = Param("W", (4, 3))\nb = Param("b", (3,))\n'
            'm = Param("m", (3,))\nz = x @ W + b\nloss = sum(z - m) + sum(z * z)\n')
    before = trace(body)
    z0 = named(before, "z")
    m = before.leaves["m"].symbol
    flat = [n for n in heads(before.loss, sp.Add) if -m in n.args]
    assert flat and z0 not in flat[0].args and len(flat[0].args) == 3  # b, x@W, -m
    graph = canonicalize(before)
    z = named(graph, "z")
    assert z == z0
    (diff,) = [n for n in heads(graph.loss, sp.Add) if -m in n.args]
    assert set(diff.args) == {z, -m}
    assert isinstance(z, sp.Add) and any(isinstance(a, P.matmul) for a in z.args)
    # the same values: only the grouping changed
    rng = np.random.default_rng(0)
    values = {"x": rng.normal(size=(5, 4)), "W": rng.normal(size=(4, 3)), "b": rng.normal(size=3),
              "m": rng.normal(size=3)}
    zz = values["x"] @ values["W"] + values["b"]
    want = (zz - values["m"]).sum() + (zz * zz).sum()
    got = evaluate(graph.loss, graph.shapes, leaf_values(graph, values))
    assert got == pytest.approx(want, rel=1e-12)
    # reverse mode then gives z one adjoint: z's whole gradient
    bw = backward(graph)
    assert [a.node for a in bw.adjoints].count(z) == 1


def test_named_sum_used_once_survives_flattening():
    graph = canonical('x = Input("x", ("B", 4))\nW = Param("W", (4, 3))\nb = Param("b", (3,))\n'
                      'm = Param("m", (3,))\nz = x @ W + b\nloss = sum(z - m)\n')
    z = named(graph, "z")
    assert z in nodes(graph.loss)


# ---- 2. adjoint accumulation and reverse mode --------------------------------------------------

def _table():
    x, y, w = (sp.Symbol(n, real=True) for n in ("x", "y", "w"))
    shapes = ShapeTable({x: ("B", 3), y: ("B", 3), w: (4, 3)})
    return x, y, w, shapes


def _sum0(e):
    return P.reduce_sum(e, P.axes_arg((0,)), sp.Integer(0))


def test_accumulate_fuses_sums_over_same_axes_and_operand_shape():
    x, y, _, shapes = _table()
    total = accumulate([_sum0(x), _sum0(y)], shapes)
    assert isinstance(total, P.reduce_sum)
    assert total.args[0] == x + y and axes(total) == (0,) and total.args[2] == 0
    assert shapes(total) == (3,)


def test_accumulate_keeps_other_parts_beside_the_fused_sum():
    x, y, _, shapes = _table()
    v = sp.Symbol("v", real=True)
    shapes.set(v, (3,))
    total = accumulate([_sum0(x), v, _sum0(2 * y)], shapes)
    assert isinstance(total, sp.Add) and set(total.args) == {v, _sum0(x + 2 * y)}


def test_accumulate_keeps_sums_of_different_operand_shapes_apart():
    x, _, w, shapes = _table()  # (B, 3) and (4, 3): x + w does not exist
    total = accumulate([_sum0(x), _sum0(w)], shapes)
    assert isinstance(total, sp.Add)
    assert set(total.args) == {_sum0(x), _sum0(w)}
    assert shapes(total) == (3,)


def test_accumulate_keeps_sums_over_different_axes_apart():
    x, y, _, shapes = _table()
    keep = P.reduce_sum(y, P.axes_arg((0,)), sp.Integer(1))  # (1, 3) vs (3,)
    total = accumulate([_sum0(x), keep], shapes)
    assert set(total.args) == {_sum0(x), keep}


def test_accumulate_drops_contributions_that_cancel():
    x, y, _, shapes = _table()
    assert accumulate([_sum0(x), _sum0(-x)], shapes) == 0
    v = sp.Symbol("v", real=True)
    shapes.set(v, (3,))
    assert accumulate([_sum0(x), v, _sum0(-x)], shapes) == v
    assert accumulate([_sum0(x), _sum0(y), _sum0(-x)], shapes) == _sum0(y)


CHAIN = 'a = Param("a")\nb = Param("b")\ne = (a + b) * (b + 1)\nloss = e\n'


def test_chain_rule_example_adjoints():
    """e = (a + b)(b + 1) at a = 2, b = 1: de/da = b + 1 = 2, de/db = (b + 1) + (a + b) = 5."""
    graph = canonical(CHAIN)
    bw = backward(graph)
    a, b = graph.leaves["a"].symbol, graph.leaves["b"].symbol
    assert set(bw.grads) == {"a", "b"}
    # one adjoint per node that needs a gradient: e, a + b, b + 1, a, b
    assert [adj.node for adj in bw.adjoints].count(b) == 1
    assert {adj.node for adj in bw.adjoints} == {graph.loss, a + b, b + 1, a, b}
    assert bw.adjoints[0].node == graph.loss and bw.adjoints[0].expr == 1
    grads = run_backward(graph, bw, {"a": 2.0, "b": 1.0})
    assert grads == {"a": 2.0, "b": 5.0}
    grads = run_backward(graph, bw, {"a": -3.0, "b": 0.5})
    assert grads == {"a": 1.5, "b": 1.5 + -2.5}


def test_chain_rule_example_compiled_module(tmp_path):
    source = compiler.compile_source(PRELUDE + CHAIN, str(tmp_path / "chain.py"))
    path = tmp_path / "chain_gen.py"
    path.write_text(source)
    model = runtime.load(str(path))
    loss, grads = model.loss_and_grad({"a": np.array(2.0), "b": np.array(1.0)})
    assert float(loss) == 6.0
    assert float(grads["a"]) == 2.0 and float(grads["b"]) == 5.0


def test_parameter_used_twice_gets_one_adjoint_summing_both():
    """loss = sum(tanh(x * a) * a): a's adjoint is the sum of both uses (fused into one row sum)."""
    graph = canonical('x = Input("x", ("B", 3))\na = Param("a", (3,))\nloss = sum(tanh(x * a) * a)\n')
    bw = backward(graph)
    a = graph.leaves["a"].symbol
    (adj,) = [adj for adj in bw.adjoints if adj.node == a]
    assert bw.grads["a"] == adj.symbol
    assert isinstance(adj.expr, P.reduce_sum) and axes(adj.expr) == (0,)  # fused: one sum
    rng = np.random.default_rng(1)
    xs, av = rng.normal(size=(4, 3)), rng.normal(size=3)
    grads = run_backward(graph, bw, {"x": xs, "a": av}, {"B": 4})
    t = np.tanh(xs * av)
    np.testing.assert_allclose(grads["a"], (t + av * xs * (1 - t * t)).sum(axis=0), rtol=1e-13)


def test_parameter_reaching_the_loss_twice_at_different_shapes():
    """s scales a (B, 4) and a (B, 3) value: its two row sums cannot be fused, both are kept."""
    graph = canonical('x = Input("x", ("B", 4))\ny = Input("y", ("B", 3))\ns = Param("s", ())\n'
                      'loss = sum(tanh(x * s)) + sum(tanh(y * s))\n')
    bw = backward(graph)
    s = graph.leaves["s"].symbol
    (adj,) = [adj for adj in bw.adjoints if adj.node == s]
    assert len(heads(adj.expr, P.reduce_sum)) == 2
    rng = np.random.default_rng(2)
    xs, ys = rng.normal(size=(5, 4)), rng.normal(size=(5, 3))
    grads = run_backward(graph, bw, {"x": xs, "y": ys, "s": 0.7}, {"B": 5})
    want = (xs * (1 - np.tanh(0.7 * xs) ** 2)).sum() + (ys * (1 - np.tanh(0.7 * ys) ** 2)).sum()
    assert float(grads["s"]) == pytest.approx(want, rel=1e-13)


def test_unused_parameter_gets_zero_and_a_warning():
    graph = canonical('a = Param("a", (3,))\nu = Param("u", (2,))\nloss = sum(a * a)\n')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bw = backward(graph)
    unused = [w for w in caught if issubclass(w.category, UnusedParameterWarning)]
    assert len(unused) == 1 and "'u'" in str(unused[0].message)
    assert f":{graph.leaves['u'].line}:" in str(unused[0].message)
    assert bw.grads["u"] == 0 and bw.grads["a"].is_Symbol
    assert graph.leaves["u"].symbol not in {adj.node for adj in bw.adjoints}


def test_no_adjoint_for_values_that_need_no_gradient():
    """Only nodes on a path from a parameter to the loss get an adjoint (never an input)."""
    graph = canonical('x = Input("x", ("B", 3))\na = Param("a", (3,))\nloss = sum(exp(x) * a)\n')
    bw = backward(graph)
    adjoint_nodes = {adj.node for adj in bw.adjoints}
    assert graph.leaves["x"].symbol not in adjoint_nodes
    assert not any(isinstance(n, sp.exp) for n in adjoint_nodes)


def test_adjoints_come_in_reverse_topological_order():
    graph = canonical('x = Input("x", ("B", 3))\nW = Param("W", (3, 2))\n'
                      'h = tanh(x @ W)\nloss = sum(h * h)\n')
    bw = backward(graph)
    position = {adj.symbol: i for i, adj in enumerate(bw.adjoints)}
    for i, adj in enumerate(bw.adjoints):  # each adjoint reads only earlier ones
        assert all(position[s] < i for s in adj.expr.free_symbols if s in position)
    for i, adj in enumerate(bw.adjoints):  # a node's adjoint comes after those of its users
        for later in bw.adjoints[i + 1:]:
            assert adj.node not in nodes(later.node) or later.node == adj.node


# ---- 3. adjoint folding ------------------------------------------------------------------------

def _folding(body: str, keep_grads: bool):
    graph = canonical(body)
    bw = backward(graph)
    keep = {s for s in bw.grads.values() if s.is_Symbol} if keep_grads else set()
    kept, folded = fold_adjoints(bw, graph, keep)
    by_node = {adj.node: adj.symbol for adj in bw.adjoints}
    return graph, bw, kept, folded, by_node


def test_fold_adjoints_chain_rule_example():
    """e = (a + b)(b + 1): d_e = 1 is folded (trivial); d_(a+b) = b + 1 has two readers (d_a and
    d_b) and is kept; d_(b+1) = a + b has one reader and is folded; d_a and d_b are returned."""
    graph, bw, kept, folded, sym = _folding(CHAIN, keep_grads=True)
    a, b = graph.leaves["a"].symbol, graph.leaves["b"].symbol
    assert [adj.node for adj, _ in kept] == [a + b, a, b]
    assert set(folded) == {sym[graph.loss], sym[b + 1]}
    assert folded[sym[graph.loss]] == 1 and folded[sym[b + 1]] == a + b
    exprs = {adj.node: expr for adj, expr in kept}
    assert exprs[a + b] == b + 1              # d_e = 1 substituted
    assert exprs[b] == sym[a + b] + a + b     # d_(b+1) folded into its only reader
    assert exprs[a] == sym[a + b]
    # every statement together: all adjoints are either kept or folded, never both
    assert {adj.symbol for adj, _ in kept} | set(folded) == {adj.symbol for adj in bw.adjoints}
    assert not {adj.symbol for adj, _ in kept} & set(folded)


def test_fold_adjoints_without_keep_folds_trivial_and_unread():
    """Without the `keep` set, d_a = d_(a+b) is a bare symbol (trivial) and d_b has no reader:
    both are folded; only the twice-read d_(a+b) is left."""
    graph, bw, kept, folded, sym = _folding(CHAIN, keep_grads=False)
    a, b = graph.leaves["a"].symbol, graph.leaves["b"].symbol
    assert [adj.node for adj, _ in kept] == [a + b]
    assert folded[sym[a]] == sym[a + b]
    assert folded[sym[b]] == sym[a + b] + a + b


def test_fold_adjoints_keeps_a_named_value():
    """h = x * a named: d_h = 1 - tanh(h)² has one reader but keeps its name; unnamed, it folds."""
    named_body = 'x = Input("x", ("B", 3))\na = Param("a", (3,))\nh = x * a\nloss = sum(tanh(h))\n'
    plain_body = 'x = Input("x", ("B", 3))\na = Param("a", (3,))\nloss = sum(tanh(x * a))\n'
    graph, bw, kept, folded, sym = _folding(named_body, keep_grads=True)
    h = named(graph, "h")
    a = graph.leaves["a"].symbol
    assert [adj.node for adj, _ in kept] == [h, a]
    assert sym[h] not in folded
    graph2, bw2, kept2, folded2, sym2 = _folding(plain_body, keep_grads=True)
    a2 = graph2.leaves["a"].symbol
    assert [adj.node for adj, _ in kept2] == [a2]
    (mul,) = [n for n in sym2 if isinstance(n, sp.Mul) and n.has(a2) and not n.has(sp.tanh)]
    assert sym2[mul] in folded2
    # the folded gradient of `a` reads the same value either way
    (expr2,) = [e for adj, e in kept2 if adj.node == a2]
    assert not (expr2.free_symbols & set(sym2.values()))  # everything folded into it


def test_fold_adjoints_respects_keep_for_trivial_adjoints():
    """A trivial adjoint is still kept when the caller asks (e.g. it is returned)."""
    graph = canonical(CHAIN)
    bw = backward(graph)
    every = {adj.symbol for adj in bw.adjoints}
    kept, folded = fold_adjoints(bw, graph, every)
    assert folded == {} and [adj for adj, _ in kept] == bw.adjoints


def test_fold_adjoints_keeps_large_single_use_adjoints():
    """A single-use adjoint with INLINE_LIMIT ops or more keeps its own statement."""
    x = sp.Symbol("x", real=True)
    shapes = ShapeTable({x: (3,)})
    big = x
    for _ in range(INLINE_LIMIT):
        big = sp.tanh(big)
    small = sp.tanh(x)
    s0, s1, s2, s3 = (sp.Symbol(f"g{i}", real=True) for i in range(4))
    adjoints = [Adjoint(s0, big, x), Adjoint(s1, s0 * x, x), Adjoint(s2, small, x), Adjoint(s3, s2 * x, x)]
    for s in (s0, s1, s2, s3):
        shapes.set(s, (3,))
    graph = trace('a = Param("a", (3,))\nloss = sum(a)\n')
    graph.shapes = shapes
    kept, folded = fold_adjoints(Backward(adjoints, {}), graph, {s1, s3})
    assert [adj.symbol for adj, _ in kept] == [s0, s1, s3]
    assert folded == {s2: small}
    assert dict((adj.symbol, e) for adj, e in kept)[s3] == small * x


# ---- 4. liveness -------------------------------------------------------------------------------

def _tiny_program():
    """x (B, 4) input, w (4,) param:
        a = 2x          (B, 4)
        b = exp(a)      (B, 4)
        c = Σ_1 a·b     (B,)
        d = b·w         (B, 4)  returned as an output
        e = Σ c         ()      the loss
    """
    x, w = sp.Symbol("x", real=True), sp.Symbol("w", real=True)
    a, b, c, d, e = (sp.Symbol(f"t_{n}", real=True) for n in "abcde")
    shapes = ShapeTable({x: ("B", 4), w: (4,), a: ("B", 4), b: ("B", 4), c: ("B",), d: ("B", 4),
                         e: ()})
    stmts = [Statement(a, 2 * x, "forward", priority=(0, 0)),
             Statement(b, sp.exp(a), "forward", priority=(0, 1)),
             Statement(c, P.reduce_sum(a * b, P.axes_arg((1,)), sp.Integer(0)), "forward", priority=(0, 2)),
             Statement(d, b * w, "forward", priority=(0, 3)),
             Statement(e, P.reduce_sum(c, P.axes_arg((0,)), sp.Integer(0)), "forward", priority=(0, 4))]
    program = Program("tiny", stmts, loss=e, outputs={"d": d})
    return program, shapes, (a, b, c, d, e)


def test_schedule_releases_each_batch_value_after_its_last_use():
    program, shapes, (a, b, c, d, e) = _tiny_program()
    sched = schedule(program, shapes)
    assert [s.statement.target for s in sched.steps] == [a, b, c, d, e]
    assert [s.release for s in sched.steps] == [(), (), (a,), (b,), (c,)]


def test_peak_bytes_of_tiny_program():
    """B = 10, float64: a and b are 320 bytes each, c 80, d 320, e 8.
    After c: a, b, c live = 720, then a dies; after d: b, c, d = 720, then b dies; after e: 408."""
    program, shapes, _ = _tiny_program()
    sched = schedule(program, shapes)
    assert peak_bytes(sched, shapes, {"B": 10}, 8) == 720
    assert peak_bytes(sched, shapes, {"B": 1}, 4) == 36  # 16 + 16 + 4 at c and at d
    # with nothing released, everything would stay: 320·3 + 80 + 8
    held = schedule(program, shapes, keep_alive=[s.target for s in program.statements])
    assert all(s.release == () for s in held.steps)
    assert peak_bytes(held, shapes, {"B": 10}, 8) == 1048


def test_schedule_follows_dependencies_then_priority():
    """Statements listed out of order run after what they read; independent ones by priority."""
    program, shapes, (a, b, c, d, e) = _tiny_program()
    shuffled = [program.statements[i] for i in (4, 3, 2, 1, 0)]
    sched = schedule(Program("tiny", shuffled, loss=e, outputs={"d": d}), shapes)
    assert [s.statement.target for s in sched.steps] == [a, b, c, d, e]
    # d before c when its priority says so (both only need a and b)
    stmts = list(program.statements)
    stmts[3] = Statement(d, stmts[3].expr, "forward", priority=(0, 1, 5))
    sched = schedule(Program("tiny", stmts, loss=e, outputs={"d": d}), shapes)
    assert [s.statement.target for s in sched.steps] == [a, b, d, c, e]
    assert [s.release for s in sched.steps] == [(), (), (), (a, b), (c,)]


def _check_liveness(sched, shapes):
    steps = sched.steps
    targets = {s.statement.target for s in steps}
    returned = set().union(*(e.free_symbols for e in sched.program.results()))
    readers: dict = {}
    for pos, step in enumerate(steps):
        for sym in step.statement.expr.free_symbols:
            if sym in targets:
                readers.setdefault(sym, []).append(pos)
    released: dict = {}
    defined: dict = {}
    for pos, step in enumerate(steps):
        defined[step.statement.target] = pos
        for sym in step.statement.expr.free_symbols:
            if sym in targets:
                assert sym in defined, f"{sym} read before it is computed"
                assert sym not in released, f"{sym} read after it was released"
        for sym in step.release:
            assert sym not in released, f"{sym} released twice"
            released[sym] = pos
    for sym, pos in released.items():
        assert sym not in returned, f"returned value {sym} released"
        assert any(isinstance(d, str) for d in shapes(sym)), f"{sym} is not batch-sized"
        assert pos == max(readers[sym]), f"{sym} released at {pos}, last read at {max(readers[sym])}"
    for sym, pos in readers.items():  # every dead batch-sized value is released
        if sym not in returned and any(isinstance(d, str) for d in shapes(sym)):
            assert sym in released, f"{sym} is never released"
    return released


@pytest.mark.parametrize("example", ["digits_mlp.py", "mnist1d_cnn.py"])
def test_liveness_of_compiled_examples(example):
    import os
    from helpers import EXAMPLES
    compiled = compiler.compile_model(os.path.join(EXAMPLES, example))
    shapes = compiled.graph.shapes
    total = 0
    for name, sched in compiled.schedules.items():
        total += len(_check_liveness(sched, shapes))
        assert peak_bytes(sched, shapes, {"B": 32}, 8) > 0
    assert total > 0  # something batch-sized died early


def test_release_lowers_peak_of_compiled_model():
    body = ('x = Input("x", ("B", 16))\ny = Labels("y", ("B",), classes=4)\n'
            'h = tanh(linear(x, 32, name="h1"))\nh = tanh(linear(h, 32, name="h2"))\n'
            'loss = softmax_cross_entropy(linear(h, 4, name="out"), y)\n')
    path = "/tmp/symgrad_stage_mlp.py"
    compiled = compiler.compile_model(path, source=PRELUDE + body)
    shapes = compiled.graph.shapes
    sched = compiled.schedules["loss_and_grad"]
    released = _check_liveness(sched, shapes)
    assert released
    held = schedule(sched.program, shapes, keep_alive=[s.statement.target for s in sched.steps])
    assert all(s.release == () for s in held.steps)
    assert peak_bytes(sched, shapes, {"B": 64}, 8) < peak_bytes(held, shapes, {"B": 64}, 8)
