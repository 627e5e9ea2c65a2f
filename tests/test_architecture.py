"""The layering of the source, checked on its syntax trees (nothing is imported).

- nothing in compiler/ imports runtime, benchmarks or symgrad; runtime/ uses only the `compiler`
  package's public API (`import compiler`, `compiler.compile_model`), never a compiler submodule;
- no module imports another module's private (single-underscore) name;
- the import graph between compiler's modules has no cycles (function-level imports count too);
- the pipeline's layers point down: dsl -> trace -> canonical -> ad -> optimize -> schedule -> emit,
  the inspection modules above them, ops/shapes/errors/dag/graph at the bottom;
- no file in compiler/ is over 400 lines.

Nodes of the import graph are modules by dotted name; a package's `__init__.py` is the node of the
package itself (`compiler.emit`), and `from .emit import naming` is an edge to `compiler.emit.naming`
when that is a module, to `compiler.emit` when `naming` is a name defined in its `__init__`.

`python tests/test_architecture.py [compiler|symgrad|runtime|benchmarks]` prints the import graph
(module -> the project's modules it imports), for docs.
"""
from __future__ import annotations

import ast
import os
import sys
from dataclasses import dataclass

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("compiler", "symgrad", "runtime")
MAX_LINES = 400

# Layers of compiler/, bottom to top; a module may import its own layer and the layers below it.
LAYERS = [
    ("bottom", {"ops", "shapes", "errors", "dag", "graph", "mathtext"}),
    ("dsl", {"dsl", "hints"}),           # hints: the language's error messages name its functions
    ("trace", {"trace"}),
    ("canonical", {"canonical"}),
    ("ad", {"ad"}),
    ("derivatives", {"derivatives"}),    # reverse mode over reverse mode: hvp, jvp, input_grad
    ("lower", {"lower"}),                # after ad: ops kept whole for their VJP become their pieces
    ("optimize", {"optimize"}),
    ("schedule", {"schedule"}),
    ("fuse", {"fuse"}),                  # numba: what compiled loops compute, and their order
    ("emit", {"emit", "naming", "printer"}),  # naming, printer: moved into emit/, kept as aliases
    ("inspection", {"inspection", "explain", "draw", "eager"}),  # beside emit, reading the stages
    ("driver", {""}),                    # compiler/__init__.py: compile_model runs the chain
]
# Files over MAX_LINES that are someone else's work in progress (see test_no_file_is_too_long).
BEING_SPLIT: set[str] = set()


@dataclass(frozen=True)
class Import:
    source: str          # importing module, dotted
    target: str          # imported module, dotted (resolved; may be outside the project)
    names: tuple         # the names taken by `from target import ...` (empty for `import target`)
    path: str            # importing file, relative to ROOT
    line: int
    in_function: bool

    def where(self) -> str:
        scope = " (in a function)" if self.in_function else ""
        return f"{self.path}:{self.line}{scope}"


def module_files(packages=PACKAGES) -> dict[str, str]:
    """Dotted module name -> path relative to ROOT, for every .py file of the packages."""
    found = {}
    for package in packages:
        for folder, dirs, files in os.walk(os.path.join(ROOT, package)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                if name.endswith(".py"):
                    rel = os.path.relpath(os.path.join(folder, name), ROOT)
                    parts = rel[:-3].split(os.sep)
                    if parts[-1] == "__init__":
                        parts.pop()
                    found[".".join(parts)] = rel
    return found


def _function_lines(tree: ast.AST) -> set[int]:
    """ids of the import nodes that sit inside a function body."""
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for sub in ast.walk(node):
                if isinstance(sub, (ast.Import, ast.ImportFrom)):
                    inside.add(id(sub))
    return inside


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: str, modules: dict[str, str]) -> list[Import]:
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)
    inside = _function_lines(tree)
    is_package = path.endswith("__init__.py")
    found = []
    for node in ast.walk(tree):
        nested = id(node) in inside
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(module, alias.name, (), path, node.lineno, nested))
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, is_package, node)
            names = tuple(a.name for a in node.names)
            defined = tuple(n for n in names if f"{target}.{n}" not in modules)
            if defined or target not in modules:
                found.append(Import(module, target, defined, path, node.lineno, nested))
            for n in names:  # `from pkg import submodule` depends on the submodule
                if f"{target}.{n}" in modules:
                    found.append(Import(module, f"{target}.{n}", (), path, node.lineno, nested))
    return sorted(found, key=lambda i: (i.line, i.target))


def all_imports(packages=PACKAGES) -> list[Import]:
    modules = module_files(packages)
    return [imp for module, path in modules.items() for imp in imports_of(module, path, modules)]


def import_graph(prefix: str = "compiler") -> dict[str, list[str]]:
    """module -> the project modules it imports (module-level and function-level), sorted."""
    modules = module_files(PACKAGES + ("benchmarks",))
    graph = {m: set() for m in modules if m == prefix or m.startswith(prefix + ".")}
    for imp in all_imports(PACKAGES + ("benchmarks",)):
        if imp.source in graph and imp.target in modules:
            graph[imp.source].add(imp.target)
    return {m: sorted(t) for m, t in sorted(graph.items())}


def cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (or a self-import), Tarjan."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def shortest_cycle(graph: dict[str, list[str]], members: list[str]) -> list[str]:
    """One shortest cycle through the first of `members` (a strongly connected component)."""
    start, inside = members[0], set(members)
    paths, queue = {start: [start]}, [start]
    while queue:
        v = queue.pop(0)
        for w in graph.get(v, ()):
            if w == start:
                return paths[v] + [start]
            if w in inside and w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    return members


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def layer_of(module: str) -> int:
    """The index in LAYERS of a compiler module (by its first component under compiler/)."""
    parts = module.split(".")
    head = parts[1] if len(parts) > 1 else ""
    for rank, (_, members) in enumerate(LAYERS):
        if head in members:
            return rank
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_architecture.py")


def print_graph(prefix: str = "compiler", file=sys.stdout) -> None:
    """The import graph as `module -> imports`, one line per module, for pasting into docs."""
    graph = import_graph(prefix)
    width = max(map(len, graph))
    for module, targets in graph.items():
        print(f"{module:<{width}} -> {', '.join(targets) or '(nothing in the project)'}", file=file)


# ---- the checks ---------------------------------------------------------------------------------

def _top(name: str) -> str:
    return name.split(".")[0]


def test_compiler_imports_no_runtime_benchmarks_or_cli():
    bad = [f"{imp.where()}: {imp.source} imports {imp.target}" for imp in all_imports(("compiler",))
           if _top(imp.target) in ("runtime", "benchmarks", "symgrad")]
    assert not bad, "the compiler must not import the layers above it:\n" + "\n".join(bad)


def test_runtime_uses_only_the_compilers_public_api():
    bad = [f"{imp.where()}: {imp.source} imports {imp.target}" for imp in all_imports(("runtime",))
           if imp.target.startswith("compiler.")
           or imp.target == "compiler" and any(is_private(n) for n in imp.names)]
    assert not bad, "runtime may use `compiler` (its public API) only:\n" + "\n".join(bad)


def test_no_private_names_are_imported():
    bad = [f"{imp.where()}: {imp.source} imports {name} from {imp.target}"
           for imp in all_imports() for name in imp.names if is_private(name)]
    bad += [f"{imp.where()}: {imp.source} imports the private module {imp.target}"
            for imp in all_imports() if any(is_private(p) for p in imp.target.split("."))]
    assert not bad, "no module imports another module's private name:\n" + "\n".join(bad)


def test_compiler_import_graph_has_no_cycles():
    graph = import_graph("compiler")
    found = cycles(graph)
    if found:
        edges = {(i.source, i.target): i for i in all_imports(("compiler",))}
        report = []
        for component in found:
            report.append("cycle among " + ", ".join(component) + ", e.g. "
                          + " -> ".join(shortest_cycle(graph, component)) + "; its edges:")
            members = set(component)
            for source in component:
                for target in graph[source]:
                    if target in members:
                        report.append(f"  {source} -> {target}  ({edges[source, target].where()})")
        pytest.fail("the compiler's import graph has cycles:\n" + "\n".join(report))


def test_layers_point_down():
    bad = []
    for imp in all_imports(("compiler",)):
        if _top(imp.target) != "compiler":
            continue
        source, target = layer_of(imp.source), layer_of(imp.target)
        if target > source:
            bad.append(f"{imp.where()}: {imp.source} ({LAYERS[source][0]}) imports {imp.target} "
                       f"({LAYERS[target][0]}), a layer above it")
    assert not bad, ("compiler's layers point down (" + " < ".join(name for name, _ in LAYERS)
                     + "):\n" + "\n".join(bad))


def _too_long(paths) -> list[str]:
    out = []
    for path in paths:
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            lines = sum(1 for _ in f)
        if lines > MAX_LINES:
            out.append(f"{path}: {lines} lines")
    return out


def test_no_file_is_too_long():
    paths = [p for p in module_files(("compiler",)).values() if p not in BEING_SPLIT]
    bad = _too_long(paths)
    assert not bad, f"files in compiler/ over {MAX_LINES} lines:\n" + "\n".join(bad)


@pytest.mark.skipif(not BEING_SPLIT, reason="no file is being split")
@pytest.mark.xfail(strict=False, reason="being split by its owner: " + ", ".join(sorted(BEING_SPLIT)))
def test_files_being_split_are_not_too_long():
    bad = _too_long(sorted(BEING_SPLIT))
    assert not bad, f"files in compiler/ over {MAX_LINES} lines:\n" + "\n".join(bad)


def test_the_checks_see_the_imports():
    """The parser itself: relative imports resolve, submodules are told from names."""
    graph = import_graph("compiler")
    assert "compiler.ops" in graph["compiler.explain"]       # from . import ops as P
    assert "compiler.inspection" in graph["compiler.explain"]
    assert any(t.startswith("compiler.dsl") for t in graph["compiler.trace"])
    assert cycles({"a": ["b"], "b": ["a"], "c": ["a"]}) == [["a", "b"]]
    assert shortest_cycle({"a": ["b"], "b": ["c", "a"], "c": ["a"]}, ["a", "b", "c"]) == ["a", "b", "a"]
    assert not is_private("__version__") and is_private("_shape")


if __name__ == "__main__":
    print_graph(sys.argv[1] if len(sys.argv) > 1 else "compiler")
