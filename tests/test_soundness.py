"""Where SymPy's scalar algebra meets tensor shapes: each case was silently wrong (or crashed) once.
Values are checked against NumPy written by hand and against the eager oracle."""
import os
import subprocess
import sys

import numpy as np
import pytest

import runtime
from helpers import EXAMPLES, ROOT, assert_forward_matches_oracle, build, central_difference, relative_error

RNG = np.random.default_rng(7)


def _check(model, params, inputs=None):
    inputs = inputs or {}
    assert_forward_matches_oracle(model, params, inputs)
    _, grads = model.loss_and_grad(params, **inputs)
    numeric = central_difference(model, params, inputs)
    for name in params:
        assert grads[name].shape == params[name].shape
        assert relative_error(grads[name], numeric[name], floor=1e-3) <= 1e-6, name
    return grads


def test_a_broadcast_folded_away_by_cancellation_is_kept(tmp_path):
    """sum((a + b) - b, axis=0) is 2a (NumPy), not a.sum()."""
    model = build(tmp_path, 'a = Param("a", (3,))\nb = Param("b", (2, 3))\n'
                            's = sum((a + b) - b, axis=0)\nloss = sum(s * s)\noutputs = {"s": s}\n')
    params = {"a": RNG.standard_normal(3), "b": RNG.standard_normal((2, 3))}
    np.testing.assert_allclose(model.forward(params)["s"], 2 * params["a"], rtol=1e-15)
    grads = _check(model, params)
    np.testing.assert_allclose(grads["a"], 8 * params["a"], rtol=1e-14)
    assert not grads["b"].any()


@pytest.mark.parametrize("expr, value", [
    ("sum(w - w + 1)", lambda w, v: 12.0),
    ("sum(w / w)", lambda w, v: 12.0),
    ("sum(w / w * v)", lambda w, v: 3 * v.sum()),
    ("sum(w * 0 + v)", lambda w, v: 3 * v.sum()),
    ("sum(sum(w - w, axis=0) + v)", lambda w, v: v.sum()),
])
def test_expressions_that_simplify_to_constants_keep_their_shape(tmp_path, expr, value):
    model = build(tmp_path, f'w = Param("w", (3, 4))\nv = Param("v", (4,))\nloss = {expr} + sum(v * v)\n')
    params = {"w": RNG.uniform(0.5, 2, (3, 4)), "v": RNG.standard_normal(4)}
    loss = model.loss(params)
    np.testing.assert_allclose(loss, value(params["w"], params["v"]) + (params["v"] ** 2).sum(), rtol=1e-14)
    _check(model, params)


def test_a_scalar_shared_by_two_broadcast_shapes(tmp_path):
    """One scale used in a (B, 4) and a (B, 3) product: its gradient is the sum of both uses."""
    model = build(tmp_path, 'x = Input("x", ("B", 4))\nz = Input("z", ("B", 3))\ns = Param("s", (), init=2.0)\n'
                            'loss = sum(tanh(s * x)) + sum(tanh(s * z))\n')
    x, z = RNG.standard_normal((5, 4)), RNG.standard_normal((5, 3))
    params = {"s": np.array(0.7)}
    grads = _check(model, params, {"x": x, "z": z})
    want = (x * (1 - np.tanh(0.7 * x) ** 2)).sum() + (z * (1 - np.tanh(0.7 * z) ** 2)).sum()
    np.testing.assert_allclose(grads["s"], want, rtol=1e-13)


def test_a_vector_shared_by_two_matrix_shapes(tmp_path):
    model = build(tmp_path, 'a = Param("a", (2, 4))\nb = Param("b", (3, 4))\nv = Param("v", (4,))\n'
                            'loss = sum(tanh(v * a)) + sum(tanh(v * b))\n')
    params = {"a": RNG.standard_normal((2, 4)), "b": RNG.standard_normal((3, 4)), "v": RNG.standard_normal(4)}
    _check(model, params)


@pytest.mark.parametrize("expr, want, grad", [
    ("log(sum(exp(x)))", 1000 + np.log(2), [0.5, 0.5]),
    ("sum(log(exp(x) + exp(2 * x)))", 4000.0, [2, 2]),
    ("sum(log(1 + exp(x)))", 2000.0, [1, 1]),
    ("sum(log(sigmoid(-x)))", -2000.0, [-1, -1]),
    ("sum(log(exp(x) / sum(exp(x))))", 2 * -np.log(2), [0, 0]),
    ("sum(log(exp(x) / sum(exp(x), axis=0, keepdims=True)))", 2 * -np.log(2), [0, 0]),
])
def test_written_out_forms_are_stabilised(tmp_path, expr, want, grad):
    model = build(tmp_path, f'x = Param("x", (2,))\nloss = {expr}\n')
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss, grads = model.loss_and_grad({"x": np.array([1000.0, 1000.0])})
    np.testing.assert_allclose(loss, want, rtol=1e-14)
    np.testing.assert_allclose(grads["x"], grad, rtol=1e-14, atol=1e-14)
    assert "Stable forms:" in open(model.module.__file__).read()


def _symgrad(*args, cwd):
    return subprocess.run([sys.executable, "-m", "symgrad", *args], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": ROOT})


EXAMPLE_FILES = sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".py") and "\nfrom compiler.dsl import"
                       in open(os.path.join(EXAMPLES, f)).read())


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_symgrad_check_passes_every_example(tmp_path, name):
    """Forward against the oracle and gradients against its central differences, no false alarm
    (activations.py sits on its kinks: reported as non-differentiable points, not MISMATCH)."""
    run = _symgrad("check", os.path.join(EXAMPLES, name), "-o", str(tmp_path / "m.py"),
                   "--max-per-param", "40", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "forward vs the eager oracle" in run.stdout and "MISMATCH" not in run.stdout
    if name == "activations.py":
        assert "non-differentiable points" in run.stdout


def test_true_zero_gradients_are_not_false_alarms(tmp_path):
    """softmax over the batch axis summed over that axis is constant: every gradient is 0."""
    model_file = tmp_path / "flat.py"
    model_file.write_text('from compiler.dsl import *\nx = Input("x", ("B", 3))\n'
                          'h = linear(x, 4, name="l")\nloss = sum(softmax(h, axis=0)) + 0.1 * sum(h * h)\n')
    run = _symgrad("check", str(model_file), "-o", str(tmp_path / "m.py"), cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr


def test_a_wrong_forward_is_caught_by_the_oracle(tmp_path):
    """A module whose forward is wrong but whose gradient is the gradient of that wrong forward passes
    a check that differences itself; against the oracle it fails."""
    model = build(tmp_path, 'a = Param("a", (3,))\nloss = sum(a * a)\n')
    source = open(model.module.__file__).read()
    assert "(a**2).sum()" in source and "2*a" in source
    broken = tmp_path / "broken.py"
    broken.write_text(source.replace("(a**2).sum()", "(a**2).sum()*3").replace("2*a", "6*a"))
    wrong = runtime.load(str(broken))
    wrong.oracle = model.oracle
    params = {"a": RNG.standard_normal(3)}
    assert all(c.ok for c in runtime.check_gradients(wrong, params, {}))  # itself: fooled
    checks = runtime.check_gradients(wrong, params, {}, reference=model.oracle.loss)
    assert not any(c.ok for c in checks)
    with pytest.raises(AssertionError):
        assert_forward_matches_oracle(wrong, params, {})


def test_a_kink_is_reported_and_a_wrong_subgradient_is_not_hidden(tmp_path):
    model = build(tmp_path, 'a = Param("a", (3,))\nloss = sum(relu(a)) + sum(a * a)\n')
    params = {"a": np.array([0.0, 1.0, -1.0])}
    (check,) = runtime.check_gradients(model, params, {}, reference=model.oracle.loss)
    assert check.ok and check.kinks == 1 and "non-differentiable" in check.status
    broken = tmp_path / "broken.py"
    source = open(model.module.__file__).read()
    assert "np.where(a > 0, DTYPE(1), 0)" in source
    # relu'(0) = -3: outside the one-sided slopes [0, 1]
    broken.write_text(source.replace("np.where(a > 0, DTYPE(1), 0)", "np.where(a > 0, DTYPE(1), -3*(a == 0))"))
    (bad,) = runtime.check_gradients(runtime.load(str(broken)), params, {}, reference=model.oracle.loss)
    assert not bad.ok and bad.bad_kinks == 1


def test_nan_gradients_are_a_mismatch_not_ok(tmp_path):
    model = build(tmp_path, 'a = Param("a", (2,))\nloss = sum(sqrt(a))\n')
    (check,) = runtime.check_gradients(model, {"a": np.array([-1.0, 4.0])}, {})
    assert not check.ok and check.rel_error == np.inf


def test_a_quotient_on_the_right_of_matmul_keeps_its_parentheses(tmp_path):
    """`a @ 1/d` is (a @ 1)/d in Python: the printer must write `a @ (1/d)` (found by the long fuzz)."""
    model = build(tmp_path, 'a = Param("a", (2, 3))\nb = Param("b", (3, 2))\n'
                            'loss = sum(tanh(a @ (1 / (b * b + 1))))\n')
    params = {"a": RNG.standard_normal((2, 3)), "b": RNG.standard_normal((3, 2))}
    np.testing.assert_allclose(model.loss(params), np.tanh(params["a"] @ (1 / (params["b"] ** 2 + 1))).sum(),
                               rtol=1e-14)
    _check(model, params)


def test_a_size_only_an_operand_shape_holds_is_bound(tmp_path):
    """`sum(pick(logits, y))` prints `np.arange(B)` though no expression holds B (no mean): the
    function must still bind B (it raised NameError)."""
    model = build(tmp_path, """
        x = Input("x", ("B", 3))
        y = Labels("y", ("B",), classes=3)
        logits = linear(x, 3, name="out")
        loss = sum(pick(logits, y))
    """, functions=("input_grad",))
    params = model.init_params(0)
    inputs = runtime.random_inputs(model, batch=4)
    assert abs(model.loss(params, **inputs) - model.oracle.loss(params, inputs)) < 1e-12
    _, grads = model.input_grad(params, **inputs)
    np.testing.assert_allclose(grads["x"], params["out.W"].T[inputs["y"]], rtol=1e-12)
