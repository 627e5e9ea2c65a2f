"""Every example compiles, imports, and its gradients match central differences."""
import os

import numpy as np
import pytest

import compiler
import runtime
from compiler.eager import Oracle
from helpers import EXAMPLES, central_difference, relative_error

EXAMPLE_FILES = sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".py") and "\nfrom compiler.dsl import"
                       in open(os.path.join(EXAMPLES, f)).read())


def load_example(tmp_path, name, dtype="float64"):
    source = compiler.compile_file(os.path.join(EXAMPLES, name), dtype=dtype)
    out = tmp_path / f"{name[:-3]}_{dtype}.py"
    out.write_text(source)
    return runtime.load(str(out))


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_example_gradients(tmp_path, name):
    model = load_example(tmp_path, name)
    params = model.init_params(seed=1)
    for k in params:  # move off the zero biases so every path carries a gradient
        params[k] = params[k] + 0.1 * np.random.default_rng(2).standard_normal(params[k].shape)
    inputs = runtime.random_inputs(model, batch=3, seed=3)
    loss, grads = model.loss_and_grad(params, **inputs)
    assert loss == model.loss(params, **inputs)
    assert set(grads) == set(model.params_spec)
    oracle = Oracle(os.path.join(EXAMPLES, name))  # difference an independent forward
    per_param = max(8, 600 // len(params))  # ~600 elements in all: the transformer has 40 parameters
    checks = runtime.check_gradients(model, params, inputs, max_per_param=per_param, reference=oracle.loss)
    for c in checks:
        assert c.rel_error <= 1e-6, c
    for k, g in grads.items():
        assert g.shape == params[k].shape and g.dtype == np.float64


def test_chain_rule_known_values(tmp_path):
    model = load_example(tmp_path, "chain_rule.py")
    params = model.init_params()
    assert float(params["a"]) == 2.0 and float(params["b"]) == 1.0
    loss, grads = model.loss_and_grad(params)
    assert (float(loss), float(grads["a"]), float(grads["b"])) == (6.0, 2.0, 5.0)
    assert float(model.forward(params)["e"]) == 6.0


def test_neuron_matches_hand_derivation(tmp_path):
    """o = σ(x·w + b), L = mean((o − t)²): ∂L/∂w = Σ 2(o − t) o(1 − o) x / B."""
    model = load_example(tmp_path, "neuron.py")
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((5, 3)), rng.uniform(size=5)
    params = {"w": rng.standard_normal(3), "b": np.array(0.3)}
    o = 1 / (1 + np.exp(-(x @ params["w"] + params["b"])))
    delta = 2 * (o - t) * o * (1 - o) / 5
    loss, grads = model.loss_and_grad(params, x=x, t=t)
    np.testing.assert_allclose(loss, np.mean((o - t) ** 2), rtol=1e-13)
    np.testing.assert_allclose(grads["w"], x.T @ delta, rtol=1e-12)
    np.testing.assert_allclose(grads["b"], delta.sum(), rtol=1e-12)


def test_digits_mlp_matches_hand_backprop(tmp_path):
    model = load_example(tmp_path, "digits_mlp.py")
    params = model.init_params(seed=0)
    inputs = runtime.random_inputs(model, batch=16, seed=0)
    x, y = inputs["x"], inputs["y"]
    W1, b1, W2, b2 = (params[k] for k in ("hidden.W", "hidden.b", "out.W", "out.b"))
    z1 = x @ W1 + b1
    h = np.maximum(z1, 0)
    z2 = h @ W2 + b2
    p = np.exp(z2 - z2.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    loss_ref = -np.mean(np.log(p[np.arange(16), y]))
    dz2 = (p - np.eye(10)[y]) / 16
    dz1 = (dz2 @ W2.T) * (z1 > 0)
    loss, g = model.loss_and_grad(params, **inputs)
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-12)
    np.testing.assert_allclose(g["out.W"], h.T @ dz2, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(g["hidden.W"], x.T @ dz1, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(g["hidden.b"], dz1.sum(0), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(model.forward(params, x=x)["logits"], z2, rtol=1e-13)


@pytest.mark.parametrize("name", ["digits_mlp.py", "deep_tanh.py", "neuron.py", "chain_rule.py"])
def test_float32_in_float32_out(tmp_path, name):
    model = load_example(tmp_path, name, dtype="float32")
    params = model.init_params(seed=0)
    assert all(p.dtype == np.float32 for p in params.values())
    inputs = runtime.random_inputs(model, batch=8, seed=0)
    loss, grads = model.loss_and_grad(params, **inputs)
    assert loss.dtype == np.float32
    assert all(np.asarray(g).dtype == np.float32 for g in grads.values())
    for out in model.forward(params, **inputs).values():
        assert out.dtype == np.float32
    ref = load_example(tmp_path, name, dtype="float64")
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    i64 = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in inputs.items()}
    loss64, grads64 = ref.loss_and_grad(p64, **i64)
    assert abs(float(loss) - float(loss64)) <= 1e-5 * max(1.0, abs(float(loss64)))
    for k in grads:
        assert relative_error(grads[k], grads64[k]) <= 1e-4


def test_parameter_used_twice_accumulates(tmp_path):
    from helpers import build
    model = build(tmp_path, 'w = Param("w", (3,))\nx = Input("x", ("B", 3))\n'
                            'loss = sum(tanh(x @ w) * (x @ w)) + sum(w * w)\n')
    rng = np.random.default_rng(0)
    params, inputs = {"w": rng.standard_normal(3)}, {"x": rng.standard_normal((4, 3))}
    _, g = model.loss_and_grad(params, **inputs)
    assert relative_error(g["w"], central_difference(model, params, inputs)["w"]) <= 1e-7


def test_unused_parameter_gets_zero_gradient_and_warning(tmp_path):
    from helpers import build
    from compiler.ad import UnusedParameterWarning
    with pytest.warns(UnusedParameterWarning, match="'unused' does not reach the loss"):
        model = build(tmp_path, 'w = Param("w", (2,))\nunused = Param("unused", (2, 3))\n'
                                'loss = sum(w * w)\n')
    _, g = model.loss_and_grad({"w": np.ones(2), "unused": np.ones((2, 3))})
    np.testing.assert_array_equal(g["unused"], np.zeros((2, 3)))
    np.testing.assert_array_equal(g["w"], [2.0, 2.0])


def test_broadcast_bias_gradient_is_reduced(tmp_path):
    """(B, 3) + (3,): the bias gradient sums over the batch; a (1, 3) param keeps its axis."""
    from helpers import build
    model = build(tmp_path, 'x = Input("x", ("B", 3))\nb = Param("b", (3,))\nc = Param("c", (1, 3))\n'
                            's = Param("s", ())\nloss = sum(tanh(x + b) * c * s)\n')
    rng = np.random.default_rng(0)
    params = {"b": rng.standard_normal(3), "c": rng.standard_normal((1, 3)), "s": np.array(0.7)}
    inputs = {"x": rng.standard_normal((5, 3))}
    _, g = model.loss_and_grad(params, **inputs)
    num = central_difference(model, params, inputs)
    for k in params:
        assert g[k].shape == params[k].shape
        assert relative_error(g[k], num[k]) <= 1e-7


def test_gradient_does_not_alias_a_parameter(tmp_path):
    from helpers import build
    model = build(tmp_path, 'a = Param("a", (3,))\nb = Param("b", (3,))\nloss = sum(a * b)\n')
    params = {"a": np.ones(3), "b": np.arange(3.0)}
    _, g = model.loss_and_grad(params)
    g["a"][:] = 99
    np.testing.assert_array_equal(params["b"], [0.0, 1.0, 2.0])
