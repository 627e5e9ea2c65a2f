"""The dense Hessian as one generated function: hvp's statements, split by what the direction
reaches. Those it does not (the forward, the gradient) run once; the rest run in a loop over the
unit vectors e_j, each giving the column H·e_j. The schedule keeps the loop-invariant values alive
(no `del`, no in-place update of them inside the loop), so every column reads them intact."""
from __future__ import annotations

import sympy as sp

from ..graph import Graph
from ..schedule import Schedule, invariant, schedule
from ..shapes import fmt, numel
from . import prologue
from .function import FunctionCode, Writer, device_line, materialize
from .inplace import plan
from .naming import value_names
from .backends import NUMPY, Backend
from .printer import Printer

SUMMARY = ("The loss, its gradient and the dense Hessian H[i, j] = ∂²loss/∂θi∂θj: the forward and "
           "backward once, then the tangent passes of hvp once per column, H·e_j.")


def hessian_schedule(sched: Schedule, shapes) -> tuple[Schedule, set]:
    """hvp's program scheduled again with its direction-invariant values kept alive."""
    varying = {leaf.symbol for leaf in sched.program.directions}
    keep = invariant(sched, varying)
    return schedule(sched.program, shapes, keep_alive=keep), keep


def emit_hessian(graph: Graph, hvp_sched: Schedule, dtype: str, check, limit: int,
                 backend: Backend = NUMPY) -> tuple[FunctionCode, set]:
    sched, keep = hessian_schedule(hvp_sched, graph.shapes)
    names, namer = value_names(graph, sched)
    H, column, direction, entries, k = (namer.fresh(n) for n in ("H", "column", "direction", "entries", "k"))
    printer = Printer(names, graph.shapes, backend)
    writer = Writer(graph, sched, printer, names, dtype, plan(sched, graph, printer, False), None)
    steps = range(len(sched.steps))
    once = {i for i in steps if sched.steps[i].statement.target in keep}
    before, inner = writer.statements(once), writer.statements(set(steps) - once)
    arrays = prologue.with_printed_sizes(prologue.arrays_of(graph, sched), before + inner)
    head = prologue.call_line("hessian", *check, names, arrays)
    size = sum(numel(leaf.shape, {}) for leaf in graph.params)
    body = [f"if {size} > limit:",
            f"    raise InputError('hessian: this model has {size} parameters, so H would have "
            f"{size * size} entries and take {size} Hessian-vector products; pass limit={size} to "
            "compute it anyway, or use hvp(params, vectors, ...)')"]
    body += before
    directions = [names[leaf.symbol] for leaf in sched.program.directions]
    body += ["", "# ---- one column of H per parameter entry: the tangents along e_j " + "-" * 24]
    columns = [f"np.ravel({_result(printer, names, sched, leaf, graph)})" for leaf in graph.params]
    if backend.alias == "np":   # NumPy's arrays (numba's too): e_j set in place
        body += [f"{H} = np.empty(({size}, {size}), dtype=DTYPE)"]
        body += [f"{name} = np.zeros({fmt(leaf.shape)}, dtype=DTYPE)"
                 for name, leaf in zip(directions, sched.program.directions)]
        body += [f"{column} = 0",
                 f"for {direction} in ({', '.join(directions)}{',' if len(directions) == 1 else ''}):",
                 f"    {entries} = {direction}.reshape(-1)  # a view: setting an entry sets the direction",
                 f"    for {k} in range({entries}.size):",
                 f"        {entries}[{k}] = 1"]
        inner += [f"{H}[:, {column}] = np.concatenate(["] + [f"    {c}," for c in columns] + ["])"]
        inner += [f"{entries}[{k}] = 0", f"{column} += 1"]
        body += ["        " + line if line else "" for line in inner]
    else:   # no item assignment: e_j as a comparison, the columns stacked at the end
        body += [f"{H} = []", f"for {k} in range({size}):",
                 f"    {direction} = {backend.cast(f'({backend.arange(str(size))} == {k})')}  # e_j"]
        start = 0
        for name, leaf in zip(directions, sched.program.directions):
            n = numel(leaf.shape, {})
            body.append(f"    {name} = {direction}[{start}:{start + n}].reshape({fmt(leaf.shape)})")
            start += n
        inner += [f"{H}.append(np.concatenate(["] + [f"    {c}," for c in columns] + ["]))"]
        body += ["    " + line if line else "" for line in inner]
        body += [f"{H} = np.stack({H}, axis=1)"]
    body = [backend.translate(line) for line in body]
    head += device_line(backend, body, names, arrays)   # e_j is made on the device
    loss_and_grads = materialize(printer, sched.program.loss, (), graph) + ", " + writer.grads_dict()
    doc = ["Inputs:" if arrays.inputs else "Inputs: none"]
    doc += [f"    {leaf.name}: {fmt(leaf.shape)} " + (f"int64 labels in [0, {leaf.classes})"
                                                     if leaf.kind == "labels" else dtype)
            for leaf in arrays.inputs]
    doc += ["Returns:", f"    loss: scalar {dtype}, the gradient of each parameter, and",
            f"    H: ({size}, {size}) {dtype}, the parameters flattened in PARAMS order (each row-major)",
            f"Refused above `limit` parameters (default {limit}): H has P² entries and P columns to",
            "compute; raise `limit`, or use hvp."]
    fn = FunctionCode("hessian", SUMMARY, doc, [p.name for p in arrays.params],
                      [i.name for i in arrays.inputs], head, body,
                      backend.translate(f"{loss_and_grads}, {H}"),
                      limit=limit)
    return fn, printer.helpers


def _result(printer, names, sched, leaf, graph) -> str:
    e = sched.program.extra[leaf.name]
    return names[e] if isinstance(e, sp.Symbol) and e in names else materialize(
        printer, e, leaf.shape, graph, {d.symbol for d in sched.program.directions})
