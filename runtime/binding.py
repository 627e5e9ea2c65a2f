"""Which array of a data set feeds which input of a model, and what kind of task it is.

A data set supplies named arrays ({"x", "y"}, {"context", "next"}, {"x", "t"}, ...); they go to the
model's INPUTS of the same names. When the names differ, the arrays are matched by shape and dtype
where only one assignment fits (so the digits/x-y convention works for any pair of names), and
otherwise the error lists both sides.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from .data import Dataset, DataError


@dataclass(frozen=True)
class Binding:
    """`inputs`: (model input, data array) pairs in the model's order, the target's included;
    `target`: the model input that takes the data set's target; `kind`: classify, regress or
    language; `logits`: the output scored against the target (classify, language); `prediction`:
    the output compared with a float target (regress); `pad`: a target id that counts for nothing."""
    inputs: tuple
    target: str
    kind: str
    logits: str | None = None
    prediction: str | None = None
    pad: int | None = None

    @property
    def x(self) -> str:
        """The (first) model input fed with features."""
        return next(m for m, _ in self.inputs if m != self.target)

    @property
    def y(self) -> str:
        return self.target

    def feed(self, arrays: dict, rows=None, dtype=None) -> dict:
        """{model input: array} for a split's arrays (`rows` of them); floats cast to `dtype`."""
        out = {}
        for m, d in self.inputs:
            a = arrays[d] if rows is None else arrays[d][rows]
            out[m] = a.astype(dtype) if dtype is not None and a.dtype.kind == "f" else a
        return out


def bind(model, data: Dataset) -> Binding:
    spec = {n: (tuple(s), t) for n, (s, t) in model.inputs_spec.items() if n != "seed"}
    pairs = _match(spec, model.label_classes, data)
    target = next((m for m, d in pairs if d == data.target), None)
    if target is None:
        raise DataError(f"the model takes no input for the data set's target {data.target!r}; "
                        + _sides(spec, data))
    for m, d in pairs:
        _check_pair(model, data, m, spec[m][0], d, target == m)
    classes = model.label_classes.get(target)
    kind = data.task if data.task != "classify" or classes else "regress"
    outputs = getattr(model.module, "OUTPUTS", {})
    want = tuple(spec[target][0])
    logits = next((n for n, s in outputs.items() if classes and len(s) == len(want) + 1
                   and s[-1] == classes), None)
    prediction = next((n for n, s in outputs.items() if tuple(s) == want), None) \
        if kind == "regress" else None
    return Binding(tuple(pairs), target, kind, logits, prediction, getattr(data, "pad", None))


def _match(spec: dict, label_classes: dict, data: Dataset) -> list:
    """[(model input, data array)]: by name when every input has its array; otherwise the one
    assignment that fits by shape and dtype (preferring labels for the target)."""
    arrays = data.train
    if set(spec) <= set(arrays):
        return [(m, m) for m in spec]
    fits = [list(zip(spec, perm)) for perm in itertools.permutations(arrays, len(spec))
            if all(_fits(spec[m], arrays[d]) for m, d in zip(spec, perm))]
    if len(fits) > 1:
        fits = [f for f in fits if any(d == data.target and m in label_classes for m, d in f)] or fits
    if len(fits) == 1:
        return fits[0]
    why = "the arrays do not match the model's inputs" if not fits else \
        "the arrays fit the model's inputs in more than one way"
    raise DataError(f"{why}: " + _sides(spec, data))


def _fits(spec: tuple, a: np.ndarray) -> bool:
    shape, dtype = spec
    if len(shape) != a.ndim or (dtype == "int64") != (a.dtype.kind in "iub"):
        return False
    return all(not isinstance(s, int) or s == n for s, n in zip(shape[1:], a.shape[1:]))


def _sides(spec: dict, data: Dataset) -> str:
    model = ", ".join(f"{m} {_shape(s)} {t}" for m, (s, t) in spec.items())
    arrays = ", ".join(f"{k} {_shape(('N', *v.shape[1:]))} {v.dtype}" for k, v in data.train.items())
    return (f"the data set {data.name} supplies {arrays} (target {data.target!r}); the model's "
            f"inputs are {model}. Name the model's inputs after the data set's arrays (or the "
            ".npz arrays after the model's inputs)")


def _shape(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _check_pair(model, data: Dataset, m: str, shape: tuple, d: str, is_target: bool) -> None:
    a = data.train[d]
    if not _fits(model.inputs_spec[m], a):
        raise DataError(f"the data set {data.name} has {d!r} samples of shape {a.shape[1:]} "
                        f"({a.dtype}), but the model's input {m!r} is {_shape(shape)} "
                        f"({model.inputs_spec[m][1]}); change the model's input size")
    classes = model.label_classes.get(m)
    if classes is None:
        return
    if is_target and data.classes > classes and data.task == "classify":
        raise DataError(f"the data set {data.name} has {data.classes} classes, but the model's labels "
                        f"{m!r} declare {classes}")
    top = max(int(s[d].max()) for s in (data.train, data.test) if len(s[d]))
    if top >= classes:
        raise DataError(f"the data set {data.name} has ids up to {top} in {d!r}, but the model's "
                        f"{m!r} declares {classes} classes; declare at least {top + 1}")
