"""The op registry's rules: each is complete, `register` refuses an incomplete one, and each rule's
declared view-ness matches what its printed NumPy code does (a view=False result never shares memory
with an operand, so emit may write into it; a view=True one is a view in the cases checked)."""
from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

import compiler.ops as P
from compiler.graph import ShapeTable
from compiler.emit.printer import Printer
from compiler.trace import trace_source
from helpers import PRELUDE, check_model_text

NATIVE = [head for head in P.REGISTRY if not (isinstance(head, type) and issubclass(head, P.Op))]
OPS = sorted((head for head in P.REGISTRY if head not in NATIVE), key=lambda h: h.__name__)
CHECKED = sorted((r for r in P.REGISTRY.values() if r.check is not None), key=lambda r: r.head.__name__)


# ---- completeness ------------------------------------------------------------------------------

def test_registry_has_both_kinds_of_heads():
    assert {sp.Add, sp.Mul, sp.Pow, sp.exp, sp.log, sp.tanh} <= set(NATIVE)
    assert {P.matmul, P.reduce_sum, P.sigmoid, P.windows} <= set(OPS)


@pytest.mark.parametrize("head", OPS, ids=lambda h: h.__name__)
def test_every_registered_op_is_complete(head):
    assert P.missing(head) == []
    rule = P.REGISTRY[head]
    assert rule.head is head
    assert isinstance(rule.view, bool) and rule.view == head.view
    assert callable(rule.eager) and callable(rule.shape_of)
    assert isinstance(head.temp, str) and head.temp
    assert (rule.vjp is None) == (not head.differentiable)
    assert (rule.check is None) == (not head.differentiable or head.constant)


@pytest.mark.parametrize("head", [h for h in OPS if h.constant], ids=lambda h: h.__name__)
def test_masks_have_zero_derivative(head):
    """A mask's VJP sends nothing back: second derivatives pass through the ReLU router's mask."""
    node = head(*sp.symbols(f"x0:{head.n_tensor}", real=True), *([sp.Integer(0)] * 3))
    assert all(ct is None for ct in P.REGISTRY[head].vjp(node, sp.Symbol("g"), None))


@pytest.mark.parametrize("head", NATIVE, ids=lambda h: h.__name__)
def test_native_heads_have_eager_temp_and_view(head):
    rule = P.REGISTRY[head]
    assert rule.head is head
    assert callable(rule.eager)
    assert rule.view is False
    a, b = sp.symbols("a b", real=True)
    sample = {sp.Add: a + b, sp.Mul: a * b, sp.Pow: a ** 3}.get(head) or head(a)
    assert isinstance(sample, head)
    assert isinstance(rule.temp(sample), str) and rule.temp(sample)
    x = np.array([0.5, 2.0])
    want = {sp.Add: x + x, sp.Mul: x * x, sp.Pow: x ** x, sp.exp: np.exp(x), sp.log: np.log(x),
            sp.tanh: np.tanh(x), sp.sign: np.sign(x), sp.Abs: np.abs(x)}[head]
    np.testing.assert_allclose(rule.eager(*[x] * len(sample.args)), want, rtol=1e-15)


def test_public_names_map_to_their_rules():
    for name, rule in P.PUBLIC.items():
        assert rule.public == name and P.REGISTRY[rule.head] is rule


# ---- register refuses an incomplete rule --------------------------------------------------------

def _eager(x):
    return x


def _numpycode(self, p):
    return p._print(self.args[0])


def _vjp(self, g, shape):
    return (g,)


COMPLETE = {
    "temp": "throwaway",
    "view": False,
    "eager": staticmethod(_eager),
    "_numpycode": _numpycode,
    "math": ("t({0})", r"t\left({0}\right)"),
    "check": P.Check({"a": ((2,), (-1, 1))}, "sum(a)"),
    "vjp": _vjp,
}


def _op_class(name, attrs):
    """A throwaway Op subclass, built with SymPy's metaclass (never registered by itself)."""
    return type(P.Op)(name, (P.Op,), dict(attrs))


def _register_and_remove(cls):
    before = dict(P.REGISTRY)
    try:
        return P.register(cls)
    finally:
        P.REGISTRY.pop(cls, None)
        assert P.REGISTRY == before


def test_register_accepts_the_complete_throwaway_op():
    """The baseline of the tests below: with every part declared, register accepts it."""
    cls = _op_class("throwaway_complete", COMPLETE)
    assert P.missing(cls) == []
    assert _register_and_remove(cls) is cls
    assert cls not in P.REGISTRY


@pytest.mark.parametrize("left_out, named", [
    ("view", "view"),
    ("eager", "eager"),
    ("temp", "temp"),
    ("_numpycode", "_numpycode"),
    ("math", "math (or _mathtext and _latex)"),
    ("check", "check"),
    ("vjp", "vjp (or fdiff for an elementwise op)"),
])
def test_register_refuses_an_incomplete_op(left_out, named):
    attrs = {k: v for k, v in COMPLETE.items() if k != left_out}
    cls = _op_class(f"throwaway_without{left_out}", attrs)
    before = dict(P.REGISTRY)
    try:
        assert P.missing(cls) == [named]
        with pytest.raises(P.IncompleteRule) as info:
            P.register(cls)
        assert named in str(info.value) and cls.__name__ in str(info.value)
    finally:
        P.REGISTRY.pop(cls, None)
    assert P.REGISTRY == before


@pytest.mark.parametrize("attrs", [
    {"_numpycode": None},
    {},
], ids=["numpycode_none", "bare"])
def test_register_names_every_missing_part(attrs):
    cls = _op_class("throwaway_bare", attrs)
    before = dict(P.REGISTRY)
    try:
        with pytest.raises(P.IncompleteRule) as info:
            P.register(cls)
        for part in ("temp", "view", "eager", "_numpycode", "math", "check", "vjp"):
            assert part in str(info.value)
    finally:
        P.REGISTRY.pop(cls, None)
    assert P.REGISTRY == before


def test_math_methods_stand_for_math_templates():
    attrs = {k: v for k, v in COMPLETE.items() if k != "math"}
    attrs["_mathtext"] = lambda self, p: "t"
    assert P.missing(_op_class("throwaway_mathtext_only", attrs)) == ["math (or _mathtext and _latex)"]
    attrs["_latex"] = lambda self, p: "t"
    assert P.missing(_op_class("throwaway_math_methods", attrs)) == []


def test_numpycode_set_to_none_is_missing():
    cls = _op_class("throwaway_numpycode_none", {**COMPLETE, "_numpycode": None})
    assert P.missing(cls) == ["_numpycode"]
    with pytest.raises(P.IncompleteRule, match="_numpycode"):
        _register_and_remove(cls)


def test_not_differentiable_op_needs_no_check_or_vjp():
    attrs = {k: v for k, v in COMPLETE.items() if k not in ("check", "vjp")}
    assert P.missing(_op_class("throwaway_nondiff", {**attrs, "differentiable": False})) == []
    assert P.missing(_op_class("throwaway_diff", attrs)) == ["check", "vjp (or fdiff for an elementwise op)"]


def test_elementwise_op_may_give_fdiff_instead_of_vjp():
    attrs = {k: v for k, v in COMPLETE.items() if k not in ("vjp", "view")}
    cls = type(P.Op)("throwaway_elementwise", (P.Elementwise,), {**attrs, "fdiff": lambda self, i=1: 1})
    assert P.missing(cls) == []


# ---- view-ness of the printed code --------------------------------------------------------------

def _evaluate(node, shapes, operands: list):
    """Print `node` whose tensor operands are the symbols in `operands` ((symbol, array) pairs)."""
    names = {sym: f"op{i}" for i, (sym, _) in enumerate(operands)}
    namespace = {"np": np, "DTYPE": np.float64}
    namespace.update({f"op{i}": value for i, (_, value) in enumerate(operands)})
    printer = Printer(names, shapes)
    text = printer.doprint(node)
    for head in printer.helpers:
        exec(head.helper, namespace)
    return eval(text, namespace), text


def _isolate(node, graph, rng):
    """`node` with each non-number tensor operand replaced by a fresh symbol bound to a random array
    of the operand's shape (integers where the operand is labels or a seed)."""
    rule = P.rule_for(node)
    n = len(rule.tensor_args(node))
    kinds = {leaf.symbol: leaf for leaf in graph.leaves.values()}
    args, operands = list(node.args), []
    for i, a in enumerate(node.args[:n]):
        if a.is_Number:
            continue
        sym = sp.Symbol(f"operand{i}", real=True)
        shape = graph.shapes(a)
        graph.shapes.set(sym, shape)
        leaf = kinds.get(a)
        if leaf is not None and leaf.kind == "labels":
            value = rng.integers(0, leaf.classes, size=shape)
        elif leaf is not None and leaf.kind == "seed":
            value = np.int64(7)
        else:
            value = rng.uniform(0.5, 2.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)
        args[i] = sym
        operands.append((sym, value))
    if isinstance(node, (sp.Add, sp.Mul, sp.Pow)):
        fresh = node.func(*args, evaluate=False)
    else:
        fresh = node.func(*args)
    assert type(fresh) is type(node), (node, fresh)
    graph.shapes.set(fresh, graph.shapes(node))
    return fresh, operands


def _instances(rule):
    """Every node of the rule's head in its Check's model, isolated from its operands."""
    graph = trace_source(PRELUDE + check_model_text(rule.check), "/tmp/symgrad_rule_check.py")
    rng = np.random.default_rng(0)
    found = list(dict.fromkeys(n for n in sp.preorder_traversal(graph.loss) if P.rule_for(n) is rule))
    return [(node,) + _isolate(node, graph, rng) + (graph.shapes,) for node in found]


def _shares(result, operands) -> bool:
    return any(isinstance(v, np.ndarray) and np.shares_memory(np.asarray(result), v) for _, v in operands)


def _padded(node) -> bool:
    """windows(x, k, stride, padding, dilation) with padding pads (a copy) before taking the view."""
    return isinstance(node, P.windows) and int(node.args[3]) > 0


@pytest.mark.parametrize("rule", CHECKED, ids=lambda r: r.head.__name__)
def test_printed_code_of_each_checked_op_matches_its_view_flag(rule):
    instances = _instances(rule)
    assert instances, f"no {rule.head.__name__} node in its own check"
    for node, fresh, operands, shapes in instances:
        result, text = _evaluate(fresh, shapes, operands)
        assert np.shape(result) == tuple(shapes(node)), text
        if rule.view and _padded(node):
            continue  # see test_windows_with_padding_copies_first; unpadded: the hand-made cases
        assert _shares(result, operands) == rule.view, (node, text)
        if not rule.view:  # a fresh array: writing into it leaves every operand as it was
            before = [np.copy(v) for _, v in operands]
            np.asarray(result)[...] = 123.0 if np.ndim(result) else 0
            for (_, v), old in zip(operands, before):
                np.testing.assert_array_equal(v, old)


def _table(**shapes):
    syms = {name: sp.Symbol(name, real=True) for name in shapes}
    return syms, ShapeTable({syms[k]: v for k, v in shapes.items()})


def _fresh(shape, rng, ints=None):
    if ints is not None:
        return rng.integers(0, ints, size=shape)
    return rng.uniform(0.5, 2.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)


def _hand_made():
    """Ops outside every Check (backward-only, non-differentiable) and view cases the checks miss."""
    s, shapes = _table(x=(3, 4), y=(3, 4), v=(4,), lab=(3,), t=(2, 7, 3), g=(2, 3, 3, 3),
                       p=(2, 2, 3, 2, 2, 3), q=(2, 3, 1, 1, 2, 3))
    x, y, v, lab, t, g, p, q = (s[k] for k in ("x", "y", "v", "lab", "t", "g", "p", "q"))
    pairs = [sp.Tuple(*pair) for pair in ((2, 2), (1, 1), (0, 0))]
    tup = sp.Tuple
    cases = [
        (sp.sign(x), [x]),
        (P.positive(x), [x]),
        (P.unless_zero(x, y), [x, y]),
        (P.nonzero(x), [x]),
        (P.equal(x, y), [x, y]),
        (P.ones(sp.Integer(3)), []),
        (P.one_hot(lab, sp.Integer(4)), [lab]),
        (P.select(x, y, 0), [x, y]),                       # the ReLU router: y * (x > 0)
        (P.select(x, 0, y), [x, y]),
        (P.select(x, 1, 0), [x]),
        (P.select(x, x, y, sp.Integer(1)), [x, y]),
        (P.reduce_sum(x, P.axes_arg((0, 1)), sp.Integer(0)), [x]),
        (P.reduce_max(x, P.axes_arg((1,)), sp.Integer(1)), [x]),
        (P.matmul(x, v), [x, v]),
        (P.outer(v, v), [v]),
        (P.unwindows(g, sp.Integer(7), 3, 2, 0, 1), [g]),  # no padding: still a fresh array
        # windows that tile the image (pooling's adjoint) are put back by a permutation: a copy,
        # also where the permutation only moves axes of length 1 (1×2 windows, one column)
        (P.unwindows2d(p, sp.Tuple(5, 7), pairs[0], pairs[0], pairs[2], pairs[1]), [p]),
        (P.unwindows2d(q, sp.Tuple(3, 2), sp.Tuple(1, 2), sp.Tuple(1, 2), pairs[2], pairs[1]), [q]),
        (P.transpose(v), [v]),                             # views
        (P.expand_dims(v, P.axes_arg((0,))), [v]),
        (P.squeeze(P.expand_dims(v, P.axes_arg((0,))), P.axes_arg((0,))), []),
        (P.broadcast_to(v, tup(3, 4)), [v]),
        (P.reshape(x, tup(12)), [x]),
        (P.reshape(x, tup(2, 6)), [x]),
        (P.windows(t, 3, 2, 0, 1), [t]),                   # no padding: a strided view
        (P.windows(t, 2, 1, 0, 2), [t]),
        (P.stop_gradient(x), [x]),
    ]
    return cases, shapes, lab


@pytest.mark.parametrize("case", range(len(_hand_made()[0])),
                         ids=[f"{i}-{type(node).__name__}" for i, (node, _) in enumerate(_hand_made()[0])])
def test_hand_made_ops_match_their_view_flag(case):
    cases, shapes, lab = _hand_made()
    node, operands = cases[case]
    rng = np.random.default_rng(case)
    if isinstance(node, P.squeeze):  # squeeze of a fresh (1, 4) operand
        inner = sp.Symbol("inner", real=True)
        shapes.set(inner, (1, 4))
        node = P.squeeze(inner, P.axes_arg((0,)))
        operands = [inner]
    bound = [(sym, _fresh(shapes(sym), rng, 4 if sym == lab else None)) for sym in operands]
    result, text = _evaluate(node, shapes, bound)
    assert np.shape(result) == tuple(shapes(node)), text
    view = P.rule_for(node).view
    if not bound:
        assert not view
        return
    assert _shares(result, bound) == view, text


def test_windows_with_padding_copies_first():
    """windows' view flag means `may` share: with padding it pads (a copy) and then views the copy.
    Declared view=True is then conservative, never unsafe."""
    s, shapes = _table(t=(2, 7, 3))
    node = P.windows(s["t"], 3, 2, 1, 1)
    t = np.random.default_rng(0).normal(size=(2, 7, 3))
    result, _ = _evaluate(node, shapes, [(s["t"], t)])
    assert P.REGISTRY[P.windows].view is True
    assert not np.shares_memory(result, t)
    assert result.shape == tuple(shapes(node))


@pytest.mark.parametrize("shape, axes", [((2, 3, 2, 2, 4), (2, 3)), ((3, 5, 4), (1,)), ((2, 40, 3), (1,)),
                                         ((3, 4), (1,))])
def test_max_over_few_middle_entries_prints_as_slices_with_numpys_values(shape, axes):
    """A max over at most 32 entries along middle axes (pooling windows) is a running np.maximum of
    slices, a fresh array equal to NumPy's max, NaN included; other maxima stay NumPy's."""
    s, shapes = _table(t=shape)
    t = np.random.default_rng(0).normal(size=shape)
    t.flat[3] = np.nan
    node = P.reduce_max(s["t"], P.axes_arg(axes), sp.Integer(0))
    result, text = _evaluate(node, shapes, [(s["t"], t)])
    taps = int(np.prod([shape[a] for a in axes]))
    assert ("_max_over_taps" in text) == (taps <= 32 and len(shape) - 1 not in axes), text
    np.testing.assert_array_equal(result, np.max(t, axis=axes))
    assert not np.shares_memory(result, t)
