"""Property-based tests: random compositions of primitives over random broadcast shapes, and random
MLP model files, compiled and checked against the eager oracle: the generated loss must equal the
oracle's, the gradients central differences of the oracle's loss, H·v central differences of that
gradient (symmetric too), and for the MLPs J·t and the input gradients the oracle's differences; the
compositions' torch and JAX modules equal the NumPy module's. The compositions deliberately
cancel (x - x, (a + b) - b, x / x, x * 0) so SymPy's scalar algebra folds broadcasts away that the
shapes must keep.

The normal run uses a bounded, derandomized profile; `HYPOTHESIS_PROFILE=long pytest tests/test_fuzz.py`
tries many more graphs. `SYMGRAD_FUZZ_LOG=path` appends one line per graph tried.
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings, strategies as st, given

import runtime
from helpers import PRELUDE, assert_forward_matches_oracle, build

settings.register_profile("ci", max_examples=100, derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("long", max_examples=5000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)

# operands are parenthesised: {a} may be "(p0) - (p1)", and a * a must stay a square
UNARY = ["exp(0.5 * ({a}))", "tanh({a})", "sigmoid({a})", "softplus({a})", "relu({a})",
         "leaky_relu({a}, alpha=0.1)", "elu({a})", "abs({a})", "sqrt(({a}) * ({a}) + 0.5)",
         "log(({a}) * ({a}) + 0.5)", "({a}) ** 2", "-({a})", "({a}) / (({a}) * ({a}) + 1)",
         "where({a} > 0, log({a}), {a})", "where({a} <= 0.2, {a} * 3, sqrt({a}))",
         "({a}) - ({a}) + 1", "({a}) * 0", "({a}) - ({a})", "({a}) / (({a}) * ({a}) + 1) * (({a}) * ({a}) + 1)"]
BINARY = ["{a} + ({b})", "{a} - ({b})", "({a}) * ({b})", "({a}) / (({b}) * ({b}) + 1)", "maximum({a}, {b})",
          "minimum({a}, {b})", "where({a} > {b}, ({a}) * ({b}), {b} - 1)",
          "(({a}) + ({b})) - ({b})", "({a}) * 0 + ({b})", "({a}) * ({b}) - ({b}) * ({a}) + ({a})",
          "(({b}) * ({b}) + 1) / (({b}) * ({b}) + 1) * ({a})"]
REDUCE = ["sum({a}, axis={k}, keepdims=True)", "mean({a}, axis={k}, keepdims=True)",
          "amax({a}, axis={k}, keepdims=True)", "logsumexp({a}, axis={k}, keepdims=True)",
          "softmax({a}, axis={k})", "log_softmax({a}, axis={k})"]


def _pad(shape, rank):
    return (1,) * (rank - len(shape)) + tuple(shape)


def _combine(sa, sb):
    """The broadcast shape if one operand already has it (symgrad refuses outer broadcasts)."""
    rank = max(len(sa), len(sb))
    pa, pb = _pad(sa, rank), _pad(sb, rank)
    out = []
    for x, y in zip(pa, pb):
        if x != y and 1 not in (x, y):
            return None
        out.append(max(x, y))
    out = tuple(out)
    return out if out in (pa, pb) else None


class Graph:
    def __init__(self):
        self.params = {}

    def leaf(self, draw, base):
        n, m = base
        shape = draw(st.sampled_from([(n, m), (m,), (1, m), (n, 1), ()]))
        name = f"p{len(self.params)}"
        self.params[name] = shape
        return name, shape

    def expr(self, draw, depth, base):
        if depth == 0 or draw(st.integers(0, 4)) == 0:
            return self.leaf(draw, base)
        kind = draw(st.sampled_from(["unary", "unary", "binary", "binary", "reduce", "matmul", "T"]))
        a, sa = self.expr(draw, depth - 1, base)
        if kind == "unary":
            return draw(st.sampled_from(UNARY)).format(a=a), sa
        if kind == "binary":
            b, sb = self.expr(draw, depth - 1, base)
            out = _combine(sa, sb)
            if out is None:
                return f"(({a}) * 2 + sum({b}))", sa
            return "(" + draw(st.sampled_from(BINARY)).format(a=a, b=b) + ")", out
        if len(sa) != 2:
            return f"tanh({a})", sa
        if kind == "reduce":
            k = draw(st.integers(0, 1))
            template = draw(st.sampled_from(REDUCE))
            keeps = "keepdims" in template
            return template.format(a=a, k=k), tuple(1 if i == k and keeps else d for i, d in enumerate(sa))
        if kind == "T":
            return f"({a}).T", sa[::-1]
        k = draw(st.integers(1, 3))
        name = f"p{len(self.params)}"
        self.params[name] = (sa[1], k)
        return f"(({a}) @ {name})", (sa[0], k)


@st.composite
def random_graphs(draw):
    base = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    g = Graph()
    body, _ = g.expr(draw, draw(st.integers(1, 4)), base)
    reducer = draw(st.sampled_from(["sum({e})", "mean({e})", "sum(({e}) * ({e}))"]))
    lines = [f'{name} = Param("{name}", {shape})' for name, shape in g.params.items()]
    lines.append("loss = " + reducer.format(e=body))
    return "\n".join(lines) + "\n", g.params


def _log(text):
    path = os.environ.get("SYMGRAD_FUZZ_LOG")
    if path:
        with open(path, "a") as f:
            f.write(text.replace("\n", " | ") + "\n")


def _assert_gradients(model, params, inputs, tol, text):
    loss, grads = model.loss_and_grad(params, **inputs)
    assert np.isfinite(loss), text
    assert loss == model.loss(params, **inputs), text
    assert_forward_matches_oracle(model, params, inputs, text=text)
    for name in params:
        assert grads[name].shape == params[name].shape, (name, text)
        assert np.all(np.isfinite(grads[name])), (name, text)
    # central differences of the oracle's loss; round-off floor and kinks as `symgrad check` judges them
    for check in runtime.check_gradients(model, params, inputs, tol=tol, reference=model.oracle.loss):
        assert check.ok, f"{check}\n{text}"


def _assert_hvp(model, params, inputs, text, seed):
    """H·v against differences of the gradient just checked, and symmetric: u·(Hv) = v·(Hu)."""
    for check in runtime.check_hvp(model, params, inputs, seed=seed % 1000, tol=1e-6):
        assert check.ok, f"{check}\n{text}"
    rng = np.random.default_rng(seed % 1000 + 1)
    u, v = ({k: rng.standard_normal(np.shape(p)) for k, p in params.items()} for _ in range(2))
    hv, hu = model.hvp(params, v, **inputs)[2], model.hvp(params, u, **inputs)[2]
    left = sum(float(np.sum(u[k] * hv[k])) for k in params)
    right = sum(float(np.sum(v[k] * hu[k])) for k in params)
    if np.isfinite(left) or np.isfinite(right):
        assert abs(left - right) <= 1e-8 * max(1.0, abs(left), abs(right)), text


@given(random_graphs(), st.integers(0, 2**32 - 1))
def test_random_compositions_match_central_differences(tmp_path_factory, case, seed):
    text, shapes = case
    _log(text)
    model = build(tmp_path_factory.mktemp("fuzz"), text, functions=("hvp",))
    rng = np.random.default_rng(seed)
    params = {name: rng.uniform(-1.5, 1.5, size=shape) for name, shape in shapes.items()}
    _assert_gradients(model, params, {}, 1e-6, text)
    _assert_hvp(model, params, {}, text, seed)
    if PROFILE != "long" or seed % 8 == 0:  # the long run spends its time on more graphs
        model32 = build(tmp_path_factory.mktemp("fuzz32"), text, dtype="float32", functions=("hvp",))
        p32 = {k: v.astype(np.float32) for k, v in params.items()}
        _, grads32 = model32.loss_and_grad(p32)
        assert all(g.dtype == np.float32 for g in grads32.values()), text
        _, _, hv32 = model32.hvp(p32, p32)
        assert all(h.dtype == np.float32 and h.shape == p32[k].shape for k, h in hv32.items()), text
    source = open(model.module.__file__).read()
    for bad in ("DiracDelta", "Heaviside", "Derivative", "Piecewise"):
        assert bad not in source


@st.composite
def random_mlps(draw):
    d_in = draw(st.integers(1, 6))
    sizes = draw(st.lists(st.integers(1, 6), min_size=0, max_size=3))
    act = draw(st.sampled_from(["relu", "tanh", "sigmoid", "elu", "softplus", "leaky_relu"]))
    classification = draw(st.booleans())
    out = draw(st.integers(2, 4)) if classification else draw(st.integers(1, 3))
    lines = [f'x = Input("x", ("B", {d_in}))', "h = x"]
    for i, n in enumerate(sizes):
        lines.append(f'h = {act}(linear(h, {n}, name="layer{i}"))')
    lines.append(f'out = linear(h, {out}, name="head")')
    if classification:
        lines += [f'y = Labels("y", ("B",), classes={out})', "loss = softmax_cross_entropy(out, y)"]
    else:
        lines += [f't = Input("t", ("B", {out}))', "loss = mse(out, t)"]
    lines.append('outputs = {"out": out}')
    return "\n".join(lines) + "\n"


@given(random_mlps(), st.integers(1, 5), st.integers(0, 2**32 - 1))
def test_random_mlps_match_central_differences(tmp_path_factory, text, batch, seed):
    _log(text)
    model = build(tmp_path_factory.mktemp("mlp"), text, functions=("hvp", "jvp", "input_grad"))
    params = model.init_params(seed % 1000)
    rng = np.random.default_rng(seed)
    params = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in params.items()}
    inputs = runtime.random_inputs(model, batch=batch, seed=seed % 1000)
    _assert_gradients(model, params, inputs, 1e-6, text)
    _assert_hvp(model, params, inputs, text, seed)
    for check in (runtime.check_jvp(model, params, inputs, model.oracle.forward, seed=seed % 1000)
                  + runtime.check_input_grad(model, params, inputs, model.oracle.loss, seed=seed % 1000)):
        assert check.ok, f"{check}\n{text}"
    if PROFILE == "long" and seed % 8:
        return  # the long run spends its time on more graphs
    model32 = build(tmp_path_factory.mktemp("mlp32"), text, dtype="float32")
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    i32 = {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in inputs.items()}
    loss32, grads32 = model32.loss_and_grad(p32, **i32)
    assert loss32.dtype == np.float32 and all(g.dtype == np.float32 for g in grads32.values()), text


@settings(max_examples=30 if PROFILE == "ci" else 1000)
@given(random_graphs(), st.integers(0, 2**32 - 1))
def test_random_compositions_on_other_backends_equal_numpy(tmp_path_factory, case, seed):
    """The same random compositions printed for torch and JAX (their own forms of clamps, casts,
    constants, reductions) and numba (fused loops: each op's scalar form, broadcasts as indices,
    reductions accumulated in the loops): loss, gradient and H·v equal the NumPy module's, itself
    checked above."""
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    pytest.importorskip("numba")
    text, shapes = case
    _log(text)
    folder = tmp_path_factory.mktemp("fuzz_backends")
    path = folder / "model.py"
    path.write_text(PRELUDE + text)
    reference = runtime.load(str(path), functions=("hvp",))
    rng = np.random.default_rng(seed)
    params = {name: rng.uniform(-1.5, 1.5, size=shape) for name, shape in shapes.items()}
    vectors = {name: rng.standard_normal(shape) for name, shape in shapes.items()}
    want = reference.hvp(params, vectors)
    scale = max(1.0, *(float(np.linalg.norm(g)) for part in want[1:] for g in part.values()))
    for backend in ("torch", "jax", "numba"):
        model = runtime.load(str(path), functions=("hvp",), backend=backend, device="cpu").on_host()
        loss, grads, hv = model.hvp(params, vectors)
        assert abs(float(loss) - want[0]) <= 1e-12 * max(1.0, abs(want[0])), (backend, text)
        for got, ref in ((grads, want[1]), (hv, want[2])):
            for k in ref:
                assert np.linalg.norm(got[k] - ref[k]) <= 1e-11 * scale, (backend, k, text)
