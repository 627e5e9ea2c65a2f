"""Token models: Tokens inputs, embedding (gather and scatter-add), causal masks, binary and sequence
cross-entropy with padding. Gradients are compared with central differences of the eager oracle;
exact values (zeros, ±1000 logits) are compared exactly."""
import warnings

import numpy as np
import pytest

from helpers import (assert_forward_matches_oracle, build, central_difference, error_of,
                     relative_error)
from runtime.gradcheck import check_gradients, random_inputs

SEQ_MODEL = """
ids = Tokens("ids", ("B", 6), vocab=9)
y = Tokens("y", ("B", 6), vocab=9)
h = tanh(embedding(ids, 9, 4, name="emb"))
logits = h @ Param("out.W", (4, 9)) + Param("out.b", (9,))
loss = softmax_cross_entropy(logits, y{ignore})
outputs = {{"h": h, "logits": logits}}
"""


def params_of(model, seed=0):
    return model.init_params(seed)


@pytest.fixture
def seq_pad(tmp_path):
    return build(tmp_path, SEQ_MODEL.format(ignore=", ignore=0"), name="seq_pad")


def test_embedding_forward_is_the_table_rows(tmp_path):
    model = build(tmp_path, 'ids = Tokens("ids", ("B", 3), vocab=5)\ne = embedding(ids, 5, 2, name="emb")\n'
                            'loss = sum(e * e)\noutputs = {"e": e}\n')
    assert model.params_spec["emb.W"] == ((5, 2), "float64", "normal(1.0)")
    W = np.arange(10.0).reshape(5, 2)
    ids = np.array([[4, 0, 4], [1, 1, 3]])
    out = model.forward({"emb.W": W}, ids=ids)
    np.testing.assert_array_equal(out["e"], W[ids])
    assert out["e"].shape == (2, 3, 2)


def test_scatter_add_sums_repeated_ids(tmp_path):
    """d/dW Σ W[ids]·C adds C's rows into their ids' rows: repeated ids add up, unused rows are 0."""
    body = ('ids = Tokens("ids", (2, 4), vocab=6)\nC = Param("C", (2, 4, 3))\n'
            'loss = sum(embedding(ids, 6, 3, name="emb") * C)\n')
    ids = np.array([[3, 3, 3, 1], [3, 0, 1, 3]])
    rng = np.random.default_rng(1)
    C, W = rng.standard_normal((2, 4, 3)), rng.standard_normal((6, 3))
    want = np.zeros((6, 3))
    for i in range(2):
        for t in range(4):
            want[ids[i, t]] += C[i, t]
    for dtype, tol in (("float64", 1e-15), ("float32", 1e-6)):
        model = build(tmp_path, body, dtype=dtype, name=f"scatter_{dtype}")
        _, grads = model.loss_and_grad({"C": C.astype(dtype), "emb.W": W.astype(dtype)}, ids=ids)
        assert grads["emb.W"].dtype == np.dtype(dtype)
        np.testing.assert_allclose(grads["emb.W"], want, rtol=tol, atol=tol)
        assert not grads["emb.W"][[2, 4, 5]].any()  # ids never used: exactly zero


@pytest.mark.parametrize("ignore", ["", ", ignore=0"])
def test_sequence_model_gradients_match_central_differences(tmp_path, ignore):
    model = build(tmp_path, SEQ_MODEL.format(ignore=ignore))
    rng = np.random.default_rng(2)
    params = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in params_of(model).items()}
    inputs = {"ids": rng.integers(0, 9, (3, 6)), "y": rng.integers(0, 9, (3, 6))}
    inputs["y"][0, :2] = 0  # some padding when ignore=0
    assert_forward_matches_oracle(model, params, inputs)
    _, grads = model.loss_and_grad(params, **inputs)
    numeric = central_difference(model, params, inputs)
    for name in params:
        assert relative_error(grads[name], numeric[name]) <= 1e-6, name


def test_runtime_gradcheck_draws_token_ids(seq_pad):
    """random_inputs gives Tokens ids in [0, vocab); the runtime's check agrees with the oracle."""
    inputs = random_inputs(seq_pad, batch=3, seed=4)
    assert inputs["ids"].dtype == np.int64 and 0 <= inputs["ids"].min() and inputs["ids"].max() < 9
    results = check_gradients(seq_pad, params_of(seq_pad), inputs, reference=seq_pad.oracle.loss)
    assert all(r.ok for r in results), [(r.name, r.rel_error) for r in results]


def test_sequence_cross_entropy_with_padding_by_hand(tmp_path):
    model = build(tmp_path, 'z = Param("z", (2, 3, 4))\ny = Labels("y", (2, 3), classes=4)\n'
                            'loss = softmax_cross_entropy(z, y, ignore=2)\n')
    rng = np.random.default_rng(3)
    z = rng.standard_normal((2, 3, 4))
    y = np.array([[1, 2, 0], [2, 2, 3]])  # three real positions, three padding
    logp = z - np.log(np.exp(z).sum(axis=2, keepdims=True))
    real = [(0, 0), (0, 2), (1, 2)]
    want = -np.mean([logp[b, t, y[b, t]] for b, t in real])
    loss, grads = model.loss_and_grad({"z": z}, y=y)
    assert abs(loss - want) <= 1e-14 * abs(want)
    for b, t in [(0, 1), (1, 0), (1, 1)]:  # padding positions: exactly zero gradient
        assert np.all(grads["z"][b, t] == 0.0)
    for b, t in real:  # softmax − one-hot, over the 3 real positions
        hot = np.eye(4)[y[b, t]]
        np.testing.assert_allclose(grads["z"][b, t], (np.exp(logp[b, t]) - hot) / 3, rtol=1e-12, atol=1e-15)
    # all padding: the mean over no positions is 0, with zero gradient, not NaN
    loss, grads = model.loss_and_grad({"z": z}, y=np.full((2, 3), 2))
    assert loss == 0.0 and np.all(grads["z"] == 0.0)


def test_sequence_cross_entropy_without_padding_is_the_mean_over_positions(tmp_path):
    model = build(tmp_path, 'z = Param("z", (2, 3, 4))\ny = Labels("y", (2, 3), classes=4)\n'
                            'loss = softmax_cross_entropy(z, y)\n')
    z = np.random.default_rng(5).standard_normal((2, 3, 4))
    y = np.array([[1, 2, 0], [2, 3, 3]])
    logp = z - np.log(np.exp(z).sum(axis=2, keepdims=True))
    want = -np.take_along_axis(logp, y[..., None], axis=2).mean()
    assert abs(model.loss({"z": z}, y=y) - want) <= 1e-14 * abs(want)


@pytest.mark.parametrize("fill, underflow", [("-float('inf')", "raise"), ("-1e9", "ignore")])
def test_causal_softmax_exact_zeros_and_zero_gradient(tmp_path, fill, underflow):
    """-inf is clean even with every floating-point flag raised (exp(-inf) is exactly 0); -1e9 gives
    the same zeros through an underflow, which NumPy ignores by default."""
    model = build(tmp_path, f's = Param("s", (2, 4, 4))\nv = Param("v", (2, 4, 4))\n'
                            f'p = softmax(where(causal_mask(4), s, {fill}))\n'
                            f'loss = sum(p * v)\noutputs = {{"p": p}}\n')
    rng = np.random.default_rng(6)
    params = {"s": 3 * rng.standard_normal((2, 4, 4)), "v": rng.standard_normal((2, 4, 4))}
    above = np.triu(np.ones((4, 4), dtype=bool), k=1)  # j > i: masked
    with warnings.catch_warnings(), np.errstate(all="raise", under=underflow):
        warnings.simplefilter("error")
        p = model.forward(params)["p"]
        _, grads = model.loss_and_grad(params)
    assert np.all(p[:, above] == 0.0) and np.all(p[:, ~above] > 0)
    np.testing.assert_allclose(p.sum(axis=2), 1.0, rtol=1e-15)
    assert np.all(np.isfinite(grads["s"])) and np.all(grads["s"][:, above] == 0.0)
    assert np.all(grads["s"][:, 0, 0] == 0.0)  # row 0 sees only itself: p = 1, no gradient
    numeric = central_difference(model, params, {})
    assert relative_error(grads["s"], numeric["s"]) <= 1e-6


def test_binary_cross_entropy_at_pm_1000_is_exact(tmp_path):
    model = build(tmp_path, 'z = Param("z", (4,))\nt = Input("t", (4,))\n'
                            'loss = binary_cross_entropy_with_logits(z, t)\n')
    z, t = np.array([1000.0, -1000.0, 1000.0, -1000.0]), np.array([1.0, 0.0, 0.0, 1.0])
    with np.errstate(all="raise", under="ignore"):  # exp(-1000) underflows to 0: exact, and harmless
        loss, grads = model.loss_and_grad({"z": z}, t=t)
    assert loss == 500.0  # (0 + 0 + 1000 + 1000) / 4
    np.testing.assert_array_equal(grads["z"], [0.0, 0.0, 0.25, -0.25])  # (σ(z) − t) / 4


def test_binary_cross_entropy_value_and_gradient(tmp_path):
    model = build(tmp_path, 'x = Input("x", ("B", 3))\nt = Input("t", ("B", 2))\n'
                            'loss = binary_cross_entropy_with_logits(linear(x, 2, name="l"), t)\n')
    rng = np.random.default_rng(7)
    params = params_of(model)
    inputs = {"x": rng.standard_normal((5, 3)), "t": rng.uniform(0, 1, (5, 2))}
    z = inputs["x"] @ params["l.W"] + params["l.b"]
    s = 1 / (1 + np.exp(-z))
    want = np.mean(-inputs["t"] * np.log(s) - (1 - inputs["t"]) * np.log(1 - s))
    loss, grads = model.loss_and_grad(params, **inputs)
    assert abs(loss - want) <= 1e-13 * abs(want)
    numeric = central_difference(model, params, inputs)
    for name in params:
        assert relative_error(grads[name], numeric[name]) <= 1e-6, name


def test_mse_regression_with_float_target_input(tmp_path):
    model = build(tmp_path, 'x = Input("x", ("B", 3))\nt = Input("t", ("B", 1))\n'
                            'loss = mse(linear(x, 1, name="l"), t)\n')
    rng = np.random.default_rng(8)
    params = params_of(model)
    inputs = {"x": rng.standard_normal((6, 3)), "t": rng.standard_normal((6, 1))}
    r = inputs["x"] @ params["l.W"] + params["l.b"] - inputs["t"]
    loss, grads = model.loss_and_grad(params, **inputs)
    assert abs(loss - np.mean(r ** 2)) <= 1e-14 * np.mean(r ** 2)
    np.testing.assert_allclose(grads["l.W"], 2 * inputs["x"].T @ r / 6, rtol=1e-12)
    np.testing.assert_allclose(grads["l.b"], 2 * r.sum(axis=0) / 6, rtol=1e-12)


@pytest.mark.parametrize("ids, message", [
    (np.array([[0, 1, 9, 2, 3, 4]] * 2), "input 'ids' must be class indices in [0, 9), got values in [0, 9]"),
    (np.array([[0, -1, 2, 2, 3, 4]] * 2), "got values in [-1, 4]"),
    (np.zeros((2, 6)), "input 'ids' must hold integers, got float64; use .astype(np.int64)"),
])
def test_generated_module_refuses_bad_ids(seq_pad, ids, message):
    good = np.zeros((2, 6), dtype=np.int64)
    with pytest.raises(seq_pad.module.InputError) as info:
        seq_pad.loss_and_grad(params_of(seq_pad), ids=ids, y=good)
    assert message in str(info.value)
    assert str(info.value).startswith("loss_and_grad: ")


@pytest.mark.parametrize("body, expected", [
    ('ids = Tokens("ids", ("B", 3), vocab=1)\nloss = sum(embedding(ids, 1, 2))\n',
     ["bad.py:3", "Tokens", "vocab must be an int >= 2, got 1"]),
    ('x = Input("x", ("B", 3))\nloss = sum(embedding(x, 5, 2))\n',
     ["bad.py:4", "embedding", "ids must be integer Tokens", "(B, 3)", "fix:"]),
    ('ids = Tokens("ids", ("B", 3), vocab=7)\nloss = sum(embedding(ids, 5, 2))\n',
     ["bad.py:4", "embedding", "hold values in [0, 7) but the table has 5 rows", "ids (B, 3)", "fix:"]),
    ('z = Param("z", (2, 3, 4))\ny = Labels("y", (2, 3), classes=4)\n'
     'loss = softmax_cross_entropy(z, y, ignore=4)\n',
     ["bad.py:5", "softmax_cross_entropy", "ignore must be a padding id in [0, 4), got 4", "fix:"]),
    ('z = Param("z", (2, 3, 4))\ny = Labels("y", (2, 4), classes=4)\nloss = softmax_cross_entropy(z, y)\n',
     ["bad.py:5", "softmax_cross_entropy", "(2, 3, 4) and (2, 4)", "fix:"]),
    ('z = Param("z", (3,))\nt = Input("t", (2,))\nloss = binary_cross_entropy_with_logits(z, t)\n',
     ["bad.py:5", "binary_cross_entropy_with_logits", "(3,) and (2,)", "fix:"]),
    ('s = Param("s", (3, 3))\nloss = sum(where(causal_mask(0), s, 0))\n',
     ["bad.py:4", "causal_mask", "T must be a positive int", "fix:"]),
])
def test_model_errors_name_line_op_and_fix(tmp_path, body, expected):
    msg = error_of(tmp_path, body)
    for part in expected:
        assert part in msg, (part, msg)
