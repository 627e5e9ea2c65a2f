"""Draw the forward + backward DAG of `loss_and_grad` with graphviz: one node per statement,
labelled with its name, op and shape; forward and backward in different colours; values that CSE
shared drawn with a double border; the model-file line as each node's tooltip."""
from __future__ import annotations

import os

import graphviz

from .emit import value_names
from .errors import ModelError
from .shapes import fmt

COLOURS = {"leaf": "#e8e8e8", "forward": "#cfe3ff", "backward": "#ffd9b3"}


def dot_source(compiled) -> str:
    graph = compiled.graph
    sched = compiled.schedules["loss_and_grad"]
    names, _ = value_names(graph, sched)
    g = graphviz.Digraph(name="symgrad", graph_attr={"rankdir": "TB", "fontname": "Helvetica",
                                                     "label": f"{os.path.basename(graph.path)}: "
                                                              "forward (blue) and backward (orange)"},
                         node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica",
                                    "fontsize": "10"})
    used = set()
    for step in sched.steps:
        used |= step.statement.expr.free_symbols
    for leaf in graph.leaves.values():
        if leaf.symbol in used:
            g.node(names[leaf.symbol], f"{leaf.name}\n{leaf.kind} {fmt(leaf.shape)}",
                   fillcolor=COLOURS["leaf"], tooltip=f"line {leaf.line}: {graph.source_line(leaf.line)}")
    for step in sched.steps:
        st = step.statement
        kind = "backward" if st.backward else "forward"
        name = names[st.target]
        op = type(st.expr).__name__ if not st.expr.is_Atom else "copy"
        attrs = {"fillcolor": COLOURS[kind],
                 "tooltip": f"line {st.line}: {graph.source_line(st.line)}" if st.line else name}
        if st.kind == "shared":
            attrs["peripheries"] = "2"
        g.node(name, f"{name}\n{op} {fmt(graph.shapes(st.target))}", **attrs)
        for sym in sorted(st.expr.free_symbols, key=lambda s: names.get(s, s.name)):
            if sym in names:
                g.edge(names[sym], name, color="#d9822b" if kind == "backward" else "#4a7bd0")
    results = sched.program.results()
    g.node("loss (returned)", "loss", shape="ellipse", fillcolor="#ffffff")
    for sym in sorted(results[0].free_symbols, key=lambda s: names.get(s, s.name)):
        if sym in names:
            g.edge(names[sym], "loss (returned)")
    return g.source


def render(compiled, path: str) -> str:
    """Write .dot directly; other formats (.svg, .png, .pdf) go through the `dot` program."""
    source = dot_source(compiled)
    fmt = os.path.splitext(path)[1].lstrip(".").lower()
    if fmt in ("dot", "gv"):
        with open(path, "w", encoding="utf-8") as f:
            f.write(source)
        return path
    try:
        data = graphviz.Source(source).pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise ModelError(f"drawing {path} needs the graphviz program `dot`, which is not installed",
                         op="graph", fix="install it (Debian/Ubuntu: apt install graphviz; macOS: brew "
                                         "install graphviz; conda: conda install graphviz), or write "
                                         "a .dot file instead") from None
    except (ValueError, graphviz.CalledProcessError) as e:
        raise ModelError(f"graphviz cannot write {path}: {e}", op="graph",
                         fix="use .svg, .png, .pdf or .dot") from None
    with open(path, "wb") as f:
        f.write(data)
    return path
