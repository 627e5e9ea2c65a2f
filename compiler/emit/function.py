"""Emit: scheduled statements -> one readable, standalone NumPy module (Jinja2 template + printer)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import jinja2
import sympy as sp

from . import naming
from . import ops as P
from .graph import Graph
from .optimize import count_ops
from .printer import Printer
from .schedule import Schedule, peak_bytes
from .shapes import Shape, ShapeMismatch, broadcast, fmt

_ENV = jinja2.Environment(loader=jinja2.PackageLoader("compiler", "templates"),
                          trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                          undefined=jinja2.StrictUndefined, autoescape=False)


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


def _shape_literal(shape: Shape) -> str:
    items = [repr(d) for d in shape]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def value_names(graph: Graph, sched: Schedule) -> tuple[dict, naming.Namer]:
    """Leaves keep the user's names; forward values their variable or layer names; adjoints d_<name>."""
    namer = naming.Namer()
    names: dict = {}
    for leaf in graph.leaves.values():
        names[leaf.symbol] = namer.fresh(leaf.name)
    leaf_of = {leaf.symbol: names[leaf.symbol] for leaf in graph.leaves.values()}
    forward_name: dict = {}
    for step in sched.steps:
        st = step.statement
        if st.kind == "forward":
            names[st.target] = namer.fresh(graph.hints.get(st.node) or naming.op_name(st.node))
            forward_name[st.node] = names[st.target]
        elif st.kind == "shared":
            names[st.target] = namer.fresh(naming.op_name(st.expr))
        else:
            base = (leaf_of.get(st.node) or forward_name.get(st.node) or graph.hints.get(st.node)
                    or naming.op_name(st.node))
            names[st.target] = namer.fresh(naming.adjoint(base))
    return names, namer


def _code_only(line: str) -> str:
    """A source line without its trailing comment (the comment is the user's, the code is the math)."""
    import io
    import tokenize
    try:
        for tok in tokenize.generate_tokens(io.StringIO(line).readline):
            if tok.type == tokenize.COMMENT:
                return line[:tok.start[1]].rstrip()
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return line


def _node_math(node, named: dict, limit: int = 72) -> str:
    """`h = relu(hidden_pre)`: the value a backward block differentiates, in terms of named values."""
    if node is None or node not in named:
        return ""
    from .explain import MathPrinter
    from .dag import substitute
    memo: dict = {}
    body = node.func(*[substitute(a, named, memo) for a in node.args])
    text = f"{named[node].name} = {MathPrinter({}).doprint(body)}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _line_ref(graph: Graph, line: int) -> str:
    return f"{os.path.basename(graph.path)}:{line}" if line else ""


def emit_function(graph: Graph, sched: Schedule, summary: str, dtype: str,
                  standalone: bool = False, workspace: bool = False) -> tuple[FunctionCode, set]:
    """One generated function. `standalone` code reads symbolic sizes off its inputs instead of
    from the module's validation (for snippets that run on their own). A `workspace` function
    writes its large products into arrays the caller keeps from call to call (see Workspace)."""
    program = sched.program
    names, namer = value_names(graph, sched)
    shapes = graph.shapes
    printer = Printer(names, shapes)
    buffer_fn = namer.fresh("buffer") if workspace else None
    buffered = set()  # statements written into the workspace

    def into_buffer(target, expr):
        """`np.matmul(a, b, out=buffer('name', shape))` for a large product, else None."""
        if (buffer_fn is None or not isinstance(expr, P.matmul) or not _large(shapes(expr))
                or any(len(shapes(a)) > 2 for a in expr.args)):  # stacked products run slower with out=
            return None
        buffered.add(target)
        a, b = (printer.doprint(e) for e in expr.args)
        return f"np.matmul({a}, {b}, out={buffer_fn}({names[target]!r}, {fmt(shapes(expr))}))"

    used: set = set()
    for step in sched.steps:
        used |= step.statement.expr.free_symbols
    for e in program.results():
        used |= e.free_symbols
    leaves = [leaf for leaf in graph.leaves.values() if leaf.symbol in used]
    params = [leaf for leaf in graph.params if leaf.symbol in used or program.grads]
    params += [leaf for leaf in graph.states if leaf.symbol in used]
    inputs = [leaf for leaf in graph.inputs if leaf.symbol in used]
    dims = sorted({s.name for s in used if s.is_Symbol and s.is_integer})

    loaded = inputs + params
    loads = [(names[leaf.symbol], "params" if leaf.kind in ("param", "state") else "inputs", leaf)
             for leaf in loaded]
    if standalone:
        prologue = []
        for d in dims:
            leaf = next(lf for lf in graph.inputs if d in lf.shape)
            prologue.append(f"{d} = inputs[{leaf.name!r}].shape[{leaf.shape.index(d)}]")
        prologue += [f"{var} = {where}[{leaf.name!r}]" for var, where, leaf in loads]
    else:
        prologue = _checked_prologue(program.name, loads, dims, params, inputs)

    operands = set()
    for step in sched.steps:
        operands |= step.statement.expr.free_symbols
    # a gradient no other statement reads is given its exact shape in place; one that others
    # read keeps its own shape there and is materialised on return
    grad_of = {g: leaf for leaf in graph.params
               for g in [program.grads.get(leaf.name)] if g is not None and g.is_Symbol
               and g not in operands}
    body: list[str] = []
    section = None
    last_grad_line = None
    owned: set = set()  # arrays this function allocated (not views of the caller's arrays)
    forward_nodes_named = {st.node: sp.Symbol(names[st.target], real=True)
                           for st in (step.statement for step in sched.steps) if st.kind == "forward"}
    for step in sched.steps:
        st = step.statement
        kind = "backward" if st.backward else "forward"
        if kind != section:
            section = kind
            body.append("")
            body.append(f"# ---- {kind} {'-' * (90 - len(kind))}")
        if kind == "backward" and st.kind == "backward" and st.line != last_grad_line and st.line:
            last_grad_line = st.line
            math = _node_math(st.source if st.source is not None else st.node, forward_nodes_named)
            body.append(f"# grad of {_line_ref(graph, st.line)}: {_code_only(graph.source_line(st.line))}"
                        + (f"  [{math}]" if math else ""))
        comment = fmt(shapes(st.target))
        if kind == "forward" and st.line:
            comment += f"  {_line_ref(graph, st.line)}"
        reuse = None if st.target in grad_of else _reusable(st, step, owned, shapes)
        if st.target in grad_of:  # returned: exactly the parameter's shape and dtype, never an alias
            leaf = grad_of[st.target]
            text = (shapes(st.expr) == tuple(leaf.shape) and into_buffer(st.target, st.expr)
                    or _materialize(printer, st.expr, leaf.shape, dtype, graph))
            comment = fmt(leaf.shape)
        elif reuse is not None:  # the operand dies here: update its buffer instead of allocating
            buffer, op, rest = reuse
            update = _update_text(printer, names[buffer], op, rest)
            body.append(f"{update}  # in place: {names[buffer]} is not read again")
            text = names[buffer]
        elif (fresh := _fresh_term(st.expr, shapes(st.target), shapes)) is not None:
            # `x @ W + b`: add the rest into the product's new buffer instead of allocating another
            rest = st.expr - fresh
            op, rest = ("-", -rest) if rest.could_extract_minus_sign() else ("+", rest)
            product = into_buffer(st.target, fresh) or printer.doprint(fresh)
            body.append(f"{names[st.target]} = {product}  # {comment}")
            body.append(f"{names[st.target]} {op}= {printer.doprint(rest)}  # in place")
            text = None  # both lines are written
        else:
            text = into_buffer(st.target, st.expr) or printer.doprint(st.expr)
        if text is not None:
            body.append(f"{names[st.target]} = {text}  # {comment}")
        if (not st.expr.is_Atom and not P.rule_for(st.expr).view) or st.expr in owned:
            owned.add(st.target)
        if step.release:
            body.append("del " + ", ".join(names[s] for s in step.release))

    def grads_dict() -> str:
        parts = []
        for leaf in graph.params:
            if leaf.name not in program.grads:
                continue
            g = program.grads[leaf.name]
            text = names[g] if g in grad_of else _materialize(printer, g, leaf.shape, dtype, graph)
            parts.append(f"        {leaf.name!r}: {text},")
        return "{\n" + "\n".join(parts) + "\n    }"

    if program.outputs or (program.loss is None and not program.grads):
        items = [f"{k!r}: {_materialize(printer, e, graph.outputs[k][1], dtype, graph)}"
                 for k, e in program.outputs.items()]
        ret = "{" + ", ".join(items) + "}"
    elif program.loss is None:  # a gradient slice
        body.append("")
        ret = grads_dict()
    else:
        loss_text = _materialize(printer, program.loss, (), dtype, graph)
        if not program.grads:
            ret = loss_text
        else:
            body.append("")
            ret = loss_text + ", " + grads_dict()
            if program.state:  # running statistics after this step
                shapes_of = {leaf.name: leaf.shape for leaf in graph.states}
                parts = [f"        {k!r}: {_materialize(printer, e, shapes_of[k], dtype, graph)},"
                         for k, e in program.state.items()]
                ret += ", {\n" + "\n".join(parts) + "\n    }"
    if buffered:
        body.insert(0, f"{buffer_fn} = _fresh if workspace is None else workspace  # where large products go")
    doc = _doc(program.name, graph, inputs, dtype, workspace)
    fn = FunctionCode(program.name, summary, doc, [p.name for p in params],
                      [i.name for i in inputs], prologue, body, ret, workspace)
    return fn, printer.helpers


LARGE = 65536  # elements (sizes such as B taken as 256): worth keeping in a Workspace between calls


def _large(shape) -> bool:
    n = 1
    for d in shape:
        n *= d if isinstance(d, int) else 256
    return n >= LARGE


def _reusable(st, step, owned: set, shapes):
    """`T = S * rest` or `T = S + rest` (the forms the op's rule offers) where S is an array this
    function allocated, of T's shape, that dies at this statement: compute it as `S *= rest` and let
    T name the same buffer."""
    expr = st.expr
    rule = P.rule_for(expr)
    for arg, op, rest in (rule.in_place(expr) if rule is not None else ()):
        if (arg.is_Symbol and arg in step.release and arg in owned and arg != st.target
                and shapes(arg) == shapes(st.target)):
            if arg in rest.free_symbols or rest.is_Number and (op == "+" and rest == 0
                                                               or op == "*" and rest == -1):
                continue
            if not _fits_into(rest, shapes(st.target), shapes):
                continue  # the update must not grow the buffer (the shape invariant, once more)
            if op == "+" and rest.could_extract_minus_sign():
                return arg, "-", -rest
            return arg, op, rest
    return None


def _update_text(printer, buffer: str, op: str, term) -> str:
    """`buffer op= term`, or the cheaper form a factor's rule offers (one entry per row for a
    scaled one-hot)."""
    for factor in sp.Mul.make_args(term):
        rule = P.rule_for(factor)
        text = rule.update(factor, term, printer, buffer, op) if rule and rule.update else None
        if text is not None:
            return text
    return f"{buffer} {op}= {printer.doprint(term)}"


def _fresh_term(expr, shape, shapes):
    """The matrix product in a sum `a @ b + rest` that already has the sum's full shape: its result is
    a new array the rest can be added into."""
    if not isinstance(expr, sp.Add):
        return None
    for term in expr.args:
        if isinstance(term, P.matmul) and shapes(term) == shape and _fits_into(expr - term, shape, shapes):
            return term
    return None


def _fits_into(update, shape, shapes) -> bool:
    """An in-place update `buffer op= update` computes the same as the expression it replaces only
    when `update` broadcasts into the buffer's shape."""
    try:
        return broadcast(shapes(update), shape) == tuple(shape)
    except ShapeMismatch:
        return False


def _checked_prologue(fn_name, loads, dims, params, inputs) -> list[str]:
    """Load the arrays and check the common case inline (names, shapes, dtypes, label ranges: a
    few attribute reads); anything else goes to _validate, which says precisely what is wrong."""
    lines = ["try:  # the arrays are what the module was compiled for?"]
    lines += [f"    {var} = {where}[{leaf.name!r}]" for var, where, leaf in loads]
    binders = {}
    for var, where, leaf in loads:
        for axis, d in enumerate(leaf.shape):
            if isinstance(d, str) and d not in binders:
                binders[d] = f"{var}.shape[{axis}]"
                lines.append(f"    {d} = {var}.shape[{axis}]")
    conds = [f"len(inputs) == {len(inputs)}", *(f"{d} > 0" for d in binders)]  # B = 0: _validate says why
    for var, where, leaf in loads:
        conds.append(f"{var}.shape == {fmt(leaf.shape)}")
        if leaf.kind in ("labels", "seed"):
            conds.append(f"{var}.dtype == np.int64")
            if leaf.kind == "labels":
                conds.append(f"{var}.view(np.uint64).max() < {leaf.classes}")
        else:
            conds.append(f"{var}.dtype == DTYPE")
    lines.append("    ok = (" + conds[0])
    lines += [f"          and {c}" for c in conds[1:]]
    lines[-1] += ")"
    lines += ["except (KeyError, AttributeError, IndexError, TypeError, ValueError):", "    ok = False",
              "if not ok:",
              f"    dims = _validate({fn_name!r}, params, inputs, {[p.name for p in params]}, "
              f"{[i.name for i in inputs]})"]
    lines += [f"    {d} = dims[{d!r}]" for d in dims]
    lines += [f"    {var} = {where}[{leaf.name!r}]" for var, where, leaf in loads]
    return lines


def _materialize(printer: Printer, expr: sp.Expr, shape: Shape, dtype: str, graph: Graph) -> str:
    """Print a returned value with exactly its declared shape and dtype, never aliasing a leaf."""
    text = printer.doprint(expr)
    if not (expr.free_symbols - {s for s in expr.free_symbols if s.is_integer}):
        return f"np.full({_shape_literal(shape)}, {text}, dtype=DTYPE)"
    if graph.shapes(expr) != tuple(shape):
        return f"np.broadcast_to({text}, {fmt(shape)}).astype(DTYPE)"
    if expr in {leaf.symbol for leaf in graph.leaves.values()}:
        return f"{text}.copy()"
    return text


def _doc(name: str, graph: Graph, inputs, dtype: str, workspace: bool = False) -> list[str]:
    lines = ["Inputs:" if inputs else "Inputs: none"]
    for leaf in inputs:
        kind = {"labels": f"int64 labels in [0, {leaf.classes})",
                "seed": "int64 seed of the dropout masks"}.get(leaf.kind, dtype)
        lines.append(f"    {leaf.name}: {fmt(leaf.shape)} {kind}")
    if workspace:
        lines += ["workspace: optional Workspace(); large products and gradients are then written into",
                  "    its arrays, kept from call to call (what the previous call returned is overwritten)"]
    lines.append("Returns:")
    if name == "forward":
        for k, (_, shape) in graph.outputs.items():
            lines.append(f"    {k}: {fmt(shape)} {dtype}")
        if not graph.outputs:
            lines.append("    {} (the model file declares no outputs)")
    elif name == "loss":
        lines.append(f"    loss: scalar {dtype}")
    else:
        lines.append(f"    loss: scalar {dtype}, and the gradient of each parameter:")
        for leaf in graph.params:
            lines.append(f"    {leaf.name!r}: {fmt(leaf.shape)} {dtype}")
        if graph.states:
            lines.append("    and, third, the new value of each state array (running statistics):")
            for leaf in graph.states:
                lines.append(f"    {leaf.name!r}: {fmt(leaf.shape)} {dtype}")
    return lines


def render_snippet(graph: Graph, sched: Schedule, *, title: str, summary: str, dtype: str,
                   model_path: str) -> str:
    """One function on its own (a gradient's slice, the forward): it reads its sizes off its inputs."""
    fn, helpers = emit_function(graph, sched, summary, dtype, standalone=True)
    return _ENV.get_template("snippet.py.j2").render(
        title=title, model_path=model_path, dtype=dtype, fn=fn,
        helpers=[h.helper.rstrip("\n") for h in sorted(helpers, key=lambda h: h.__name__)])


def render_module(graph: Graph, schedules: dict[str, Schedule], dtype: str, version: str,
                  model_path: str) -> str:
    summaries = {
        "forward": "The model's outputs, for inference: no loss and no backward work.",
        "loss": "The scalar loss.",
        "loss_and_grad": "The loss and the gradient of every parameter, fused: the backward pass "
                         "reuses the forward's values.",
    }
    functions, helpers = [], set()
    for name in ("forward", "loss", "loss_and_grad"):
        fn, used = emit_function(graph, schedules[name], summaries[name], dtype,
                                 workspace=name == "loss_and_grad")
        functions.append(fn)
        helpers |= used
    lag = schedules["loss_and_grad"]
    fwd_ops = sum(count_ops(s.statement.expr) for s in lag.steps if not s.statement.backward)
    bwd_ops = sum(count_ops(s.statement.expr) for s in lag.steps if s.statement.backward)
    itemsize = 4 if dtype == "float32" else 8
    small = peak_bytes(lag, graph.shapes, {"B": 1}, itemsize)
    large = peak_bytes(lag, graph.shapes, {"B": 1001}, itemsize)
    ops = {"forward": fwd_ops, "backward": bwd_ops,
           "per_sample": round((large - small) / 1000), "fixed": small - round((large - small) / 1000),
           "ratio": f"{bwd_ops / fwd_ops:.2f}" if fwd_ops else "n/a", "shared": lag.program.shared}
    label_dtype = "int64"
    inputs = [{"name": leaf.name, "shape": _shape_literal(leaf.shape),
               "dtype": label_dtype if leaf.kind in ("labels", "seed") else dtype,
               "classes": leaf.classes}
              for leaf in graph.inputs]
    params = [{"name": leaf.name, "shape": _shape_literal(leaf.shape), "init": leaf.init}
              for leaf in graph.params]
    states = [{"name": leaf.name, "shape": _shape_literal(leaf.shape), "init": leaf.init}
              for leaf in graph.states]
    outputs = [{"name": k, "shape": _shape_literal(shape)} for k, (_, shape) in graph.outputs.items()]
    title = os.path.splitext(os.path.basename(model_path))[0]
    notes = sorted({f"{_line_ref(graph, line)}: {text}" if line else text for line, text in graph.notes})
    return _ENV.get_template("module.py.j2").render(
        title=title, version=version, model_path=model_path, sha256=graph.sha256, dtype=dtype,
        ops=ops, notes=notes, params=params, states=states, inputs=inputs, outputs=outputs,
        outputs_doc="{" + ", ".join(f"{k!r}: array" for k in graph.outputs) + "}",
        helpers=[h.helper.rstrip("\n") for h in sorted(helpers, key=lambda h: h.__name__)],
        functions=functions)
