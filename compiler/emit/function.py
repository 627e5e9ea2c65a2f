"""Print one generated function from its schedule and its in-place plan (see inplace.py)."""
from __future__ import annotations

import io
import os
import tokenize
from dataclasses import dataclass

import sympy as sp

from ..dag import substitute
from ..graph import Graph
from ..mathtext import MathPrinter
from ..ops import make, matmul, rule_for
from ..schedule import Schedule
from ..shapes import Shape, fmt
from . import prologue
from .inplace import Action, Plan, matmul_operands, plan
from .naming import value_names
from .backends import NUMPY, Backend
from .kernels import Fusion
from .printer import Printer


@dataclass
class FunctionCode:
    name: str
    summary: str
    doc: list[str]
    param_names: list[str]
    input_names: list[str]
    prologue: list[str]
    body: list[str]
    ret: str
    workspace: bool = False   # takes `workspace=` (a Workspace whose arrays it may write into)
    direction: str | None = None  # the name of its direction argument (hvp's `vectors`)
    limit: int | None = None  # takes `limit=` (hessian: the most parameters it accepts)
    kernels: tuple = ()       # the numba backend's fused loops this function calls (module level)


def shape_literal(shape: Shape) -> str:
    items = [repr(d) for d in shape]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def line_ref(graph: Graph, line: int) -> str:
    return f"{os.path.basename(graph.path)}:{line}" if line else ""


def emit_function(graph: Graph, sched: Schedule, summary: str, dtype: str, standalone: bool = False,
                  workspace: bool = False, check=None, direction: str | None = None,
                  backend: Backend = NUMPY, kernels: dict | None = None) -> tuple[FunctionCode, set]:
    """One generated function. `standalone` code reads symbolic sizes off its inputs instead of
    calling the module's check function `check` ((prologue.Check, training flag); by default one
    of its own). A `workspace` function may write its large products into arrays the caller keeps
    from call to call (see Workspace): it takes `workspace=` only when its plan writes into one."""
    names, namer = value_names(graph, sched)
    printer = Printer(names, graph.shapes, backend)
    arrays = prologue.arrays_of(graph, sched)
    decisions = plan(sched, graph, printer, workspace and backend.workspace)
    writer = Writer(graph, sched, printer, names, dtype, decisions,
                    namer.fresh("buffer") if decisions.uses_workspace else None)
    if backend.fused:
        writer.fusion = Fusion(graph, sched, names, dtype, {} if kernels is None else kernels)
    body = writer.statements()
    ret = writer.returns(body)
    arrays = prologue.with_printed_sizes(arrays, body + [ret])
    step = (writer.fusion.whole_step(sched.program.name, writer, body, arrays)
            if writer.fusion and not standalone else None)   # a slice shown on its own reads simply
    if step is not None:   # numba, small shapes: the whole body runs as one compiled function
        source, call, condition = step
        writer.fusion.kernels.append(source)
        body = (["", f"if {condition}:  # small shapes: the whole step in one compiled call",
                 *("    " + line for line in call), "    return " + ret.replace("\n", "\n    ")] + body
                if condition else ["", *call] + [""] * (body[-1:] == [""]))   # no sizes: always
    if standalone:
        head = prologue.standalone_prologue(graph, arrays, names)
    else:
        check = check or prologue.plan_checks({sched.program.name: arrays})[sched.program.name]
        head = prologue.call_line(sched.program.name, *check, names, arrays)
    head += device_line(backend, body + [ret], names, arrays)
    if sched.program.directions:   # hvp's vectors, jvp's tangents: one array per parameter
        targets = [names[leaf.symbol] for leaf in sched.program.directions]
        targets[-1] += "," if len(targets) == 1 else ""   # one parameter: unpack the list still
        head += prologue.wrap("", targets,
                              f" = _directions({sched.program.name!r}, {direction!r}, {direction})")
    if decisions.uses_workspace:
        body.insert(0, f"{writer.buffer_fn} = _fresh if workspace is None else workspace"
                       "  # where large products go")
    doc = _doc(sched.program, graph, arrays.inputs, dtype, decisions.uses_workspace, direction)
    fn = FunctionCode(sched.program.name, summary, doc, [p.name for p in arrays.params],
                      [i.name for i in arrays.inputs], head, body, ret, decisions.uses_workspace,
                      direction if sched.program.directions else None,
                      kernels=tuple(writer.fusion.kernels) if writer.fusion else ())
    return fn, printer.helpers


class Writer:
    """The lines of one function body, statement by statement, as the plan decided."""

    def __init__(self, graph, sched, printer, names, dtype, decisions: Plan, buffer_fn):
        self.graph, self.sched, self.printer, self.names = graph, sched, printer, names
        self.dtype, self.plan, self.buffer_fn = dtype, decisions, buffer_fn
        self.shapes = graph.shapes
        self.forward_named = {st.node: sp.Symbol(names[st.target], real=True)
                              for st in (s.statement for s in sched.steps) if st.kind == "forward"}
        self.arguments = ({leaf.symbol for leaf in graph.leaves.values()}
                          | {leaf.symbol for leaf in sched.program.directions})
        self.fusion: Fusion | None = None   # the numba backend's loops (kernels.py)
        self.last_line = None

    def statements(self, only: set | None = None) -> list[str]:
        """The body's lines, of every step or of the step indices `only`."""
        body: list[str] = []
        section = self.last_line = None
        fusion = self.fusion if only is None else None
        for index, (step, action) in enumerate(zip(self.sched.steps, self.plan.actions)):
            if (only is not None and index not in only) or (
                    fusion and index in fusion.covered and index not in fusion.groups):
                continue
            st = step.statement
            kind = SECTION_TITLES[st.priority[0] if st.priority else 0]
            if kind != section:
                section = kind
                body += ["", f"# ---- {kind} {'-' * (90 - len(kind))}"]
            if fusion and index in fusion.groups:   # a kernel call: its headers go into the kernel
                body += fusion.call(index, self.header)
                continue
            head = self.header(st)
            body += [head] if head else []
            body += self.lines(st, action)
            if step.release:
                body.append("del " + ", ".join(self.names[s] for s in step.release))
        return body

    def header(self, st) -> str:
        """The `# grad of ...` line that starts the backward statements of a new model line ("" when
        `st` continues the current one)."""
        if st.kind != "backward" or not st.line or (st.line, st.role) == self.last_line:
            return ""
        self.last_line = (st.line, st.role)
        return self.grad_header(st)

    def lines(self, st, action: Action) -> list[str]:
        """The statement's own lines, `T = ...  # shape  file:line`, as its action says."""
        name, p = self.names[st.target], self.printer
        comment = fmt(self.shapes(st.target))
        if not st.backward and st.line:
            comment += f"  {line_ref(self.graph, st.line)}"
        if action.kind == "returned":  # exactly the parameter's shape and dtype, never an alias
            leaf = action.leaf
            text = (self.into_buffer(name, st.expr) if action.workspace
                    else self.returned_value(st.expr, leaf.shape))
            return [f"{name} = {text}  # {fmt(leaf.shape)}"]
        if action.kind == "update":  # the operand dies here: update its buffer instead of allocating
            buffer = self.names[action.buffer]
            update = p.backend.translate(_update_text(p, buffer, action.op, action.rest))
            return [f"{update}  # in place: {buffer} is not read again",
                    f"{name} = {buffer}  # {comment}"]
        if action.kind == "add_into" and (fused := self.addmm(action)) is not None:
            return [f"{name} = {fused}  # {comment}"]
        if action.kind == "add_into":  # `x @ W + b`: add the rest into the product's new buffer
            product = self.into_buffer(name, action.product) if action.workspace else p.doprint(action.product)
            return [f"{name} = {product}  # {comment}",
                    f"{name} {action.op}= {p.doprint(action.rest)}  # in place"]
        text = self.into_buffer(name, st.expr) if action.workspace else p.doprint(st.expr)
        return [f"{name} = {text}  # {comment}"]

    def addmm(self, action: Action) -> str | None:
        """torch's `torch.addmm(b, x, W)`: the product and the bias in one kernel (torch launches
        every op on its own)."""
        operands = matmul_operands(action.product, self.printer)
        if (self.printer.backend.name != "torch" or action.op != "+" or operands is None
                or not action.rest.free_symbols or not isinstance(action.product, matmul)
                or any(len(self.shapes(a)) != 2 for a in action.product.args)):
            return None
        return f"torch.addmm({self.printer.doprint(action.rest)}, {operands[0]}, {operands[1]})"

    def into_buffer(self, name: str, expr) -> str:
        """`np.matmul(a, b, out=buffer('name', shape))`: the product written into the workspace."""
        a, b = matmul_operands(expr, self.printer)
        return f"np.matmul({a}, {b}, out={self.buffer_fn}({name!r}, {fmt(self.shapes(expr))}))"

    def grad_header(self, st) -> str:
        """`# grad of file:line: source  [math]`: the math of the value whose VJP completed the
        adjoint, or (when that is not a named value) of the named value defined on that line."""
        node = st.source if st.source is not None else st.node
        if node in self.forward_named:
            math = node_math(node, self.forward_named)
        else:  # shown only when it fits: a long formula says less than the source line above it
            math = node_math(self.named_on_line(st.line, node), self.forward_named, truncate=False)
        what = "tangent" if st.role == "tangent" else "grad"
        return (f"# {what} of {line_ref(self.graph, st.line)}: "
                f"{code_only(self.graph.source_line(st.line))}" + (f"  [{math}]" if math else ""))

    def named_on_line(self, line: int, node):
        """The user- or layer-named forward value of `line` that contains `node` (else the last)."""
        candidates = [st.node for st in (s.statement for s in self.sched.steps)
                      if st.kind == "forward" and st.line == line and st.node in self.graph.hints]
        lines = self.graph.lines
        for candidate in candidates:
            if node is not None and _contains(candidate, node, lambda x: lines.get(x, line) == line):
                return candidate
        return candidates[-1] if candidates else None

    def returns(self, body: list[str]) -> str:
        """The return expression (the loss, outputs, gradients, new state); may end `body` with a
        blank line before a multi-line return."""
        program, graph, p = self.sched.program, self.graph, self.printer
        parts = []
        if program.outputs or (program.loss is None and not program.grads and not program.extra):
            items = [f"{k!r}: {self.returned_value(e, graph.outputs[k][1])}"
                     for k, e in program.outputs.items()]
            parts.append("{" + ", ".join(items) + "}")
        if program.loss is not None:
            parts.append(materialize(p, program.loss, (), graph))
        if program.grads:
            parts.append(self.grads_dict())
        if program.extra:
            parts.append(self.results_dict(program.extra, program.extra_shapes))
        if len(parts) == 1 and not program.state:
            if program.grads or program.extra:  # a gradient slice: the dict on its own lines
                body.append("")
            return parts[0]
        body.append("")
        ret = ", ".join(parts)
        if program.state:  # running statistics after this step
            shapes_of = {leaf.name: leaf.shape for leaf in graph.states}
            parts = [f"        {k!r}: {self.returned_value(e, shapes_of[k])},"
                     for k, e in program.state.items()]
            ret += ", {\n" + "\n".join(parts) + "\n    }"
        return ret

    def results_dict(self, results: dict, shapes: dict) -> str:
        """A second pass's results ({param: H·v}, {output: tangent}, {input: gradient})."""
        parts = [f"        {k!r}: {self.returned_value(e, shapes[k])}," for k, e in results.items()]
        return "{\n" + "\n".join(parts) + "\n    }"

    def returned_value(self, e, shape) -> str:
        """A returned array with its declared shape and dtype, never one the caller passed in (a
        parameter, an input, a direction) nor a view of one: `d_a = b` of sum(a * b) is copied."""
        if e in self.plan.returned:
            return self.names[e]
        text = materialize(self.printer, e, shape, self.graph, self.arguments)
        if text == self.printer.doprint(e) and self.aliases_argument(e):
            text = self.printer.backend.copy(text)
        return text

    def aliases_argument(self, e) -> bool:
        """Whether `e` is, through bare copies and views, an array the caller passed in."""
        defs = {step.statement.target: step.statement.expr for step in self.sched.steps}
        while True:
            if e in self.arguments:
                return True
            if e.is_Symbol and e in defs:
                e = defs[e]
                continue
            rule = rule_for(e)
            if rule is None or not rule.view or e.is_Atom:
                return False
            e = rule.tensor_args(e)[0]

    def grads_dict(self) -> str:
        parts = []
        for leaf in self.graph.params:
            g = self.sched.program.grads.get(leaf.name)
            if g is None:
                continue
            text = (self.names[g] if g in self.plan.returned
                    else self.returned_value(g, leaf.shape))
            parts.append(f"        {leaf.name!r}: {text},")
        return "{\n" + "\n".join(parts) + "\n    }"


def _contains(root, node, inside) -> bool:
    """Whether `node` occurs in the DAG under `root`, looking only into nodes where `inside(x)`
    (the nodes of one model line: a walk of the whole network per header was quadratic in depth)."""
    stack, seen = [root], set()
    while stack:
        x = stack.pop()
        if x == node:
            return True
        if x not in seen and (x is root or inside(x)):
            seen.add(x)
            stack.extend(x.args)
    return False


def code_only(line: str) -> str:
    """A source line without its trailing comment (the comment is the user's, the code is the math)."""
    try:
        for tok in tokenize.generate_tokens(io.StringIO(line).readline):
            if tok.type == tokenize.COMMENT:
                return line[:tok.start[1]].rstrip()
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return line


def node_math(node, named: dict, limit: int = 72, truncate: bool = True) -> str:
    """`h = relu(hidden_pre)`: the value a backward block differentiates, in terms of named values
    (cut at `limit` characters, or left out when longer and not `truncate`)."""
    if node is None or node not in named:
        return ""
    memo: dict = {}
    body = make(node.func, [substitute(a, named, memo) for a in node.args])
    text = f"{named[node].name} = {MathPrinter({}).doprint(body)}"
    if len(text) <= limit:
        return text
    return text[: limit - 1] + "…" if truncate else ""


def _update_text(printer, buffer: str, op: str, term) -> str:
    """`buffer op= term`, or the cheaper form a factor's rule offers (one entry per row for a
    scaled one-hot)."""
    for factor in sp.Mul.make_args(term):
        rule = rule_for(factor)
        text = rule.update(factor, term, printer, buffer, op) if rule and rule.update else None
        if text is not None:
            return text
    return f"{buffer} {op}= {printer.doprint(term)}"


def materialize(printer: Printer, expr: sp.Expr, shape: Shape, graph: Graph, arguments=frozenset()) -> str:
    """Print a returned value with exactly its declared shape and dtype, never aliasing a leaf or
    another of the function's `arguments` (a direction's arrays)."""
    text, backend = printer.doprint(expr), printer.backend
    constant = not (expr.free_symbols - {s for s in expr.free_symbols if s.is_integer})
    if constant and not (backend.device and graph.shapes(expr)):   # torch fills with numbers only
        return backend.translate(backend.new("full", f"{fmt(shape)}, {text}"))
    if graph.shapes(expr) != tuple(shape):   # a broadcast view made an array of its own
        return backend.translate(backend.own(f"np.broadcast_to({text}, {fmt(shape)})"))
    if expr in {leaf.symbol for leaf in graph.leaves.values()} or expr in arguments:
        return backend.copy(text)
    return text


def device_line(backend: Backend, lines: list[str], names: dict, arrays) -> list[str]:
    """`device = W.device` when the code makes new arrays on the device its arrays live on."""
    if not backend.device or not arrays.loads or not any("device=device" in line for line in lines):
        return []
    return [f"device = {names[arrays.loads[0].symbol]}.device"]


SECTION_TITLES = {0: "forward", 1: "backward", 2: "tangents", 3: "backward of the tangents"}


def _doc(program, graph: Graph, inputs, dtype: str, workspace: bool, direction: str | None) -> list[str]:
    name = program.name
    lines = []
    if program.directions:
        lines += [f"{direction}: a dict like params, one {dtype} array per parameter (the direction)"]
    lines += ["Inputs:" if inputs else "Inputs: none"]
    for leaf in inputs:
        kind = {"labels": f"int64 labels in [0, {leaf.classes})",
                "seed": "int64 seed of the dropout masks"}.get(leaf.kind, dtype)
        lines.append(f"    {leaf.name}: {fmt(leaf.shape)} {kind}")
    if workspace:
        lines += ["workspace: optional Workspace(); large products and gradients are then written into",
                  "    its arrays, kept from call to call (what the previous call returned is overwritten)"]
    lines.append("Returns:")
    if name == "forward":
        lines += [f"    {k}: {fmt(shape)} {dtype}" for k, (_, shape) in graph.outputs.items()]
        if not graph.outputs:
            lines.append("    {} (the model file declares no outputs)")
    elif name == "loss":
        lines.append(f"    loss: scalar {dtype}")
    elif name == "jvp":
        lines += [f"    the outputs, and the derivative of each along `{direction}`:"]
        lines += [f"    {k}: {fmt(shape)} {dtype}" for k, (_, shape) in graph.outputs.items()]
    elif name == "input_grad":
        lines.append(f"    loss: scalar {dtype}, and the gradient of the loss with respect to each input:")
        lines += [f"    {k!r}: {fmt(shape)} {dtype}" for k, shape in program.extra_shapes.items()]
    else:
        lines.append(f"    loss: scalar {dtype}, and the gradient of each parameter:")
        lines += [f"    {leaf.name!r}: {fmt(leaf.shape)} {dtype}" for leaf in graph.params]
        if name == "hvp":
            lines.append(f"    and H·v, the Hessian of the loss times `{direction}`, per parameter (same shapes)")
        if graph.states and program.state:
            lines.append("    and, third, the new value of each state array (running statistics):")
            lines += [f"    {leaf.name!r}: {fmt(leaf.shape)} {dtype}" for leaf in graph.states]
    return lines
