"""The figures of examples/README.md keep working, and show the right numbers."""
import importlib.util
import os

import numpy as np
import pytest

import runtime
from helpers import EXAMPLES

spec = importlib.util.spec_from_file_location("figures", os.path.join(EXAMPLES, "figures.py"))
figures = importlib.util.module_from_spec(spec)
spec.loader.exec_module(figures)


def png(path):
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_chain_rule_figure(tmp_path):
    r = figures.chain_rule(str(tmp_path))
    assert (r["e"], r["de_da"], r["de_db"]) == (6.0, 2.0, 5.0)
    assert r["paths_b"] == [2.0, 3.0]  # ∂e/∂b = 2 + 3 = 5, one term per path
    assert png(tmp_path / "chain_rule.png")


def test_gradient_flow_figure(tmp_path):
    r = figures.gradient_flow(str(tmp_path))
    assert (r["f"], r["x"], r["y"], r["z"], r["w"]) == (-20.0, -8.0, 6.0, 2.0, 0.0)
    assert png(tmp_path / "gradient_flow.png")


class CountingModel(runtime.Model):
    """Counts what a gradient costs: forward passes (`loss`) and backprop passes (`loss_and_grad`)."""
    def __init__(self, module):
        super().__init__(module)
        self.forward_passes = self.backward_passes = 0

    def loss(self, params, **inputs):
        self.forward_passes += 1
        return super().loss(params, **inputs)

    def loss_and_grad(self, params, **inputs):
        self.backward_passes += 1
        return super().loss_and_grad(params, **inputs)

    def step(self, params, **inputs):
        self.backward_passes += 1
        return super().step(params, **inputs)


def test_numeric_vs_analytic_figure(tmp_path, monkeypatch):
    loaded = []
    load = runtime.load
    monkeypatch.setattr(runtime, "load", lambda *a, **k: loaded.append(CountingModel(
        load(*a, **k).module)) or loaded[-1])
    r = figures.numeric_vs_analytic(str(tmp_path), quick=True)
    assert r["max_relative_error"] <= 1e-6
    assert r["loss_evaluations"] == 2 * r["parameters"] == 2 * 9610
    # the cost the figure shows, counted rather than timed (a timing ratio fails on a busy machine):
    # central differences take two forward passes per parameter, backprop one pass for all of them
    (model,) = loaded
    assert model.forward_passes >= r["loss_evaluations"] + 2 * len(r["errors"])  # + the ε sweep
    assert model.backward_passes <= 2  # the figure's own call and check_gradients' one
    errors = r["errors"]  # the U shape: both ends worse than the middle
    assert min(errors) < 1e-7 and errors[0] > 100 * min(errors) and errors[-1] > 100 * min(errors)
    assert png(tmp_path / "numeric_vs_analytic.png")


def test_universal_approximation_figure(tmp_path):
    r = figures.universal_approximation(str(tmp_path), quick=True)
    mse = r["mse"]
    assert mse[64] < mse[4] < mse[2] and mse[64] < 0.01
    assert png(tmp_path / "universal_approximation.png")


def test_initialisation_figure(tmp_path):
    r = figures.initialisation(str(tmp_path), quick=True)
    for act in ("tanh", "relu"):
        small = r[(act, "σ × 0.5 (too small)")]["activation_std"]
        good = r[(act, "He/Xavier")]["activation_std"]
        large = r[(act, "σ × 1.5 (too large)")]["activation_std"]
        assert small[-1] < 0.1 * small[0]                  # vanishing
        assert 0.3 < good[-1] / good[0] < 3                # preserved
        assert large[-1] > small[-1] and large[-1] > 0.5 * good[-1]
    relu_large = r[("relu", "σ × 1.5 (too large)")]["activation_std"]
    assert relu_large[-1] > 10 * relu_large[0]            # exploding
    assert png(tmp_path / "initialisation.png")


def test_activations_figure(tmp_path):
    r = figures.activations(str(tmp_path))
    d0 = r["derivative_at_0"]
    assert d0["sigmoid"] == pytest.approx(0.25) and d0["tanh"] == pytest.approx(1.0)
    assert d0["relu"] == 0.0 and d0["leaky_relu"] == pytest.approx(0.1) and d0["elu"] == pytest.approx(1.0)
    grid = r["grid"]
    np.testing.assert_allclose(r["derivatives"]["tanh"], 1 - np.tanh(grid) ** 2, rtol=1e-12)
    assert png(tmp_path / "activations.png")


@pytest.mark.slow
def test_mnist_confusion_figure(tmp_path):
    r = figures.mnist_confusion(str(tmp_path), quick=True)
    assert r["accuracy"] > 0.85 and r["confusion"].sum() == 1000
    assert np.trace(r["confusion"]) == round(r["accuracy"] * 1000)
    assert len(r["worst"]) == 8
    assert png(tmp_path / "mnist_confusion.png")


def test_newton_vs_adam_figure(tmp_path):
    r = figures.newton_vs_adam(str(tmp_path), quick=True)
    newton, adam = r["newton-cg"], r["adam"]
    # full batch from the same start: Newton-CG (generated hvp) goes far lower in far fewer iterations
    assert newton["loss"] < 1e-5 < r["initial_loss"]
    assert newton["loss"] < adam["loss"] / 5 and newton["iterations"] < adam["iterations"] / 5
    assert newton["hvps"] > newton["iterations"]  # each iteration: CG on Hessian-vector products
    assert png(tmp_path / "newton_vs_adam.png")


def test_adversarial_digit_figure(tmp_path):
    r = figures.adversarial_digit(str(tmp_path), quick=True)
    assert r["eps"][0] == 0.0 and r["eps"][-1] == 1.0
    for key in ("mlp", "logistic"):
        acc = r["accuracy"][key]
        assert acc[0] == r["clean_accuracy"][key] >= 0.9        # ε = 0 is the clean test set
        assert acc[-1] < 0.5 and acc[-1] < acc[0] - 0.4          # the attack works
        assert all(b <= a for a, b in zip(acc, acc[1:]))        # and the larger ε, the better
    ex = r["example"]
    assert ex["predicted"][0] == ex["label"] and ex["predicted"][-1] != ex["label"]
    assert png(tmp_path / "adversarial_digit.png")


def test_saliency_map_figure(tmp_path):
    r = figures.saliency_map(str(tmp_path), quick=True)
    assert r["labels"] == [0, 1, 2, 3, 4, 7]
    for maps in r["maps"].values():
        assert len(maps) == 6
        for s in maps:
            assert s.shape == (8, 8) and np.all(s >= 0) and s.max() > 0 and np.count_nonzero(s) > 32
    assert png(tmp_path / "saliency_map.png")


@pytest.mark.parametrize("key", ["logistic", "mlp"])
def test_input_grad_matches_central_differences(key):
    """The figures' ∂loss/∂x (generated input_grad) against central differences on a few pixels."""
    c = figures._digits_classifiers()
    model, params = c[key]
    if key == "mlp":  # the trained MLP interpolates (gradients ~1e-12): check it at initialisation
        params = model.init_params(0)
    x, y = c["data"].test["x"][:5].copy(), c["data"].test["y"][:5]
    _, g = model.input_grad(params, x=x, y=y)
    assert g["x"].shape == x.shape
    eps = 1e-6
    for i, j in [(0, 10), (1, 27), (2, 36), (3, 44), (4, 52)]:
        saved = x[i, j]
        x[i, j] = saved + eps
        up = model.loss(params, x=x, y=y)
        x[i, j] = saved - eps
        down = model.loss(params, x=x, y=y)
        x[i, j] = saved
        numeric = (up - down) / (2 * eps)
        assert abs(numeric - g["x"][i, j]) <= 1e-6 * abs(g["x"][i, j]) + 1e-11, (i, j, numeric, g["x"][i, j])
