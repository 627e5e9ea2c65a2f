"""The numba backend (compile --backend numba): NumPy's module with its elementwise chains fused into
compiled loops and, for small shapes, the whole step compiled as one function. Every example's
loss, gradients and outputs equal the NumPy module's (itself checked against the eager oracle and
central differences elsewhere) on both paths, every registry op's too (with H·v), and the runtime
trains with it. (tests/conftest.py compiles kernels at NUMBA_OPT=0: the numbers are the same,
without fastmath LLVM may not reorder floating-point arithmetic, and compiling is twice as fast.)"""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import compiler
import runtime
from helpers import EXAMPLES, ROOT
from test_backends import (CHECKED, NAMES, SECOND_ORDER, TOLERANCE, agree, case, module_of, op_agrees,
                           second_order_agrees)

numba = pytest.importorskip("numba")


def forward_inputs(module, inputs: dict) -> dict:
    """The inputs forward takes (the labels only the loss reads left out)."""
    return {k: v for k, v in inputs.items() if f"    {k}:" in module.forward.__doc__}


def whole_step_limit(source: str) -> int | None:
    """The batch up to which loss_and_grad runs as one compiled function (None: it never does)."""
    found = re.search(r"^    if B <= (\d+):  # small shapes", source, re.M)
    return int(found.group(1)) if found else None


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", NAMES)
def test_every_example_equals_numpy(name, dtype):
    """Loss, gradients and forward outputs, at a batch of 3 (the whole step where the module has
    one) and, where it has one, above its limit (the fused body: kernels between NumPy's calls)."""
    path = os.path.join(EXAMPLES, f"{name}.py")
    reference, params, inputs = case(path, dtype)
    module = module_of(path, "numba", dtype)
    batches = [inputs]
    limit = whole_step_limit(compiler.compile_model(path, dtype, backend="numba").source)
    if limit is not None and dtype == "float64":
        batches.append(runtime.random_inputs(reference, batch=limit + 1, seed=1))
    for batch in batches:
        want_loss, want = reference.loss_and_grad(params, **batch)[:2]
        loss, grads = module.loss_and_grad(params, **batch)[:2]
        assert type(loss) is type(want_loss) and all(g.dtype == np.dtype(dtype) for g in grads.values())
        agree({"loss": loss, **grads}, {"loss": want_loss, **want}, TOLERANCE[dtype], name)
        assert abs(module.loss(params, **batch) - want_loss) <= TOLERANCE[dtype] * max(1, abs(want_loss))
        agree(module.forward(params, **forward_inputs(module, batch)),
              reference.forward(params, **forward_inputs(module, batch)), TOLERANCE[dtype], "forward")


@pytest.mark.parametrize("name", ["digits_mlp", "logistic_digits", "lenet_mnist5k"])
def test_second_order_functions_equal_numpy(name):
    second_order_agrees(name, "numba", SECOND_ORDER.get(name, ("hvp", "input_grad")))


@pytest.mark.parametrize("rule", CHECKED, ids=lambda r: getattr(r.head, "__name__", str(r.head)))
def test_every_op_equals_numpy(tmp_path, rule):
    """Each registry op's check loss, gradient and H·v (the fused body), and its loss_and_grad (the
    whole step where it has one): each op's scalar form inside a loop (its `_numbacode`, or its
    NumPy form on one element), each structural op between the loops."""
    model, want, params, inputs = op_agrees(tmp_path, rule, "numba")
    loss, grads = model.loss_and_grad(params, **inputs)
    agree({"loss": loss, **grads}, {"loss": want[0], **want[1]}, 1e-12, "loss_and_grad")


def test_the_loops_fuse_what_the_issue_names():
    """Forward: bias + ReLU in one pass; backward: the ReLU mask and the bias gradient's column sum
    in one pass, the softmax cross-entropy's backward in one; matrix products through NumPy/BLAS;
    the small-shape step compiled whole."""
    source = compiler.compile_model(os.path.join(EXAMPLES, "digits_mlp.py"), backend="numba").source
    kernels = {m.group(1): m.group(2) for m in re.finditer(
        r"^def (_fused_\w+)\((?:.|\n)*?\n((?:    .*\n|\n)*?)    return", source, re.M)}
    def kernel_with(*texts):
        found = [body for body in kernels.values() if all(t in body for t in texts)]
        assert len(found) == 1, (texts, list(kernels))
        return found[0]
    forward = kernel_with("x_mm[i, j] + hidden_b[j]", "np.maximum(hidden_pre, 0)")
    assert forward.count("for j in range(128)") == 1
    backward = kernel_with("d_h[i, j]*(hidden_pre[i, j] > 0)", "d_hidden_b[j] += d_hidden_pre_")
    assert backward.count("for i in range(B)") == 1
    softmax = kernel_with("DTYPE(y[i] == j)/B", "d_out_b[j] +=")
    assert "np.exp" not in softmax   # the backward reuses the forward's exponentials
    assert "x_mm = x @ hidden_W" in source and "d_hidden_W = x.T @ d_hidden_pre" in source
    assert re.search(r"if B <= \d+:  # small shapes: the whole step in one compiled call\n"
                     r"        .* = _loss_and_grad_step\(x, y, hidden_W, hidden_b, out_W, out_b, B\)", source)
    assert source.count('@numba.njit(cache=_CACHE, error_model="numpy")') == len(kernels) + 4   # _labels_ok, 3 steps


def test_a_wide_layers_tanh_stays_numpy_and_a_small_ones_is_fused():
    """exp/tanh cost a libm call per element in a loop and are vectorised by NumPy: a loop computes
    them only on small per-sample widths (the tiny net's 8 sigmoids, 10 logits' exponentials)."""
    wide = compiler.compile_model(os.path.join(EXAMPLES, "deep_tanh.py"), backend="numba").source
    assert re.search(r"^    layer1 = np\.tanh\(layer1_pre\)", wide, re.M)
    tiny = compiler.compile_model(os.path.join(ROOT, "benchmarks", "models", "tiny_sigmoid.py"),
                                  backend="numba").source
    assert "            h[i, j] = 0.5*np.tanh(0.5*hidden_pre) + 0.5  # (B, 8)" in tiny


def test_checks_and_messages_are_numpys():
    path = os.path.join(EXAMPLES, "digits_mlp.py")
    module = module_of(path, "numba")
    model = runtime.load(path)
    params = model.init_params(0)
    x, y = np.zeros((4, 64)), np.array([0, 1, 2, 10])
    with pytest.raises(module.InputError, match=r"input 'y' must be class indices in \[0, 10\), got values in \[0, 10\]"):
        module.loss_and_grad(params, x=x, y=y)
    with pytest.raises(module.InputError, match=r"dtype float32 .* cast with .astype\(np.float64\)"):
        module.loss_and_grad(params, x=x.astype(np.float32), y=y % 10)
    with pytest.raises(module.InputError, match=r"must be a NumPy array, got list"):
        module.loss_and_grad(params, x=x.tolist(), y=y % 10)


def test_kernels_are_cached_on_disk_beside_the_module(tmp_path):
    """`cache=True`: a second process loads the compiled kernels instead of compiling them."""
    path = os.path.join(EXAMPLES, "digits_mlp.py")
    code = ("import time, runtime, numpy as np\n"
            f"m = runtime.load({path!r}, backend='numba')\n"
            "p = m.init_params(0); t = time.perf_counter()\n"
            "m.loss_and_grad(p, x=np.ones((4, 64)), y=np.arange(4))\n"
            "print(m.module.__file__)")
    env = {**{k: v for k, v in os.environ.items() if k != "NUMBA_OPT"}, "SYMGRAD_CACHE": str(tmp_path)}
    # (as users run it: unoptimised code calls BLAS through pointers numba cannot cache)
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    assert first.returncode == 0, first.stderr
    folder = os.path.join(os.path.dirname(first.stdout.strip()), "__pycache__")
    index = [f for f in os.listdir(folder) if f.endswith(".nbi")]
    assert any("_loss_and_grad_step" in f for f in index), index
    data = {f: os.path.getmtime(os.path.join(folder, f)) for f in os.listdir(folder) if f.endswith(".nbc")}
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    assert again.returncode == 0, again.stderr
    assert {f: os.path.getmtime(os.path.join(folder, f)) for f in data} == data   # loaded, not rewritten


REVIEW_CASES = {   # found by a review of the backend: name -> (model text, what the input holds)
    # a division by zero is inf or nan, as in NumPy (error_model="numpy"), not ZeroDivisionError
    "zero_division": ('x = Input("x", ("B", 4)); w = Param("w", (4,))\nz = w / x\n'
                      'loss = sum(relu(z)); outputs = {"z": z}\n', "zero"),
    # amax propagates NaN, as np.max does (Python's max dropped it)
    "max_of_nan": ('x = Input("x", ("B", 4)); w = Param("w", (4,))\nz = amax(x * w, axis=1)\n'
                   'loss = sum(z * z); outputs = {"z": z}\n', "nan"),
    # values named like a loop index or like an element kept in a register
    "value_named_i": ('x = Input("x", ("B", 4)); w = Param("w", (4,))\ni = tanh(x * w); c = tanh(i + x) * i\n'
                      'loss = sum(c * x); outputs = {"i": i, "c": c}\n', ""),
    "value_named_a_": ('x = Input("x", ("B", 4)); w = Param("w", (4,))\na = tanh(x * w); a_ = tanh(a + x)\n'
                       'c = tanh(a * a_) + sigmoid(a_ * x) + a\nloss = sum(c * x); outputs = {"a": a, "c": c}\n', ""),
    # a symbolic size named like a loop index
    "size_named_i": ('x = Input("x", ("i", 4)); y = Labels("y", ("i",), classes=4); w = Param("w", (4,))\n'
                     'loss = softmax_cross_entropy(x * w, y); outputs = {"z": x * w}\n', "labels"),
    # labels of rank 2 (the NumPy module's fast check indexed its argmax as a row)
    "labels_of_rank_2": ('x = Input("x", ("B", 5, 3)); y = Labels("y", ("B", 5), classes=3)\n'
                         'w = Param("w", (3,))\nloss = softmax_cross_entropy(x * w, y); outputs = {"z": x * w}\n',
                         "labels2d"),
}


@pytest.mark.parametrize("name", sorted(REVIEW_CASES))
def test_review_cases_equal_numpy(tmp_path, name):
    text, kind = REVIEW_CASES[name]
    path = tmp_path / "model.py"
    path.write_text("from compiler.dsl import *\n" + text)
    reference = runtime.load(str(path))
    params = {k: v + 0.3 for k, v in reference.init_params(0).items()}
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 5, 3) if kind == "labels2d" else (4, 4))
    inputs = {"x": x}
    if kind == "zero":
        x[0, 1] = 0
    elif kind == "nan":
        x[0, 1] = np.nan
    elif kind == "labels":
        inputs["y"] = rng.integers(0, 4, 4)
    elif kind == "labels2d":
        inputs["y"] = np.array([[2, 0, 0, 0, 0]] + [[0] * 5] * 3)
    module = module_of(str(path), "numba")
    with np.errstate(all="ignore"):
        loss, grads = module.loss_and_grad(params, **inputs)
        want_loss, want = reference.loss_and_grad(params, **inputs)
        forward = {k: v for k, v in inputs.items() if k != "y"}
        got_out, want_out = module.forward(params, **forward), reference.forward(params, **forward)
    for got, ref in (({"loss": loss, **grads}, {"loss": want_loss, **want}), (got_out, want_out)):
        for k in ref:
            np.testing.assert_allclose(got[k], ref[k], rtol=1e-12, atol=1e-14, equal_nan=True, err_msg=k)
