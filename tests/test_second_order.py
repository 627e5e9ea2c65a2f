"""Beyond the gradient: hvp, jvp, input_grad and hessian (compile --with), each against numbers it
cannot produce itself: central differences of the checked gradient (H·v), of the eager oracle's
outputs (J·t) and loss (input gradients), and SymPy's own second derivatives (the Hessian)."""
import os
import subprocess
import sys

import numpy as np
import pytest
import sympy as sp

import compiler
import compiler.ops as P
import runtime
from helpers import EXAMPLES, ROOT, build, check_model_text
from runtime.model import Model

CHECKED = sorted((r for r in P.REGISTRY.values() if r.check is not None),
                 key=lambda r: getattr(r.head, "__name__", str(r.head)))


def assert_ok(checks):
    assert checks and all(c.ok for c in checks), "\n".join(
        f"{c.name}: rel error {c.rel_error:.2e} ({c.status})" for c in checks)


# ---- every op's VJP is differentiable again ----------------------------------------------------

@pytest.mark.parametrize("rule", CHECKED, ids=lambda r: getattr(r.head, "__name__", str(r.head)))
def test_hvp_of_every_op_matches_differences_of_its_gradient(tmp_path, rule):
    """Reverse mode runs over each rule's VJP: the registry's check losses, differentiated twice."""
    check = rule.check
    model = build(tmp_path, check_model_text(check), functions=("hvp",))
    rng = np.random.default_rng(3)
    params = {name: rng.uniform(lo, hi, size=shape) for name, (shape, (lo, hi)) in check.params.items()}
    inputs = {name: rng.integers(0, classes, size=shape) for name, (shape, classes) in check.labels.items()}
    if model.needs_seed:
        inputs["seed"] = np.int64(11)
    assert_ok(runtime.check_hvp(model, params, inputs, tol=1e-6))
    # H is symmetric: u·(H v) = v·(H u)
    u, v = ({k: rng.standard_normal(np.shape(p)) for k, p in params.items()} for _ in range(2))
    hv, hu = model.hvp(params, v, **inputs)[2], model.hvp(params, u, **inputs)[2]
    left = sum(float(np.sum(u[k] * hv[k])) for k in params)
    right = sum(float(np.sum(v[k] * hu[k])) for k in params)
    assert abs(left - right) <= 1e-9 * max(1.0, abs(left))


# ---- the examples -------------------------------------------------------------------------------

EXAMPLE_FUNCTIONS = {
    "neuron": ("hvp", "jvp", "input_grad", "hessian"),
    "chain_rule": ("hvp", "jvp", "hessian"),
    "digits_mlp": ("hvp", "jvp", "input_grad"),
    "mnist1d_cnn": ("hvp", "jvp", "input_grad"),
    "lenet_mnist5k": ("hvp", "jvp", "input_grad"),
    "deep_tanh": ("hvp", "jvp", "input_grad"),
    "char_mlp": ("hvp", "jvp"),
    "char_rnn": ("hvp", "jvp"),
    "tiny_gpt": ("hvp", "jvp"),
    "logistic_digits": ("hvp", "jvp", "input_grad"),
}


@pytest.mark.parametrize("name", sorted(EXAMPLE_FUNCTIONS))
def test_examples_second_order_against_central_differences(name):
    functions = EXAMPLE_FUNCTIONS[name]
    path = os.path.join(EXAMPLES, f"{name}.py")
    model = runtime.load(path, functions=functions)
    oracle = compiler.eager.Oracle(path)
    params = model.init_params(0)
    rng = np.random.default_rng(1)   # away from zero-initialised biases' symmetric point
    params = {k: v + 0.05 * rng.standard_normal(np.shape(v)) if k in model.params_spec else v
              for k, v in params.items()}
    inputs = runtime.random_inputs(model, batch=2, seed=0)
    # the gradient itself against the oracle first: H·v is then checked against its differences
    assert_ok(runtime.check_gradients(model, params, inputs, max_per_param=3, reference=oracle.loss))
    assert_ok(runtime.check_hvp(model, params, inputs, tol=1e-5))
    assert_ok(runtime.check_jvp(model, params, inputs, oracle.forward, tol=1e-6))
    if "input_grad" in functions:
        assert_ok(runtime.check_input_grad(model, params, inputs, oracle.loss, tol=1e-6))
    loss, grads, _ = model.hvp(params, {k: np.zeros_like(params[k]) for k in model.params_spec}, **inputs)
    reference_loss, reference_grads = model.loss_and_grad(params, **inputs)[:2]
    # the same math; CSE over the larger program may group a sum differently (rounding only)
    assert abs(loss - reference_loss) <= 1e-12 * max(1.0, abs(reference_loss))
    for k in model.params_spec:
        np.testing.assert_allclose(grads[k], reference_grads[k], rtol=1e-10, atol=1e-13)


def test_chain_rule_hessian_is_known():
    """e(a, b) = (a + b)(b + 1): ∂²e/∂a² = 0, ∂²e/∂a∂b = 1, ∂²e/∂b² = 2."""
    model = runtime.load(os.path.join(EXAMPLES, "chain_rule.py"), functions=("hessian",))
    loss, grads, H = model.hessian(model.init_params(0))
    assert float(loss) == 6.0 and float(grads["a"]) == 2.0 and float(grads["b"]) == 5.0
    np.testing.assert_array_equal(H, [[0.0, 1.0], [1.0, 2.0]])


SCALAR_MODELS = [
    ("tanh(a * b) + exp(a) * sigmoid(b) + log(a * a + 1) * b",
     lambda a, b: sp.tanh(a * b) + sp.exp(a) / (1 + sp.exp(-b)) + sp.log(a * a + 1) * b),
    ("sqrt(a * a + b * b + 1) * sin(a) + cos(b) ** 3 - a / (b * b + 2)",
     lambda a, b: sp.sqrt(a * a + b * b + 1) * sp.sin(a) + sp.cos(b) ** 3 - a / (b * b + 2)),
    ("softplus(a - b) * erf(b) + a ** 4 * b",
     lambda a, b: sp.log(1 + sp.exp(a - b)) * sp.erf(b) + a ** 4 * b),
]


@pytest.mark.parametrize("text,reference", SCALAR_MODELS, ids=lambda x: x if isinstance(x, str) else "")
def test_hessian_of_scalar_models_equals_sympy_hessian(tmp_path, text, reference):
    model = build(tmp_path, f'a = Param("a", ())\nb = Param("b", ())\nloss = {text}\n',
                  functions=("hessian",))
    a, b = sp.symbols("a b", real=True)
    H_sym = sp.hessian(reference(a, b), (a, b))
    rng = np.random.default_rng(0)
    for _ in range(3):
        point = {"a": np.array(rng.uniform(-1.5, 1.5)), "b": np.array(rng.uniform(-1.5, 1.5))}
        _, _, H = model.hessian(point)
        want = np.array(H_sym.subs({a: float(point["a"]), b: float(point["b"])}).evalf(30), dtype=float)
        np.testing.assert_allclose(H, want, rtol=1e-11, atol=1e-12)
        assert H[0, 1] == H[1, 0] or abs(H[0, 1] - H[1, 0]) <= 1e-14 * abs(H[0, 1])


@pytest.mark.parametrize("act", ["tanh", "relu", "softplus"])
def test_hessian_equals_hvp_of_each_unit_vector(tmp_path, act):
    """hessian() computes the forward and backward once and loops over the tangent passes only: its
    columns must equal separate hvp calls (an in-place update of a loop-invariant value inside the
    loop would corrupt every later column)."""
    model = build(tmp_path, f'''
        x = Input("x", ("B", 3))
        y = Labels("y", ("B",), classes=3)
        h = {act}(linear(x, 4, name="hidden"))
        logits = linear(h, 3, name="out")
        loss = softmax_cross_entropy(logits, y) + 0.01 * sum(h * h)
    ''', functions=("hvp", "hessian"))
    params = model.init_params(0)
    inputs = runtime.random_inputs(model, batch=5, seed=1)
    loss, grads, H = model.hessian(params, **inputs)
    sizes = [p.size for p in params.values()]
    assert H.shape == (sum(sizes), sum(sizes))
    for j in range(H.shape[0]):
        e = np.zeros(sum(sizes))
        e[j] = 1
        parts = np.split(e, np.cumsum(sizes)[:-1])
        vectors = {k: part.reshape(p.shape) for (k, p), part in zip(params.items(), parts)}
        _, _, hv = model.hvp(params, vectors, **inputs)
        np.testing.assert_allclose(H[:, j], np.concatenate([hv[k].ravel() for k in params]),
                                   rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(H, H.T, rtol=1e-10, atol=1e-12)
    assert loss == model.loss(params, **inputs) or abs(loss - model.loss(params, **inputs)) < 1e-12


def test_explain_hessian_prints_the_chain_rule_example(capsys):
    from symgrad.cli import main
    assert main(["explain", os.path.join(EXAMPLES, "chain_rule.py"), "--hessian"]) == 0
    assert capsys.readouterr().out.splitlines() == ["∂²e/∂a² = 0", "∂²e/∂a∂b = 1", "∂²e/∂b² = 2"]


def test_float32_keeps_its_dtype_and_agrees_with_float64():
    path = os.path.join(EXAMPLES, "digits_mlp.py")
    m64 = runtime.load(path, functions=("hvp", "jvp", "input_grad"))
    m32 = runtime.load(path, "float32", functions=("hvp", "jvp", "input_grad"))
    params = m64.init_params(0)
    inputs = runtime.random_inputs(m64, batch=8, seed=0)
    v = {k: np.random.default_rng(2).standard_normal(p.shape) for k, p in params.items()}
    p32 = {k: p.astype(np.float32) for k, p in params.items()}
    v32 = {k: p.astype(np.float32) for k, p in v.items()}
    i32 = {k: a.astype(np.float32) if a.dtype == np.float64 else a for k, a in inputs.items()}
    hv64, hv32 = m64.hvp(params, v, **inputs)[2], m32.hvp(p32, v32, **i32)[2]
    for k in params:
        assert hv32[k].dtype == np.float32
        assert np.linalg.norm(hv32[k] - hv64[k]) <= 1e-4 * np.linalg.norm(hv64[k])
    t64 = m64.jvp(params, v, x=inputs["x"])[1]["logits"]
    t32 = m32.jvp(p32, v32, x=i32["x"])[1]["logits"]
    assert t32.dtype == np.float32 and np.linalg.norm(t32 - t64) <= 1e-4 * np.linalg.norm(t64)
    g32 = m32.input_grad(p32, **i32)[1]["x"]
    assert g32.dtype == np.float32
    assert np.linalg.norm(g32 - m64.input_grad(params, **inputs)[1]["x"]) <= 1e-4 * np.linalg.norm(g32)


# ---- the contract: readable code, clear errors, determinism --------------------------------------

def test_hvp_code_reads_as_forward_over_reverse():
    source = compiler.compile_model(os.path.join(EXAMPLES, "digits_mlp.py"), functions=("hvp", "jvp")).source
    hvp = source[source.index("def hvp("):source.index("def jvp(")]
    for text in ("# ---- tangents", "# ---- backward of the tangents", "# tangent of digits_mlp.py:7",
                 "h_dot", "d_h_dot", "d_hidden_W_dot", "_directions('hvp', 'vectors', vectors)"):
        assert text in hvp, text
    jvp = source[source.index("def jvp("):]
    assert "logits_dot" in jvp and "# ---- backward" not in jvp   # J·t reads no first-pass adjoint


def test_bad_directions_and_limits_are_refused(tmp_path):
    model = runtime.load(os.path.join(EXAMPLES, "digits_mlp.py"), functions=("hvp", "hessian"))
    params = model.init_params(0)
    inputs = runtime.random_inputs(model, batch=2)
    vectors = {k: np.zeros_like(p) for k, p in params.items()}
    del vectors["out.b"]
    with pytest.raises(ValueError, match=r"hvp: vectors must be a dict with one array per parameter"):
        model.hvp(params, vectors, **inputs)
    vectors["out.b"] = np.zeros(3)
    with pytest.raises(ValueError, match=r"vectors entry 'out.b' has shape \(3,\) but the model was compiled for \(10,\)"):
        model.hvp(params, vectors, **inputs)
    with pytest.raises(ValueError, match=r"hessian: this model has 9610 parameters.*pass limit=9610"):
        model.hessian(params, **inputs)


def test_functions_a_model_cannot_have_are_refused(tmp_path):
    path = tmp_path / "m.py"
    path.write_text('from compiler.dsl import *\na = Param("a", (3,))\nloss = sum(a * a)\n')
    with pytest.raises(compiler.ModelError, match="declares none"):
        compiler.compile_model(str(path), functions=("jvp",))
    with pytest.raises(compiler.ModelError, match="needs a float input"):
        compiler.compile_model(str(path), functions=("input_grad",))
    with pytest.raises(compiler.ModelError, match="unknown function"):
        compiler.compile_model(str(path), functions=("hvpp",))
    with pytest.raises(AttributeError, match="--with jvp"):
        Model(runtime.load(str(path)).module).jvp({}, {})


SCRIPT = ("import sys, hashlib, compiler\n"
          "for name, fns in (('digits_mlp', ('hvp', 'jvp', 'input_grad', 'hessian')),"
          " ('tiny_gpt', ('hvp', 'jvp'))):\n"
          "    src = compiler.compile_model(f'examples/{name}.py', 'float32', functions=fns,"
          " display_path=f'examples/{name}.py').source\n"
          "    print(name, hashlib.sha256(src.encode()).hexdigest())\n")


def test_second_order_code_is_byte_identical_across_hash_seeds():
    outputs = {subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True,
                              check=True, env={**os.environ, "PYTHONHASHSEED": seed}).stdout
               for seed in ("0", "1", "999")}
    assert len(outputs) == 1 and len(outputs.pop().splitlines()) == 2


# ---- minimisation --------------------------------------------------------------------------------

def sklearn_objective(x, y, C):
    from sklearn.linear_model import LogisticRegression
    sk = LogisticRegression(C=C, tol=1e-12, max_iter=10000).fit(x, y)
    W, b = sk.coef_.T, sk.intercept_
    z = x @ W + b
    z = z - z.max(axis=1, keepdims=True)
    ce = np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y])
    return ce + (W * W).sum() / (2 * C * len(y))


@pytest.mark.parametrize("method", ["lbfgs", "newton-cg", "trust-ncg"])
def test_logistic_regression_reaches_scikit_learns_optimum(method):
    from runtime.data import load_dataset
    data = load_dataset("digits")
    x, y = data.train["x"], data.train["y"]
    assert len(y) == 1437   # the N_TRAIN the model file's penalty is written for
    model = runtime.load(os.path.join(EXAMPLES, "logistic_digits.py"), functions=("hvp",))
    result = runtime.minimize(model, model.init_params(0), {"x": x, "y": y}, method=method,
                              maxiter=500, tol=1e-8)
    assert abs(result.loss - sklearn_objective(x, y, C=1.0)) <= 1e-6
    assert result.history and result.history[-1]["loss"] <= result.history[0]["loss"]
    if method != "lbfgs":
        assert result.hvps > 0 and result.iterations < 60   # Newton: few iterations


def test_train_newton_cg_from_the_command_line(tmp_path, capsys):
    from symgrad.cli import main
    out = tmp_path / "run"
    assert main(["train", os.path.join(EXAMPLES, "logistic_digits.py"), "--optimizer", "newton-cg",
                 "--epochs", "40", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "Hessian-vector products" in text and "test_acc 0.9" in text
    assert {"checkpoint.npz", "metrics.jsonl", "curves.png"} <= set(os.listdir(out))
    assert main(["eval", os.path.join(EXAMPLES, "logistic_digits.py"), "--checkpoint",
                 str(out / "checkpoint.npz")]) == 0


def test_check_with_second_order_from_the_command_line(tmp_path, capsys):
    from symgrad.cli import main
    assert main(["check", os.path.join(EXAMPLES, "neuron.py"), "--with", "hvp,jvp,input_grad,hessian",
                 "-o", str(tmp_path / "neuron.py")]) == 0
    text = capsys.readouterr().out
    assert text.count(": ok") >= 5 and "MISMATCH" not in text
    assert main(["compile", os.path.join(EXAMPLES, "neuron.py"), "--with", "hvp", "-o",
                 str(tmp_path / "n.py")]) == 0
    assert "def hvp(params, vectors, **inputs):" in (tmp_path / "n.py").read_text()
    assert main(["show", os.path.join(EXAMPLES, "neuron.py"), "--with", "jvp"]) == 0
    assert "def jvp(params, tangents, **inputs):" in capsys.readouterr().out


# ---- found in review: aliasing, sizes, names, state, resume ------------------------------------------

def test_results_never_share_memory_with_what_the_caller_passed(tmp_path):
    """`d_a_dot = b_dot` (sum(a * b)), `w_dot` returned as an output's tangent, `d_x = w`: copies."""
    model = build(tmp_path, """
        x = Input("x", ("B", 3))
        a = Param("a", (3,))
        w = Param("w", (3,))
        loss = sum(a * w) + sum(x * w)
        outputs = {"w": w + 0 * a}
    """, functions=("hvp", "jvp", "input_grad", "hessian"))
    params = {"a": np.ones(3), "w": np.arange(3.0)}
    x = np.ones((2, 3))
    vectors = {"a": np.full(3, 2.0), "w": np.full(3, 3.0)}
    arrays = list(params.values()) + list(vectors.values()) + [x]
    loss, grads, hv = model.hvp(params, vectors, x=x)
    _, dots = model.jvp(params, vectors, x=x)
    _, dx = model.input_grad(params, x=x)
    returned = list(grads.values()) + list(hv.values()) + list(dots.values()) + list(dx.values())
    for r in returned:
        assert not any(np.shares_memory(r, a) for a in arrays)
    np.testing.assert_array_equal(hv["a"], vectors["w"])
    np.testing.assert_array_equal(dx["x"], np.broadcast_to(params["w"], (2, 3)))


def test_zero_results_with_a_batch_size_are_arrays(tmp_path):
    """An output no parameter reaches has tangent 0, an input the loss ignores gradient 0: of shape
    (B, ...), which np.full must get as a tuple of numbers."""
    model = build(tmp_path, """
        x = Input("x", ("B", 3))
        z = Input("z", ("B", 2))
        w = Param("w", (3,))
        loss = sum(tanh(x @ w))
        outputs = {"y": tanh(x @ w), "s": sum(x, axis=1)}
    """, functions=("jvp", "input_grad"))
    params = {"w": np.arange(3.0)}
    x, z = np.ones((4, 3)), np.ones((4, 2))
    _, dots = model.jvp(params, {"w": np.ones(3)}, x=x)
    np.testing.assert_array_equal(dots["s"], np.zeros(4))
    _, dx = model.input_grad(params, x=x, z=z)
    np.testing.assert_array_equal(dx["z"], np.zeros((4, 2)))


def test_hessian_locals_do_not_clash_with_model_names(tmp_path):
    model = build(tmp_path, """
        x = Input("x", ("B", 2))
        H = tanh(linear(x, 3, name="column"))
        k = H * H
        entries = sum(k)
        loss = entries + sum(H)
    """, functions=("hessian",))
    params = model.init_params(0)
    inputs = runtime.random_inputs(model, batch=3)
    _, _, H = model.hessian(params, **inputs)
    assert H.shape == (9, 9) and np.allclose(H, H.T, atol=1e-12)
    assert_ok(runtime.check_hvp(model, params, inputs))


def test_full_batch_refuses_running_statistics_and_fixes_dropout(tmp_path):
    bn = build(tmp_path, """
        x = Input("x", ("B", 3))
        y = Labels("y", ("B",), classes=2)
        loss = softmax_cross_entropy(linear(batch_norm(linear(x, 4, name="h"), name="bn"), 2, name="o"), y)
    """, name="bn")
    inputs = runtime.random_inputs(bn, batch=8)
    from runtime.minimize import FullBatchError
    with pytest.raises(FullBatchError, match="running statistics"):
        runtime.minimize(bn, bn.init_params(0), inputs)
    drop = build(tmp_path, """
        x = Input("x", ("B", 3))
        y = Labels("y", ("B",), classes=2)
        loss = softmax_cross_entropy(linear(dropout(tanh(linear(x, 4, name="h")), 0.2), 2, name="o"), y)
    """, name="drop", functions=("hvp",))
    inputs = {k: v for k, v in runtime.random_inputs(drop, batch=8).items() if k != "seed"}
    result = runtime.minimize(drop, drop.init_params(0), inputs, method="newton-cg", maxiter=20)
    assert np.isfinite(result.loss) and result.loss < drop.loss(drop.init_params(0), seed=np.int64(0), **inputs)


@pytest.mark.parametrize("name", ["vectors", "tangents", "limit"])
def test_input_names_of_the_new_arguments_are_refused(tmp_path, name):
    path = tmp_path / "m.py"
    path.write_text(f'from compiler.dsl import *\nx = Input("{name}", ("B", 2))\nw = Param("w", (2,))\n'
                    "loss = sum(x @ w)\n")
    with pytest.raises(compiler.ModelError, match="is taken"):
        compiler.compile_model(str(path))


def test_full_batch_resume_counts_iterations_in_total(tmp_path, capsys):
    from symgrad.cli import main
    out = tmp_path / "run"
    model = os.path.join(EXAMPLES, "logistic_digits.py")
    assert main(["train", model, "--optimizer", "lbfgs", "--epochs", "5", "--out", str(out), "--quiet"]) == 0
    assert main(["train", model, "--optimizer", "lbfgs", "--epochs", "12", "--out", str(out), "--quiet",
                 "--resume"]) == 0
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 12 and '"epoch": 12' in lines[-1]
    assert main(["train", model, "--optimizer", "lbfgs", "--epochs", "3", "--out", str(out), "--quiet",
                 "--resume"]) == 2   # fewer than already trained: refused, as for epochs
    capsys.readouterr()


def test_load_refuses_unknown_or_missing_functions(tmp_path):
    with pytest.raises(ValueError, match="unknown function"):
        runtime.load(os.path.join(EXAMPLES, "neuron.py"), functions=("hvpp",))
    generated = tmp_path / "neuron_gen.py"
    generated.write_text(compiler.compile_model(os.path.join(EXAMPLES, "neuron.py")).source)
    with pytest.raises(ValueError, match="generated without hvp"):
        runtime.load(str(generated), functions=("hvp",))


def test_an_in_place_update_never_writes_through_a_live_view(tmp_path):
    """hvp of a strided, dilated conv2d: `d_h *= …` while `d_h.reshape(…)` was still to be read
    changed that view too (H·v of the kernel off by 1.3 relative); a buffer another live name
    shares is now never updated in place."""
    model = build(tmp_path, '''
x = Input("x", ("B", 7, 6, 2))
W = Param("W", (2,))
h = conv2d(x * W, 2, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(2, 1))
loss = sum(tanh(h))
''', functions=("hvp",))
    rng = np.random.default_rng(1)
    params = {k: v + 0.1 * rng.standard_normal(np.shape(v)) for k, v in model.init_params(0).items()}
    assert_ok(runtime.check_hvp(model, params, runtime.random_inputs(model, batch=2, seed=0), tol=1e-5))
