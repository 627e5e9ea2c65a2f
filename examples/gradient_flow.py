"""Gradient flow through the three gates of backpropagation (as in CS231n's circuit pictures):

    f = 2 · (x·y + max(z, w))

* add distributes: the gradient reaching x·y + max(z, w) reaches both terms unchanged;
* max routes: all of max's gradient goes to the larger input (z), none to the other (w);
* multiply switches: x receives y times the gradient, y receives x times it.
At x = 3, y = -4, z = 2, w = -1: f = -20, ∂f/∂x = -8, ∂f/∂y = 6, ∂f/∂z = 2, ∂f/∂w = 0.
"""
from compiler.dsl import Param, maximum

x = Param("x", (), init=3.0)
y = Param("y", (), init=-4.0)
z = Param("z", (), init=2.0)
w = Param("w", (), init=-1.0)

product = x * y               # multiply switches
largest = maximum(z, w)       # max routes
total = product + largest     # add distributes
f = 2 * total

loss = f
outputs = {"f": f}
