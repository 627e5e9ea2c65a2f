"""A LeNet-style CNN on 5,000 real MNIST digits (28×28, channels last): two 5×5 convolutions
(8 and 16 channels, padding 2) each followed by ReLU and 2×2 max pooling, then a ReLU layer of 128
and the 10 classes.

    symgrad train examples/lenet_mnist5k.py --data mnist5k --optimizer adam --lr 1e-3 --batch-size 64 --epochs 15
"""
from compiler.dsl import (Input, Labels, conv2d, flatten, linear, max_pool2d, relu, reshape,
                          softmax_cross_entropy)

x = Input("x", ("B", 784))                 # pixels in [0, 1], as the data set ships them
y = Labels("y", ("B",), classes=10)

image = reshape(x, ("B", 28, 28, 1))
h = max_pool2d(relu(conv2d(image, 8, 5, padding=2, name="conv1")), 2)   # (B, 14, 14, 8)
h = max_pool2d(relu(conv2d(h, 16, 5, padding=2, name="conv2")), 2)      # (B, 7, 7, 16)
h = relu(linear(flatten(h), 128, name="fc"))
logits = linear(h, 10, name="out")

loss = softmax_cross_entropy(logits, y)
outputs = {"logits": logits}
