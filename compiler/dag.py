"""Walking and rewriting SymPy DAGs: the three traversals every stage uses, written once.

    postorder(roots)              distinct nodes, operands before users
    rewrite(expr, memo, ...)      rebuild bottom-up, replacing nodes (each distinct node visited once)
    fold(expr, leaf, combine)     a fact computed bottom-up, once per distinct node
    toposort(items, deps, key)    Kahn's order of any dependency graph, ties broken by a key

All three are iterative: deep graphs (a 100-layer tanh chain) must not hit Python's recursion
limit, and all are deterministic (operand order or the key, never set order).
"""
from __future__ import annotations

import heapq
from typing import Callable, Hashable, Iterable

import sympy as sp

from .ops import conform, rebuild, rule_for


def tensor_operands(node: sp.Basic) -> tuple:
    """The operands that are values (not static arguments such as axes or shapes)."""
    rule = rule_for(node)
    return rule.tensor_args(node) if rule else node.args


def postorder(roots, operands=tensor_operands, atoms: bool = False) -> list:
    """Distinct nodes under `roots`, operands before users. `operands(node)` returning None leaves
    a node out and stops there; atoms without operands are included only when asked."""
    order, seen, stack = [], set(), [(r, False) for r in reversed(list(roots))]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if node in seen:
            continue
        seen.add(node)
        children = operands(node)
        if node.is_Atom and not children:  # an atom may have an operand: a symbol bound to a value
            if atoms:
                order.append(node)
            continue
        if children is None:
            continue
        stack.append((node, True))
        stack.extend((a, False) for a in reversed(children) if a not in seen)
    return order


def forward_nodes(roots: list) -> list:
    """Distinct non-leaf value nodes under `roots`, operands before users."""
    return postorder(roots)


def rewrite(expr: sp.Basic, memo: dict, *, before: Callable | None = None,
            after: Callable | None = None, build: Callable = rebuild, shapes=None) -> sp.Basic:
    """`expr` rebuilt bottom-up; `memo` maps each visited node to its replacement (share it across
    calls to rewrite several roots of one DAG consistently).

    before(node) -> a replacement, or None to look inside: a node replaced here is not descended.
    build(node, new_args) -> the node rebuilt from its rewritten operands (by default the node
        itself when none changed, else rebuilt by its rule (`ops.make`): SymPy's scalar algebra runs again, so
        `g*x - g*x` becomes 0).
    after(old, fresh) -> a replacement of the rebuilt node, or None to keep it.
    With `shapes`, every replacement keeps the shape of the node it stands for (see `conform`).
    """
    stack = [expr]
    while stack:
        node = stack[-1]
        if node in memo:
            stack.pop()
            continue
        value = before(node) if before is not None else None
        if value is None and (node.is_Atom or not node.args):
            value = node
        if value is None:
            pending = [a for a in node.args if a not in memo]
            if pending:
                stack.extend(pending)
                continue
            args = tuple(memo[a] for a in node.args)
            value = build(node, args)
            replaced = after(node, value) if after is not None else None
            value = value if replaced is None else replaced
        if (shapes is not None and value is not node and not isinstance(node, sp.Tuple)
                and not isinstance(value, sp.Tuple)):
            value = conform(value, shapes(node), shapes)
        memo[node] = value
        stack.pop()
    return memo[expr]


def fold(expr: sp.Basic, leaf: Callable, combine: Callable, cache: dict):
    """A fact about `expr` computed bottom-up, once per distinct node: `leaf(atom)` for atoms,
    `combine([facts of the operands])` for the rest. Keep `cache` across calls to walk the subtrees
    several expressions share only once."""
    return rewrite(expr, cache, before=lambda node: leaf(node) if node.is_Atom else None,
                   build=lambda node, facts: combine(facts))


def substitute(expr: sp.Basic, mapping: dict, memo: dict, shapes=None) -> sp.Basic:
    """Replace sub-expressions by `mapping` (DAG-safe, each distinct node once)."""
    return rewrite(expr, memo, before=mapping.get, shapes=shapes)


def substitute_until_fixed(expr: sp.Basic, mapping: dict, shapes=None) -> sp.Basic:
    """Substitute again while anything changes (a replacement may itself contain mapped nodes)."""
    while mapping:
        new = substitute(expr, mapping, {}, shapes)
        if new == expr:
            break
        expr = new
    return expr


def toposort(items: Iterable[Hashable], deps: Callable, key: Callable) -> list:
    """Kahn's topological order: an item comes after everything `deps(item)` returns (those among
    `items`); among the ready items the smallest `key(item)` goes first. Raises on a cycle."""
    items = list(items)
    index = {item: i for i, item in enumerate(items)}
    needs = {item: {d for d in deps(item) if d in index} for item in items}
    users: dict = {item: [] for item in items}
    for item, ds in needs.items():
        for d in ds:
            users[d].append(item)
    waiting = {item: len(ds) for item, ds in needs.items()}
    ready = [(key(item), index[item]) for item in items if not needs[item]]
    heapq.heapify(ready)
    order = []
    while ready:
        _, i = heapq.heappop(ready)
        item = items[i]
        order.append(item)
        for user in users[item]:
            waiting[user] -= 1
            if not waiting[user]:
                heapq.heappush(ready, (key(user), index[user]))
    if len(order) != len(items):
        raise ValueError("cycle in a dependency graph")
    return order
