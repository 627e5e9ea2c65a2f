"""A character RNN on the surnames data set: the 8 previous characters, embedded in 16 dimensions,
read one at a time by a tanh recurrent cell of 128 units; the last state predicts the next one.

    symgrad train examples/char_rnn.py --data surnames --optimizer adam --lr 3e-3 --batch-size 1024 --epochs 10

The Python `for` loop unrolls while tracing: the generated code has the 8 steps written out, and
reverse mode walks them back (backpropagation through time) with the shared weights' gradients
summed over the steps.
"""
from compiler.dsl import Labels, Param, Tokens, embedding, linear, softmax_cross_entropy, tanh

V, K, H = 27, 8, 128
context = Tokens("context", ("B", K), vocab=V)
next = Labels("next", ("B",), classes=V)     # noqa: A001 - the character to predict

emb = embedding(context, V, 16, name="emb")  # (B, K, 16)
W_x = Param("cell.W_x", (16, H), init="xavier_normal")
W_h = Param("cell.W_h", (H, H), init="xavier_normal")
b = Param("cell.b", (H,), init="zeros")

state = tanh(emb[:, 0] @ W_x + b)
for t in range(1, K):
    state = tanh(emb[:, t] @ W_x + state @ W_h + b)

logits = linear(state, V, name="out")
loss = softmax_cross_entropy(logits, next)
outputs = {"logits": logits}
