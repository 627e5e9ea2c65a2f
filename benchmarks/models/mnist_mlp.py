"""MNIST-size MLP for the benchmarks: 784 -> 512 -> 512 -> 10, ReLU."""
from compiler.dsl import Input, Labels, linear, relu, softmax_cross_entropy

x = Input("x", ("B", 784))
y = Labels("y", ("B",), classes=10)
h1 = relu(linear(x, 512, name="hidden1"))
h2 = relu(linear(h1, 512, name="hidden2"))
logits = linear(h2, 10, name="out")
loss = softmax_cross_entropy(logits, y)
outputs = {"logits": logits}
