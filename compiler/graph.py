"""Plain data passed between the compiler's stages: leaves, the traced graph, and shape inference."""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from .errors import CompileError
from .ops import rule_for
from .shapes import Shape


@dataclass(frozen=True)
class Leaf:
    """A named input, label array or parameter of the model."""
    name: str
    symbol: sp.Symbol
    shape: Shape
    kind: str                 # "input" | "labels" (Labels and Tokens) | "seed" | "param" | "state"
    line: int
    init: str | None = None   # params only
    classes: int | None = None  # labels only (a Tokens leaf's vocab)


class ShapeTable:
    """Shape of every expression, inferred on demand from the registry's shape rules and memoised.

    Leaves and bound symbols are entered explicitly; numbers and symbolic sizes are scalars.
    """

    def __init__(self, known: dict | None = None):
        self._shapes: dict[sp.Basic, Shape] = dict(known or {})

    def set(self, expr: sp.Basic, shape: Shape) -> None:
        self._shapes[expr] = tuple(shape)

    def __contains__(self, expr) -> bool:
        return expr in self._shapes

    def __call__(self, expr: sp.Basic) -> Shape:
        shapes = self._shapes
        if expr in shapes:
            return shapes[expr]
        stack = [expr]
        while stack:  # iterative post-order: deep graphs must not hit the recursion limit
            node = stack[-1]
            if node in shapes:
                stack.pop()
                continue
            if node.is_Number or isinstance(node, sp.NumberSymbol) or node.is_Atom and not node.is_Symbol:
                shapes[node] = ()
                stack.pop()
                continue
            if node.is_Symbol:
                if node.is_integer:  # a symbolic size such as B
                    shapes[node] = ()
                    stack.pop()
                    continue
                raise CompileError(f"no shape known for symbol {node}")
            rule = rule_for(node)
            if rule is None:
                raise CompileError(f"no rule for op {type(node).__name__} in {node}")
            args = rule.tensor_args(node)
            pending = [a for a in args if a not in shapes]
            if pending:
                stack.extend(pending)
                continue
            shapes[node] = tuple(rule.shape_of(node, [shapes[a] for a in args]))
            stack.pop()
        return shapes[expr]


@dataclass
class Graph:
    """What the tracer hands to reverse mode: the loss and outputs as SymPy DAGs, plus metadata."""
    path: str
    source: str
    sha256: str
    leaves: dict[str, Leaf]                 # declaration order
    loss: sp.Expr
    outputs: dict[str, tuple[sp.Expr, Shape]]  # name -> (expr, declared shape)
    shapes: ShapeTable
    lines: dict[sp.Basic, int] = field(default_factory=dict)   # node -> model-file line
    hints: dict[sp.Basic, str] = field(default_factory=dict)   # node -> readable name
    notes: list[tuple[int, str]] = field(default_factory=list)  # (line, rewrite that fired)
    eval_subs: dict = field(default_factory=dict)     # train-mode node -> its inference form
    state_updates: dict = field(default_factory=dict)  # state name -> its new value after a step

    @property
    def params(self) -> list[Leaf]:
        return [leaf for leaf in self.leaves.values() if leaf.kind == "param"]

    @property
    def inputs(self) -> list[Leaf]:
        return [leaf for leaf in self.leaves.values() if leaf.kind not in ("param", "state")]

    @property
    def states(self) -> list[Leaf]:
        return [leaf for leaf in self.leaves.values() if leaf.kind == "state"]

    def source_line(self, line: int) -> str:
        lines = self.source.splitlines()
        return lines[line - 1].strip() if 0 < line <= len(lines) else ""
