"""Token models: `embedding` (a table of vectors looked up by integer ids) and `causal_mask` (the
condition that lets position i see positions j <= i, for `where` before a softmax)."""
from __future__ import annotations

from .. import ops as P
from ..shapes import fmt
from .declarations import Param
from .recording import error, recorder
from .tensor import Condition, Tensor, apply, lift

DEFAULT_INIT = "normal(1.0)"


def embedding(ids, vocab: int, dim: int, name: str | None = None, init: str = DEFAULT_INIT) -> Tensor:
    """table[ids]: one trainable `dim`-vector per token id, ids (B, T) -> (B, T, dim) (any shape).

    The table `name.W` is (vocab, dim), initialised N(0, 1) by default: unit-variance inputs are
    what the He/Xavier init of the layers after it assumes. Its gradient adds the cotangent rows of
    repeated ids into their row (a scatter-add).
    """
    rec = recorder()
    ids = lift(ids, "embedding")
    if ids.dtype != "int" or ids.leaf is None:
        raise error(f"ids must be integer Tokens (or Labels), got a float tensor {fmt(ids.shape)}",
                    op="embedding", fix='declare ids = Tokens("ids", ("B", T), vocab=V)')
    for label, v in (("vocab", vocab), ("dim", dim)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise error(f"{label} must be a positive int, got {v!r}", op="embedding")
    if ids.leaf.classes != vocab:
        raise error(f"ids {ids.leaf.name!r} hold values in [0, {ids.leaf.classes}) but the table has "
                    f"{vocab} rows", op="embedding", shapes=f"ids {fmt(ids.shape)}, table ({vocab}, {dim})",
                    fix=f"make the table's vocab equal to the ids' ({ids.leaf.classes})")
    if name is None:
        rec.layer_count += 1
        name = f"embedding{rec.layer_count}"
    table = Param(f"{name}.W", (vocab, dim), init=init)
    out = apply(P.take_rows, table, ids, op="embedding")
    if rec.eager is None:
        rec.hints.setdefault(out.expr, name)
    return out


def causal_mask(T: int) -> Condition:
    """The (T, T) condition `column <= row`: where(causal_mask(T), scores, -inf) keeps what position
    i may attend to (j <= i) and puts -inf elsewhere, which a softmax turns into exact zeros with
    exactly zero gradient (every row keeps its diagonal, so no row is all -inf)."""
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise error(f"T must be a positive int (the sequence length), got {T!r}", op="causal_mask",
                    fix="the mask is a compile-time constant: pass the fixed sequence length")
    offsets = apply(P.causal_offsets, T, op="causal_mask")  # i − j, >= 0 on and below the diagonal
    return Condition(offsets, inclusive=True)
