"""The five classic activations side by side, so values and derivatives are read off the generated
code itself: `forward` gives each activation on a grid, and since the loss is the sum of each
activation over its own copy of the grid, the gradient for that copy is the activation's derivative."""
from compiler.dsl import Param, elu, leaky_relu, relu, sigmoid, sum, tanh

GRID = 401
ACTIVATIONS = {"sigmoid": sigmoid, "tanh": tanh, "relu": relu,
               "leaky_relu": lambda v: leaky_relu(v, alpha=0.1), "elu": elu}

outputs = {}
loss = 0
for name, act in ACTIVATIONS.items():
    x = Param(f"x.{name}", (GRID,), init="zeros")   # the caller sets the grid
    outputs[name] = act(x)
    loss = loss + sum(outputs[name])
