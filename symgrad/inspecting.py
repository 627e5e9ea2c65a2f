"""`symgrad show`, `explain`, `graph`, `stats` and `ir`: looking inside a compiled model."""
from __future__ import annotations

import sys

from rich.console import Console
from rich.syntax import Syntax

from compiler import compile_model, inspection
from compiler.draw import render
from compiler.explain import explain, explain_hessian


def print_code(text: str) -> None:
    """Syntax-highlighted on a terminal (rich), plain when piped."""
    if sys.stdout.isatty():
        Console().print(Syntax(text, "python", theme="ansi_dark", word_wrap=False))
    else:
        sys.stdout.write(text)


def cmd_show(args) -> int:
    result = compile_model(args.model, args.dtype, functions=args.functions, backend=args.backend)
    if args.grad:
        text = inspection.show_gradient(result, args.grad)
    elif args.forward:
        text = inspection.show_forward(result)
    else:
        text = result.source
    print_code(text)
    return 0


def cmd_explain(args) -> int:
    result = compile_model(args.model, "float64")
    if args.hessian:
        print(explain_hessian(result, latex=args.latex, only=args.grad))
        return 0
    params = args.grad or [leaf.name for leaf in result.graph.params]
    for name in params:
        print(explain(result, name, latex=args.latex))
        if len(params) > 1:
            print()
    return 0


def cmd_graph(args) -> int:
    result = compile_model(args.model, "float64")
    print(f"wrote {render(result, args.output)}")
    return 0


def cmd_stats(args) -> int:
    result = compile_model(args.model, args.dtype)
    table = inspection.stats(result, batch=args.batch)
    width = max(map(len, table))
    for key, value in table.items():
        shown = f"{value:,}" if isinstance(value, int) else str(value)
        print(f"{key:<{width}}  {shown}")
    return 0


def cmd_ir(args) -> int:
    result = compile_model(args.model, args.dtype)
    print("\n".join(inspection.ir_lines(result.graph, args.dtype)))
    return 0
