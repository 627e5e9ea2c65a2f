"""16 tanh layers of width 32, then a linear read-out to 10 classes: a deep chain for the compiler."""
from compiler.dsl import Input, Labels, linear, softmax_cross_entropy, tanh

x = Input("x", ("B", 32))
y = Labels("y", ("B",), classes=10)

h = x
for i in range(16):
    h = tanh(linear(h, 32, name=f"layer{i + 1}"))  # Xavier init: tanh follows

logits = linear(h, 10, name="out")
loss = softmax_cross_entropy(logits, y)
outputs = {"logits": logits}
