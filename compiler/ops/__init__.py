"""The op registry: every op head and its `Rule` (see rule.py), one file per op family.

    elementwise.py  Add, Mul, Pow, exp, log, tanh (SymPy's own), abs, max/min, square, clip, masks
                    and routers
    activations.py  sigmoid, softplus, gelu (tanh form and exact), silu, relu, leaky_relu, elu
    special.py      sin, cos, sinh, cosh, erf, erfc; the Gaussian of their derivatives
    linalg.py       matrix products, their adjoints, the transpose and axis permutations
    reductions.py   sums and maxima over axes and their adjoints: size-1 axes inserted and dropped,
                    broadcasts; conform (shapes kept through SymPy's algebra) and unbroadcast
    structure.py    reshape; gather by label and its one-hot adjoint
    indexing.py     static indexing x[...] and its adjoint; concatenation along an axis
    stacks.py       products of stacks: the batched adjoint of @, two-operand einsum
    layers.py       convolution windows and dropout masks
    convolution.py  2-D convolution as one op (its input gradient a convolution), lowered after
                    reverse mode to im2col and one product
    tokens.py       embedding rows and their scatter-add, the per-position gather of sequence
                    cross-entropy and its adjoint, the padding mask, a causal mask's offsets

`REGISTRY` maps each head to its Rule; a head missing from it is an unsupported op. `PUBLIC` maps
the model-file language's names to rules: adding an activation to activations.py is all it takes.
"""
from __future__ import annotations

from .rule import (REGISTRY, Check, Elementwise, IncompleteRule, Op, Rule, axes_arg, make, missing,
                   rebuild, register, rule_for)
from .elementwise import (absolute, clip, equal, maximum, minimum, nonzero, positive, select, square,
                          stop_gradient, unless_zero, within)
from .special import cos, cosh, erf, erfc, gauss, sin, sinh
from .activations import elu, gelu, gelu_exact, leaky_relu, relu, sigmoid, silu, softplus
from .linalg import contract_leading, matmul, ones, outer, permute, transpose
from .reductions import (ShapeChanged, broadcast_to, conform, expand_dims, full_shape, reduce_max,
                         reduce_sum, squeeze, unbroadcast)
from .structure import one_hot, pick, reshape
from .indexing import concat, index, parse_key, unindex
from .stacks import einsum
from .layers import keep_mask, unwindows, unwindows2d, windows, windows2d
from .convolution import conv2d, conv2d_input_grad
from .tokens import causal_offsets, kept, pick_last, put_last, scatter_rows, take_rows

PUBLIC: dict[str, Rule] = {r.public: r for r in REGISTRY.values() if r.public}


def is_singular(node) -> bool:
    """Whether the op's derivative is infinite or undefined somewhere in the reals (log, 1/x, √x)."""
    rule = rule_for(node)
    return rule is not None and rule.singular(node)


__all__ = [
    "REGISTRY", "PUBLIC", "Check", "Elementwise", "IncompleteRule", "Op", "Rule", "ShapeChanged",
    "axes_arg", "conform", "full_shape", "is_singular", "make", "missing", "rebuild", "register",
    "rule_for", "unbroadcast",
    # heads
    "absolute", "broadcast_to", "contract_leading", "elu", "equal", "expand_dims", "gelu", "keep_mask",
    "leaky_relu", "matmul", "maximum", "minimum", "nonzero", "one_hot", "ones", "outer", "pick",
    "positive", "reduce_max", "reduce_sum", "relu", "reshape", "select", "sigmoid", "silu", "softplus",
    "squeeze", "stop_gradient", "transpose", "unless_zero", "unwindows", "windows",
    "unwindows2d", "windows2d", "conv2d", "conv2d_input_grad",
    "causal_offsets", "kept", "pick_last", "put_last", "scatter_rows", "take_rows",
    "concat", "einsum", "index", "parse_key", "permute", "unindex",
    "clip", "cos", "cosh", "erf", "erfc", "gauss", "gelu_exact", "sin", "sinh", "square", "within",
]
