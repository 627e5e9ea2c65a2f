"""Declarations: the leaves of a model (Input, Labels, Tokens, Param, State and dropout's seed),
checked and recorded once each, and the traced symbol (or, under the eager oracle, the array) of a
leaf."""
from __future__ import annotations

import re

import numpy as np
import sympy as sp

from ..graph import Leaf
from ..shapes import fmt
from .recording import error, recorder
from .tensor import Tensor

INIT_RULES = re.compile(r"^(auto|zeros|ones|he_normal|xavier_normal|"
                        r"normal\([0-9.eE+-]+\)|constant\([0-9.eE+-]+\))$")


def declare(name: str, shape, kind: str, what: str | None = None, **extra) -> Leaf:
    rec = recorder()
    what = what or {"param": "Param", "input": "Input", "labels": "Labels", "seed": "dropout",
                    "state": "State"}[kind]
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", name):
        raise error(f"bad name {name!r}", op=what, fix="use letters, digits, _ and . (e.g. 'hidden.W')")
    if kind in ("input", "labels") and name in ("params", "workspace", "vectors", "tangents", "limit"):
        raise error(f"the input name {name!r} is taken: the generated functions have an argument of "
                    "that name", op=what, fix="rename the input (e.g. 'x')")
    if name in rec.leaves:
        prev = rec.leaves[name]
        raise error(f"duplicate name {name!r} (first declared on line {prev.line})", op=what,
                    fix="give every input and parameter its own name")
    shape = (shape,) if isinstance(shape, (int, str)) else tuple(shape)
    for d in shape:
        if isinstance(d, bool) or not (isinstance(d, str) and d.isidentifier() or isinstance(d, int) and d > 0):
            raise error(f"bad dimension {d!r} in shape {shape}", op=what,
                        fix="dimensions are positive ints or names of symbolic sizes like 'B'")
    if kind in ("param", "state") and any(isinstance(d, str) for d in shape):
        raise error(f"parameter {name!r} has a symbolic dimension {fmt(shape)}", op=what,
                    fix="parameters have fixed sizes; only inputs carry the batch dimension")
    symbol = sp.Symbol(name, real=True)
    leaf = Leaf(name=name, symbol=symbol, shape=shape, kind=kind, line=rec.line(), **extra)
    rec.leaves[name] = leaf
    rec.shapes.set(symbol, shape)
    return leaf


def Input(name: str, shape) -> Tensor:
    """A float input array; name symbolic dims with strings, e.g. ("B", 64)."""
    return leaf_tensor(declare(name, shape, "input"))


def Labels(name: str, shape, classes: int) -> Tensor:
    """Integer class labels in [0, classes)."""
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 2:
        raise error(f"classes must be an int >= 2, got {classes!r}", op="Labels")
    return leaf_tensor(declare(name, shape, "labels", classes=classes), "int")


def Tokens(name: str, shape, vocab: int) -> Tensor:
    """Integer token ids in [0, vocab), e.g. Tokens("ids", ("B", 16), vocab=27). At the generated
    module's boundary they are labels (int64, range-checked); `embedding` looks them up and
    softmax_cross_entropy takes them as targets."""
    if isinstance(vocab, bool) or not isinstance(vocab, int) or vocab < 2:
        raise error(f"vocab must be an int >= 2, got {vocab!r}", op="Tokens",
                    fix='give the vocabulary size, e.g. Tokens("ids", ("B", 16), vocab=27)')
    return leaf_tensor(declare(name, shape, "labels", what="Tokens", classes=vocab), "int")


def Param(name: str, shape=(), init="auto", dtype: str = "float") -> Tensor:
    """A trainable float parameter. init: a number, 'zeros', 'ones', 'he_normal',
    'xavier_normal', 'normal(std)', 'constant(v)' or 'auto' (set by the activation that follows)."""
    if dtype not in ("float", "float32", "float64"):
        raise error(f"parameter {name!r} has dtype {dtype!r}; parameters are trainable floats", op="Param",
                    fix="integers and booleans have no gradient: make it an Input or a Python "
                        "constant, or drop dtype (the module's float type is set at compile time)")
    if isinstance(init, bool):
        raise error(f"init of {name!r} is a boolean; parameters are trainable floats", op="Param",
                    fix="use a number such as 1.0 or a rule name such as 'zeros'")
    if isinstance(init, (int, float)):
        init = f"constant({float(init)!r})"
    if not isinstance(init, str) or not INIT_RULES.match(init):
        raise error(f"unknown init rule {init!r} for {name!r}", op="Param",
                    fix="use a number, 'zeros', 'ones', 'he_normal', 'xavier_normal', 'normal(0.01)' "
                        "or 'constant(0.5)'")
    return leaf_tensor(declare(name, shape, "param", init=init))


def State(name: str, shape=(), init: str = "zeros") -> Tensor:
    """A non-trainable array carried between steps (e.g. batch norm's running statistics): it is
    read like a parameter, never differentiated, and its new value is returned by loss_and_grad."""
    if not isinstance(init, str) or not INIT_RULES.match(init):
        raise error(f"unknown init rule {init!r} for state {name!r}", op="State")
    return leaf_tensor(declare(name, shape, "state", init=init))


def leaf_tensor(leaf: Leaf, dtype: str = "float") -> Tensor:
    """The traced symbol of a leaf, or under the eager oracle the array bound to it (its symbolic
    dims are read off the first array that has them)."""
    eager = recorder().eager
    if eager is None:
        return Tensor(leaf.symbol, leaf.shape, dtype, leaf)
    if leaf.name not in eager.arrays:
        raise error(f"no array given for {leaf.name!r}", op="eager oracle",
                    fix=f"pass every parameter, state array and input (missing: {leaf.name!r})")
    value = np.asarray(eager.arrays[leaf.name], dtype=np.int64 if dtype == "int" else np.float64)
    if value.ndim != len(leaf.shape):
        raise error(f"{leaf.name!r} has shape {value.shape}, declared {fmt(leaf.shape)}", op="eager oracle")
    for d, n in zip(leaf.shape, value.shape):
        if isinstance(d, str):
            eager.dims.setdefault(d, n)
    if value.shape != eager.concrete(leaf.shape):
        raise error(f"{leaf.name!r} has shape {value.shape}, declared {fmt(leaf.shape)} with "
                    f"{eager.dims}", op="eager oracle")
    return Tensor(value, leaf.shape, dtype, leaf)

