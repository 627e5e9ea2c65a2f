"""The active trace: a model file's Recorder (what tracing collects, or the eager oracle's arrays),
the context that makes it active while the file runs, and the errors that name the file's line."""
from __future__ import annotations

import contextlib
import contextvars
import sys
from dataclasses import dataclass, field

import sympy as sp

from ..errors import ModelError
from ..graph import Leaf, ShapeTable
from ..shapes import dim_expr


@dataclass
class Recorder:
    """Everything a trace collects; one per model file, active only while that file runs."""
    path: str
    leaves: dict[str, Leaf] = field(default_factory=dict)
    shapes: ShapeTable = field(default_factory=ShapeTable)
    lines: dict = field(default_factory=dict)
    hints: dict = field(default_factory=dict)
    pending_init: dict = field(default_factory=dict)  # linear output expr -> (weight name, layer name)
    eval_subs: dict = field(default_factory=dict)     # train-mode expr -> inference expr
    state_updates: dict = field(default_factory=dict)  # state name -> expr of its new value
    dropouts: int = 0
    layer_count: int = 0
    eager: "Eager | None" = None  # set: evaluate on NumPy arrays (the oracle) instead of tracing

    def line(self) -> int:
        frame = sys._getframe(1)
        while frame is not None:
            if frame.f_code.co_filename == self.path:
                return frame.f_lineno
            frame = frame.f_back
        return 0

    def where(self) -> str:
        return f"{self.path}:{self.line()}"


@dataclass
class Eager:
    """The eager oracle's side of a run: the arrays bound to the leaves, the sizes of symbolic dims
    read off them, and train or inference mode (dropout on/off, batch or running statistics)."""
    arrays: dict                       # leaf name -> array (parameters, state and inputs)
    training: bool = True
    dims: dict = field(default_factory=dict)      # symbolic dim -> size
    state: dict = field(default_factory=dict)     # state name -> its new value (training)

    def concrete(self, shape) -> tuple:
        return tuple(self.dims[d] if isinstance(d, str) else d for d in shape)

    def number(self, value) -> float:
        """A compile-time constant (possibly symbolic in the dims, like 1/B) as a float."""
        if isinstance(value, sp.Basic):
            value = value.subs({dim_expr(k): v for k, v in self.dims.items()})
        return float(value)

    def static(self, value):
        """A static argument as a plain Python value: axes and shapes as tuples of ints."""
        if isinstance(value, sp.Tuple):
            return tuple(self.static(v) for v in value)
        if isinstance(value, sp.Basic):
            value = value.subs({dim_expr(k): v for k, v in self.dims.items()})
            return int(value) if value.is_Integer else float(value)
        return value


ACTIVE: contextvars.ContextVar[Recorder] = contextvars.ContextVar("symgrad_trace")


@contextlib.contextmanager
def recording(rec: Recorder):
    """Make `rec` the active recorder while the block runs (a model file executes inside it)."""
    token = ACTIVE.set(rec)
    try:
        yield rec
    finally:
        ACTIVE.reset(token)


def recorder() -> Recorder:
    rec = ACTIVE.get(None)
    if rec is None:
        raise ModelError("model-file functions only work while symgrad traces a model file",
                         fix="run it with `symgrad compile MODEL.py` or compiler.compile_file(path)")
    return rec


def error(problem: str, *, op: str, shapes: str | None = None, fix: str | None = None) -> ModelError:
    return ModelError(problem, op=op, where=recorder().where(), shapes=shapes, fix=fix)

