"""The input checks, written once per module: `_arrays(where, params, inputs[, training])` loads the
arrays a function reads and checks the common case inline (names, shapes, dtypes, label ranges: a
few attribute reads); anything else goes to the module's `_validate`, which says precisely what is
wrong. Each function calls it in one line."""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from ..shapes import fmt
from .backends import NUMPY

EXCEPTIONS = "(KeyError, AttributeError, IndexError, TypeError, ValueError)"


@dataclass(frozen=True)
class Arrays:
    """What one function reads: its parameters (and state arrays), inputs and symbolic sizes."""
    params: tuple
    inputs: tuple
    dims: tuple

    @property
    def loads(self) -> tuple:
        return self.inputs + self.params


def arrays_of(graph, sched) -> Arrays:
    program = sched.program
    used: set = set()
    for step in sched.steps:
        used |= step.statement.expr.free_symbols
    for e in program.results():
        used |= e.free_symbols
    params = [leaf for leaf in graph.params if leaf.symbol in used or program.grads]
    params += [leaf for leaf in graph.states if leaf.symbol in used]
    inputs = [leaf for leaf in graph.inputs if leaf.symbol in used]
    dims = sorted({s.name for s in used if s.is_Symbol and s.is_integer})
    return Arrays(tuple(params), tuple(inputs), tuple(dims))


def with_printed_sizes(arrays: Arrays, lines) -> Arrays:
    """`arrays` plus the symbolic sizes of its inputs that the printed code names although no
    expression holds them (a gather by label prints `np.arange(B)` from its operand's shape)."""
    text = "\n".join(line.split("#")[0] for line in lines)   # the code, not its shape comments
    sizes = {d for leaf in arrays.inputs for d in leaf.shape if isinstance(d, str)}
    named = {d for d in sizes - set(arrays.dims) if re.search(rf"\b{re.escape(d)}\b", text)}
    return replace(arrays, dims=tuple(sorted(set(arrays.dims) | named))) if named else arrays


@dataclass
class Check:
    """One check function: `base` loads always, `extra` only when called with training=True."""
    name: str
    base: list
    extra: list
    flag: bool          # takes `training` (two kinds of callers: forward, and the loss functions)
    small: Arrays       # what a call with training=False (or every call) checks
    large: Arrays       # what a call with training=True checks

    def binders(self) -> dict:
        """Symbolic size -> (load, axis) that binds it, first in load order."""
        out: dict = {}
        for leaf in self.base + self.extra:
            for axis, d in enumerate(leaf.shape):
                if isinstance(d, str) and d not in out:
                    out[d] = (leaf, axis)
        return out

    def returns(self) -> list:
        return list(self.binders()) + [leaf for leaf in self.large.loads]


def plan_checks(arrays: dict[str, Arrays]) -> dict[str, tuple[Check, bool]]:
    """Function name -> (its check function, training flag). Functions reading the same arrays
    share one; when one set contains the other (forward's and the loss's), one check function with
    a `training` flag serves both; otherwise each set gets its own."""
    groups: list[Arrays] = []
    for a in arrays.values():
        if a.loads not in [g.loads for g in groups]:
            groups.append(a)
    if len(groups) == 2:
        small, large = sorted(groups, key=lambda g: len(g.loads))
        if set(small.loads) <= set(large.loads):
            base = [leaf for leaf in large.loads if leaf in small.loads]
            extra = [leaf for leaf in large.loads if leaf not in small.loads]
            check = Check("_arrays", base, extra, True, small, large)
            return {fn: (check, a.loads == large.loads) for fn, a in arrays.items()}
    checks = [Check("_arrays" + (f"_{i + 1}" if i else ""), list(g.loads), [], False, g, g)
              for i, g in enumerate(groups)]
    return {fn: (next(c for c in checks if c.large.loads == a.loads), True) for fn, a in arrays.items()}


def call_line(fn_name: str, check: Check, training: bool, names: dict, used: Arrays) -> list[str]:
    """`B, x, y, W = _arrays('loss', params, inputs, training=True)`, `_` for what `used` lacks."""
    wanted = {leaf.symbol for leaf in used.loads} | set(used.dims)
    targets = []
    for item in check.returns():
        if isinstance(item, str):
            targets.append(item if item in wanted else "_")
        else:
            targets.append(names[item.symbol] if item.symbol in wanted else "_")
    flag = f", training={training}" if check.flag else ""
    call = f"{check.name}({fn_name!r}, params, inputs{flag})"
    return wrap("", targets, f" = {call}") if targets else [call]


def check_function(check: Check, names: dict, backend=NUMPY) -> list[str]:
    """The source of one check function (module level). Long because it is one straight-line
    sequence of generated lines: loads, the ok-chain, the fallback, the return."""
    args = "where, params, inputs" + (", training" if check.flag else "")
    lines = [f"def {check.name}({args}):",
             '    """The arrays a function reads (and the sizes they bind), checked against what the',
             "    module was compiled for with a few attribute reads; anything else goes to _validate,",
             '    which says precisely what is wrong.' + (" `training`: with what only the loss reads."
                                                           if check.flag else "") + '"""',
             "    try:"]
    binders = check.binders()
    var = {leaf: names[leaf.symbol] for leaf in check.base + check.extra}
    n_small, n_large = len(check.small.inputs), len(check.large.inputs)
    count = str(n_large) if n_small == n_large else f"({n_large} if training else {n_small})"
    lines += _loads(check.base, var, binders, "        ")
    conds = [f"len(inputs) == {count}"] + _conds(check.base, var, binders, backend)
    lines += _chain("        ok = (", conds, "              ")
    if check.extra:
        lines.append("        if training:")
        lines += _loads(check.extra, var, binders, "            ")
        lines += _chain("            ok = (ok and ", _conds(check.extra, var, binders, backend),
                        "                  ")
        lines.append("        else:")
        lines += [f"            {v} = None" for v in _bound_by(check.extra, var, binders)]
    lines += [f"    except {EXCEPTIONS}:", "        ok = False", "    if not ok:"]
    bind = "dims = " if binders else ""   # no symbolic sizes: nothing to read back
    lines.append(f"        {bind}_validate(where, params, inputs, {_choose(check, 'params')}, "
                 f"{_choose(check, 'inputs')})")
    for d, (leaf, _) in binders.items():
        lines.append(f"        {d} = dims[{d!r}]" + (" if training else None" if leaf in check.extra else ""))
    for leaf in check.base + check.extra:
        where = "params" if leaf.kind in ("param", "state") else "inputs"
        lines.append(f"        {var[leaf]} = {where}[{leaf.name!r}]"
                     + (" if training else None" if leaf in check.extra else ""))
    returned = [d if isinstance(d, str) else var[d] for d in check.returns()]
    if returned:
        lines += wrap("    return ", returned, "")
    return lines


def wrap(head: str, items: list[str], tail: str, width: int = 100) -> list[str]:
    """`head a, b, c tail` on one line, or in parentheses over as many lines as it takes."""
    line = f"{head}{', '.join(items)}{tail}"
    if len(line) <= width or len(items) < 2:
        return [line]
    lines, current = [], head + "("
    for i, item in enumerate(items):
        text = item + ("," if i < len(items) - 1 else ")" + tail)
        if len(current) + len(text) + 1 > width and current.strip() not in ("", "("):
            lines.append(current.rstrip())
            current = " " * (len(head) + 1)
        current += text + " "
    lines.append(current.rstrip())
    return lines


def _loads(loads, var, binders, indent) -> list[str]:
    lines = [f"{indent}{var[leaf]} = {'params' if leaf.kind in ('param', 'state') else 'inputs'}"
             f"[{leaf.name!r}]" for leaf in loads]
    lines += [f"{indent}{d} = {var[leaf]}.shape[{axis}]" for d, (leaf, axis) in binders.items()
              if leaf in loads]
    return lines


def _bound_by(loads, var, binders) -> list[str]:
    return [var[leaf] for leaf in loads] + [d for d, (leaf, _) in binders.items() if leaf in loads]


def _conds(loads, var, binders, backend) -> list[str]:
    conds = [f"{d} > 0" for d, (leaf, _) in binders.items() if leaf in loads]  # B = 0: _validate says why
    for leaf in loads:
        v = var[leaf]
        conds.append(f"{v}.shape == {fmt(leaf.shape)}")
        if leaf.kind in ("labels", "seed"):
            conds += [backend.translate(c) for c in backend.integer_conds(
                v, leaf.classes if leaf.kind == "labels" else None, len(leaf.shape))]
        else:
            conds.append(f"{v}.dtype == DTYPE")
    return conds


def _chain(first: str, conds: list[str], indent: str) -> list[str]:
    lines = [first + conds[0]] + [f"{indent}and {c}" for c in conds[1:]]
    lines[-1] += ")"
    return lines


def _choose(check: Check, which: str) -> str:
    small = [leaf.name for leaf in getattr(check.small, which)]
    large = [leaf.name for leaf in getattr(check.large, which)]
    return repr(large) if small == large else f"{large} if training else {small}"


def standalone_prologue(graph, arrays: Arrays, names: dict) -> list[str]:
    """A snippet runs on its own: it reads its sizes off its inputs, unchecked."""
    lines = []
    for d in arrays.dims:
        leaf = next(lf for lf in graph.inputs if d in lf.shape)
        lines.append(f"{d} = inputs[{leaf.name!r}].shape[{leaf.shape.index(d)}]")
    lines += [f"{names[leaf.symbol]} = {'params' if leaf.kind in ('param', 'state') else 'inputs'}"
              f"[{leaf.name!r}]" for leaf in arrays.loads]
    return lines
