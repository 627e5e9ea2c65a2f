"""Stable forms at extreme inputs, non-smooth points by convention, and `where` that cannot poison."""
import numpy as np
import pytest

from helpers import build, central_difference, relative_error


def lag(model, **params):
    return model.loss_and_grad({k: np.asarray(v, dtype=np.float64) for k, v in params.items()})


def test_softmax_cross_entropy_at_pm_1000(tmp_path):
    model = build(tmp_path, 'z = Param("z", (2, 3))\ny = Labels("y", (2,), classes=3)\n'
                            'loss = softmax_cross_entropy(z, y)\n')
    z = np.array([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, 1000.0]])
    loss, g = model.loss_and_grad({"z": z}, y=np.array([1, 2]))
    assert loss == pytest.approx(1000.0)  # sample 0: 2000, sample 1: 0; mean 1000
    np.testing.assert_allclose(g["z"], [[0.5, -0.5, 0.0], [0.0, 0.0, 0.0]], atol=1e-300)


def test_log_softmax_and_logsumexp_at_pm_1000(tmp_path):
    model = build(tmp_path, 'z = Param("z", (3,))\nloss = sum(log_softmax(z) * Param("w", (3,))) '
                            '+ logsumexp(z)\n')
    loss, g = lag(model, z=[1000.0, -1000.0, 999.0], w=[1.0, 2.0, 3.0])
    lse = 1000 + np.log1p(np.exp(-1.0))
    ref = (1000 - lse) + 2 * (-1000 - lse) + 3 * (999 - lse) + lse
    assert np.isfinite(loss) and loss == pytest.approx(ref, rel=1e-14)
    softmax = np.array([1.0, 0.0, np.exp(-1.0)]) / (1 + np.exp(-1.0))
    np.testing.assert_allclose(g["z"], np.array([1.0, 2.0, 3.0]) - 6 * softmax + softmax, rtol=1e-12)
    np.testing.assert_allclose(g["w"], [1000 - lse, -1000 - lse, 999 - lse], rtol=1e-14)


@pytest.mark.parametrize("x", [800.0, -800.0, 30.0, -30.0])
def test_log_sigmoid_and_softplus_at_extremes(tmp_path, x):
    model = build(tmp_path, 'a = Param("a", ())\nloss = log(sigmoid(a)) + softplus(a) '
                            '+ log(1 - sigmoid(a)) + log(1 + exp(a))\n')
    source = open(model.module.__file__).read()
    assert "Stable forms:" in source and "log(sigmoid(x)) = -softplus(-x)" in source
    loss, g = lag(model, a=x)
    # log σ(x) + softplus(x) + log(1 − σ(x)) + log(1 + eˣ) = 2·softplus(x) − softplus(−x) − softplus(x)
    ref = np.logaddexp(0, x) - np.logaddexp(0, -x)
    sig = 1 / (1 + np.exp(-x)) if x > 0 else np.exp(x) / (1 + np.exp(x))
    assert np.isfinite(loss) and loss == pytest.approx(ref, rel=1e-12)
    assert float(g["a"]) == pytest.approx(sig + (1 - sig), rel=1e-12)


def test_saturated_sigmoid_and_tanh_give_zero_not_nan(tmp_path):
    model = build(tmp_path, 'a = Param("a", (4,))\nloss = sum(sigmoid(a) + tanh(a))\n')
    _, g = lag(model, a=[800.0, -800.0, 40.0, -40.0])
    assert np.all(np.isfinite(g["a"])) and np.all(g["a"] >= 0) and np.all(g["a"] < 1e-15)


def test_deep_chain_gives_the_tiny_true_gradient(tmp_path):
    """x_{k+1} = sigmoid(x_k), 60 times: dL/dx0 = Π σ'(x_k) ≈ 1e-38, computed, not 0 or NaN."""
    body = 'a = Param("a", ())\nh = a\nfor _ in range(60):\n    h = sigmoid(h)\nloss = h\n'
    model = build(tmp_path, body)
    _, g = lag(model, a=0.3)
    x, ref = 0.3, 1.0
    for _ in range(60):
        s = 1 / (1 + np.exp(-x))
        ref *= s * (1 - s)
        x = s
    assert 0 < ref < 1e-30
    assert float(g["a"]) == pytest.approx(ref, rel=1e-12)


def test_kinks_follow_convention(tmp_path):
    model = build(tmp_path, 'a = Param("a", (3,))\nloss = sum(relu(a)) + 2 * sum(abs(a))\n')
    _, g = lag(model, a=[0.0, 1.0, -1.0])
    np.testing.assert_array_equal(g["a"], [0.0, 3.0, -2.0])


def test_sqrt_of_sum_of_squares_is_finite_at_zero(tmp_path):
    model = build(tmp_path, 'x = Param("x", ())\ny = Param("y", ())\nloss = sqrt(x * x + y * y)\n')
    loss, g = lag(model, x=0.0, y=0.0)
    assert loss == 0 and float(g["x"]) == 0 and float(g["y"]) == 0
    _, g = lag(model, x=3.0, y=4.0)
    assert (float(g["x"]), float(g["y"])) == pytest.approx((0.6, 0.8))


def test_unselected_where_branch_cannot_poison_the_gradient(tmp_path):
    """where(x > 0, log(x), 0) at x = 0 and x < 0: the log branch is guarded, the gradient is 0."""
    model = build(tmp_path, 'x = Param("x", (4,))\nloss = sum(where(x > 0, log(x), 0)) '
                            '+ sum(where(x <= 1, x, sqrt(x - 1)))\n')
    loss, g = lag(model, x=[0.0, -2.0, 2.0, 1.0])
    assert np.isfinite(loss) and loss == pytest.approx(np.log(2.0) + 0 + (-2) + 1 + 1)
    np.testing.assert_allclose(g["x"], [1.0, 1.0, 0.5 + 0.5, 1 + 1.0])
    assert np.all(np.isfinite(g["x"]))


def test_where_gradient_matches_central_differences(tmp_path):
    model = build(tmp_path, 'a = Param("a", (5,))\nb = Param("b", (5,))\n'
                            'loss = sum(where(a > b, a * b, exp(b)) + where(a >= 0.5, a, -a))\n')
    params = {"a": np.array([0.1, 0.9, -0.3, 1.2, 0.7]), "b": np.array([0.5, 0.2, -0.9, 1.5, 0.1])}
    _, g = model.loss_and_grad(params)
    num = central_difference(model, params, {})
    for k in params:
        assert relative_error(g[k], num[k]) <= 1e-8


def test_generated_code_has_no_symbolic_leftovers(tmp_path):
    model = build(tmp_path, 'a = Param("a", (3,))\nb = Param("b", (3,))\n'
                            'loss = sum(abs(a) + sqrt(a * a) + maximum(a, b) + relu(b) + amax(a))\n')
    source = open(model.module.__file__).read()
    for bad in ("DiracDelta", "Heaviside", "Derivative", "Piecewise", "Max(", "re(", "im("):
        assert bad not in source.replace("np.where(", "")
