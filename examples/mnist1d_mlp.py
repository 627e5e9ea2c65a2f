"""A 40 -> 100 -> 100 -> 10 ReLU MLP for MNIST-1D (the published MLP reaches about 68%)."""
from compiler.dsl import Input, Labels, linear, relu, softmax_cross_entropy

x = Input("x", ("B", 40))
y = Labels("y", ("B",), classes=10)

h1 = relu(linear(x, 100, name="hidden1"))
h2 = relu(linear(h1, 100, name="hidden2"))
logits = linear(h2, 10, name="out")

loss = softmax_cross_entropy(logits, y)
outputs = {"logits": logits}
