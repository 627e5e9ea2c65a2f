"""What a rule is: one entry per op head, carrying everything the pipeline knows about that op.

A `Rule` is plain data read by every stage: the tracer (shape rule, public name, integer operands),
reverse mode (VJP, whether it accepts a lazily broadcast cotangent, whether its derivative is
singular), emit (NumPy printing, whether the result is a view, in-place forms, temporary names),
inspection (math display, FLOPs) and the tests (gradient-check spec, eager NumPy evaluation).

symgrad's own heads are `Op` subclasses (SymPy Functions) declaring those facts as class attributes
and methods; `register` turns each into a Rule and refuses a class that leaves one out. SymPy's
native heads (Add, Mul, Pow, exp, log, tanh) are registered with `native` (see elementwise.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import sympy as sp
from sympy.printing.precedence import PRECEDENCE

from ..shapes import broadcast


@dataclass(frozen=True)
class Check:
    """How the registry test exercises a primitive.

    `params` maps a parameter name to (shape, (low, high)) for sampling; `loss` is a model-file
    expression over them; `edges` are (x, derivative) known values for unary elementwise ops at their
    edge points (kinks, saturation), checked exactly by convention rather than by finite differences.
    """
    params: dict
    loss: str
    edges: tuple = ()
    labels: dict = field(default_factory=dict)  # name -> (shape, classes)


@dataclass(frozen=True)
class Rule:
    head: type
    shape_of: Callable          # (node, arg_shapes) -> shape
    vjp: Callable | None        # (node, g, shape) -> tuple of cotangents; None: not differentiable
    eager: Callable             # (*arrays, *static values) -> array: the oracle's NumPy evaluation
    temp: Callable              # node -> the stem of its temporaries' names ("exp", "sum", "mm")
    view: bool                  # the result may share memory with an operand (never write into it)
    n_tensor: int | None = None  # leading tensor args (None: all); the rest are static
    elementwise: bool = True    # broadcasts its operands (NumPy rules)
    lazy: bool = True           # its VJP accepts a cotangent that is still lazily broadcast
    public: str | None = None   # name in the model-file language
    init_family: str | None = None  # "he" or "xavier": which init a preceding linear layer gets
    static: tuple = ()          # (name, default) of static args, for the model-file wrapper
    check: Check | None = None  # None only for backward-only ops (never between a parameter and a loss)
    int_args: tuple = ()        # positions of tensor args that take integer tensors (labels)
    singular: Callable = lambda node: False  # derivative infinite/undefined somewhere in the reals
    in_place: Callable = lambda node: ()     # node -> ((operand, "+"|"*", rest), ...): `operand op= rest`
    update: Callable | None = None   # (factor, term, printer, buffer, op) -> text of `buffer op= term`
    flops: Callable | None = None    # (node, shapes, count) -> FLOPs; default: one per output element
    build: Callable | None = None    # (*args) -> the node over new operands; default head(*args)
    expand: Callable | None = None   # node -> the same value in simpler ops, whose intermediates the
    #                                  backward then reuses instead of recomputing (canonical.py)
    lower: Callable | None = None    # (node, shapes) -> the simpler ops it runs as, substituted after
    #                                  reverse mode (its own VJP kept; lower.py)
    fuse: Callable = lambda node: ""  # node -> how a fused loop (the numba backend) computes it: "map"
    #    (its scalar form, one element at a time), "libm" (the same, but it calls exp/log/tanh...,
    #    which NumPy vectorises and a loop does not), "index" (`_numbacode` reads one element of its
    #    operands), "sum"/"max" (a reduction the loop accumulates), "" (not in a loop: NumPy runs it)
    njit: Callable = lambda node, shapes: False   # its NumPy form, as printed, compiles under numba
    #    (a whole step of the numba backend runs in one compiled function when every op's does)

    def tensor_args(self, node: sp.Basic) -> tuple:
        return node.args if self.n_tensor is None else node.args[: self.n_tensor]

    def cost(self, node, shapes, count) -> int:
        """Floating-point operations of one evaluation; `count(shape)` is the number of elements."""
        if self.flops is not None:
            return self.flops(node, shapes, count)
        return 0 if self.view else count(shapes(node))


REGISTRY: dict[type, Rule] = {}


def make(head, args) -> sp.Basic:
    """`head(*args)` as the op's rule builds it: every stage that rebuilds a node goes through here."""
    rule = REGISTRY.get(head)
    return rule.build(*args) if rule is not None and rule.build is not None else head(*args)


def rebuild(node: sp.Basic, args: tuple) -> sp.Basic:
    """`node` over new operands (the node itself when none changed)."""
    return node if args == node.args else make(node.func, args)


def rule_for(node: sp.Basic) -> Rule | None:
    for klass in type(node).__mro__:
        if klass in REGISTRY:
            return REGISTRY[klass]
    return None


def elementwise_shape(node, arg_shapes):
    return broadcast(*arg_shapes)


def fdiff_vjp(node, g, shape):
    """Elementwise VJP from SymPy's own scalar derivative (exp' = exp, tanh' = 1 - tanh**2)."""
    return tuple(g * node.fdiff(i + 1) for i in range(len(node.args)))


def native(head, *, temp: str | Callable, vjp=fdiff_vjp, eager, fuse: str | Callable = "map", **kw):
    """Register one of SymPy's own heads; SymPy prints and simplifies it, the rule adds the rest."""
    REGISTRY[head] = Rule(head=head, shape_of=elementwise_shape, vjp=vjp, eager=eager, view=False,
                          temp=temp if callable(temp) else (lambda node, t=temp: t),
                          fuse=fuse if callable(fuse) else (lambda node, f=fuse: f), **kw)


# ---------------------------------------------------------------------------------------------
# symgrad's own heads.

class Op(sp.Function):
    """Base of symgrad's heads. Tensor args come first (`n_tensor` of them); static args follow.

    A subclass declares (register refuses it otherwise): `temp`, `view`, `eager`, `_numpycode`,
    its math (`math` templates or `_mathtext`/`_latex` methods), a `check` when it is
    differentiable, and `vjp` unless it is elementwise (then `fdiff` suffices), `constant` (a mask,
    whose derivative is 0) or not differentiable.
    """
    n_tensor = 1
    elementwise = False
    lazy = False  # structural VJPs get their cotangent at the node's full shape unless they opt in
    differentiable = True
    constant = False  # piecewise constant (a 0/1 mask): its derivative is 0 wherever it exists
    public: str | None = None
    init_family: str | None = None
    static: tuple = ()
    check: Check | None = None
    helper: str | None = None  # a module-level function the printed code calls
    eager = None  # staticmethod (*arrays, *static values) -> array, for the eager oracle
    temp: str | None = None    # the stem of its temporaries' names
    view: bool | None = None   # whether its result may share memory with an operand
    int_args: tuple = ()
    math: tuple | None = None  # (text, latex) templates over the printed tensor args {0}, {1}, ...
    fuse: str | None = None    # Rule.fuse; None: "map" when elementwise, else "" (NumPy runs it)
    precedence = PRECEDENCE["Func"]

    def _eval_is_real(self):
        return True

    @classmethod
    def shape_of(cls, node, arg_shapes):
        return broadcast(*arg_shapes[: cls.n_tensor])

    def _mathtext(self, printer):
        return self.math[0].format(*(printer._print(a) for a in self.args))

    def _latex(self, printer):
        return self.math[1].format(*(printer._print(a) for a in self.args))

    def singular(self) -> bool:
        return False

    def in_place(self) -> tuple:
        return ()


class Elementwise(Op):
    elementwise = True
    view = False

    def vjp(self, g, shape):
        return tuple(g * self.fdiff(i + 1) for i in range(self.n_tensor))


def _declares(cls, name: str) -> bool:
    """Whether `cls` itself (or a family base below Op) gives `name`."""
    return any(name in vars(k) for k in cls.__mro__ if k is not Op and issubclass(k, Op))


class IncompleteRule(TypeError):
    """An Op class that leaves out part of its rule."""


def missing(cls) -> list[str]:
    """What an Op class leaves out of its rule (empty when complete)."""
    gaps = [name for name in ("temp", "view", "eager", "_numpycode") if getattr(cls, name, None) is None
            or not _declares(cls, name)]
    if cls.math is None and not (_declares(cls, "_mathtext") and _declares(cls, "_latex")):
        gaps.append("math (or _mathtext and _latex)")
    if cls.differentiable and not cls.constant:
        if cls.check is None:
            gaps.append("check")
        if not _declares(cls, "vjp") and not (cls.elementwise and _declares(cls, "fdiff")):
            gaps.append("vjp (or fdiff for an elementwise op)")
    return gaps


def _zero_vjp(node, g, shape):
    """A mask's cotangents: none (its derivative is 0; second derivatives pass through masks)."""
    return (None,) * len(rule_for(node).tensor_args(node))


def register(cls):
    """Make an Op class a rule of the registry; refuse one that leaves out part of its rule."""
    gaps = missing(cls)
    if gaps:
        raise IncompleteRule(f"op {cls.__name__} does not declare: {', '.join(gaps)}")
    in_place = cls.in_place if _declares(cls, "in_place") else (lambda node: ())
    update = getattr(cls, "update", None)
    REGISTRY[cls] = Rule(
        head=cls, shape_of=cls.shape_of, vjp=_zero_vjp if cls.constant else
        (lambda node, g, shape: node.vjp(g, shape)) if cls.differentiable else None,
        eager=cls.eager, temp=lambda node: cls.temp, view=cls.view,
        n_tensor=cls.n_tensor, elementwise=cls.elementwise, lazy=cls.elementwise or cls.lazy,
        public=cls.public, init_family=cls.init_family, static=cls.static, check=cls.check,
        int_args=cls.int_args, singular=lambda node: node.singular(), in_place=in_place,
        update=update, flops=getattr(cls, "flops", None),
        expand=(lambda node: node.expand()) if _declares(cls, "expand") else None,
        lower=(lambda node, shapes: node.lower(shapes)) if _declares(cls, "lower") else None,
        fuse=lambda node, f=cls.fuse if cls.fuse is not None else "map" * cls.elementwise: f,
        njit=(lambda node, shapes: node.in_njit(shapes)) if _declares(cls, "in_njit") else Rule.njit)
    return cls


# ---- printing helpers shared by the op families ----------------------------------------------

def arg(printer, e, level=PRECEDENCE["Atom"], strict=True):
    """Print `e` as an operand, parenthesised when it binds looser than `level`."""
    return printer.parenthesize(e, level, strict=strict)


def axes_of(node, i=1) -> tuple[int, ...]:
    return tuple(int(a) for a in node.args[i])


def axes_arg(axes) -> sp.Tuple:
    return sp.Tuple(*[sp.Integer(a) for a in axes])


def axis_kw(axes: tuple[int, ...]) -> str:
    return f"axis={axes[0]}" if len(axes) == 1 else f"axis={axes}"
