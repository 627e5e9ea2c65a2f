"""Convolution, pooling, normalisation and dropout: gradients against central differences, values
against direct NumPy, running statistics, masks, and the CNN that wins on MNIST-1D."""
import os

import numpy as np
import pytest

import runtime
from helpers import EXAMPLES, build, central_difference, relative_error


def conv_reference(x, W, b, stride, padding, dilation):
    """Direct loops: out[n, t, o] = b[o] + Σ_j Σ_c x_pad[n, t·stride + j·dilation, c] W[j, c, o]."""
    n, length, c_in = x.shape
    k, _, c_out = W.shape
    xp = np.pad(x, ((0, 0), (padding, padding), (0, 0)))
    l_out = (length + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    out = np.zeros((n, l_out, c_out)) + b
    for t in range(l_out):
        for j in range(k):
            out[:, t, :] += xp[:, t * stride + j * dilation, :] @ W[j]
    return out


@pytest.mark.parametrize("stride, padding, dilation", [(1, 0, 1), (2, 1, 1), (1, 2, 2), (3, 0, 1)])
def test_conv1d_matches_direct_loops_and_central_differences(tmp_path, stride, padding, dilation):
    model = build(tmp_path, f'x = Input("x", ("B", 11, 2))\n'
                            f'z = conv1d(x, 3, 3, stride={stride}, padding={padding}, dilation={dilation}, name="c")\n'
                            'loss = sum(tanh(z) * z)\noutputs = {"z": z}\n')
    rng = np.random.default_rng(0)
    params = {"c.W": rng.standard_normal((3, 2, 3)), "c.b": rng.standard_normal(3)}
    x = rng.standard_normal((2, 11, 2))
    ref = conv_reference(x, params["c.W"], params["c.b"], stride, padding, dilation)
    np.testing.assert_allclose(model.forward(params, x=x)["z"], ref, rtol=1e-12)
    _, grads = model.loss_and_grad(params, x=x)
    numeric = central_difference(model, params, {"x": x})
    for k in params:
        assert relative_error(grads[k], numeric[k]) <= 1e-7


def test_conv_init_is_he_by_fan_in(tmp_path):
    model = build(tmp_path, 'x = Input("x", ("B", 50, 8))\nh = relu(conv1d(x, 64, 5, name="c"))\n'
                            'loss = sum(h)\n')
    assert model.params_spec["c.W"] == ((5, 8, 64), "float64", "he_normal")
    w = model.init_params(0)["c.W"]
    assert np.std(w) == pytest.approx(np.sqrt(2 / (5 * 8)), rel=0.05)


def test_pooling_values_and_gradients(tmp_path):
    model = build(tmp_path, 'x = Param("x", (1, 6, 1))\nm = max_pool1d(x, 2)\na = avg_pool1d(x, 3, stride=1)\n'
                            'loss = sum(m * m) + sum(a * a * a)\noutputs = {"m": m, "a": a}\n')
    x = np.array([1.0, 3.0, 2.0, 2.0, -1.0, 0.5]).reshape(1, 6, 1)
    out = model.forward({"x": x})
    np.testing.assert_allclose(out["m"].ravel(), [3.0, 2.0, 0.5])
    np.testing.assert_allclose(out["a"].ravel(), [2.0, 7 / 3, 1.0, 0.5])
    _, g = model.loss_and_grad({"x": x})
    a = out["a"].ravel()
    d_avg = np.zeros(6)
    for t in range(4):
        d_avg[t:t + 3] += 3 * a[t] ** 2 / 3
    d_max = np.array([0, 6, 2, 2, 0, 1.0])  # 2·max to the max; the tie (2, 2) splits evenly
    np.testing.assert_allclose(g["x"].ravel(), d_max + d_avg, rtol=1e-12)


def test_every_layer_together_matches_central_differences(tmp_path):
    body = ('x = Input("x", ("B", 12))\ny = Labels("y", ("B",), classes=3)\n'
            's = reshape(x, ("B", 12, 1))\n'
            'h = relu(batch_norm(conv1d(s, 4, 3, padding=1, name="c1"), "bn1"))\n'
            'h = max_pool1d(dropout(h, 0.25), 2)\n'
            'h = layer_norm(elu(conv1d(h, 5, 3, stride=2, name="c2")), "ln")\n'
            'h = avg_pool1d(h, 2)\n'
            'logits = linear(flatten(h), 3, name="out")\n'
            'loss = softmax_cross_entropy(logits, y)\noutputs = {"logits": logits}\n')
    model = build(tmp_path, body)
    params = model.init_params(1)
    rng = np.random.default_rng(2)
    params = {k: v + 0.1 * rng.standard_normal(v.shape) if k in model.params_spec else v
              for k, v in params.items()}
    inputs = runtime.random_inputs(model, batch=4, seed=5)
    for check in runtime.check_gradients(model, params, inputs, eps=1e-4, reference=model.oracle.loss):
        assert check.rel_error <= 1e-6, check


def test_batch_norm_train_and_inference(tmp_path):
    model = build(tmp_path, 'x = Input("x", ("B", 3))\nz = batch_norm(x, "bn", momentum=0.1)\n'
                            'loss = sum(z * Param("w", (3,)))\noutputs = {"z": z}\n')
    assert set(model.states_spec) == {"bn.running_mean", "bn.running_var"}
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 3)) * [1, 2, 3] + [0, 5, -1]
    params = model.init_params(0)
    params["w"] = np.ones(3)
    loss, grads, state = model.step(params, x=x)
    np.testing.assert_allclose(state["bn.running_mean"], 0.1 * x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(state["bn.running_var"], 0.9 + 0.1 * x.var(0, ddof=1), rtol=1e-12)
    assert set(grads) == {"bn.gamma", "bn.beta", "w"}
    params.update(state)
    z = model.forward(params, x=x)["z"]  # inference: running statistics, not the batch's
    ref = (x - state["bn.running_mean"]) / np.sqrt(state["bn.running_var"] + 1e-5)
    np.testing.assert_allclose(z, ref, rtol=1e-12)
    train_z = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5)
    assert loss == pytest.approx(train_z.sum(), abs=1e-9)


def test_dropout_masks_are_seeded_scaled_and_off_at_inference(tmp_path):
    model = build(tmp_path, 'x = Input("x", ("B", 1000))\nd = dropout(x, 0.3)\n'
                            'loss = sum(d * Param("w", ()))\noutputs = {"d": d}\n')
    x = np.ones((4, 1000))
    params = {"w": np.array(1.0)}
    g1 = model.step(params, x=x, seed=np.int64(7))[1]["w"]
    g2 = model.step(params, x=x, seed=np.int64(7))[1]["w"]
    g3 = model.step(params, x=x, seed=np.int64(8))[1]["w"]
    assert g1 == g2 and g1 != g3
    kept = g1 / (1 / 0.7)
    assert 0.65 * 4000 < kept < 0.75 * 4000
    np.testing.assert_array_equal(model.forward(params, x=x)["d"], x)


@pytest.mark.slow
def test_mnist1d_cnn_reaches_90_percent(tmp_path):
    from runtime.data import mnist1d
    from runtime.train import TrainConfig, train
    model = runtime.load(os.path.join(EXAMPLES, "mnist1d_cnn.py"))
    config = TrainConfig(lr=1e-2, batch_size=100, epochs=150, schedule="cosine", out=str(tmp_path),
                         progress=False, plot=False)
    assert train(model, mnist1d(), config).final["test_acc"] >= 0.90


def test_training_with_batch_norm_and_dropout_updates_state_and_resumes_exactly(tmp_path):
    from runtime import checkpoint as ckpt
    from runtime.data import digits
    from runtime.train import TrainConfig, train
    path = tmp_path / "bn_mlp.py"
    path.write_text("from compiler.dsl import *\n"
                    'x = Input("x", ("B", 64))\ny = Labels("y", ("B",), classes=10)\n'
                    'h = dropout(relu(batch_norm(linear(x, 64, name="hidden"), "bn")), 0.2)\n'
                    'logits = linear(h, 10, name="out")\n'
                    "loss = softmax_cross_entropy(logits, y)\noutputs = {\"logits\": logits}\n")
    model = runtime.load(str(path))
    data = digits()
    cfg = dict(progress=False, plot=False, lr=3e-3)
    straight = train(model, data, TrainConfig(epochs=4, out=str(tmp_path / "a"), **cfg))
    assert straight.final["test_acc"] > 0.9
    assert not np.allclose(straight.params["bn.running_mean"], 0)  # the trainer kept the statistics
    train(model, data, TrainConfig(epochs=2, out=str(tmp_path / "b"), **cfg))
    train(model, data, TrainConfig(epochs=4, out=str(tmp_path / "b"), resume=True, **cfg),
          log=lambda *_: None)
    a = ckpt.load(str(tmp_path / "a" / "checkpoint.npz"), model).params
    b = ckpt.load(str(tmp_path / "b" / "checkpoint.npz"), model).params
    assert set(a) == set(b) and "bn.running_var" in a
    assert all(np.array_equal(a[k], b[k]) for k in a)
