"""Errors a user can act on: each names the model file and line, the op, the shapes, and a fix."""
from __future__ import annotations


class ModelError(Exception):
    """A mistake in a model file, reported as `file:line: op: problem` plus a fix, never a traceback."""

    def __init__(self, problem: str, *, op: str | None = None, where: str | None = None,
                 shapes: str | None = None, fix: str | None = None):
        self.problem, self.op, self.where, self.shapes, self.fix = problem, op, where, shapes, fix
        super().__init__(self.render())

    def render(self) -> str:
        head = f"{self.where}: " if self.where else ""
        head += f"{self.op}: " if self.op else ""
        lines = [head + self.problem]
        if self.shapes:
            lines.append(f"  shapes: {self.shapes}")
        if self.fix:
            lines.append(f"  fix: {self.fix}")
        return "\n".join(lines)


class NumpyOnTracedValue(ModelError):
    """A NumPy function applied to a traced value. The language layer raises it without a fix; the
    tracer, which knows the whole model language, adds the fix (the symgrad function to use)."""

    def __init__(self, problem: str, *, function: str, **kw):
        self.function = function
        super().__init__(problem, **kw)


class CompileError(Exception):
    """An internal limit of the compiler (not the user's fault), e.g. a node with no VJP rule."""
