"""Schedule: a deterministic statement order, and liveness so dead batch-sized arrays are released."""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from .dag import toposort
from .optimize import Program, Statement
from .shapes import numel


@dataclass(frozen=True)
class Step:
    statement: Statement
    release: tuple[sp.Symbol, ...]   # values dead after this statement (emit `del`)


@dataclass
class Schedule:
    program: Program
    steps: list[Step]


def schedule(program: Program, shapes, keep_alive=()) -> Schedule:
    """Topological order (Kahn), ties broken by each statement's priority, then its position."""
    stmts = program.statements
    by_target = {s.target: i for i, s in enumerate(stmts)}
    order = toposort(range(len(stmts)), key=lambda i: stmts[i].priority,
                     deps=lambda i: {by_target[x] for x in stmts[i].expr.free_symbols if x in by_target})
    return in_order(program, order, shapes, keep_alive)


def in_order(program: Program, order: list[int], shapes, keep_alive=()) -> Schedule:
    """The statements in `order` (indices into program.statements, dependencies first), each with
    the batch-sized values that die after it."""
    stmts = program.statements
    by_target = {s.target: i for i, s in enumerate(stmts)}
    returned = set()
    for e in program.results():
        returned |= e.free_symbols
    returned |= set(keep_alive)
    last_use: dict = {}
    for pos, i in enumerate(order):
        for sym in stmts[i].expr.free_symbols:
            if sym in by_target:
                last_use[sym] = pos
    releases: dict[int, list] = {}
    for sym, pos in last_use.items():
        if sym not in returned and any(isinstance(d, str) for d in shapes(sym)):
            releases.setdefault(pos, []).append(sym)
    steps = []
    for pos, i in enumerate(order):
        dead = sorted(releases.get(pos, []), key=lambda s: by_target[s])
        steps.append(Step(stmts[i], tuple(dead)))
    return Schedule(program, steps)


def peak_bytes(sched: Schedule, shapes, sizes: dict, itemsize: int) -> int:
    """Largest total size of the values alive at once (defined, and read later or returned)."""
    live: dict = {}
    peak = 0
    for step in sched.steps:
        st = step.statement
        live[st.target] = numel(shapes(st.target), sizes) * itemsize
        peak = max(peak, sum(live.values()))
        for sym in step.release:
            live.pop(sym, None)
    return peak


def invariant(sched: Schedule, varying: set) -> set:
    """The targets of statements that read none of the symbols `varying`, directly or through other
    statements: values a loop over `varying` computes once, before it (hessian's columns)."""
    depends: set = set(varying)
    for step in sched.steps:   # in scheduled order: after everything they read
        if step.statement.expr.free_symbols & depends:
            depends.add(step.statement.target)
    return {step.statement.target for step in sched.steps} - depends
