"""Checkpoints are data, not pickles: one .npz with the parameters, the optimizer's slots and a JSON
record (epoch, position in the epoch, RNG state, model hash, compiler version). Written atomically:
a crash while saving leaves the previous checkpoint as it was."""
from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass

import numpy as np

FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint is truncated, corrupted, or belongs to another model."""


@dataclass
class Checkpoint:
    params: dict
    opt_state: dict
    meta: dict


def save(path: str, params: dict, opt_state: dict, meta: dict) -> None:
    arrays = {f"param/{k}": np.asarray(v) for k, v in params.items()}
    for slot, values in opt_state.items():
        if isinstance(values, dict):
            arrays.update({f"opt/{slot}/{k}": np.asarray(v) for k, v in values.items()})
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
    """Read and validate a checkpoint; with `model`, refuse one written for a different model."""
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
        if meta.get("model_sha256") != model.sha256:
            raise CheckpointError(
                f"{path} was written for another model (SHA-256 {str(meta.get('model_sha256'))[:12]}…, "
                f"this model is {model.sha256[:12]}…); train this model from scratch or pass its own "
                "checkpoint")
        for name, (shape, _, _) in model.params_spec.items():
            if name not in params or tuple(params[name].shape) != tuple(shape):
                raise CheckpointError(f"{path}: parameter {name!r} is missing or has the wrong shape")
        params = {k: v.astype(model.dtype, copy=False) for k, v in params.items()}
    return Checkpoint(params, opt_state, meta)
