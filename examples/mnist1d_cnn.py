"""A small 1-D CNN for MNIST-1D: three strided convolutions of 25 channels, then a linear read-out.

The signals (B, 40) are read as (B, 40, 1): length 40, one channel (channels come last). Each
convolution halves the length: 40 -> 19 -> 10 -> 5, so the read-out sees 5 x 25 = 125 features.
The published CNN of this shape reaches about 94%; an MLP about 68%.
"""
from compiler.dsl import Input, Labels, conv1d, flatten, linear, relu, reshape, softmax_cross_entropy

x = Input("x", ("B", 40))
y = Labels("y", ("B",), classes=10)

signal = reshape(x, ("B", 40, 1))
h1 = relu(conv1d(signal, 25, kernel_size=5, stride=2, padding=1, name="conv1"))  # (B, 19, 25)
h2 = relu(conv1d(h1, 25, kernel_size=3, stride=2, padding=1, name="conv2"))      # (B, 10, 25)
h3 = relu(conv1d(h2, 25, kernel_size=3, stride=2, padding=1, name="conv3"))      # (B, 5, 25)
logits = linear(flatten(h3), 10, name="out")

loss = softmax_cross_entropy(logits, y)
outputs = {"logits": logits}
