"""Multinomial logistic regression on the 8x8 digits with an L2 penalty: a convex loss, so
full-batch Newton-CG (with the generated hvp) and L-BFGS reach the same optimum as scikit-learn.

scikit-learn's LogisticRegression(C) minimises  C·Σᵢ CE(xᵢ) + ½‖W‖²  (the intercept unpenalised);
divided by C·N this is the mean cross-entropy + ‖W‖² / (2·C·N), the loss below, for the N = 1437
training digits that `symgrad train --data digits` uses.
"""
from compiler.dsl import Input, Labels, Param, softmax_cross_entropy, sum

C = 1.0          # scikit-learn's inverse regularisation strength
N_TRAIN = 1437   # the training split of the digits data set (80 % of 1797)

x = Input("x", ("B", 64))
y = Labels("y", ("B",), classes=10)

W = Param("W", (64, 10), init="zeros")
b = Param("b", (10,), init="zeros")

logits = x @ W + b
loss = softmax_cross_entropy(logits, y) + sum(W * W) / (2 * C * N_TRAIN)

outputs = {"logits": logits}
