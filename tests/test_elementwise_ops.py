"""sin, cos, sinh, cosh, erf, square, clip and gelu(x, exact=True): values and derivatives at known
points, the module's own erf against math.erf, clip on and off its bounds, the stable log(cosh(x)),
and no floating-point warnings at ±800 wherever the true result is finite."""
from __future__ import annotations

import math

import numpy as np
import pytest

import compiler
import compiler.ops as P
from compiler.canonical import canonicalize
from compiler.errors import ModelError
from compiler.trace import trace_source
from helpers import PRELUDE, build

NEW_OPS = ("sin", "cos", "sinh", "cosh", "erf", "square", "clip", "gelu")
TWO_OVER_SQRT_PI = 2 / math.sqrt(math.pi)


@pytest.fixture(scope="module")
def helper():
    """The erf block the generated module carries, run on its own."""
    namespace = {"np": np}
    exec(P.erf.helper, namespace)
    return namespace


def _points():
    rng = np.random.default_rng(7)
    tiny = 10.0 ** rng.uniform(-300, 0, 2000) * rng.choice([-1.0, 1.0], 2000)
    edges = [0.0, 0.46875, -0.46875, 4.0, -4.0, 26.5, -26.5, 30.0, -30.0, 1e-300, -1e-300, 1e-17]
    return np.concatenate([rng.uniform(-30, 30, 3000), rng.uniform(-6, 6, 3000),
                           rng.uniform(-0.6, 0.6, 2000), tiny, edges])


def test_erf_helper_matches_math_erf_on_the_whole_line(helper):
    x = _points()
    assert x.size >= 10_000
    want = np.array([math.erf(v) for v in x])
    got = helper["_erf"](x)
    relative = np.abs(got - want) / np.maximum(np.abs(want), 1e-308)
    assert relative.max() <= 2e-15   # measured: 4.3e-16
    np.testing.assert_array_equal(helper["_erf"](-x), -got)   # odd, exactly
    np.testing.assert_array_equal(helper["_erf"](np.array([0.0, 30.0, -30.0, 800.0])), [0, 1, -1, 1])


def test_erfc_helper_keeps_its_tail(helper):
    x = _points()
    want = np.array([math.erfc(v) for v in x])
    got = helper["_erfc"](x)
    flushed = x > 26.5   # erfc(x) < 5e-307 there: 0 instead of an underflow
    assert np.max(np.abs(got - want)[~flushed] / want[~flushed]) <= 4e-15   # measured: 6.7e-16
    assert np.all(got[flushed] == 0) and np.all(want[flushed] < 6e-307)
    assert helper["_erfc"](np.array(10.0)) == pytest.approx(2.088487583762545e-45, rel=1e-14)


def _derivative(tmp_path, loss: str, x: float):
    model = build(tmp_path, f'a = Param("a", ())\nloss = {loss}\n')
    value, grads = model.loss_and_grad({"a": np.array(x)})
    return float(value), float(grads["a"])


@pytest.mark.parametrize("loss, x, value, slope", [
    ("sin(a)", 0.0, 0.0, 1.0),
    ("sin(a)", math.pi / 2, 1.0, 0.0),
    ("cos(a)", math.pi / 2, 0.0, -1.0),
    ("cos(a)", 0.0, 1.0, 0.0),
    ("sinh(a)", 0.0, 0.0, 1.0),
    ("sinh(a)", 1.0, math.sinh(1.0), math.cosh(1.0)),
    ("cosh(a)", 0.0, 1.0, 0.0),
    ("cosh(a)", -1.0, math.cosh(1.0), -math.sinh(1.0)),
    ("erf(a)", 0.0, 0.0, TWO_OVER_SQRT_PI),
    ("erf(a)", 1.0, 0.8427007929497149, TWO_OVER_SQRT_PI * math.exp(-1.0)),
    ("square(a)", 3.0, 9.0, 6.0),
    ("square(a)", -0.5, 0.25, -1.0),
    ("gelu(a, exact=True)", 0.0, 0.0, 0.5),
    # Φ(1) and Φ(1) + φ(1)
    ("gelu(a, exact=True)", 1.0, 0.8413447460685429, 0.8413447460685429 + 0.24197072451914337),
    ("gelu(a, exact=True)", -1.0, -0.15865525393145707, 0.15865525393145707 - 0.24197072451914337),
])
def test_values_and_derivatives_at_known_points(tmp_path, loss, x, value, slope):
    got_value, got_slope = _derivative(tmp_path, loss, x)
    assert got_value == pytest.approx(value, rel=1e-14, abs=1e-15)
    assert got_slope == pytest.approx(slope, rel=1e-14, abs=1e-15)


@pytest.mark.parametrize("x, slope", P.gelu_exact.edges)
def test_exact_gelu_edges(tmp_path, x, slope):
    """The exact GELU has no public name of its own, so the registry's edge test cannot reach it."""
    assert _derivative(tmp_path, "gelu(a, exact=True)", x)[1] == slope


def test_exact_and_tanh_gelu_are_different_heads(tmp_path):
    model = build(tmp_path, 'a = Param("a", (3,))\nloss = sum(gelu(a, exact=True) - gelu(a))\n')
    x = np.array([-1.0, 0.5, 2.0])
    exact = x * 0.5 * np.array([math.erfc(-v / math.sqrt(2)) for v in x])
    tanh_form = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    assert float(model.loss({"a": x})) == pytest.approx(np.sum(exact - tanh_form), rel=1e-12)
    assert np.max(np.abs(exact - tanh_form)) > 5e-5   # the two forms are not the same function


def test_clip_on_inside_and_outside_its_bounds(tmp_path):
    """Derivative 1 for lo <= x <= hi, the bounds included (as torch.clamp), 0 outside."""
    model = build(tmp_path, 'a = Param("a", (7,))\nc = Input("c", (7,))\n'
                            'loss = sum(clip(a, lo=-1.0, hi=0.5) * c)\n')
    x = np.array([-2.0, -1.0, -0.999, 0.0, 0.5, 0.5001, 3.0])
    c = np.arange(1.0, 8.0)
    value, grads = model.loss_and_grad({"a": x}, c=c)
    assert float(value) == np.sum(np.array([-1.0, -1.0, -0.999, 0.0, 0.5, 0.5, 0.5]) * c)
    np.testing.assert_array_equal(grads["a"], np.array([0, 1, 1, 1, 1, 0, 0]) * c)


def test_clip_with_one_side_open(tmp_path):
    model = build(tmp_path, 'a = Param("a", (4,))\nloss = sum(clip(a, lo=0.0)) + 2 * sum(clip(a, hi=1.0))\n')
    x = np.array([-1.0, 0.0, 1.0, 5.0])
    value, grads = model.loss_and_grad({"a": x})
    assert float(value) == (0 + 0 + 1 + 5) + 2 * (-1 + 0 + 1 + 1)
    np.testing.assert_array_equal(grads["a"], [0 + 2, 1 + 2, 1 + 2, 1 + 0])


def test_clip_refuses_lo_above_hi(tmp_path):
    with pytest.raises(ModelError) as info:
        build(tmp_path, 'a = Param("a", (4,))\nloss = sum(clip(a, lo=1.0, hi=-1.0))\n')
    text = str(info.value)
    assert "clip" in text and "lo <= hi" in text and "lo=1.0" in text and "(4,)" in text
    assert ":4:" in text   # the model line (after the two-line prelude and the Param)


@pytest.mark.parametrize("x", [800.0, -800.0])
def test_log_cosh_is_stable_far_out(tmp_path, x):
    value, slope = _derivative(tmp_path, "log(cosh(a))", x)
    assert value == 800.0 - math.log(2)
    assert slope == math.copysign(1.0, x)


def test_log_cosh_matches_the_textbook_form_where_that_is_finite(tmp_path):
    model = build(tmp_path, 'a = Param("a", (5,))\nloss = sum(log(cosh(a)) * a)\n')
    x = np.array([-3.0, -0.5, 0.0, 0.25, 2.0])
    value, grads = model.loss_and_grad({"a": x})
    assert float(value) == pytest.approx(np.sum(np.log(np.cosh(x)) * x), rel=1e-14)
    np.testing.assert_allclose(grads["a"], np.log(np.cosh(x)) + x * np.tanh(x), rtol=1e-14, atol=1e-16)


def test_log_cosh_rewrite_is_noted():
    body = 'a = Param("a", (3,))\nloss = sum(log(cosh(a)))\n'
    graph = canonicalize(trace_source(PRELUDE + body, "m.py"))
    assert graph.notes == [(4, "log(cosh(x)) = |x| + softplus(-2|x|) - log(2)")]


@pytest.mark.parametrize("loss", ["sin(a)", "cos(a)", "erf(a)", "square(a)", "clip(a, lo=-1.0, hi=1.0)",
                                  "gelu(a)", "gelu(a, exact=True)", "silu(a)"])
def test_no_floating_point_warnings_far_out(tmp_path, loss):
    """At ±800 (and ±30, where e^(−x²) would underflow) every result is finite: no warning at all."""
    model = build(tmp_path, f'a = Param("a", (6,))\nloss = sum({loss} * a)\n')
    x = np.array([-800.0, 800.0, -30.0, 30.0, -1e-3, 0.0])
    with np.errstate(all="raise"):
        value, grads = model.loss_and_grad({"a": x})
    assert np.isfinite(value) and np.all(np.isfinite(grads["a"]))


def test_log_cosh_far_out_neither_overflows_nor_divides(tmp_path):
    """Only softplus's own e^(−1600) underflows (to the exact 0 it rounds to); nothing overflows."""
    model = build(tmp_path, 'a = Param("a", (2,))\nloss = sum(log(cosh(a)) * a)\n')
    with np.errstate(all="raise", under="ignore"):
        value, grads = model.loss_and_grad({"a": np.array([-800.0, 800.0])})
    assert float(value) == 0.0
    # log cosh(x) + x·tanh(x) = 800 − ln 2 + 800 at both ends
    np.testing.assert_allclose(grads["a"], [1600 - math.log(2)] * 2, rtol=1e-15)


def test_silu_and_gelus_give_signed_zero_at_minus_800(tmp_path):
    model = build(tmp_path, 'a = Param("a", ())\ny = silu(a) + gelu(a) + gelu(a, exact=True)\n'
                            'loss = y\noutputs = {"y": y}\n')
    with np.errstate(all="raise"):
        y = model.forward({"a": np.array(-800.0)})["y"]
    assert y == 0 and math.copysign(1.0, float(y)) == -1.0


@pytest.mark.parametrize("op", ["sinh", "cosh"])
def test_hyperbolic_far_out(tmp_path, op):
    """Finite at ±700 with no warning; at ±800 the true value overflows to ±inf like NumPy, and the
    gradient is ±inf, never NaN."""
    model = build(tmp_path, f'a = Param("a", (2,))\nloss = sum({op}(a))\n')
    with np.errstate(all="raise"):
        value, grads = model.loss_and_grad({"a": np.array([-700.0, 700.0])})
    assert np.isfinite(value) and np.all(np.isfinite(grads["a"]))
    with np.errstate(over="ignore"):
        value, grads = model.loss_and_grad({"a": np.array([800.0, 800.0])})
        _, down = model.loss_and_grad({"a": np.array([-800.0, -800.0])})
    assert value == np.inf
    np.testing.assert_array_equal(grads["a"], [np.inf, np.inf])
    np.testing.assert_array_equal(down["a"], [-np.inf, -np.inf] if op == "cosh" else [np.inf, np.inf])


def test_registry_and_language_pick_every_op_up():
    checked = {r.head.__name__ for r in P.REGISTRY.values() if r.check is not None}
    assert {"sin", "cos", "sinh", "cosh", "erf", "erfc", "square", "clip", "gelu", "gelu_exact"} <= checked
    assert set(NEW_OPS) <= set(P.PUBLIC)
    assert P.PUBLIC["gelu"].static == (("exact", False),)


def test_generated_module_imports_only_numpy(tmp_path):
    path = tmp_path / "m.py"
    path.write_text(PRELUDE + 'a = Param("a", (3,))\nloss = sum(erf(a) + gelu(a, exact=True) + sin(a))\n')
    source = compiler.compile_file(str(path))
    imports = sorted({line.strip() for line in source.splitlines() if line.startswith(("import ", "from "))})
    assert all("numpy" in line or "__future__" in line for line in imports), imports
    assert source.count("def _erf(") == 1


def test_float32_module_keeps_its_dtype(tmp_path):
    model = build(tmp_path, 'a = Param("a", (3,))\nloss = sum(erf(a) * gelu(a, exact=True))\n', dtype="float32")
    value, grads = model.loss_and_grad({"a": np.array([-1.0, 0.5, 2.0], dtype=np.float32)})
    assert grads["a"].dtype == np.float32
    x = np.array([-1.0, 0.5, 2.0])
    want = sum(math.erf(v) * v * 0.5 * math.erfc(-v / math.sqrt(2)) for v in x)
    assert float(value) == pytest.approx(want, rel=1e-6)


def test_explain_shows_the_derivatives_as_mathematics(tmp_path):
    from compiler.explain import explain
    path = tmp_path / "m.py"
    path.write_text(PRELUDE + 'a = Param("a", (3,))\nloss = sum(erf(a) + clip(a, hi=2.0) + sin(a))\n')
    text = explain(compiler.compile_model(str(path)), "a")
    assert "exp(-a²)" in text and "[a ≤ 2.0]" in text and "cos(a)" in text


def test_static_arguments_by_position_or_by_name(tmp_path):
    """clip(x, -1, 1) and clip(x, lo=-1, hi=1) are the same op; giving one both ways is refused."""
    params = {"a": np.array([-3.0, -0.5, 0.25, 2.0])}
    (tmp_path / "p").mkdir()
    (tmp_path / "n").mkdir()
    by_position = build(tmp_path / "p", 'a = Param("a", (4,))\nloss = sum(clip(a, -1, 1) * a)\n')
    by_name = build(tmp_path / "n", 'a = Param("a", (4,))\nloss = sum(clip(a, lo=-1, hi=1) * a)\n')
    assert by_position.loss(params) == by_name.loss(params) == 3.0 + 0.25 + 0.0625 + 2.0
    with pytest.raises(compiler.ModelError, match="lo given by position and by name"):
        compiler.compile_source(PRELUDE + 'a = Param("a", (4,))\nloss = sum(clip(a, -1, lo=1))\n', "m.py")
    with pytest.raises(compiler.ModelError, match="takes 1 tensor argument"):
        compiler.compile_source(PRELUDE + 'a = Param("a", (4,))\nloss = sum(clip(a, -1, 1, 2))\n', "m.py")
