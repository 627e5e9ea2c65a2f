"""A character-level MLP language model (Bengio et al. 2003) on the surnames data set: the 8 previous
characters, each embedded in 16 dimensions, a tanh hidden layer of 256, and the next character.

    symgrad train examples/char_mlp.py --data surnames --optimizer adam --lr 3e-3 --batch-size 1024 --epochs 10
    symgrad sample examples/char_mlp.py --checkpoint runs/char_mlp/checkpoint.npz -n 20
"""
from compiler.dsl import Labels, Tokens, embedding, flatten, linear, softmax_cross_entropy, tanh

V = 27                                       # "." and a-z
context = Tokens("context", ("B", 8), vocab=V)  # the 8 previous characters ("." before the start)
next = Labels("next", ("B",), classes=V)     # noqa: A001 - the character to predict

emb = embedding(context, V, 16, name="emb")  # (B, 8, 16)
h = tanh(linear(flatten(emb), 256, name="hidden"))  # Xavier init: tanh follows
logits = linear(h, V, name="out")

loss = softmax_cross_entropy(logits, next)   # mean NLL per character, in nats
outputs = {"logits": logits}
