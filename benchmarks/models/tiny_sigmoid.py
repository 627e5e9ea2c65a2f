"""A tiny 4 -> 8 -> 3 sigmoid MLP for the benchmarks: per-call overhead dominates."""
from compiler.dsl import Input, Labels, linear, sigmoid, softmax_cross_entropy

x = Input("x", ("B", 4))
y = Labels("y", ("B",), classes=3)
h = sigmoid(linear(x, 8, name="hidden"))
logits = linear(h, 3, name="out")
loss = softmax_cross_entropy(logits, y)
outputs = {"logits": logits}
