"""symgrad's compiler: model file -> SymPy DAG -> reverse mode -> CSE -> schedule -> NumPy module.

    source = compiler.compile_file("examples/digits_mlp.py", dtype="float64")
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace

from . import derivatives
from .ad import backward
from .canonical import canonicalize
from .dag import substitute_until_fixed
from .emit import render_module
from .emit import backends
from .errors import CompileError, ModelError
from .fuse import cluster, split_for_loops
from .derivatives import FUNCTIONS
from .lower import lower
from .optimize import build_program, slice_program
from .schedule import schedule
from .trace import trace_file, trace_source

__version__ = "0.1.0"
__all__ = ["compile_file", "compile_source", "compile_model", "Compiled", "ModelError",
           "CompileError", "FUNCTIONS", "BACKENDS", "__version__"]

DTYPES = ("float64", "float32")
BACKENDS = tuple(backends.BACKENDS)   # the array libraries a module can call: numpy first (default)


@dataclass
class Compiled:
    """The generated source plus what each stage produced and how long it took."""
    source: str
    graph: object
    backward: object
    schedules: dict
    timings: dict = field(default_factory=dict)   # stage -> seconds
    dtype: str = "float64"
    model_path: str = ""
    backend: str = "numpy"

    @property
    def shared(self) -> int:
        return self.schedules["loss_and_grad"].program.shared


def compile_model(path: str, dtype: str = "float64", *, source: str | None = None,
                  display_path: str | None = None, functions=(), backend: str = "numpy") -> Compiled:
    """Run every stage on one model file; the chain of stages reads top to bottom. `functions`
    adds any of hvp, jvp, input_grad, hessian to forward, loss and loss_and_grad; `backend` is the
    array library the module calls (numpy, cupy, torch, jax, numba)."""
    if backend not in BACKENDS:
        raise ModelError(f"unknown backend {backend!r}", fix=f"use one of {', '.join(BACKENDS)}")
    library = backends.BACKENDS[backend]
    if dtype not in DTYPES:
        raise ModelError(f"unsupported dtype {dtype!r}", fix=f"use one of {', '.join(DTYPES)}")
    unknown = sorted(set(functions) - set(FUNCTIONS))
    if unknown:
        raise ModelError(f"unknown function(s) {', '.join(unknown)} for --with",
                         fix=f"choose from {', '.join(FUNCTIONS)}")
    timings = {}
    t = time.perf_counter()
    graph = trace_source(source, os.path.abspath(path)) if source is not None else trace_file(path)
    graph = canonicalize(graph)
    timings["trace"] = time.perf_counter() - t

    t = time.perf_counter()
    first = backward(graph)
    grads = lower(graph, first)   # ops kept whole for their own VJP become their pieces
    # dropout off, batch norm on running statistics (an inference form may itself contain the
    # train form of an earlier layer: substitute until nothing changes)
    inference = {k: substitute_until_fixed(e, graph.eval_subs, graph.shapes)
                 for k, (e, _) in graph.outputs.items()}
    derived = []
    if "hvp" in functions or "hessian" in functions:
        derived.append(derivatives.hvp(graph, first))
    if "jvp" in functions:
        derived.append(derivatives.jvp(graph, inference))
    if "input_grad" in functions:
        derived.append(derivatives.input_grad(graph))
    derived = [replace(d, backward=lower(graph, d.backward)) for d in derived]
    timings["ad"] = time.perf_counter() - t

    t = time.perf_counter()
    ones = library.row_sums_as_products
    fused = build_program("loss_and_grad", graph, grads, want_loss=True, want_outputs=False,
                          row_sums_as_products=ones)
    programs = {
        "forward": build_program("forward", graph, None, want_loss=False, want_outputs=True,
                                 outputs=inference, row_sums_as_products=ones),
        "loss": slice_program(fused, "loss"),   # the same statements: the same rounding
        "loss_and_grad": fused,
    }
    for d in derived:
        programs[d.name] = build_program(
            d.name, graph, d.backward, want_loss=d.returns_loss, want_outputs=not d.returns_loss,
            outputs=inference, extra=d.results, extra_shapes=d.shapes, state=False,
            directions=d.directions, row_sums_as_products=ones)
    if library.fused:   # what compiled loops compute, apart from what NumPy calls compute
        programs = {name: split_for_loops(p, graph.shapes) for name, p in programs.items()}
    timings["optimize"] = time.perf_counter() - t
    t = time.perf_counter()
    schedules = {name: schedule(p, graph.shapes) for name, p in programs.items()}
    if library.fused:   # loop statements next to the loops they read: one kernel
        schedules = {name: cluster(s, graph.shapes) for name, s in schedules.items()}
    timings["schedule"] = time.perf_counter() - t

    t = time.perf_counter()
    shown = display_path or _display_path(path)
    text = render_module(graph, schedules, dtype, __version__, shown, hessian="hessian" in functions,
                         backend=library)
    timings["emit"] = time.perf_counter() - t
    return Compiled(text, graph, grads, schedules, timings, dtype, shown, backend)


def fingerprint() -> str:
    """A hash of the compiler's own sources: caches of generated code are keyed by it, so any change
    to the compiler (even without a version bump) recompiles."""
    import hashlib
    root = os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha256(__version__.encode())
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            if name.endswith((".py", ".j2")):
                with open(os.path.join(folder, name), "rb") as f:
                    digest.update(name.encode() + f.read())
    return digest.hexdigest()[:12]


def compile_file(path: str, dtype: str = "float64") -> str:
    """Compile a model file to the source of a standalone NumPy module."""
    return compile_model(path, dtype).source


def compile_source(source: str, path: str = "<model>.py", dtype: str = "float64") -> str:
    """Compile model-file text (`path` is used for error messages and the header)."""
    return compile_model(path, dtype, source=source).source


def _display_path(path: str) -> str:
    """The model path as recorded in the header: relative to the working folder when inside it,
    so the same compile on another machine gives the same bytes."""
    full = os.path.abspath(path)
    rel = os.path.relpath(full)
    return rel.replace(os.sep, "/") if not rel.startswith("..") else full.replace(os.sep, "/")
