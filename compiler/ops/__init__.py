"""The op registry: every op head and its `Rule` (see rule.py), one file per op family.

    elementwise.py  Add, Mul, Pow, exp, log, tanh (SymPy's own) and the activations, masks, routers
    reductions.py   sums and maxima over axes
    linalg.py       matrix products, their adjoints, the transpose
    structure.py    axes inserted, dropped, broadcast, reshaped; gather/scatter by label
    layers.py       convolution windows and dropout masks
    broadcasting.py conform (shapes restored after SymPy's algebra) and unbroadcast (in reverse mode)

`REGISTRY` maps each head to its Rule; a head missing from it is an unsupported op. `PUBLIC` maps
the model-file language's names to rules: adding an activation to elementwise.py is all it takes.
"""
from __future__ import annotations

from .rule import (REGISTRY, Check, Elementwise, IncompleteRule, Op, Rule, axes_arg, missing,
                   register, rule_for)
from .elementwise import (absolute, elu, equal, leaky_relu, maximum, minimum, nonzero, positive,
                          relu, select, sigmoid, softplus, stop_gradient, unless_zero)
from .linalg import contract_leading, matmul, ones, outer, transpose
from .reductions import reduce_max, reduce_sum  # imports structure.py on the way (a cycle of VJPs)
from .structure import broadcast_to, expand_dims, full_shape, one_hot, pick, reshape, squeeze
from .layers import keep_mask, unwindows, windows
from .broadcasting import ShapeChanged, conform, unbroadcast

PUBLIC: dict[str, Rule] = {r.public: r for r in REGISTRY.values() if r.public}


def is_singular(node) -> bool:
    """Whether the op's derivative is infinite or undefined somewhere in the reals (log, 1/x, √x)."""
    rule = rule_for(node)
    return rule is not None and rule.singular(node)


__all__ = [
    "REGISTRY", "PUBLIC", "Check", "Elementwise", "IncompleteRule", "Op", "Rule", "ShapeChanged",
    "axes_arg", "conform", "full_shape", "is_singular", "missing", "register", "rule_for", "unbroadcast",
    # heads
    "absolute", "broadcast_to", "contract_leading", "elu", "equal", "expand_dims", "keep_mask",
    "leaky_relu", "matmul", "maximum", "minimum", "nonzero", "one_hot", "ones", "outer", "pick",
    "positive", "reduce_max", "reduce_sum", "relu", "reshape", "select", "sigmoid", "softplus",
    "squeeze", "stop_gradient", "transpose", "unless_zero", "unwindows", "windows",
]
