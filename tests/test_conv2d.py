"""Images, channels last: conv2d against direct loops, gradients of conv2d and 2-D pooling against
central differences of the eager oracle, max-pool ties, global average pooling, shape errors with
the model line, and a LeNet on (B, 28, 28, 1)."""
import numpy as np
import pytest

from helpers import (assert_forward_matches_oracle, build, central_difference, error_of,
                     relative_error)


def pair(v):
    return tuple(v) if isinstance(v, tuple) else (v, v)


def conv2d_reference(x, W, b, stride, padding, dilation):
    """Direct loops: out[n, r, s, o] = b[o] + Σ_ij Σ_c x_pad[n, r·sh + i·dh, s·sw + j·dw, c] W[i, j, c, o]."""
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    n, height, width, _ = x.shape
    kh, kw, _, c_out = W.shape
    xp = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    h_out = (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    w_out = (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, h_out, w_out, c_out)) + b
    for r in range(h_out):
        for s in range(w_out):
            for i in range(kh):
                for j in range(kw):
                    out[:, r, s, :] += xp[:, r * sh + i * dh, s * sw + j * dw, :] @ W[i, j]
    return out


CASES = [  # kernel_size, stride, padding, dilation
    (3, 1, 0, 1),
    ((2, 3), (2, 1), (1, 0), 1),
    (3, 2, 1, 2),
    ((1, 4), (1, 3), (0, 2), 1),
    ((3, 2), 1, 2, (2, 1)),
]


@pytest.mark.parametrize("kernel, stride, padding, dilation", CASES)
def test_conv2d_matches_direct_loops_and_central_differences(tmp_path, kernel, stride, padding, dilation):
    model = build(tmp_path, 'x = Param("x", (2, 7, 8, 2))\n'
                            f'z = conv2d(x, 3, {kernel}, stride={stride}, padding={padding}, '
                            f'dilation={dilation}, name="c")\n'
                            'loss = sum(tanh(z) * z)\noutputs = {"z": z}\n')
    kh, kw = pair(kernel)
    rng = np.random.default_rng(0)
    params = {"x": rng.standard_normal((2, 7, 8, 2)), "c.W": rng.standard_normal((kh, kw, 2, 3)),
              "c.b": rng.standard_normal(3)}
    ref = conv2d_reference(params["x"], params["c.W"], params["c.b"], stride, padding, dilation)
    np.testing.assert_allclose(model.forward(params)["z"], ref, rtol=1e-12, atol=1e-12)
    assert_forward_matches_oracle(model, params, {})
    _, grads = model.loss_and_grad(params)
    numeric = central_difference(model, params, {})
    for k in params:
        assert relative_error(grads[k], numeric[k]) <= 1e-7, k


def test_conv_relu_maxpool_linear_matches_central_differences(tmp_path):
    model = build(tmp_path, 'x = Input("x", ("B", 6, 7, 2))\ny = Labels("y", ("B",), classes=3)\n'
                            'h = max_pool2d(relu(conv2d(x, 3, 3, padding=1, name="c")), 2)\n'
                            'logits = linear(flatten(h), 3, name="out")\n'
                            'loss = softmax_cross_entropy(logits, y)\n')
    rng = np.random.default_rng(3)
    params = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in model.init_params(1).items()}
    inputs = {"x": rng.standard_normal((2, 6, 7, 2)), "y": np.array([0, 2])}
    assert_forward_matches_oracle(model, params, inputs)
    _, grads = model.loss_and_grad(params, **inputs)
    numeric = central_difference(model, params, inputs)
    assert set(grads) == {"c.W", "c.b", "out.W", "out.b"}
    for k in params:
        assert relative_error(grads[k], numeric[k]) <= 1e-7, k


def test_padded_pooling_and_global_average_match_central_differences(tmp_path):
    model = build(tmp_path, 'x = Param("x", (2, 5, 6, 2))\n'
                            'h = avg_pool2d(elu(conv2d(x, 3, (2, 3), stride=(1, 2), name="c")), 3, stride=2, '
                            'padding=1)\n'
                            'm = max_pool2d(x, (2, 3), stride=(3, 1), padding=(1, 0))\n'
                            'g = mean(h, axis=(1, 2))\n'
                            'loss = sum(tanh(g) * g) + sum(m * m * m)\noutputs = {"g": g, "h": h}\n')
    rng = np.random.default_rng(4)
    params = {"x": rng.standard_normal((2, 5, 6, 2)), "c.W": rng.standard_normal((2, 3, 2, 3)),
              "c.b": rng.standard_normal(3)}
    out = model.forward(params)
    assert out["h"].shape == (2, 2, 1, 3)  # conv: 4×2; pool 3, stride 2, padding 1: 2×1
    np.testing.assert_allclose(out["g"], out["h"].mean(axis=(1, 2)), rtol=1e-12)
    assert_forward_matches_oracle(model, params, {})
    _, grads = model.loss_and_grad(params)
    numeric = central_difference(model, params, {})
    for k in params:
        assert relative_error(grads[k], numeric[k]) <= 1e-7, k


def test_pooling_values_and_max_ties_split_evenly(tmp_path):
    model = build(tmp_path, 'x = Param("x", (1, 4, 4, 1))\nm = max_pool2d(x, 2)\n'
                            'a = avg_pool2d(x, (2, 4), stride=(1, 4))\n'
                            'loss = sum(m * Param("w", (1, 2, 2, 1))) + sum(a)\n'
                            'outputs = {"m": m, "a": a}\n')
    x = np.array([[1, 3, 0, 0],
                  [2, 3, 0, -1],
                  [5, 1, 7, 7],
                  [4, 5, 7, 7.0]]).reshape(1, 4, 4, 1)
    w = np.array([2.0, 4.0, 6.0, 8.0]).reshape(1, 2, 2, 1)
    out = model.forward({"x": x, "w": w})
    np.testing.assert_array_equal(out["m"].ravel(), [3, 0, 5, 7])
    np.testing.assert_allclose(out["a"].ravel(), [1.0, 3.0, 5.375], rtol=1e-15)
    _, g = model.loss_and_grad({"x": x, "w": w})
    d_max = np.array([[0, 1, 4 / 3, 4 / 3],    # 3 twice in the first window: 2 splits 1 and 1;
                      [0, 1, 4 / 3, 0],       # 0 three times in the second: 4 splits in thirds
                      [3, 0, 2, 2],           # 5 twice: 6 splits 3 and 3; 7 four times: 8 in quarters
                      [0, 3, 2, 2]])
    d_avg = np.array([1, 2, 2, 1]).reshape(4, 1) / 8 * np.ones((4, 4))  # rows read by 1, 2, 2, 1 windows
    np.testing.assert_allclose(g["x"].reshape(4, 4), d_max + d_avg, rtol=1e-14)
    np.testing.assert_array_equal(g["w"].ravel(), [3, 0, 5, 7])


def test_global_average_pooling_is_mean_over_height_and_width(tmp_path):
    model = build(tmp_path, 'x = Param("x", (2, 3, 4, 5))\ng = mean(x, axis=(1, 2))\n'
                            'loss = sum(g * Param("w", (5,)))\noutputs = {"g": g}\n')
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal(5)
    np.testing.assert_allclose(model.forward({"x": x, "w": w})["g"], x.mean(axis=(1, 2)), rtol=1e-13)
    _, g = model.loss_and_grad({"x": x, "w": w})
    np.testing.assert_allclose(g["x"], np.broadcast_to(w / 12, (2, 3, 4, 5)), rtol=1e-13)


@pytest.mark.parametrize("line, wants", [
    ('z = conv2d(Input("x", ("B", 784)), 8, 5)',
     ["bad.py:3: conv2d: conv2d takes images (batch, height, width, channels) of fixed sizes, got (B, 784)",
      'reshape(x, ("B", 28, 28, 1))']),
    ('z = max_pool2d(Input("x", ("B", 4, 4)), 2)', ["bad.py:3: max_pool2d:", "got (B, 4, 4)", "fix:"]),
    ('z = conv2d(Input("x", ("B", 6, 6, 1)), 8, 5, dilation=2)',
     ["bad.py:3: conv2d: the 5×5 window (dilation 2×2) spans 9×9 pixels, more than the 6×6 padded image",
      "shapes: (B, 6, 6, 1)", "fix: use a smaller window or dilation, add padding"]),
    ('z = avg_pool2d(Input("x", ("B", 6, 3, 1)), (2, 4), padding=(0, 0))',
     ["bad.py:3: avg_pool2d: the 2×4 window (dilation 1×1) spans 2×4 pixels, more than the 6×3 padded"]),
    ('z = conv2d(Input("x", ("B", 6, 6, 1)), 8, 2.5)',
     ["bad.py:3: conv2d: kernel_size must be an int >= 1 or a (rows, columns) pair of them, got 2.5",
      "fix: write kernel_size=3 or kernel_size=(3, 5)"]),
    ('z = conv2d(Input("x", ("B", 6, 6, 1)), 8, 3, stride=(1, 0))', ["stride must be an int >= 1", "(1, 0)"]),
    ('z = conv2d(Input("x", ("B", 6, 6, 1)), 8, (3, 3, 3))', ["kernel_size must be", "(3, 3, 3)"]),
    ('z = max_pool2d(Input("x", ("B", 6, 6, 1)), 2, padding=-1)', ["padding must be an int >= 0", "-1"]),
    ('z = conv2d(Input("x", ("B", 6, 6, 1)), 0, 3)', ["bad.py:3: conv2d: channels must be an int >= 1, got 0"]),
])
def test_bad_image_layers_name_the_line_the_problem_and_a_fix(tmp_path, line, wants):
    msg = error_of(tmp_path, line + "\nloss = sum(z)\n")
    for want in wants:
        assert want in msg, msg


LENET = '''x = Input("x", ("B", 28, 28, 1))
y = Labels("y", ("B",), classes=10)
h = max_pool2d(relu(conv2d(x, 8, 5, padding=2, name="conv1")), 2)
h = max_pool2d(relu(conv2d(h, 16, 5, padding=2, name="conv2")), 2)
h = relu(linear(flatten(h), 128, name="fc1"))
logits = linear(h, 10, name="fc2")
loss = softmax_cross_entropy(logits, y)
outputs = {"logits": logits}
'''


def test_lenet_compiles_with_he_init_by_fan_in_and_runs_a_batch(tmp_path):
    model = build(tmp_path, LENET)
    spec = model.params_spec
    assert spec["conv1.W"] == ((5, 5, 1, 8), "float64", "he_normal")
    assert spec["conv2.W"] == ((5, 5, 8, 16), "float64", "he_normal")
    assert spec["fc1.W"][0] == (784, 128) and spec["fc2.W"][2] == "xavier_normal"
    params = model.init_params(0)
    assert np.std(params["conv2.W"]) == pytest.approx(np.sqrt(2 / (5 * 5 * 8)), rel=0.1)
    rng = np.random.default_rng(6)
    inputs = {"x": rng.standard_normal((4, 28, 28, 1)), "y": np.array([0, 3, 9, 3])}
    loss, grads = model.loss_and_grad(params, **inputs)
    assert np.isfinite(loss) and loss == pytest.approx(model.oracle.loss(params, inputs), rel=1e-12)
    assert model.forward(params, **inputs)["logits"].shape == (4, 10)
    assert {k: g.shape for k, g in grads.items()} == {k: v.shape for k, v in params.items()}
    assert all(np.isfinite(g).all() and np.abs(g).max() > 0 for g in grads.values())
