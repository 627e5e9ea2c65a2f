"""A 64 -> 128 -> 10 ReLU MLP for the 8x8 handwritten digits, trained with softmax cross-entropy."""
from compiler.dsl import Input, Labels, linear, relu, softmax_cross_entropy

x = Input("x", ("B", 64))                 # a batch of flattened 8x8 images
y = Labels("y", ("B",), classes=10)       # their digits

h = relu(linear(x, 128, name="hidden"))  # He-normal init: ReLU follows
logits = linear(h, 10, name="out")       # Xavier init: no activation

loss = softmax_cross_entropy(logits, y)  # mean over the batch
outputs = {"logits": logits}
