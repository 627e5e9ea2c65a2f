"""A 1 -> 16 -> 16 -> 1 tanh MLP fitted to a smooth 1-D function with mean squared error: 321
parameters, small enough to train full batch to convergence with Newton-CG (the generated hvp)."""
from compiler.dsl import Input, linear, mse, tanh

x = Input("x", ("B", 1))   # the points
t = Input("t", ("B", 1))   # the function's values there

h = tanh(linear(x, 16, name="hidden1"))   # Xavier init: tanh follows
h = tanh(linear(h, 16, name="hidden2"))
out = linear(h, 1, name="out")

loss = mse(out, t)
outputs = {"out": out}
