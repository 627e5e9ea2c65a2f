"""A 784 -> 128 -> 10 ReLU MLP for 5,000 real 28x28 MNIST digits (pixels scaled to [0, 1])."""
from compiler.dsl import Input, Labels, linear, relu, softmax_cross_entropy

x = Input("x", ("B", 784))
y = Labels("y", ("B",), classes=10)

h = relu(linear(x, 128, name="hidden"))
logits = linear(h, 10, name="out")

loss = softmax_cross_entropy(logits, y)
outputs = {"logits": logits}
