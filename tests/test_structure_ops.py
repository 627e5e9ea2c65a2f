"""Indexing, concat/stack/split, transpose(axes), reshape beyond 2-D, @ on broadcast stacks and einsum:
values against NumPy, gradients against central differences of the eager oracle, the printed forms,
and the errors for what they refuse."""
import numpy as np
import pytest

from helpers import build, central_difference, compile_text, error_of, relative_error


def gradients_match(model, params, inputs=None, tol=1e-6):
    inputs = inputs or {}
    _, grads = model.loss_and_grad(params, **inputs)
    numeric = central_difference(model, params, inputs)
    for name in params:
        assert grads[name].shape == params[name].shape, name
        assert relative_error(grads[name], numeric[name]) <= tol, name


def random_params(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return {name: rng.uniform(-1, 1, size=shape) for name, shape in shapes.items()}


# ---- indexing: values ------------------------------------------------------------------------------

FORMS = ["x[:, 0]", "x[:, -3:]", "x[..., ::2]", "x[0]", "x[:, None]", "x[1:3, ::-1]", "x[-1, 2:5:2]",
         "x[None, ..., 0]", "x[1, None, 4:0:-2]", "x[..., -1]", "x[2, 3]", "x[:, :, None]",
         "y[:, :, 1:3]", "y[..., 1:3]", "y[:, :, :, ::-1]", "y[:, :, 2]", "y[1, ..., :2, 3]", "y[:, -1:, :, 0]"]


def test_each_indexing_form_gives_numpys_values(tmp_path):
    lines = [f"o{i} = {form}" for i, form in enumerate(FORMS)]
    body = ('x = Param("x", (4, 6))\ny = Param("y", (2, 3, 4, 5))\n' + "\n".join(lines) + "\n"
            "loss = " + " + ".join(f"sum(o{i})" for i in range(len(FORMS))) + "\n"
            "outputs = {" + ", ".join(f'"o{i}": o{i}' for i in range(len(FORMS))) + "}\n")
    model = build(tmp_path, body)
    x, y = np.arange(24.0).reshape(4, 6) * 1.5 - 7, np.arange(120.0).reshape(2, 3, 4, 5) - 60
    out = model.forward({"x": x, "y": y})
    oracle = model.oracle.forward({"x": x, "y": y}, {})
    for i, form in enumerate(FORMS):
        want = eval(form, {"x": x, "y": y})
        assert out[f"o{i}"].shape == want.shape, form
        np.testing.assert_array_equal(out[f"o{i}"], want, err_msg=form)
        np.testing.assert_array_equal(oracle[f"o{i}"], want, err_msg=form)


def test_indexing_a_symbolic_batch_axis(tmp_path):
    model = build(tmp_path, 'x = Input("x", ("B", 5))\nW = Param("W", (5, 3))\nh = tanh(x @ W)\n'
                            'first, last = h[0], h[:, -1]\n'
                            'loss = sum(first * first) + sum(last * h[:, 1])\n'
                            'outputs = {"first": first, "last": last, "cols": h[..., ::2]}\n')
    rng = np.random.default_rng(3)
    params, x = {"W": rng.standard_normal((5, 3))}, rng.standard_normal((4, 5))
    h = np.tanh(x @ params["W"])
    out = model.forward(params, x=x)
    np.testing.assert_allclose(out["first"], h[0], rtol=1e-14)
    np.testing.assert_allclose(out["last"], h[:, -1], rtol=1e-14)
    np.testing.assert_allclose(out["cols"], h[:, ::2], rtol=1e-14)
    gradients_match(model, params, {"x": x})


def test_slice_gradients_scatter_into_zeros(tmp_path):
    """The adjoint of a slice puts the cotangent where the slice read and zeros elsewhere: with a
    linear loss the gradient is exactly the count of reads of each position."""
    model = build(tmp_path, 'x = Param("x", (3, 5))\n'
                            'loss = sum(x[:, 1:4]) + 2 * sum(x[0]) + sum(x[..., ::-2]) + sum(x[-1, None])\n')
    _, g = model.loss_and_grad({"x": np.zeros((3, 5))})
    want = np.zeros((3, 5))
    want[:, 1:4] += 1
    want[0] += 2
    want[:, ::-2] += 1
    want[-1] += 1
    np.testing.assert_array_equal(g["x"], want)


def test_slice_gradients_match_central_differences(tmp_path):
    model = build(tmp_path, 't = Param("t", (2, 5, 4))\n'
                            'a = tanh(t[:, 1:4]) * t[:, -3:, ::-1]\n'
                            'loss = sum(a * a[..., ::2][:, :, :1]) + sum(sigmoid(t[1, :, None]) * t[0, 2])\n')
    gradients_match(model, random_params({"t": (2, 5, 4)}))


# ---- concat, stack, split ---------------------------------------------------------------------------

def test_concat_stack_split_values_and_gradients(tmp_path):
    body = ('a = Param("a", (3, 2))\nb = Param("b", (3, 4))\nv = Param("v", (3,))\n'
            'c = concat([a, b, tanh(a)], axis=-1)\n'
            's = stack([v, v * v, tanh(v)], axis=1)\n'
            'p, q, r = split(c, [1, 4, 3], axis=1)\n'
            'halves = split(b, 2, 1)\n'
            'loss = sum(tanh(c) * c) + sum(s * s[:, ::-1]) + sum(p * sigmoid(q[:, :1])) + sum(r ** 3)'
            ' + sum(halves[0] * halves[1])\n'
            'outputs = {"c": c, "s": s, "p": p, "q": q, "r": r, "h0": halves[0], "h1": halves[1]}\n')
    model = build(tmp_path, body)
    params = random_params({"a": (3, 2), "b": (3, 4), "v": (3,)}, seed=1)
    a, b, v = params["a"], params["b"], params["v"]
    out = model.forward(params)
    c = np.concatenate([a, b, np.tanh(a)], axis=1)
    np.testing.assert_allclose(out["c"], c, rtol=1e-14)
    np.testing.assert_allclose(out["s"], np.stack([v, v * v, np.tanh(v)], axis=1), rtol=1e-14)
    for name, want in zip("pqr", np.split(c, [1, 5], axis=1)):
        np.testing.assert_array_equal(out[name], want)
    np.testing.assert_array_equal(out["h0"], b[:, :2])
    np.testing.assert_array_equal(out["h1"], b[:, 2:])
    gradients_match(model, params)


def test_stack_prints_np_stack(tmp_path):
    src = compile_text(tmp_path, 'v = Param("v", (3,))\nw = Param("w", (3,))\n'
                                 'loss = sum(tanh(stack([v, w], 0)))\n')
    assert "np.stack([v, w], axis=0)" in src


# ---- transpose(axes), reshape -----------------------------------------------------------------------

def test_double_transpose_of_a_non_square_tensor_cancels(tmp_path):
    """(tᵀ)ᵀ is simplified to t while tracing: the shape the op promised is still t's (3, 2)."""
    model = build(tmp_path, 't = Param("t", (3, 2))\nloss = sum(tanh(t.T.T) * t)\n'
                            'outputs = {"back": t.T.T}\n')
    params = random_params({"t": (3, 2)}, seed=5)
    np.testing.assert_array_equal(model.forward(params)["back"], params["t"])
    gradients_match(model, params)


def test_transpose_with_axes_values_and_gradients(tmp_path):
    model = build(tmp_path, 't = Param("t", (2, 3, 4))\nu = transpose(t, (1, 2, 0))\n'
                            'w = transpose(u, [0, 2, 1])\n'
                            'loss = sum(tanh(u) * u) + sum(sigmoid(transpose(t, (2, 1, 0))) * transpose(u, (1, 0, 2)) * w[0, 0, :2])\n'
                            'outputs = {"u": u, "w": w, "r": transpose(t)}\n')
    params = random_params({"t": (2, 3, 4)}, seed=2)
    out = model.forward(params)
    np.testing.assert_array_equal(out["u"], np.transpose(params["t"], (1, 2, 0)))
    np.testing.assert_array_equal(out["w"], np.transpose(params["t"], (1, 0, 2)))
    np.testing.assert_array_equal(out["r"], params["t"].T)
    gradients_match(model, params)


def test_reshape_beyond_two_dimensions(tmp_path):
    model = build(tmp_path, 'x = Input("x", ("B", 12))\nt = Param("t", (2, 3, 4))\n'
                            'h = reshape(tanh(x), ("B", 3, 4)) * t[0]\n'
                            'g = reshape(t, (4, 6))\n'
                            'loss = sum(h * h) + sum(tanh(reshape(g, (2, 2, 6))) * reshape(t, (2, 12))[0, :6])\n'
                            'outputs = {"h": h}\n')
    params = random_params({"t": (2, 3, 4)}, seed=4)
    x = np.random.default_rng(5).standard_normal((2, 12))
    np.testing.assert_allclose(model.forward(params, x=x)["h"],
                               np.tanh(x).reshape(2, 3, 4) * params["t"][0], rtol=1e-14)
    gradients_match(model, params, {"x": x})


# ---- @ on stacks ---------------------------------------------------------------------------------

@pytest.mark.parametrize("a, b", [((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (5, 4, 6)), ((3, 4), (5, 4, 2)),
                                  ((4,), (2, 4, 3)), ((2, 3, 4), (4,)), ((2, 3, 4), (2, 4, 5)),
                                  ((1, 3, 4), (2, 4, 2))])
def test_batched_matmul_values_and_gradients(tmp_path, a, b):
    model = build(tmp_path, f'a = Param("a", {a})\nb = Param("b", {b})\nc = a @ b\n'
                            'loss = sum(tanh(c) * c)\noutputs = {"c": c}\n')
    params = random_params({"a": a, "b": b}, seed=len(a) + len(b))
    np.testing.assert_allclose(model.forward(params)["c"], np.matmul(params["a"], params["b"]),
                               rtol=1e-13)
    gradients_match(model, params)


def test_broadcast_batch_axis_gradient_is_a_sum(tmp_path):
    """(1, 2, 2) @ (3, 2, 2) with a linear loss: a's gradient sums the three batches of bᵀ's rows."""
    model = build(tmp_path, 'a = Param("a", (1, 2, 2))\nb = Param("b", (3, 2, 2))\nloss = sum(a @ b)\n')
    b = np.arange(12.0).reshape(3, 2, 2)
    _, g = model.loss_and_grad({"a": np.ones((1, 2, 2)), "b": b})
    want = np.broadcast_to(b.sum(axis=(0, 2)), (2, 2))[None]
    np.testing.assert_array_equal(g["a"], want)
    np.testing.assert_array_equal(g["b"], np.full((3, 2, 2), 2.0))


# ---- einsum ----------------------------------------------------------------------------------------

SPECS = [("bhtd,bhsd->bhts", (2, 2, 3, 4), (2, 2, 5, 4)), ("bhts,bhsd->bhtd", (2, 2, 3, 5), (2, 2, 5, 4)),
         ("ij,jk->ik", (3, 4), (4, 2)), ("ij,kj->ki", (3, 4), (2, 4)), ("ij,ij", (3, 4), (3, 4)),
         ("ij,k->jik", (3, 4), (2,)), ("bij,bjk", (2, 3, 4), (2, 4, 5)), ("ab,cd->", (2, 3), (4, 1))]


@pytest.mark.parametrize("spec, sa, sb", SPECS, ids=[s for s, _, _ in SPECS])
def test_einsum_values_and_gradients(tmp_path, spec, sa, sb):
    model = build(tmp_path, f'a = Param("a", {sa})\nb = Param("b", {sb})\nc = einsum("{spec}", a, b)\n'
                            'loss = sum(tanh(c) * c)\noutputs = {"c": c}\n')
    params = random_params({"a": sa, "b": sb}, seed=7)
    want = np.einsum(spec, params["a"], params["b"])
    np.testing.assert_allclose(model.forward(params)["c"], want, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(model.oracle.forward(params, {})["c"], want, rtol=1e-13, atol=1e-15)
    gradients_match(model, params)


def test_attention_with_einsum_matches_central_differences_and_prints_matmuls(tmp_path):
    body = ('x = Input("x", ("B", 2, 5, 4))\nWq = Param("Wq", (4, 4))\nWk = Param("Wk", (4, 4))\n'
            'q, k = x @ Wq, x @ Wk\n'
            'w = softmax(einsum("bhtd,bhsd->bhts", q, k) / 2.0, axis=-1)\n'
            'o = einsum("bhts,bhsd->bhtd", w, x)\n'
            'loss = mean(o * o)\noutputs = {"o": o}\n')
    model = build(tmp_path, body)
    params = random_params({"Wq": (4, 4), "Wk": (4, 4)}, seed=8)
    x = np.random.default_rng(9).standard_normal((3, 2, 5, 4))
    q, k = x @ params["Wq"], x @ params["Wk"]
    s = q @ np.swapaxes(k, -1, -2) / 2
    w = np.exp(s - s.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    np.testing.assert_allclose(model.forward(params, x=x)["o"], w @ x, rtol=1e-12)
    gradients_match(model, params, {"x": x})
    src = (tmp_path / "model_float64_gen.py").read_text()
    assert "np.einsum" not in src and ".swapaxes(-1, -2)" in src


def test_einsum_that_is_no_product_prints_np_einsum(tmp_path):
    src = compile_text(tmp_path, 'a = Param("a", (3, 4))\nb = Param("b", (2,))\n'
                                 'loss = sum(tanh(einsum("ij,k->jik", a, b)))\n')
    assert 'np.einsum("ij,k->jik", a, b, optimize=True)' in src


# ---- errors ---------------------------------------------------------------------------------------

ERRORS = {
    "tensor index": ('x = Param("x", (3, 4))\ni = Param("i", (2,))\nloss = sum(x[i])\n', 5,
                     ["indexing with a tensor", "pick(z, labels)", "embedding"]),
    "list index": ('x = Param("x", (3, 4))\nloss = sum(x[[0, 2]])\n', 4, ["indexing with a tensor"]),
    "out of range": ('x = Param("x", (3, 4))\nloss = sum(x[:, 4])\n', 4,
                     ["index 4 is out of range for axis 1 of size 4", "(3, 4)"]),
    "too many": ('x = Param("x", (3, 4))\nloss = sum(x[0, 1, 2])\n', 4, ["too many indices (3)"]),
    "float index": ('x = Param("x", (3, 4))\nloss = sum(x[0.5])\n', 4, ["x[0.5]", "type float"]),
    "symbolic slice": ('x = Input("x", ("B", 4))\nloss = sum(x[:2])\n', 4, ["symbolic size B", "only `:`"]),
    "empty slice": ('x = Param("x", (3, 4))\nloss = sum(x[:, 3:1])\n', 4, ["is empty"]),
    "bad transpose axes": ('t = Param("t", (2, 3, 4))\nloss = sum(transpose(t, (0, 0, 1)))\n', 4,
                           ["not a permutation of the 3 axes", "(2, 3, 4)"]),
    "concat shapes": ('a = Param("a", (3, 2))\nb = Param("b", (4, 2))\nloss = sum(concat([a, b], 1))\n', 5,
                      ["concat along axis 1", "(3, 2), (4, 2)", "differ off that axis"]),
    "concat axis": ('a = Param("a", (3, 2))\nloss = sum(concat([a, a], 2))\n', 4,
                    ["axis 2 is out of range for tensors of rank 2"]),
    "stack shapes": ('a = Param("a", (3,))\nb = Param("b", (2,))\nloss = sum(stack([a, b]))\n', 5,
                     ["stack takes tensors of one shape"]),
    "split sizes": ('a = Param("a", (3, 5))\nloss = sum(split(a, [2, 2], 1)[0])\n', 4,
                    ["adding up to 5"]),
    "split count": ('a = Param("a", (3, 5))\nloss = sum(split(a, 2, 1)[0])\n', 4, ["into 2 equal parts"]),
    "batch axes": ('a = Param("a", (2, 3, 4))\nb = Param("b", (3, 4, 5))\nloss = sum(a @ b)\n', 5,
                   ["batch axes of (2, 3, 4) @ (3, 4, 5) do not broadcast"]),
    "einsum repeat": ('a = Param("a", (3, 3))\nloss = sum(einsum("ii,ij->j", a, a))\n', 4,
                      ["repeats within the first operand"]),
    "einsum sizes": ('a = Param("a", (3, 4))\nb = Param("b", (3, 4))\nloss = sum(einsum("ij,jk->ik", a, b))\n',
                     5, ["subscript 'j' is 4 in one operand and 3"]),
    "einsum rank": ('a = Param("a", (3, 4))\nloss = sum(einsum("ijk,jk->i", a, a))\n', 4,
                    ["has rank 2 but 3 subscripts"]),
    "einsum one operand": ('a = Param("a", (3, 4))\nloss = sum(einsum("ij->ji", a))\n', 4,
                           ["einsum takes two tensors, got 1"]),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_errors_name_line_op_and_fix(tmp_path, case):
    body, line, needles = ERRORS[case]
    msg = error_of(tmp_path, body)
    assert f"bad.py:{line}" in msg, msg
    assert "fix:" in msg, msg
    for needle in needles:
        assert needle in msg, msg
