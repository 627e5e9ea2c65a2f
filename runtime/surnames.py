"""The `surnames` data set: a character-level language model on the 88,799 US-census surnames of
the `names` package (its file names/dist.all.last; nothing downloads), and sampling names from a
trained model.

Every name is lowercased and kept if it is only a–z, the list is shuffled with
`numpy.random.default_rng(0).permutation` and split 80/10/10 into train/val/test. Ids: `.` = 0,
a–z = 1..26. A name is predicted character by character and then `.`, at most MAX_LEN ids in all;
longer names are dropped (the census list has none: its longest name has 13 letters). Two layouts,
chosen by the model's inputs:

- windows: "context" (N, k) int64, the k previous ids padded with `.` at the start, and "next" (N,)
  int64, the id that follows; one row per predicted id;
- sequences: "inputs" (N, T) int64, `.` then the name (then `.` again to the end), and "targets"
  (N, T) int64, the name then `.`, then PAD (= 27, so the targets need vocab=28 and ignore=27).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

from .data import DataError, Dataset

VOCAB = "." + "abcdefghijklmnopqrstuvwxyz"
END, PAD, MAX_LEN = 0, 27, 14


def read_names() -> tuple[list[str], int]:
    """The census surnames (lowercase, a–z only) in file order, and how many were left out."""
    try:
        import names
    except ImportError:
        raise DataError("the surnames data set needs the names package: pip install names "
                        "(or pip install symgrad[data])") from None
    path = os.path.join(os.path.dirname(names.__file__), "dist.all.last")
    with open(path, encoding="ascii") as f:
        words = [line.split()[0].lower() for line in f if line.strip()]
    kept = [w for w in words if re.fullmatch("[a-z]+", w) and len(w) < MAX_LEN]
    return kept, len(words) - len(kept)


def encode(name: str) -> list[int]:
    return [VOCAB.index(c) for c in name] + [END]


def splits() -> tuple[dict, int]:
    """{"train": [...], "val": [...], "test": [...]} names (80/10/10 after the seeded shuffle) and
    the number of names dropped."""
    kept, dropped = read_names()
    order = np.random.default_rng(0).permutation(len(kept))
    shuffled = [kept[i] for i in order]
    a, b = len(kept) * 8 // 10, len(kept) * 9 // 10
    return {"train": shuffled[:a], "val": shuffled[a:b], "test": shuffled[b:]}, dropped


def windows(names: list[str], k: int) -> dict:
    """One row per predicted id: the k previous ids (`.`-padded) and the id that follows."""
    context, following = [], []
    for name in names:
        ids = [END] * k + encode(name)
        for i in range(k, len(ids)):
            context.append(ids[i - k:i])
            following.append(ids[i])
    return {"context": np.array(context, np.int64).reshape(-1, k),
            "next": np.array(following, np.int64)}


def sequences(names: list[str], length: int = MAX_LEN) -> dict:
    """One row per name: inputs `.`+name (`.` after), targets name+`.` (PAD after)."""
    inputs = np.full((len(names), length), END, np.int64)
    targets = np.full((len(names), length), PAD, np.int64)
    for row, name in enumerate(names):
        ids = encode(name)
        inputs[row, 1:len(ids)] = ids[:-1]
        targets[row, :len(ids)] = ids
    return {"inputs": inputs, "targets": targets}


@dataclass(frozen=True)
class Layout:
    """How a model reads surnames: windows of `size` ids or sequences of `size` positions; `feed` is
    the model's input that takes the ids, `target` the one that takes what follows."""
    kind: str
    size: int
    feed: str
    target: str


def layout(inputs_spec: dict) -> Layout:
    """Windows when the model takes a (B, k) context and a (B,) next id; sequences when it takes two
    (B, T) arrays (named inputs and targets). Names of the data set's arrays win over shapes."""
    spec = {n: tuple(s) for n, (s, _) in inputs_spec.items() if n != "seed"}
    two_d = [n for n, s in spec.items() if len(s) == 2 and isinstance(s[1], int)]
    one_d = [n for n, s in spec.items() if len(s) == 1]
    if len(spec) == 2 and len(two_d) == 1 and len(one_d) == 1:
        return Layout("windows", spec[two_d[0]][1], two_d[0], one_d[0])
    if len(spec) == 2 and len(two_d) == 2 and {"inputs", "targets"} == set(spec):
        t = spec["inputs"][1]
        if t < MAX_LEN:
            raise DataError(f"surnames: sequences are {MAX_LEN} long (13 letters and the end); the "
                            f"model's inputs have {t} positions: declare ('B', {MAX_LEN})")
        return Layout("sequences", t, "inputs", "targets")
    shown = ", ".join(f"{n} {s}" for n, s in spec.items())
    raise DataError(f"surnames: the model's inputs ({shown}) are neither windows (a context "
                    "('B', k) and a next id ('B',)) nor sequences (inputs and targets, both "
                    f"('B', {MAX_LEN})); declare one of these")


def surnames(inputs_spec: dict | None = None) -> Dataset:
    """The data set laid out for a model (windows of 3 without one)."""
    shape = layout(inputs_spec) if inputs_spec else Layout("windows", 3, "context", "next")
    parts, dropped = splits()
    make = (lambda ns: windows(ns, shape.size)) if shape.kind == "windows" else \
        (lambda ns: sequences(ns, shape.size))
    arrays = {split: make(ns) for split, ns in parts.items()}
    target = "next" if shape.kind == "windows" else "targets"
    note = (f"{shape.kind} of {shape.size}; {sum(map(len, parts.values()))} names kept, {dropped} "
            f"dropped as not a-z only or longer than {MAX_LEN - 1} letters")
    return Dataset("surnames", train=arrays["train"], test=arrays["test"], val=arrays["val"],
                   target=target, task="language", classes=len(VOCAB), note=note,
                   pad=PAD if shape.kind == "sequences" else None)


def bigram_nll(alpha: float = 1.0) -> float:
    """The baseline: test NLL in nats per predicted id of bigram counts on the training names,
    with add-alpha smoothing."""
    parts, _ = splits()
    counts = np.full((len(VOCAB), len(VOCAB)), alpha)
    for split in ("train", "test"):
        w = windows(parts[split], 1)
        if split == "train":
            np.add.at(counts, (w["context"][:, 0], w["next"]), 1)
    probs = counts / counts.sum(axis=1, keepdims=True)
    return float(-np.mean(np.log(probs[w["context"][:, 0], w["next"]])))


def sample(model, params: dict, n: int, temperature: float = 1.0, seed: int = 0,
           logits: str | None = None) -> list[str]:
    """n names from a trained character model: feed the context (windows: the last k ids;
    sequences: the ids so far, `.`-padded), take the last position's logits, sample with
    `temperature` from a seeded generator; stop at `.` or after MAX_LEN - 1 letters (the longest
    names of the data, which end there)."""
    if temperature <= 0:
        raise DataError(f"--temperature must be positive, got {temperature}")
    shape = layout(model.inputs_spec)
    out = logits or _logits_output(model)
    rng = np.random.default_rng(seed)
    ids = np.zeros((n, 0), np.int64)
    done = np.zeros(n, bool)
    for step in range(MAX_LEN - 1):
        z = model.forward(params, **{shape.feed: _context(ids, shape)})[out]
        z = z[:, step] if shape.kind == "sequences" else z
        z = z[:, :len(VOCAB)].astype(np.float64) / temperature
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        nxt = (rng.random((n, 1)) > np.cumsum(p, axis=1)).sum(axis=1).clip(0, len(VOCAB) - 1)
        nxt[done] = END
        ids = np.concatenate([ids, nxt[:, None]], axis=1)
        done |= nxt == END
        if done.all():
            break
    return ["".join(VOCAB[i] for i in row).split(".")[0] for row in ids]


def _context(ids: np.ndarray, shape: Layout) -> np.ndarray:
    n = len(ids)
    if shape.kind == "windows":
        padded = np.concatenate([np.zeros((n, shape.size), np.int64), ids], axis=1)
        return padded[:, -shape.size:]
    feed = np.zeros((n, shape.size), np.int64)
    feed[:, 1:ids.shape[1] + 1] = ids[:, :shape.size - 1]
    return feed


def _logits_output(model) -> str:
    outputs = getattr(model.module, "OUTPUTS", {})
    found = [k for k, s in outputs.items() if s and isinstance(s[-1], int) and s[-1] >= len(VOCAB)]
    if not found:
        raise DataError(f"sampling needs an output of logits over the {len(VOCAB)} ids (e.g. "
                        f"outputs = {{\"logits\": logits}}); the model's outputs are {dict(outputs)}")
    return found[0]
