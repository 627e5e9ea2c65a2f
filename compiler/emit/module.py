"""The generated module around the functions: the template, the header's numbers, the shared check."""
from __future__ import annotations

import os

import jinja2

from ..graph import Graph
from ..optimize import count_ops
from ..schedule import Schedule, peak_bytes
from ..shapes import numel
from . import prologue
from .backends import NUMPY, Backend
from .function import emit_function, line_ref, shape_literal
from .hessian import emit_hessian
from .naming import value_names

_ENV = jinja2.Environment(loader=jinja2.PackageLoader("compiler.emit", "templates"),
                          trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                          undefined=jinja2.StrictUndefined, autoescape=False)

SUMMARIES = {
    "forward": "The model's outputs, for inference: no loss and no backward work.",
    "loss": "The scalar loss.",
    "loss_and_grad": "The loss and the gradient of every parameter, fused: the backward pass "
                     "reuses the forward's values.",
    "hvp": "The loss, its gradient and H·v (the Hessian times a direction), fused: reverse mode run "
           "over the gradient, whose adjoints are forward-over-reverse's tangents (x_dot, d_x_dot).",
    "jvp": "The outputs and their derivatives along a direction in parameter space (forward mode: "
           "J·t), sharing the forward's values.",
    "input_grad": "The loss and its gradient with respect to each float input (saliency maps, "
                  "adversarial examples).",
}
DIRECTIONS = {"hvp": "vectors", "jvp": "tangents"}   # the name of each function's direction argument
HESSIAN_LIMIT = 4096   # parameters: above it hessian() refuses unless called with a larger `limit`


def _helpers(helpers, backend: Backend = NUMPY) -> list[str]:
    """Each helper's source: the op's own for this backend (`helper_torch`), else its NumPy one
    in the backend's names."""
    return [backend.translate(getattr(h, f"helper_{backend.name}", None) or h.helper).rstrip("\n")
            for h in sorted(helpers, key=lambda h: h.__name__)]


def render_snippet(graph: Graph, sched: Schedule, *, title: str, summary: str, dtype: str,
                   model_path: str, backend: Backend = NUMPY) -> str:
    """One function on its own (a gradient's slice, the forward): it reads its sizes off its inputs."""
    fn, helpers = emit_function(graph, sched, summary, dtype, standalone=True, backend=backend)
    return _ENV.get_template("snippet.py.j2").render(
        title=title, model_path=model_path, dtype=dtype, fn=fn, helpers=_helpers(helpers, backend),
        backend=backend)


def header_numbers(graph: Graph, lag: Schedule, dtype: str) -> dict:
    """Expression-node counts of loss_and_grad's forward and backward, and its peak memory."""
    fwd_ops = sum(count_ops(s.statement.expr) for s in lag.steps if not s.statement.backward)
    bwd_ops = sum(count_ops(s.statement.expr) for s in lag.steps if s.statement.backward)
    itemsize = 4 if dtype == "float32" else 8
    small = peak_bytes(lag, graph.shapes, {"B": 1}, itemsize)
    large = peak_bytes(lag, graph.shapes, {"B": 1001}, itemsize)
    return {"forward": fwd_ops, "backward": bwd_ops,
            "per_sample": round((large - small) / 1000), "fixed": small - round((large - small) / 1000),
            "ratio": f"{bwd_ops / fwd_ops:.2f}" if fwd_ops else "n/a", "shared": lag.program.shared}


def render_module(graph: Graph, schedules: dict[str, Schedule], dtype: str, version: str,
                  model_path: str, hessian: bool = False, backend: Backend = NUMPY) -> str:
    """The module: every function in `schedules` (forward, loss, loss_and_grad, then any of hvp,
    jvp, input_grad), and with `hessian` the dense Hessian built column by column from hvp."""
    names = tuple(schedules)
    arrays = {name: prologue.arrays_of(graph, schedules[name]) for name in names}
    checks = prologue.plan_checks(arrays)
    leaf_names, _ = value_names(graph, schedules["loss_and_grad"])  # leaves: the same in every function
    check_sources = []
    for check, _ in checks.values():
        source = "\n".join(prologue.check_function(check, leaf_names, backend))
        if source not in check_sources:
            check_sources.append(source)
    functions, helpers, kernels = [], set(), {}
    for name in names:
        fn, used = emit_function(graph, schedules[name], SUMMARIES[name], dtype,
                                 workspace=name == "loss_and_grad", check=checks[name],
                                 direction=DIRECTIONS.get(name), backend=backend, kernels=kernels)
        functions.append(fn)
        helpers |= used
    if hessian:
        fn, used = emit_hessian(graph, schedules["hvp"], dtype, checks["hvp"], HESSIAN_LIMIT, backend)
        functions.append(fn)
        helpers |= used
    inputs = [{"name": leaf.name, "shape": shape_literal(leaf.shape),
               "dtype": "int64" if leaf.kind in ("labels", "seed") else dtype, "classes": leaf.classes}
              for leaf in graph.inputs]
    params = [{"name": leaf.name, "shape": shape_literal(leaf.shape), "init": leaf.init}
              for leaf in graph.params]
    states = [{"name": leaf.name, "shape": shape_literal(leaf.shape), "init": leaf.init}
              for leaf in graph.states]
    outputs = [{"name": k, "shape": shape_literal(shape)} for k, (_, shape) in graph.outputs.items()]
    title = os.path.splitext(os.path.basename(model_path))[0]
    notes = sorted({f"{line_ref(graph, line)}: {text}" if line else text for line, text in graph.notes})
    return _ENV.get_template("module.py.j2").render(
        title=title, version=version, model_path=model_path, sha256=graph.sha256, dtype=dtype,
        ops=header_numbers(graph, schedules["loss_and_grad"], dtype), notes=notes, params=params,
        states=states, inputs=inputs, outputs=outputs,
        outputs_doc="{" + ", ".join(f"{k!r}: array" for k in graph.outputs) + "}",
        helpers=_helpers(helpers, backend), checks=check_sources, backend=backend, functions=functions,
        workspace=any(fn.workspace for fn in functions), hessian=hessian,
        directions=any(fn.direction for fn in functions), hessian_limit=HESSIAN_LIMIT,
        n_params=sum(numel(leaf.shape, {}) for leaf in graph.params))
