"""Fused loops (the numba backend): consecutive loop statements become one `@numba.njit` kernel.

Inside a kernel, statements whose loops run over the same shape share one loop nest: each element
is computed once, in registers, from the elements of its operands (`hidden_pre`, then `h`, at the
same (i, j)), and written to memory only when something after the nest reads it. A reduction
(a bias gradient's column sum, a softmax's row max) accumulates inside the nest that computes its
operand; what reads the reduced value starts the next nest. Statements the loops cannot compute
(matrix products through BLAS, convolutions' windows) stay NumPy lines between the kernel calls.
compiler/fuse.py decided which is which; this module prints the kernels and the calls.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import sympy as sp
from sympy.printing.precedence import PRECEDENCE, precedence

from ..fuse import fuse_kind, is_loop, tensor_args
from ..ops import rule_for
from ..ops.rule import axes_of
from ..shapes import fmt, numel
from .backends import NUMBA_LOOP, BackendError
from .naming import Namer
from .printer import Printer

INDEX_NAMES = "ijklmn"
WHOLE_STEP_ELEMENTS = 2 ** 16   # the largest value up to which a step runs compiled whole


class LoopPrinter(Printer):
    """Prints one element of an expression: an array name indexed (broadcast to the element being
    computed), a value of the same nest as its scalar local, ops in their scalar forms."""

    def __init__(self, names, shapes, scalars: dict):
        super().__init__(names, shapes, NUMBA_LOOP)
        self.scalars = scalars   # symbol -> the local holding its element (this nest) or its value
        self.context: list = []  # (shape, index) of the node being printed, innermost last

    def element(self, expr, index: tuple) -> str:
        """`expr`'s element at `index` (one index text per axis of expr's shape)."""
        self.context.append((self.shapes(expr), tuple(index)))
        try:
            return super()._print(expr)
        finally:
            self.context.pop()

    def operand(self, expr, index: tuple) -> str:
        """`expr`'s element at `index` as an op's result: parenthesised unless it binds like a call
        (`expand_dims(1 - t**2)` times a mask is `(1 - t[i]**2)*m`)."""
        text = self.element(expr, index)
        return f"({text})" if precedence(expr) < PRECEDENCE["Func"] else text

    def value(self, expr, index: tuple) -> str:
        """The text of `expr`'s element at `index`, in a loop's names (np.where is _where)."""
        text = self.backend.translate(self.element(expr, index))
        if self.helpers:   # module helpers take arrays: such an op must declare fuse = ""
            raise BackendError(f"{', '.join(sorted(h.__name__ for h in self.helpers))} calls a module "
                               "helper, which a fused loop cannot: declare fuse = \"\" on the op")
        return text

    def index(self) -> tuple:
        """The index of the element being printed (an op's `_numbacode` reads its operands there)."""
        return self.context[-1][1]

    def index_of(self, operand) -> tuple:
        """Where `operand` is read for the element being printed: NumPy's broadcast."""
        shape, index = self.context[-1]
        return broadcast_index(self.shapes(operand), shape, index)

    def _print(self, expr, **kwargs):
        """A child is printed at its parent's index, broadcast to its own shape (NumPy's rules)."""
        if not self.context or not isinstance(expr, sp.Expr):
            return super()._print(expr, **kwargs)
        return self.element(expr, self.index_of(expr))

    def _print_Symbol(self, expr):
        if expr in self.scalars:
            return self.scalars[expr]
        name = self.names.get(expr, expr.name)
        index = self.context[-1][1] if self.context else ()
        return f"{name}[{', '.join(index)}]" if index else name


def broadcast_index(shape, outer_shape, index) -> tuple:
    """The index into an operand of `shape` read at `index` of `outer_shape` (right-aligned; a
    size-1 axis is read at 0)."""
    offset = len(outer_shape) - len(shape)
    return tuple("0" if d == 1 else index[k + offset] for k, d in enumerate(shape))


def reduced_index(node, index) -> tuple:
    """Where element `index` of a reduction's operand accumulates in its result."""
    axes, keep = axes_of(node), bool(node.args[2])
    return tuple("0" if k in axes else i for k, i in enumerate(index) if keep or k not in axes)


@dataclass
class Nest:
    """Statements computed in one loop nest over `shape`."""
    shape: tuple
    statements: list = field(default_factory=list)
    reductions: set = field(default_factory=set)   # targets accumulated here (complete after it)
    values: set = field(default_factory=set)       # elementwise targets computed here


def _iteration_shape(st, shapes) -> tuple:
    return shapes(st.expr.args[0]) if fuse_kind(st.expr) in ("sum", "max") else shapes(st.target)


def _reads(expr, direct: bool = True, out=None) -> list:
    """(symbol, read at the element being computed) for every name `expr` reads."""
    out = [] if out is None else out
    if expr.is_Symbol:
        out.append((expr, direct))
    elif not expr.is_Atom:
        indexed = fuse_kind(expr) == "index"
        for a in tensor_args(expr):
            _reads(a, direct and not indexed, out)
    return out


def _one_pass(expr) -> bool:
    """One elementwise op of names and numbers (`mm + b`): NumPy makes one pass over it too, and a
    kernel of its own would cost a compilation for one call's dispatch."""
    return fuse_kind(expr) == "map" and all(a.is_Atom for a in expr.args)


def _njit_tree(expr, shapes) -> bool:
    """Whether numba compiles `expr`'s NumPy form (Rule.njit of every op in it)."""
    if expr.is_Atom:
        return True
    rule = rule_for(expr)
    return rule is not None and rule.njit(expr, shapes) and all(_njit_tree(a, shapes) for a in tensor_args(expr))


def _is_size(symbol, shapes) -> bool:
    """A symbolic size (the batch B): an integer the function binds from its arrays' shapes."""
    return bool(symbol.is_integer) and shapes(symbol) == ()


def nests_of(statements, shapes) -> list[Nest]:
    """Consecutive statements over the same shape share a nest unless one reads a value of the nest
    at another element (through an index op) or one the nest is still reducing."""
    nests: list[Nest] = []
    for st in statements:
        shape = _iteration_shape(st, shapes)
        nest = nests[-1] if nests else None
        joins = nest is not None and nest.shape == shape and all(
            s not in nest.reductions and (s not in nest.values or (direct and shapes(s) == shape))
            for s, direct in _reads(st.expr))
        if not joins:
            nest = Nest(shape)
            nests.append(nest)
        nest.statements.append(st)
        (nest.reductions if fuse_kind(st.expr) in ("sum", "max") else nest.values).add(st.target)
    return nests


class Fusion:
    """The kernels of one function and the lines that call them, for the steps a loop computes."""

    def __init__(self, graph, sched, names: dict, dtype: str, library: dict):
        self.graph, self.sched, self.names, self.dtype = graph, sched, names, dtype
        self.shapes = graph.shapes
        self.library = library   # the module's kernels so far: source without its name -> name
        self.sizes = {w for step in sched.steps for d in self.shapes(step.statement.target)
                      if isinstance(d, str) for w in re.findall(r"[A-Za-z_]\w*", d)}
        steps = sched.steps
        loop = [is_loop(s.statement.expr, self.shapes) for s in steps]
        self.groups: dict[int, list[int]] = {}   # first step index -> the step indices of one kernel
        start = None
        for i, step in enumerate(steps):
            section = step.statement.priority[:1]
            if loop[i] and start is not None and steps[start].statement.priority[:1] == section:
                self.groups[start].append(i)
            elif loop[i]:
                start = i
                self.groups[start] = [i]
            else:
                start = None
        # a function that compiles whole keeps every loop; otherwise what NumPy does as fast (one
        # elementwise op) and scalars alone stay NumPy's: each kernel costs a compilation
        whole = sched.program.directions == [] and all(
            loop[i] or _njit_tree(step.statement.expr, self.shapes) for i, step in enumerate(steps))
        for first, indices in list(self.groups.items()):
            if all(_iteration_shape(steps[i].statement, self.shapes) == () for i in indices) or (
                    not whole and len(indices) == 1 and _one_pass(steps[first].statement.expr)):
                del self.groups[first]
        self.covered = {i for indices in self.groups.values() for i in indices}
        self.kernels: list[str] = []

    def whole_step(self, function: str, writer, body: list[str], arrays) -> tuple[str, list, str] | None:
        """The function's whole body as one compiled function, when every statement outside the
        kernels compiles under numba too (an MLP's matrix products): one call from Python per
        step instead of one per kernel and product. Returns its source, the lines calling it and
        the condition under which they do."""
        shapes, names, program = self.shapes, self.names, self.sched.program
        if program.directions or not self.groups:
            return None
        for i, (step, action) in enumerate(zip(self.sched.steps, writer.plan.actions)):
            st = step.statement
            if i in self.covered:
                continue
            if action.kind not in ("fresh", "returned") or action.workspace or not _njit_tree(st.expr, shapes):
                return None
            if action.kind == "returned" and writer.returned_value(st.expr, action.leaf.shape) != \
                    writer.printer.doprint(st.expr):
                return None
        leaves = {leaf.symbol for leaf in self.graph.leaves.values()}
        results = sorted({s for e in program.results() for s in e.free_symbols
                          if s not in leaves and not _is_size(s, shapes)}, key=lambda s: names[s])
        if not results:
            return None
        params = [names[leaf.symbol] for leaf in arrays.loads] + list(arrays.dims)
        name = f"_{function}_step"
        returned = ", ".join(names[s] for s in results)
        source = "\n".join(
            ['@numba.njit(cache=_CACHE, error_model="numpy")', f"def {name}({', '.join(params)}):",
             f'    """{function}\'s whole body in one compiled call (its kernels and matrix products)."""']
            + ["    " + line if line else "" for line in body if not line.startswith("del ")]
            + [f"    return {returned}"])
        call = [f"{returned} = {name}({', '.join(params)})  # the whole step, compiled"]
        call += [f"{names[s]} = DTYPE({names[s]})" for s in results if shapes(s) == ()]
        condition = self.small()
        return None if condition is None else (source, call, condition)

    def small(self) -> str | None:
        """The condition under which the whole step beats NumPy's calls between the kernels: every
        value small (the products then cost less than the calls; on large arrays a step compiled
        whole keeps every intermediate alive to its end, numba freeing none early, slower than the
        fused body's `del`s). "" when always (no symbolic sizes), None when never."""
        per_sample, sizes = 1, set()
        for step in self.sched.steps:
            shape = self.shapes(step.statement.target)
            symbolic = [d for d in shape if isinstance(d, str)]
            per_sample = max(per_sample, numel(shape, {d: 1 for d in symbolic}))
            sizes |= {w for d in symbolic for w in re.findall(r"[A-Za-z_]\w*", d)}
        limit = WHOLE_STEP_ELEMENTS // per_sample
        if limit < 1:
            return None
        return f"{' * '.join(sorted(sizes))} <= {limit}" if sizes else ""

    def read_after(self, last: int) -> set:
        """Symbols read by a step after `last` or by the function's results."""
        out: set = set()
        for step in self.sched.steps[last + 1:]:
            out |= step.statement.expr.free_symbols
        for e in self.sched.program.results():
            out |= e.free_symbols
        return out

    def call(self, first: int, header) -> list[str]:
        """The kernel of the group starting at step `first` (added to self.kernels) and its call."""
        indices = self.groups[first]
        steps = [self.sched.steps[i] for i in indices]
        statements = [s.statement for s in steps]
        produced = [st.target for st in statements]
        after = self.read_after(indices[-1])
        outputs = [t for t in produced if t in after]
        nests = nests_of(statements, self.shapes)
        source, args = self.kernel(nests, outputs, header)
        kernel_name = self.library.get(source)
        if kernel_name is None:   # forward, loss and loss_and_grad often run the same loops
            taken = set(self.library.values())
            kernel_name = base = f"_fused_{self.names[produced[0]]}"
            k = 1
            while kernel_name in taken:
                k += 1
                kernel_name = f"{base}_{k}"
            self.library[source] = kernel_name
            self.kernels.append(source.replace("def KERNEL(", f"def {kernel_name}(", 1))
        released = [s for step in steps for s in step.release if s not in produced]
        targets = ", ".join(self.names[t] for t in outputs)
        lines = [f"{targets} = {kernel_name}({', '.join(args)})  # fused loops: "
                 + ", ".join(self.names[t] for t in produced)]
        lines += [f"{self.names[t]} = DTYPE({self.names[t]})" for t in outputs if self.shapes(t) == ()]
        if released:
            lines.append("del " + ", ".join(self.names[s] for s in released))
        return lines

    def kernel(self, nests: list[Nest], outputs: list, header) -> tuple[str, list[str]]:
        """The kernel's source and the argument names its call passes."""
        shapes, names = self.shapes, self.names
        produced = {st.target for n in nests for st in n.statements}
        read_elsewhere = set(outputs)
        for nest in nests:
            for st in nest.statements:
                for s, _ in _reads(st.expr):
                    if s in produced and not any(s == t.target for t in nest.statements):
                        read_elsewhere.add(s)
        arrays = {t for n in nests for t in n.reductions | (n.values & read_elsewhere) if shapes(t) != ()}
        body: list[str] = []
        scalars: dict = {}   # rank-0 values: plain locals of the kernel
        local = Namer(set(names.values()) | self.sizes)   # loop indices, registers: clear of every name
        index_names = [local.fresh(c) for c in INDEX_NAMES]
        for nest in nests:
            body += self.nest_lines(nest, arrays, scalars, index_names, header, local)
        arguments: list = []
        for st in (st for n in nests for st in n.statements):
            for s in sorted(st.expr.free_symbols, key=lambda s: names.get(s, s.name)):
                if s not in produced and s not in arguments and not _is_size(s, shapes):
                    arguments.append(s)
        size_names = sorted({w for n in nests for d in n.shape if isinstance(d, str)
                             for w in re.findall(r"[A-Za-z_]\w*", d)}
                            | {w for t in arrays for d in shapes(t) if isinstance(d, str)
                               for w in re.findall(r"[A-Za-z_]\w*", d)}
                            | {names.get(s, s.name) for st in (st for n in nests for st in n.statements)
                               for s in st.expr.free_symbols if _is_size(s, shapes)})
        params = [names[s] for s in arguments] + size_names
        call_args = [f"DTYPE({names[s]})" if shapes(s) == () else names[s] for s in arguments] + size_names
        returns = ", ".join(names[t] for t in outputs)
        source = "\n".join(['@numba.njit(cache=_CACHE, error_model="numpy")', f"def KERNEL({', '.join(params)}):"]
                           + ["    " + line if line else "" for line in body] + [f"    return {returns}"])
        return source, call_args

    def nest_lines(self, nest: Nest, arrays: set, scalars: dict, index_names, header,
                   local_names) -> list[str]:
        shapes, names, dtype = self.shapes, self.names, self.dtype
        lines: list[str] = []
        later = {sym for k, st in enumerate(nest.statements) for sym, _ in _reads(st.expr)
                 if sym in {t.target for t in nest.statements[:k]}}   # read again in this nest
        for st in nest.statements:
            t, kind = st.target, fuse_kind(st.expr)
            if t not in arrays:
                continue
            shape = fmt(shapes(t))
            if kind == "sum":
                acc = "np.float64" if dtype == "float32" else "DTYPE"   # float32 sums add in float64
                lines.append(f"{names[t]} = np.zeros({shape}, dtype={acc})")
            elif kind == "max":
                lines.append(f"{names[t]} = np.full({shape}, -np.inf, dtype=DTYPE)")
            else:
                lines.append(f"{names[t]} = np.empty({shape}, dtype=DTYPE)")
        for st in nest.statements:
            t, kind = st.target, fuse_kind(st.expr)
            if kind in ("sum", "max") and shapes(t) == ():
                lines.append(f"{names[t]} = {'0.0' if kind == 'sum' else '-np.inf'}")
        index, depth = [], 0
        for k, d in enumerate(nest.shape):   # no loop over a size-1 axis
            index.append("0" if d == 1 else index_names[k])
            if d != 1:
                lines.append("    " * depth + f"for {index_names[k]} in range({d}):")
                depth += 1
        index, pad = tuple(index), "    " * depth
        local: dict = dict(scalars)
        printer = LoopPrinter(names, shapes, local)
        for st in nest.statements:
            t, kind = st.target, fuse_kind(st.expr)
            head = header(st)
            if head:
                lines.append(pad + head)
            comment = f"  # {fmt(shapes(t))}"
            if kind in ("sum", "max"):
                value = printer.value(st.expr.args[0], index)
                where = names[t] + (f"[{', '.join(reduced_index(st.expr, index))}]" if shapes(t) != () else "")
                lines.append(pad + (f"{where} += {value}" if kind == "sum" else f"{where} = _max({where}, {value})")
                             + comment)
                continue
            value = printer.value(st.expr, index)
            if shapes(t) == ():
                lines.append(pad + f"{names[t]} = {value}{comment}")
                scalars[t] = local[t] = names[t]
            elif t in arrays and t not in later:
                lines.append(pad + f"{names[t]}[{', '.join(index)}] = {value}{comment}")
            elif t in arrays:
                element = local_names.fresh(names[t] + "_")   # the element, kept in a register
                lines.append(pad + f"{element} = {value}{comment}")
                lines.append(pad + f"{names[t]}[{', '.join(index)}] = {element}")
                local[t] = element
            else:
                lines.append(pad + f"{names[t]} = {value}{comment}")
                local[t] = names[t]
        for st in nest.statements:
            t, kind = st.target, fuse_kind(st.expr)
            if kind == "sum" and dtype == "float32":
                cast = f"DTYPE({names[t]})" if shapes(t) == () else f"{names[t]}.astype(DTYPE)"
                lines.append(f"{names[t]} = {cast}")
            if kind in ("sum", "max") and shapes(t) == ():
                scalars[t] = names[t]
        return lines
