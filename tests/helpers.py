"""Shared test helpers: compile model text into a module and load it with the runtime."""
from __future__ import annotations

import os
import textwrap

import numpy as np

import compiler
import runtime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
PRELUDE = "from compiler.dsl import *\nimport compiler.primitives as P\n"


def build(tmp_path, body: str, dtype: str = "float64", name: str = "model"):
    """Write a model file, compile it, write the module next to it and load it."""
    model_file = tmp_path / f"{name}.py"
    model_file.write_text(PRELUDE + textwrap.dedent(body))
    source = compiler.compile_file(str(model_file), dtype=dtype)
    module_file = tmp_path / f"{name}_{dtype}_gen.py"
    module_file.write_text(source)
    return runtime.load(str(module_file))


def central_difference(model, params, inputs, eps=1e-6):
    """(L(θ + ε) − L(θ − ε)) / 2ε for every element of every parameter (the runtime's own routine)."""
    from runtime.gradcheck import numeric_gradient
    return {name: numeric_gradient(model, params, inputs, name, eps,
                                   list(np.ndindex(theta.shape))).reshape(theta.shape)
            for name, theta in params.items()}


def relative_error(a, b, floor=1e-8) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), floor))
