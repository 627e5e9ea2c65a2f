"""Every primitive in the registry, gradient-checked: a new primitive is tested by adding its Check."""
import numpy as np
import pytest
import sympy as sp

from compiler import ops as P
from helpers import (assert_forward_matches_oracle, build, central_difference, check_model_text,
                     relative_error)

CHECKED = sorted((r for r in P.REGISTRY.values() if r.check is not None),
                 key=lambda r: r.head.__name__)
WITH_EDGES = [r for r in CHECKED if r.check.edges]


def test_every_differentiable_op_has_a_check():
    """The registry test only protects what it covers: each differentiable Op must declare a Check
    (a mask, whose derivative is 0, has nothing to check)."""
    missing = [r.head.__name__ for r in P.REGISTRY.values()
               if r.check is None and r.vjp is not None and isinstance(r.head, type)
               and issubclass(r.head, P.Op) and r.head is not P.stop_gradient and not r.head.constant]
    assert missing == []


def test_every_rule_has_an_eager_evaluation():
    """The oracle evaluates every primitive itself; a rule without one could not be checked."""
    missing = [r.head.__name__ for r in P.REGISTRY.values()
               if r.eager is None and r.head not in (sp.Add, sp.Mul, sp.Pow, sp.sign, sp.Abs)]
    assert missing == []


@pytest.mark.parametrize("rule", CHECKED, ids=lambda r: r.head.__name__)
@pytest.mark.parametrize("seed", [0, 1])
def test_gradient_matches_central_differences(tmp_path, rule, seed):
    check = rule.check
    model = build(tmp_path, check_model_text(check))
    rng = np.random.default_rng(seed)
    params = {name: rng.uniform(lo, hi, size=shape) for name, (shape, (lo, hi)) in check.params.items()}
    inputs = {name: rng.integers(0, classes, size=shape) for name, (shape, classes) in check.labels.items()}
    if model.needs_seed:
        inputs["seed"] = np.int64(seed + 11)
    loss, grads = model.loss_and_grad(params, **inputs)
    assert np.isclose(loss, model.loss(params, **inputs), rtol=1e-14, atol=0)
    assert_forward_matches_oracle(model, params, inputs)
    numeric = central_difference(model, params, inputs)
    for name in params:
        assert grads[name].shape == params[name].shape
        assert relative_error(grads[name], numeric[name]) <= 1e-6, name


@pytest.mark.parametrize("rule", WITH_EDGES, ids=lambda r: r.head.__name__)
def test_derivative_at_edge_points(tmp_path, rule):
    """Kinks follow convention (relu'(0) = 0, |x|'(0) = 0); saturation gives 0, never NaN."""
    model = build(tmp_path, f'a = Param("a", ())\nloss = {rule.public}(a)\n')
    for x, want in rule.check.edges:
        _, grads = model.loss_and_grad({"a": np.array(x)})
        got = float(grads["a"])
        assert np.isfinite(got)
        assert abs(got - want) <= 1e-12 + 1e-9 * abs(want), (x, got, want)


def test_maximum_tie_splits_evenly(tmp_path):
    model = build(tmp_path, 'a = Param("a", (2,))\nb = Param("b", (2,))\n'
                            'loss = sum(maximum(a, b)) + 3 * sum(minimum(a, b))\n')
    _, g = model.loss_and_grad({"a": np.array([1.0, 2.0]), "b": np.array([1.0, 0.0])})
    np.testing.assert_array_equal(g["a"], [0.5 + 1.5, 1.0])
    np.testing.assert_array_equal(g["b"], [0.5 + 1.5, 3.0])


def test_amax_tie_splits_evenly(tmp_path):
    model = build(tmp_path, 'a = Param("a", (2, 3))\nloss = sum(amax(a, axis=1))\n')
    _, g = model.loss_and_grad({"a": np.array([[1.0, 5.0, 5.0], [2.0, 1.0, 0.0]])})
    np.testing.assert_array_equal(g["a"], [[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])
