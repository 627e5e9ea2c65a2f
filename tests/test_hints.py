"""Every fix hint names only things that exist: compiler.dsl functions and CLI flags the parser accepts.

Hints are collected two ways:
  * statically, from the source of compiler/**/*.py, runtime/*.py, the generated module (which is what
    compiler/templates/module.py.j2 turns into) and the raw template text: `fix=` arguments and
    messages (the arguments of `SomethingError(...)`, `error(...)`, `log(...)`, `print(...)`), and
    in them backticked names and commands, `NAME(...)` calls, "use a/b/c" lists and `--flags`;
  * dynamically, by triggering the refusals whose text is computed (NumPy functions on traced
    values, unknown names in a model file, arrays of the wrong dtype given to a generated module).
"""
from __future__ import annotations

import argparse
import ast
import builtins
import glob
import importlib
import os
import re
import shlex

import numpy as np
import pytest

import compiler
import compiler.dsl as dsl
from compiler import ModelError, hints
from symgrad.cli import build_parser
from helpers import PRELUDE, ROOT

PLACEHOLDER = "{…}"  # what an f-string's {expression} becomes in the collected text

# Backticked names that are not compiler.dsl functions, and why. A new backticked name must be
# exported by compiler.dsl or be listed here on purpose.
NOT_DSL = {
    "loss": "the variable a model file assigns and trace.py reads",
    "outputs": "the dict a model file assigns and trace.py reads",
    "dot": "the graphviz program",
    "name.W": "a parameter name created by linear()",
    "name.b": "a parameter name created by linear()",
}

# Hints whose computed text is known to be wrong, and reported to the file's owner. An entry whose
# hint has been fixed no longer matches anything and can be deleted.
KNOWN_BAD_DYNAMIC: dict = {}  # dtype -> reason, for a hint known to be wrong (none now)


# ---------------------------------------------------------------------------------------------
# Collecting hint texts


def _text(node) -> list[str]:
    """The text(s) a string expression can produce, with {expressions} as PLACEHOLDER."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            else:
                parts.append(PLACEHOLDER)
        return ["".join(parts)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return [a + b for a in _text(node.left) for b in _text(node.right)]
    if isinstance(node, ast.IfExp):
        return _text(node.body) + _text(node.orelse)
    return []


def _call_name(node: ast.Call) -> str:
    f = node.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


MESSAGE_CALLS = re.compile(r"(Error|Exception|Warning)$|^(error|log|warn|print)$")


def hints_in_python(source: str, where: str) -> list[tuple[str, str, str]]:
    """(where, kind, text) for every fix= argument and every error/log message in the source."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        line = f"{where}:{node.lineno}"
        for kw in node.keywords:
            if kw.arg == "fix":
                found += [(line, "fix", t) for t in _text(kw.value)]
        name = _call_name(node)
        if name == "_refuse" and len(node.args) >= 2:
            found += [(line, "fix", t) for t in _text(node.args[1])]
        elif MESSAGE_CALLS.search(name):
            found += [(line, "message", t) for arg in node.args for t in _text(arg)]
    return found


def hints_in_template(path: str) -> list[tuple[str, str, str]]:
    """The raw text of a Jinja template, line by line: its `--flags` and `symgrad ...` commands
    (its backticked names are mostly documentation of the generated module, not hints)."""
    rel = os.path.relpath(path, ROOT)
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    return [(f"{rel}:{i}", "template", re.sub(r"\{[^{}]*\}", PLACEHOLDER, text))
            for i, text in enumerate(lines, 1) if "--" in text or "`" in text or "fix:" in text]


TEMPLATE_MODEL = """
x = Input("x", ("B", 6))
y = Labels("y", ("B",), classes=3)
h = dropout(batch_norm(relu(linear(x, 8, name="hidden")), name="bn"), 0.1)
logits = linear(h, 3, name="out")
loss = softmax_cross_entropy(logits, y)
outputs = {"logits": logits}
"""


def _generated_source(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("hints") / "template_model.py"
    path.write_text(PRELUDE + TEMPLATE_MODEL)
    return compiler.compile_file(str(path))


def static_hints(generated: str) -> list[tuple[str, str, str]]:
    found = []
    for path in sorted(glob.glob(os.path.join(ROOT, "compiler", "**", "*.py"), recursive=True)
                       + glob.glob(os.path.join(ROOT, "runtime", "*.py"))
                       + glob.glob(os.path.join(ROOT, "symgrad", "*.py"))):
        with open(path, encoding="utf-8") as f:
            found += hints_in_python(f.read(), os.path.relpath(path, ROOT))
    found += hints_in_python(generated, "generated module (module.py.j2)")
    for path in sorted(glob.glob(os.path.join(ROOT, "compiler", "**", "templates", "*.j2"), recursive=True)):
        found += hints_in_template(path)
    return found


# ---------------------------------------------------------------------------------------------
# What a hint names


BACKTICKS = re.compile(r"`([^`]+)`")
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)(?:[ =]((?:\{…\}|[^\s`'\"(),;])+))?")
CALL = re.compile(r"(?<![\w.{])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\((?!s\))")
SYMGRADS = re.compile(r"symgrad's ((?:\w+)(?:, \w+)*)")
SLASHES = re.compile(r"\buse ((?:\w+)(?:/\w+)+)")
SNAKE = re.compile(r"(?<![\w.])([a-z]+(?:_[a-z0-9]+)+)(?![\w.(])")
NEGATED = re.compile(r"\bsymgrad has no [\w.]+")
QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def names_in(text: str, kind: str) -> set[str]:
    """Functions a hint tells the user to call."""
    text = BACKTICKS.sub(" ", text)
    text = QUOTED.sub(" ", text)   # 'he_normal', 'hidden.W': init rules and example names
    text = text.replace(PLACEHOLDER, " ")
    text = NEGATED.sub(" ", text)  # "symgrad has no fft": named as missing, on purpose
    names = set(CALL.findall(text))
    for group in SYMGRADS.findall(text):
        names.update(group.split(", "))
    if kind == "fix":
        for group in SLASHES.findall(text):
            names.update(group.split("/"))
        names.update(SNAKE.findall(text))
    return names


def resolve(name: str) -> bool:
    """A bare name is a compiler.dsl export (or a Python builtin); a dotted one must import."""
    if "." not in name:
        return name in dsl.__all__ or hasattr(builtins, name)
    module, _, attr = name.rpartition(".")
    try:
        return hasattr(importlib.import_module(module), attr)
    except ImportError:
        return False


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


# Words that follow a flag in a sentence ("--epochs is the total") rather than being its value.
PROSE = {"is", "are", "takes", "and", "or", "to", "the", "a", "an", "with", "of", "on", "in", "for",
         "as", "if", "when", "too", "also", "only", "then", "was", "must", "can"}


def value_problem(action: argparse.Action, value: str | None) -> str | None:
    """None if `action` takes `value` (or takes none, or the value is computed or prose)."""
    if action.nargs == 0 or value is None or PLACEHOLDER in value or value in PROSE:
        return None
    if action.choices is not None:
        return None if value in action.choices else f"not one of {sorted(action.choices)}"
    try:
        (action.type or str)(value)
    except (TypeError, ValueError, argparse.ArgumentTypeError):
        return None if value.isalpha() else f"not a valid {getattr(action.type, '__name__', '')}"
    return None


def flag_problem(flag: str, value: str | None, subcommand: str | None = None) -> str | None:
    """None if some subcommand (or the given one) accepts `flag` with `value`."""
    subs = subcommands()
    complaints = []
    for name, sub in subs.items():
        if subcommand not in (None, name):
            continue
        for action in sub._actions:
            if flag in action.option_strings:
                complaint = value_problem(action, value)
                if complaint is None:
                    return None
                complaints.append(f"symgrad {name} {flag} {value}: {complaint}")
    where = f"symgrad {subcommand}" if subcommand else "no symgrad subcommand"
    return "; ".join(complaints) or f"{where} has the option {flag}"


def command_problem(command: str) -> str | None:
    """None if `symgrad SUB [--flag value ...]` names a subcommand and options it accepts
    (arguments a hint leaves out, such as the model file, are not required)."""
    argv = shlex.split(command.replace(PLACEHOLDER, "X"))[1:]
    if not argv:
        return None
    if argv[0] == "bench":
        return None  # the benchmark suite parses its own options
    if argv[0] not in subcommands():
        return f"symgrad has no subcommand {argv[0]!r}"
    for i, token in enumerate(argv[1:], 1):
        if token.startswith("-"):
            flag, _, value = token.partition("=")
            if not value and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                value = argv[i + 1]
            if complaint := flag_problem(flag, value or None, argv[0]):
                return complaint
    return None


def problems(text: str, kind: str) -> list[str]:
    """What is wrong with one hint: the names and flags in it that do not exist."""
    out = []
    for name in sorted(names_in(text, kind)):
        if not resolve(name):
            out.append(f"names {name!r}, which compiler.dsl does not export")
    for quoted in BACKTICKS.findall(text):
        quoted = quoted.strip()
        if quoted.startswith("symgrad "):
            if complaint := command_problem(quoted):
                out.append(f"`{quoted}`: {complaint}")
        elif kind != "template" and re.fullmatch(r"[A-Za-z_][\w.]*", quoted):
            if quoted not in NOT_DSL and not resolve(quoted):
                out.append(f"names `{quoted}`, which compiler.dsl does not export")
    for flag, value in FLAG.findall(BACKTICKS.sub(" ", text)):
        if complaint := flag_problem(flag, value or None):
            out.append(f"names {flag} {value}: {complaint}")
    return out


# ---------------------------------------------------------------------------------------------
# The checks themselves


def test_the_checker_catches_hints_that_name_missing_things():
    """The checks below can fail: the hint this file was written against is refused."""
    assert problems("use symgrad's fft from compiler.dsl", "fix")
    assert problems("use symgrad's cumsum, exp", "fix")
    assert problems("write cumsum(x)", "fix")
    assert problems("use arctan2/arccos instead", "fix")
    assert problems("recompile with --dtype int64", "message")
    assert problems("recompile with `symgrad compile model.py --dtype float16`", "message")
    assert problems("continue with --restart", "message")
    assert problems("pass --epochs 1.5", "message")
    assert problems("run `symgrad evaluate`", "message")
    assert problems("run `symgrad show --latex`", "message")  # explain has it, show does not
    assert not problems("--epochs is the total; continue with --resume or `symgrad eval`", "message")
    assert problems("use `fft` here", "fix")
    assert problems("symgrad has no fft; use fft_abs", "fix")
    assert not problems("symgrad has no fft op; use exp", "fix")
    assert not problems("use symgrad's exp from compiler.dsl; reduce with mean(...)", "fix")
    assert not problems("recompile with --dtype float32 or `symgrad compile {…} --dtype float64`",
                        "message")


def test_hints_are_found(tmp_path_factory):
    """The scan sees the hints it is meant to check (guards against a scanner that finds nothing)."""
    found = static_hints(_generated_source(tmp_path_factory))
    texts = " ".join(t for _, _, t in found)
    assert len([h for h in found if h[1] == "fix"]) > 40
    assert "where(a > b, x, y)" in texts and "--resume" in texts and "symgrad compile" in texts
    assert "--dtype" in texts  # the generated module's dtype hint


def test_every_static_hint_names_only_what_exists(tmp_path_factory):
    bad = [f"{where}: {p}\n    {text!r}" for where, kind, text in static_hints(
        _generated_source(tmp_path_factory)) for p in problems(text, kind)]
    assert not bad, "hints that name things that do not exist:\n" + "\n".join(bad)


NUMPY_CALLS = ["np.exp(x)", "np.sin(x)", "np.fft.fft(x)", "np.cumsum(x)", "np.sum(x)",
               "np.maximum(x, x)", "np.tanh(x)", "np.log(x)", "np.sqrt(x)", "np.abs(x)",
               "np.absolute(x)", "np.max(x)", "np.amax(x)", "np.mean(x)", "np.std(x)",
               "np.clip(x, 0, 1)", "np.power(x, 2)", "np.square(x)", "np.add(x, x)", "np.dot(x, x)",
               "np.matmul(x, x)", "np.where(x, x, x)", "np.concatenate([x, x])", "np.sort(x)",
               "np.linalg.norm(x)", "np.log1p(x)", "np.expm1(x)", "np.arctan(x)", "np.array(x)",
               "np.transpose(x)", "np.reshape(x, (3, 1))", "np.einsum('i,i->', x, x)"]


def refusal(tmp_path, body: str) -> ModelError:
    path = tmp_path / "model.py"
    path.write_text(PRELUDE + "import numpy as np\n" + body)
    with pytest.raises(ModelError) as info:
        compiler.compile_file(str(path))
    return info.value


@pytest.mark.parametrize("call", NUMPY_CALLS)
def test_numpy_refusal_names_only_what_exists(tmp_path, call):
    error = refusal(tmp_path, f'x = Param("x", (3,))\nloss = sum({call})\n')
    assert error.fix, str(error)
    assert not problems(error.fix, "fix"), f"{call}: {error.fix}"
    assert not problems(error.problem, "message"), f"{call}: {error.problem}"


def test_numpy_refusal_for_an_op_symgrad_lacks_lists_what_exists(tmp_path):
    fix = refusal(tmp_path, 'x = Param("x", (3,))\nloss = sum(np.fft.fft(x))\n').fix
    assert "symgrad has no fft" in fix and "symgrad's fft" not in fix
    for name in ("exp", "tanh", "relu", "sum", "mean"):  # what to use instead
        assert re.search(rf"\b{name}\b", fix)
    fix = refusal(tmp_path, 'x = Param("x", (3,))\nloss = sum(np.exp(x))\n').fix
    assert "use symgrad's exp from compiler.dsl" in fix


def test_numpy_fix_follows_the_exports(monkeypatch):
    """The check is made when the hint is written: a new export is named, a removed one is not."""
    assert "symgrad has no cumsum" in hints.numpy_fix("cumsum")
    monkeypatch.setattr(dsl, "__all__", dsl.__all__ + ["cumsum"])
    assert "use symgrad's cumsum" in hints.numpy_fix("cumsum")
    monkeypatch.setattr(dsl, "__all__", [n for n in dsl.__all__ if n not in ("cumsum", "tanh")])
    assert "symgrad has no tanh" in hints.numpy_fix("tanh")
    assert "tanh" not in hints.available().split(";")[0]


def test_every_listed_alternative_exists():
    listed = set(hints.elementwise_functions()) | set(hints.reductions())
    assert {"exp", "log", "tanh", "relu", "sqrt", "maximum", "sum", "mean", "amax"} <= listed
    assert listed <= set(dsl.__all__)


# ---- unknown names in a model file keep Python's suggestion ---------------------------------

def test_name_error_keeps_did_you_mean(tmp_path):
    error = refusal(tmp_path, 'x = Input("x", ("B", 3))\nloss = mean(relux(x))\n')
    assert "NameError" in error.problem and "relux" in error.problem
    assert "Did you mean" in error.problem and "'relu'" in error.problem
    assert error.where.endswith("model.py:5")  # the prelude's three lines, then the model's
    assert not problems(error.fix, "fix"), error.fix


def test_attribute_error_keeps_did_you_mean(tmp_path):
    error = refusal(tmp_path, 'x = Input("x", ("B", 3))\nloss = mean(np.exq(x))\n')
    assert "AttributeError" in error.problem and "Did you mean" in error.problem
    assert "'exp'" in error.problem


def test_name_error_without_a_close_match_lists_what_exists(tmp_path):
    error = refusal(tmp_path, 'x = Input("x", ("B", 3))\nloss = mean(cumsum_all(x))\n')
    assert "NameError" in error.problem and "cumsum_all" in error.problem
    assert "symgrad has no cumsum_all" in error.fix and "relu" in error.fix
    assert not problems(error.fix, "fix"), error.fix


# ---- the generated module's dtype hint -------------------------------------------------------

@pytest.fixture(scope="module")
def float_module(tmp_path_factory):
    from helpers import build
    return build(tmp_path_factory.mktemp("dtype"), """
        x = Input("x", ("B", 3))
        w = Param("w", (3,))
        loss = mean(x * w)
    """)


@pytest.mark.parametrize("dtype", ["float32", "float16", "int32"])
def test_wrong_dtype_hint_names_a_dtype_the_cli_accepts(float_module, dtype, request):
    if dtype in KNOWN_BAD_DYNAMIC:
        request.applymarker(pytest.mark.xfail(reason=KNOWN_BAD_DYNAMIC[dtype], strict=False))
    params = float_module.init_params(0)
    with pytest.raises(Exception) as info:
        float_module.loss(params, x=np.ones((2, 3), dtype=dtype))
    message = str(info.value)
    assert type(info.value).__name__ == "InputError" and f"has dtype {dtype}" in message, message
    assert not problems(message, "message"), message
