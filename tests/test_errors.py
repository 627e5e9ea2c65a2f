"""Bad input gets a clear message naming the file and line, the op, the shapes, and a fix."""
import os

import numpy as np
import pytest

import compiler
import runtime
from helpers import EXAMPLES, PRELUDE, error_of


def test_shape_mismatch_in_matmul_names_line_op_shapes(tmp_path):
    msg = error_of(tmp_path, 'x = Input("x", ("B", 64))\nW = Param("W", (32, 10))\nloss = sum(x @ W)\n')
    assert "bad.py:5: @: inner dimensions differ: (B, 64) @ (32, 10)" in msg
    assert "fix:" in msg


def test_silent_outer_broadcast_is_refused(tmp_path):
    msg = error_of(tmp_path, 'p = Input("p", ("B", 1))\nt = Input("t", ("B",))\nloss = sum(p - t)\n')
    assert "bad.py:5: -: silent outer broadcast to (B, B)" in msg
    assert "(B, 1) and (B,)" in msg


def test_non_scalar_loss(tmp_path):
    msg = error_of(tmp_path, 'x = Input("x", ("B", 3))\nloss = x * 2\n')
    assert "bad.py:4" in msg and "loss must be a scalar, got shape (B, 3)" in msg and "mean(" in msg


def test_python_if_on_traced_value(tmp_path):
    msg = error_of(tmp_path, 'a = Param("a", ())\nif a:\n    pass\nloss = a\n')
    assert "bad.py:4" in msg and "if/while" in msg


def test_math_exp_on_traced_value(tmp_path):
    msg = error_of(tmp_path, 'import math\na = Param("a", ())\nloss = math.exp(a)\n')
    assert "bad.py:5" in msg and "float()/math.*" in msg


def test_numpy_on_traced_value(tmp_path):
    msg = error_of(tmp_path, 'import numpy as np\na = Param("a", (2,))\nloss = sum(np.exp(a))\n')
    assert "bad.py:5" in msg and "np.exp" in msg and "symgrad's exp" in msg


def test_duplicate_name(tmp_path):
    msg = error_of(tmp_path, 'a = Param("a", ())\nb = Param("a", ())\nloss = a * b\n')
    assert "bad.py:4: Param: duplicate name 'a' (first declared on line 3)" in msg


def test_syntax_error(tmp_path):
    msg = error_of(tmp_path, 'a = Param("a", ()\nloss = a\n')
    assert "bad.py:3" in msg and "syntax error" in msg


def test_missing_loss(tmp_path):
    assert "defines no traced `loss`" in error_of(tmp_path, 'a = Param("a", ())\n')


def test_softmax_cross_entropy_class_count(tmp_path):
    msg = error_of(tmp_path, 'x = Input("x", ("B", 4))\ny = Labels("y", ("B",), classes=10)\n'
                             'loss = softmax_cross_entropy(linear(x, 3, name="l"), y)\n')
    assert "logits have 3 columns but labels 'y' have 10 classes" in msg and "bad.py:5" in msg


def test_labels_in_arithmetic(tmp_path):
    msg = error_of(tmp_path, 'y = Labels("y", ("B",), classes=3)\na = Param("a", ())\n'
                             'loss = sum(y * a)\n')
    assert "integer labels cannot enter" in msg


@pytest.fixture
def digits(tmp_path):
    source = compiler.compile_file(os.path.join(EXAMPLES, "digits_mlp.py"))
    path = tmp_path / "digits_gen.py"
    path.write_text(source)
    model = runtime.load(str(path))
    return model, model.init_params(0)


def test_module_missing_input(digits):
    model, params = digits
    with pytest.raises(ValueError, match=r"missing input 'y': pass y=<int64 array of shape \(B,\)>"):
        model.loss_and_grad(params, x=np.zeros((2, 64)))


def test_module_wrong_shape(digits):
    model, params = digits
    with pytest.raises(ValueError, match=r"input 'x' has shape \(2, 32\).*\(B, 64\) \(axis 1 must be 64\)"):
        model.loss(params, x=np.zeros((2, 32)), y=np.zeros(2, dtype=np.int64))


def test_module_inconsistent_batch(digits):
    model, params = digits
    with pytest.raises(ValueError, match="input 'y' has B=3 on axis 0, but another array has B=2"):
        model.loss(params, x=np.zeros((2, 64)), y=np.zeros(3, dtype=np.int64))


def test_module_wrong_dtype(digits):
    model, params = digits
    with pytest.raises(ValueError, match=r"input 'x' has dtype float32 but the module was compiled for "
                                         r"float64; cast with \.astype\(np\.float64\)"):
        model.forward(params, x=np.zeros((2, 64), dtype=np.float32))


def test_module_label_range_and_type(digits):
    model, params = digits
    with pytest.raises(ValueError, match=r"class indices in \[0, 10\), got values in \[0, 10\]"):
        model.loss(params, x=np.zeros((2, 64)), y=np.array([0, 10]))
    with pytest.raises(ValueError, match="must hold integers"):
        model.loss(params, x=np.zeros((2, 64)), y=np.array([0.0, 1.0]))


def test_module_missing_or_misshapen_parameter(digits):
    model, params = digits
    bad = dict(params)
    del bad["out.b"]
    with pytest.raises(ValueError, match=r"missing parameter 'out.b'"):
        model.loss(bad, x=np.zeros((2, 64)), y=np.zeros(2, dtype=np.int64))
    bad = {**params, "out.W": np.zeros((10, 128))}
    with pytest.raises(ValueError, match=r"parameter 'out.W' has shape \(10, 128\)"):
        model.loss(bad, x=np.zeros((2, 64)), y=np.zeros(2, dtype=np.int64))


def test_stale_module_is_refused(tmp_path, monkeypatch):
    model_file = tmp_path / "m.py"
    model_file.write_text(PRELUDE + 'a = Param("a", ())\nloss = a * a\n')
    out = tmp_path / "m_gen.py"
    monkeypatch.chdir(tmp_path)
    out.write_text(compiler.compile_file("m.py"))
    runtime.load(str(out))  # fresh: fine
    model_file.write_text(PRELUDE + 'a = Param("a", ())\nloss = a * a * a\n')
    with pytest.raises(runtime.StaleModuleError, match="is stale.*recompile with `symgrad compile m.py`"):
        runtime.load(str(out))


def test_cli_reports_model_error_without_traceback(tmp_path, capsys):
    from symgrad.cli import main
    path = tmp_path / "bad.py"
    path.write_text(PRELUDE + 'x = Input("x", ("B", 3))\nloss = x\n')
    assert main(["compile", str(path), "-o", str(tmp_path / "out.py")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and "loss must be a scalar" in err


CASES = {
    "if": ('a = Param("a", ())\nif a:\n    pass\nloss = a\n', 4, "Python if/while/and/or/not"),
    "while": ('a = Param("a", ())\nwhile a:\n    break\nloss = a\n', 4, "Python if/while/and/or/not"),
    "and": ('a = Param("a", ())\nb = a and a\nloss = a\n', 4, "Python if/while/and/or/not"),
    "or": ('a = Param("a", ())\nb = a or a\nloss = a\n', 4, "Python if/while/and/or/not"),
    "not": ('a = Param("a", ())\nb = not a\nloss = a\n', 4, "Python if/while/and/or/not"),
    "if on comparison": ('a = Param("a", ())\nif a > 0:\n    pass\nloss = a\n', 4,
                         "traced comparison"),
    "==": ('a = Param("a", ())\nb = a == a\nloss = a\n', 4, "== on a traced value"),
    "float()": ('a = Param("a", ())\nb = float(a)\nloss = a\n', 4, "float()/math.*"),
    "int()": ('a = Param("a", ())\nb = int(a)\nloss = a\n', 4, "int() on a traced value"),
    "math.exp": ('import math\na = Param("a", ())\nloss = math.exp(a)\n', 5, "float()/math.*"),
    "np.exp": ('import numpy as np\na = Param("a", (2,))\nloss = sum(np.exp(a))\n', 5,
               "np.exp on a traced value"),
    "np.sum": ('import numpy as np\na = Param("a", (2,))\nloss = np.sum(a)\n', 5, "np.sum"),
    "unsupported %": ('a = Param("a", ())\nloss = a % 2\n', 4, "this operator (%, //"),
    "indexing": ('a = Param("a", (3,))\nloss = a[a]\n', 4, "indexing with a tensor"),
    "shape mismatch": ('a = Param("a", (3,))\nb = Param("b", (4,))\nloss = sum(a + b)\n', 5,
                       "shapes do not broadcast"),
    "outer broadcast": ('p = Input("p", ("B", 1))\nt = Input("t", ("B",))\nloss = mean(p - t)\n', 5,
                        "silent outer broadcast"),
    "non-scalar loss": ('a = Param("a", (3,))\nloss = a * 2\n', 4, "loss must be a scalar"),
    "integer parameter": ('a = Param("a", (3,), dtype="int64")\nloss = sum(a)\n', 3,
                          "parameters are trainable floats"),
    "boolean parameter": ('a = Param("a", (), init=True)\nloss = a\n', 3, "is a boolean"),
    "symbolic parameter": ('a = Param("a", ("B",))\nloss = sum(a)\n', 3, "symbolic dimension"),
    "reserved input name": ('w = Input("workspace", ("B", 2))\nloss = mean(w)\n', 3,
                            "the input name 'workspace' is taken"),
    "duplicate": ('a = Param("a", ())\nb = Input("a", ())\nloss = a\n', 4, "duplicate name 'a'"),
    "syntax": ('a = Param("a", ()\nloss = a\n', 3, "syntax error"),
    "python error": ('a = Param("a", ())\nloss = a + undefined_name\n', 4,
                     "NameError: name 'undefined_name' is not defined"),
    "unknown init": ('a = Param("a", (2,), init="glorot")\nloss = sum(a)\n', 3, "unknown init rule"),
    "matmul": ('x = Input("x", ("B", 3))\nW = Param("W", (4, 2))\nloss = sum(x @ W)\n', 5,
               "inner dimensions differ"),
    "mse shapes": ('p = Input("p", ("B", 1))\nt = Input("t", ("B",))\nloss = mse(p, t)\n', 5,
                   "prediction and target shapes differ"),
    "where without comparison": ('a = Param("a", ())\nloss = where(a, a, 0)\n', 4,
                                 "must be a comparison"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_user_error_names_file_line_and_fix(tmp_path, case):
    body, line, needle = CASES[case]
    msg = error_of(tmp_path, body)
    assert f"bad.py:{line}" in msg, msg
    assert needle in msg, msg
    if case not in ("syntax", "python error"):
        assert "fix:" in msg, msg
