"""Shared test helpers: compile model text into a module and load it with the runtime."""
from __future__ import annotations

import os
import textwrap

import numpy as np

import compiler
import runtime
from compiler.eager import Oracle

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
PRELUDE = "from compiler.dsl import *\nimport compiler.ops as P\n"


def build(tmp_path, body: str, dtype: str = "float64", name: str = "model", functions=()):
    """Write a model file, compile it (with the extra `functions`), write the module next to it and
    load it."""
    model_file = tmp_path / f"{name}.py"
    model_file.write_text(PRELUDE + textwrap.dedent(body))
    source = compiler.compile_model(str(model_file), dtype, functions=functions).source
    module_file = tmp_path / f"{name}_{dtype}_gen.py"
    module_file.write_text(source)
    model = runtime.load(str(module_file))
    model.oracle = Oracle(str(model_file))  # the independent forward the checks difference
    return model


def central_difference(model, params, inputs, eps=1e-6):
    """(L(θ + ε) − L(θ − ε)) / 2ε for every element of every parameter (the runtime's own routine),
    of the eager oracle's loss where the model has one: never of the generated loss under test."""
    from runtime.gradcheck import numeric_gradient
    oracle = getattr(model, "oracle", None)
    reference = oracle.loss if oracle is not None else None
    params = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    return {name: numeric_gradient(model, params, inputs, name, eps, list(np.ndindex(theta.shape)),
                                   reference).reshape(theta.shape)
            for name, theta in params.items()}


def assert_forward_matches_oracle(model, params, inputs, rtol=1e-12, text=""):
    """The generated loss equals the eager oracle's (float64; only the rounding order differs).
    The absolute part allows for cancellation: rounding of the terms, not of their sum."""
    got = float(model.loss(params, **inputs))
    want = model.oracle.loss(params, inputs)
    scale = max(abs(want), 1.0)
    assert abs(got - want) <= rtol * scale, f"loss {got!r} != oracle {want!r}\n{text}"


def relative_error(a, b, floor=1e-8) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), floor))


def check_model_text(check):
    """The model file a registry rule's `Check` describes: its parameters, labels and loss."""
    lines = [f'{name} = Param("{name}", {shape})' for name, (shape, _) in check.params.items()]
    lines += [f'{name} = Labels("{name}", {shape}, classes={classes})'
              for name, (shape, classes) in check.labels.items()]
    lines.append(f"loss = {check.loss}")
    return "\n".join(lines) + "\n"


def compile_text(tmp_path, body):
    """Compile a model file made of PRELUDE + `body` (written as tmp_path/bad.py)."""
    path = tmp_path / "bad.py"
    path.write_text(PRELUDE + body)
    return compiler.compile_file(str(path))


def error_of(tmp_path, body) -> str:
    """The ModelError text compiling PRELUDE + `body` raises (the test fails if none)."""
    import pytest
    with pytest.raises(compiler.ModelError) as info:
        compile_text(tmp_path, body)
    return str(info.value)

