"""A chain of 50 scalar tanh units, h_{k+1} = tanh(w_k · h_k).

Reverse mode computes all 50 gradients in one backward walk whose size grows linearly with depth;
differentiating each parameter on its own (naive symbolic differentiation, no sharing) repeats the
nested chain inside every factor and grows quadratically: see `symgrad stats examples/tanh_chain.py`.
"""
from compiler.dsl import Param, tanh

h = Param("x", (), init=0.5)
for k in range(50):
    h = tanh(Param(f"w{k}", (), init=1.1) * h)

loss = h
outputs = {"h": h}
