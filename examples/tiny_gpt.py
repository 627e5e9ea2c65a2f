"""A tiny GPT on the surnames data set: learned token and position embeddings (d = 64), 2 pre-LN
transformer blocks (4-head causal self-attention, a GELU MLP of width 4·d), a final layer norm and a
read-out to the next character at every position; padding positions after the end are ignored.

    symgrad train examples/tiny_gpt.py --data surnames --optimizer adam --lr 2e-3 --batch-size 256 --epochs 20
    symgrad sample examples/tiny_gpt.py --checkpoint runs/tiny_gpt/checkpoint.npz -n 20

A Python `for` loop over the blocks unrolls while tracing: the generated code has both blocks
written out, each line of them under the model line that made it.
"""
from compiler.dsl import (Labels, Param, Tokens, causal_mask, embedding, gelu, layer_norm, linear,
                          reshape, softmax, softmax_cross_entropy, sqrt, transpose, where)

V, PAD = 27, 27            # "." and a-z; targets after the end are padding (id 27)
T, D, HEADS, BLOCKS = 14, 64, 4, 2
DH = D // HEADS

inputs = Tokens("inputs", ("B", T), vocab=V)            # "." then the name, then "."s
targets = Labels("targets", ("B", T), classes=V + 1)   # the name, ".", then padding


def heads(x):
    """(B, T, D) -> (B, HEADS, T, DH)"""
    return transpose(reshape(x, ("B", T, HEADS, DH)), (0, 2, 1, 3))


def attention(x, name):
    q = heads(linear(x, D, f"{name}.q"))
    k = heads(linear(x, D, f"{name}.k"))
    v = heads(linear(x, D, f"{name}.v"))
    scores = q @ transpose(k, (0, 1, 3, 2)) / sqrt(DH)              # (B, HEADS, T, T)
    probs = softmax(where(causal_mask(T), scores, -float("inf")))   # a position sees itself and before
    mixed = reshape(transpose(probs @ v, (0, 2, 1, 3)), ("B", T, D))
    return linear(mixed, D, f"{name}.proj")


def mlp(x, name):
    return linear(gelu(linear(x, 4 * D, f"{name}.up")), D, f"{name}.down")  # He init before gelu


x = embedding(inputs, V, D, name="tok", init="normal(0.02)") + Param("pos", (T, D), init="normal(0.02)")
for i in range(BLOCKS):
    x = x + attention(layer_norm(x, f"block{i + 1}.ln1"), f"block{i + 1}.attn")
    x = x + mlp(layer_norm(x, f"block{i + 1}.ln2"), f"block{i + 1}.mlp")
logits = linear(layer_norm(x, "ln_f"), V + 1, "head")   # (B, T, 28): the padding id is never a target

loss = softmax_cross_entropy(logits, targets, ignore=PAD)  # mean NLL per real character, in nats
outputs = {"logits": logits}
