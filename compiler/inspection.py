"""Looking inside a compiled model: the traced IR, one gradient's slice of the code, and statistics.

Everything here reads the stages' plain data (Graph, Schedule); nothing changes what is generated.
"""
from __future__ import annotations

import os
import time

import sympy as sp

from .dag import forward_nodes, tensor_operands, toposort
from .emit import naming, render_snippet
from .emit.backends import BACKENDS
from .errors import ModelError
from .optimize import Program, closure, count_ops
from .ops import rule_for
from .schedule import peak_bytes, schedule
from .shapes import fmt_typed, numel


def _short_dtype(dtype: str) -> str:
    return {"float64": "f64", "float32": "f32"}[dtype]


def ir_lines(graph, dtype: str = "float64") -> list[str]:
    """The traced forward DAG, one equation per line: `h: f64[B,128] = relu hidden_pre  # m.py:7`."""
    roots = [graph.loss] + [e for e, _ in graph.outputs.values()]
    names: dict = {leaf.symbol: leaf.name for leaf in graph.leaves.values()}
    namer = naming.Namer(reserved=names.values())
    lines = []
    for leaf in graph.leaves.values():
        kind = "i64" if leaf.kind == "labels" else _short_dtype(dtype)
        lines.append(f"{leaf.name}: {fmt_typed(leaf.shape, kind)} = {leaf.kind}"
                     + (f" {leaf.init}" if leaf.init else "") + f"  # {_where(graph, leaf.line)}")
    for node in _by_line(forward_nodes(roots), graph):
        names[node] = namer.fresh(graph.hints.get(node) or naming.op_name(node))
        rule = rule_for(node)
        args = rule.tensor_args(node) if rule else node.args
        static = node.args[len(args):]
        text = " ".join(names.get(a, str(a)) for a in args)
        if static:
            text += " [" + ", ".join(str(x) for x in static) + "]"
        shape = graph.shapes(node)
        loss = "   <- loss" if node == graph.loss else ""
        lines.append(f"{names[node]}: {fmt_typed(shape, _short_dtype(dtype))} = "
                     f"{type(node).__name__} {text}  # {_where(graph, graph.lines.get(node, 0))}{loss}")
    return lines


def _by_line(order: list, graph) -> list:
    """A topological order that follows the model file's lines where the dependencies allow."""
    return toposort(order, deps=tensor_operands, key=lambda n: graph.lines.get(n, 0) or 10**9)


def _where(graph, line: int) -> str:
    return f"{os.path.basename(graph.path)}:{line}" if line else "(derived)"


def gradient_slice(compiled, param: str):
    """The statements that compute d_<param>: its backward slice and the forward values it reads."""
    fused = compiled.schedules["loss_and_grad"].program
    if param not in fused.grads:
        raise ModelError(f"no parameter named {param!r}",
                         fix=f"choose one of {', '.join(fused.grads)}")
    g = fused.grads[param]
    program = Program(f"grad_{naming.ident(param)}", closure(fused, g.free_symbols), None, {},
                      {param: g})
    return schedule(program, compiled.graph.shapes)


def show_gradient(compiled, param: str) -> str:
    sched = gradient_slice(compiled, param)
    return render_snippet(compiled.graph, sched, title=f"The gradient of the loss with respect to {param!r}.",
                          summary=f"d loss / d {param}: the backward slice and the forward values it reads.",
                          dtype=compiled.dtype, model_path=compiled.model_path,
                          backend=BACKENDS[compiled.backend])


def show_forward(compiled) -> str:
    return render_snippet(compiled.graph, compiled.schedules["forward"], title="The forward pass (inference).",
                          summary="The model's outputs.", dtype=compiled.dtype, model_path=compiled.model_path,
                          backend=BACKENDS[compiled.backend])


# ---- statistics ------------------------------------------------------------------------------

def flops(expr: sp.Basic, shapes, sizes: dict) -> int:
    """Floating-point operations of one statement, as each op's rule counts them (2nmk for a
    matrix product, one per element reduced, none for a view, one per output element otherwise)."""
    return sum(rule_for(node).cost(node, shapes, lambda shape: numel(shape, sizes))
               for node in forward_nodes([expr]))


def naive_gradient_size(graph) -> int | None:
    """Ops in the gradients when each parameter is differentiated on its own with sympy.diff and
    nothing is shared (expression swell); only defined for models of scalars."""
    if any(leaf.shape != () for leaf in graph.leaves.values()):
        return None
    return sum(sp.count_ops(sp.diff(graph.loss, leaf.symbol)) for leaf in graph.params)


def stats(compiled, batch: int = 1) -> dict:
    graph = compiled.graph
    sched = compiled.schedules["loss_and_grad"]
    # every symbolic size (declared in an input's shape) is the batch size here
    sizes = {d: batch for leaf in graph.leaves.values() for d in leaf.shape if isinstance(d, str)}
    sizes.setdefault("B", batch)
    fwd = [s.statement for s in sched.steps if not s.statement.backward]
    bwd = [s.statement for s in sched.steps if s.statement.backward]
    f_flops = sum(flops(s.expr, graph.shapes, sizes) for s in fwd)
    b_flops = sum(flops(s.expr, graph.shapes, sizes) for s in bwd)
    t = time.perf_counter()
    naive = naive_gradient_size(graph)
    naive_time = time.perf_counter() - t
    ours = sum(count_ops(s.statement.expr) for s in sched.steps) + sum(
        count_ops(e) for e in sched.program.results())
    itemsize = 4 if compiled.dtype == "float32" else 8
    return {
        "forward ops": sum(count_ops(s.expr) for s in fwd),
        "backward ops": sum(count_ops(s.expr) for s in bwd),
        f"forward FLOPs (batch {batch})": f_flops,
        f"backward FLOPs (batch {batch})": b_flops,
        "backward/forward FLOPs": round(b_flops / f_flops, 2) if f_flops else float("nan"),
        "subexpressions shared by CSE": sched.program.shared,
        "statements in loss_and_grad": len(sched.steps),
        f"peak live memory (batch {batch}), bytes": peak_bytes(sched, graph.shapes, sizes, itemsize),
        "gradient ops, reverse mode with sharing": ours,
        "gradient ops, naive per-parameter sympy.diff": naive if naive is not None else "n/a (tensor model)",
        **{f"time {stage}, s": round(sec, 4) for stage, sec in compiled.timings.items()},
        **({"time naive sympy.diff, s": round(naive_time, 4)} if naive is not None else {}),
    }
