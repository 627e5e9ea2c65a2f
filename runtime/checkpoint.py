"""Checkpoints are data, not pickles: one .npz with the parameters, the optimizer's slots and a JSON
record (epoch, position in the epoch, RNG state, model hash, compiler version, and the standardisation
statistics of the training data by model input, "preprocess"). Written atomically:
a crash while saving leaves the previous checkpoint as it was. A checkpoint fits a model when its
arrays do (names, shapes, dtypes); the model hash is only a record of where it came from."""
from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass

import numpy as np

from .devices import to_host

FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint is truncated, corrupted, or its arrays do not fit the model or the run."""


@dataclass
class Checkpoint:
    params: dict
    opt_state: dict
    meta: dict


def save(path: str, params: dict, opt_state: dict, meta: dict) -> None:
    arrays = {f"param/{k}": to_host(v) for k, v in params.items()}   # host arrays, any backend
    for slot, values in opt_state.items():
        if isinstance(values, dict):
            arrays.update({f"opt/{slot}/{k}": to_host(v) for k, v in values.items()})
    record = {**meta, "format": FORMAT, "opt_t": int(opt_state.get("t", 0))}
    arrays["meta"] = np.array(json.dumps(record, sort_keys=True))
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic: readers see the old file or the new one, never half
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    _fsync_dir(directory)


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load(path: str, model=None) -> Checkpoint:
    """Read and validate a checkpoint; with `model`, refuse one whose arrays do not fit it."""
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (zipfile.BadZipFile, ValueError, KeyError, OSError, EOFError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} is truncated or corrupted ({type(e).__name__}: {e}); "
                              "use an earlier checkpoint or train from scratch") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: unknown checkpoint format {meta.get('format')!r}")
    params = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
    opt_state: dict = {"t": meta.get("opt_t", 0)}
    for k, v in arrays.items():
        if k.startswith("opt/"):
            _, slot, name = k.split("/", 2)
            opt_state.setdefault(slot, {})[name] = v
    if model is not None:
        _refuse_if_unfit(path, model, params)
    return Checkpoint(params, opt_state, meta)


def _refuse_if_unfit(path: str, model, params: dict) -> None:
    """A checkpoint fits a model when its arrays do (names, shapes, dtypes), whatever else changed in
    the model file: editing a comment must not orphan a run."""
    want = {**{k: ("parameter", s) for k, (s, _, _) in model.params_spec.items()},
            **{k: ("state", s) for k, (s, _, _) in model.states_spec.items()}}
    problems = _diff(want, params, np.dtype(model.dtype))
    if problems:
        raise CheckpointError(_unfit(path, "this model", problems, "train from scratch (without "
                                     "--resume), or pass a checkpoint written for this model"))


def fit_slots(path: str, opt_state: dict, fresh: dict) -> dict | None:
    """The checkpoint's optimizer state when it keeps this optimizer's slots (refused if their arrays
    do not fit the parameters); None when the run changed optimizer, whose slots then start afresh."""
    if sorted(k for k, v in opt_state.items() if isinstance(v, dict)) != \
            sorted(k for k, v in fresh.items() if isinstance(v, dict)):
        return None
    problems = []
    for slot, ref in fresh.items():
        if isinstance(ref, dict):
            want = {k: ("parameter", v.shape) for k, v in ref.items()}
            dtype = next(iter(ref.values())).dtype if ref else None
            problems += [f"optimizer slot {slot}: {p}" for p in _diff(want, opt_state[slot], dtype)]
    if problems:
        raise CheckpointError(_unfit(path, "this run", problems, "train from scratch (without --resume)"))
    return opt_state


def _diff(want: dict, found: dict, dtype) -> list[str]:
    """What differs between the arrays a model expects ({name: (kind, shape)}) and those found."""
    problems = []
    for name, (kind, shape) in want.items():
        if name not in found:
            problems.append(f"{kind} {name} missing from the checkpoint")
        elif tuple(found[name].shape) != tuple(shape):
            problems.append(f"{kind} {name}: checkpoint {tuple(found[name].shape)}, model {tuple(shape)}")
        elif dtype is not None and found[name].dtype != dtype:
            problems.append(f"{kind} {name}: checkpoint {found[name].dtype}, model {dtype} "
                            f"(pass --dtype {found[name].dtype})")
    problems += [f"{name} is in the checkpoint but not in the model" for name in found if name not in want]
    return problems


def _unfit(path: str, what: str, problems: list[str], fix: str, shown: int = 8) -> str:
    more = [f"... and {len(problems) - shown} more"] if len(problems) > shown else []
    return (f"{path} does not fit {what}:\n  " + "\n  ".join(problems[:shown] + more)
            + f"\n{fix}")


def preprocess(path: str, meta: dict) -> dict | None:
    """The standardisation statistics the model was trained with, {input: {"mean", "std"}}; None for
    a checkpoint written before they were recorded (its inputs are then taken as they come)."""
    stats = meta.get("preprocess")
    if stats is None:
        return None
    for name, s in stats.items():
        if not isinstance(s, dict) or np.shape(s.get("mean")) != np.shape(s.get("std")):
            raise CheckpointError(f"{path}: the standardisation statistics of input {name!r} are "
                                  "corrupted; use an earlier checkpoint or train from scratch")
    return stats
