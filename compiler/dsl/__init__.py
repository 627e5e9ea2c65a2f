"""The model-file language: what `from compiler.dsl import *` gives a model file.

A `Tensor` wraps a SymPy expression and its shape; Python operators and the functions exported
here build the DAG and check shapes as they go. Nothing here computes numbers. Activations and other
elementwise functions are generated from the primitive registry, so adding one there makes it
available here.

    x = Input("x", ("B", 64))
    y = Labels("y", ("B",), classes=10)
    h = relu(linear(x, 128, name="hidden"))
    logits = linear(h, 10, name="out")
    loss = softmax_cross_entropy(logits, y)
    outputs = {"logits": logits}
"""
from __future__ import annotations

from .declarations import Input, Labels, Param, State
from .functions import (amax, expand_dims, log_softmax, logsumexp, mean, mse, one_hot, pick, reshape,
                        softmax, softmax_cross_entropy, sqrt, sum)
from .layers import avg_pool1d, batch_norm, conv1d, dropout, flatten, layer_norm, linear, max_pool1d, mlp
from .tensor import PUBLIC_FUNCTIONS, Tensor, apply, where

__all__ = ["Input", "Labels", "Param", "Tensor", "where", "linear", "mlp", "sum", "mean", "amax",
           "logsumexp", "softmax", "log_softmax", "softmax_cross_entropy", "mse", "sqrt",
           "expand_dims", "reshape", "pick", "one_hot", "apply", "batch", "conv1d", "max_pool1d",
           "avg_pool1d", "flatten", "layer_norm", "dropout", "batch_norm", "State"]
from .declarations import Tokens  # noqa: E402 - token models
from .functions import binary_cross_entropy_with_logits  # noqa: E402
from .tokens import causal_mask, embedding  # noqa: E402
__all__ += ["Tokens", "embedding", "causal_mask", "binary_cross_entropy_with_logits"]

batch = "B"  # the conventional name of the symbolic batch dimension

# Activations and other elementwise functions come from the primitive registry (compiler.ops): each
# rule with a public name is exported under it, as built in compiler.dsl.tensor.PUBLIC_FUNCTIONS, so
# registering a rule is all it takes. The names are known only at import time, hence globals().
globals().update(PUBLIC_FUNCTIONS)
__all__ += list(PUBLIC_FUNCTIONS)
from .structure import concat, einsum, split, stack, transpose  # noqa: E402 - joining and rearranging
__all__ += ["concat", "stack", "split", "transpose", "einsum"]
from .layers import avg_pool2d, conv2d, max_pool2d  # noqa: E402 - images, channels last
__all__ += ["conv2d", "max_pool2d", "avg_pool2d"]
