"""Run a model file under the tracer and hand back its Graph (the SymPy DAG with shapes and lines)."""
from __future__ import annotations

import ast
import contextlib
import hashlib
import io
import os
import re
import sys
import traceback

from . import hints
from .dsl import Tensor
from .dsl.recording import Recorder, recording
from .errors import ModelError, NumpyOnTracedValue
from .graph import Graph
from .shapes import fmt


def trace_file(path: str) -> Graph:
    path = os.path.abspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            source = f.read()
    except OSError as e:
        raise ModelError(f"cannot read the model file: {e.strerror}", where=path,
                         fix="check the path") from None
    return trace_source(source, path)


def run_model(code, path: str, rec: Recorder, hooks: dict | None = None) -> dict:
    """Execute a compiled model file with `rec` active (tracing, or the eager oracle) and return its
    namespace; the user's own Python errors are reported at their line, not ours."""
    namespace = {"__name__": "__symgrad_model__", "__file__": path, **(hooks or {})}
    with recording(rec):
        try:
            exec(code, namespace)
        except NumpyOnTracedValue as e:  # the fix names the model language's own function
            raise ModelError(e.problem, op=e.op, where=e.where, shapes=e.shapes,
                             fix=hints.numpy_fix(e.function)) from None
        except ModelError:
            raise
        except Exception as e:  # the user's own Python failed: point at their line, not ours
            line = next((fr.lineno for fr in reversed(traceback.extract_tb(e.__traceback__))
                         if fr.filename == path), 0)
            guess = suggestion(e)
            raise ModelError(describe(e, guess), where=f"{path}:{line}", fix=fix_for(e, guess)) from None
    return namespace


LOCALS_HOOK = "__symgrad_locals__"


class _ReportLocals(ast.NodeTransformer):
    """Each function of the model file reports its local tensors when it returns (a try/finally
    around its body), so `scores = q @ k.T` inside `def attention(...)` names its value in the
    generated code as it does at the top level. Lines and behaviour are unchanged."""

    def visit_FunctionDef(self, node):
        self.generic_visit(node)
        a = node.args
        params = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs] + \
            [p.arg for p in (a.vararg, a.kwarg) if p is not None]
        report = ast.Expr(ast.Call(ast.Name(LOCALS_HOOK, ast.Load()),
                                   [ast.Call(ast.Name("locals", ast.Load()), [], []),
                                    ast.Constant(tuple(params))], []))
        node.body = [ast.Try(body=node.body, handlers=[], orelse=[], finalbody=[report])]
        ast.fix_missing_locations(ast.increment_lineno(node, 0))
        return node


def _name_locals(rec: Recorder):
    """The hook: a function's own tensors (not its parameters) are named after their variables,
    prefixed by the function's `name` argument when it has one (`block1.attn.scores`)."""
    def report(local_vars: dict, params: tuple):
        prefix = local_vars.get("name")
        for var, value in local_vars.items():
            if var in params or var.startswith("_") or not isinstance(value, Tensor) or value.expr.is_Atom:
                continue
            rec.hints.setdefault(value.expr, f"{prefix}.{var}" if isinstance(prefix, str) else var)
    return report


def trace_source(source: str, path: str) -> Graph:
    try:
        tree = _ReportLocals().visit(ast.parse(source, path))
        code = compile(tree, path, "exec")
    except SyntaxError as e:
        raise ModelError(f"syntax error: {e.msg}", where=f"{path}:{e.lineno}",
                         fix="fix the Python syntax of the model file") from None
    rec = Recorder(path=path)
    namespace = run_model(code, path, rec, {LOCALS_HOOK: _name_locals(rec)})

    loss = namespace.get("loss")
    if not isinstance(loss, Tensor):
        raise ModelError("the model file defines no traced `loss`", where=path,
                         fix="assign the scalar loss to a variable named `loss`, "
                             "e.g. loss = softmax_cross_entropy(logits, y)")
    if loss.shape != ():
        line = rec.lines.get(loss.expr, 0)
        raise ModelError(f"the loss must be a scalar, got shape {fmt(loss.shape)}",
                         where=f"{path}:{line}", op="loss",
                         fix="reduce it with mean(...) or sum(...)")
    outputs = namespace.get("outputs", {})
    if not isinstance(outputs, dict) or not all(isinstance(k, str) and isinstance(v, Tensor)
                                                for k, v in outputs.items()):
        raise ModelError("`outputs` must be a dict of name -> traced tensor", where=path,
                         fix='e.g. outputs = {"logits": logits}')
    user_names: dict = {}
    for name, value in sorted(namespace.items()):
        if isinstance(value, Tensor) and not value.expr.is_Atom and not name.startswith("_"):
            user_names.setdefault(value.expr, name)
    rec.hints.update(user_names)  # the user's own names win over layer names
    for name in rec.pending_init:  # linear layers with no activation after them: identity
        weight = rec.leaves[rec.pending_init[name][0]]
        if weight.init == "auto":
            rec.leaves[weight.name] = type(weight)(**{**weight.__dict__, "init": "xavier_normal"})
    return Graph(path=path, source=source, sha256=hashlib.sha256(source.encode()).hexdigest(),
                 leaves=rec.leaves, loss=loss.expr,
                 outputs={k: (v.expr, v.shape) for k, v in outputs.items()},
                 shapes=rec.shapes, lines=rec.lines, hints=rec.hints, eval_subs=rec.eval_subs,
                 state_updates=dict(rec.state_updates))


def describe(e: BaseException, guess: str | None = None) -> str:
    """`Type: message`, and for a misspelt name Python's own "Did you mean: 'relu'?"."""
    text = f"{type(e).__name__}: {e}"
    if guess and "Did you mean" not in text:
        text += f". Did you mean: {guess!r}?"
    return text


def suggestion(e: BaseException) -> str | None:
    """The name Python would suggest for a NameError or AttributeError, or None.

    Python computes the suggestion only while it formats the exception with its traceback (the
    names visible in the failing frame): the traceback module does it from 3.12, the interpreter's
    own display (sys.__excepthook__) from 3.10, so 3.11 needs the latter."""
    if not isinstance(e, (NameError, AttributeError)) or getattr(e, "name", None) is None:
        return None
    texts = ["".join(traceback.TracebackException.from_exception(e).format_exception_only())]
    if "Did you mean" not in texts[0]:
        shown = io.StringIO()  # (sys.stderr is swapped for this one call, on the error path only)
        with contextlib.redirect_stderr(shown):
            sys.__excepthook__(type(e), e, e.__traceback__)
        texts.append(shown.getvalue())
    for text in texts:
        if m := re.search(r"Did you mean: '([^']+)'\?", text):
            return m.group(1)
    return None


def fix_for(e: BaseException, guess: str | None = None) -> str:
    if isinstance(e, NameError) and not (guess and hints.exists(guess)):
        return hints.unknown_name_fix(getattr(e, "name", None))
    if guess:
        return "check the spelling"
    return "the model file raised this while being traced"
