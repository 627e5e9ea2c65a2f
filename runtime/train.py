"""The training loop: seeded minibatches, an optimizer, evaluation each epoch, metrics, checkpoints.

Resuming is exact: a checkpoint records the RNG state at the start of the current epoch and how many
batches of it are done, so the shuffled order is regenerated and training continues bit for bit.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from .allocator import keep_freed_memory
from . import checkpoint as ckpt
from .binding import Binding, bind
from .data import Dataset
from .devices import to_host
from .minimize import METHODS, minimize
from .model import Model
from .optim import make as make_optimizer
from .schedules import Schedule


class NonFiniteError(RuntimeError):
    """The loss or a gradient became NaN or infinite; training stopped before using it."""


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"
    step_size: int = 30
    gamma: float = 0.1
    seed: int = 0
    out: str = "runs/model"
    resume: bool = False
    progress: bool = True
    plot: bool = True


@dataclass
class TrainResult:
    params: dict
    history: list = field(default_factory=list)
    seconds: float = 0.0
    checkpoint: str = ""
    stopped: str = "finished"   # finished | interrupted

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}


def evaluate(model: Model, params: dict, split, y=None, binding: Binding | None = None,
             batch: int = 1024) -> dict:
    """Mean loss over a whole split, in chunks (inference mode: dropout off, batch norm on running
    statistics), and the task's measure: `acc` and `pred` (classify), `mse` (regress, with a
    prediction output), `nll` in nats per token (language). `split`: the split's arrays by data-set
    name ({"x": ..., "y": ...}), or the features with `y` the labels."""
    names = dict(binding.inputs)
    if not isinstance(split, dict):
        split = {names[binding.x]: split, names[binding.target]: y}
    n = len(split[names[binding.target]])
    total = scored = count = 0.0
    correct, preds = 0, []
    device = model.device
    params = device.put_all(params)   # host parameters (a finished run's) too
    for start in range(0, n, batch):
        inputs = binding.feed(split, slice(start, start + batch), model.dtype)
        yb = inputs.pop(binding.target)
        inputs = device.put_all(inputs)
        if binding.logits or binding.prediction:
            out = device.host_all(model.forward(params, **inputs))
        if binding.logits:  # the loss is the mean NLL of the target (no regularisation terms)
            nll, k, p = _nll(out[binding.logits], yb, binding.pad)
            total, count = total + nll, count + k
            correct += int(np.sum((p == yb)[yb != binding.pad] if binding.pad is not None else p == yb))
            preds.append(p)
            continue
        if binding.prediction:
            scored += float(np.sum((out[binding.prediction].astype(np.float64) - yb) ** 2))
        if model.needs_seed:
            inputs["seed"] = device.put(np.int64(0))
        k = len(yb) if binding.pad is None else int(np.sum(yb != binding.pad))
        loss = model.loss(params, **inputs, **{binding.target: device.put(yb)})
        total, count = total + float(loss) * k, count + k
    out = {"loss": total / max(count, 1)}
    if binding.kind == "language":
        out["nll"] = out["loss"]
    elif binding.logits:
        out["acc"], out["pred"] = correct / max(count, 1), np.concatenate(preds)
    if binding.prediction:
        out["mse"] = scored / max(n * int(np.prod(split[names[binding.target]].shape[1:])), 1)
    return out


def _nll(z, y, pad=None):
    """(summed −log softmax(z)[y] over the counted positions, their number, argmax predictions)."""
    z = z.astype(np.float64)
    m = z.max(axis=-1, keepdims=True)
    lse = m[..., 0] + np.log(np.exp(z - m).sum(axis=-1))
    keep = np.ones(y.shape, bool) if pad is None else y != pad
    picked = np.take_along_axis(z, np.where(keep, y, 0)[..., None], axis=-1)[..., 0]
    return float(np.sum((lse - picked)[keep])), int(keep.sum()), np.argmax(z, axis=-1)


def _check_finite(loss, grads, step, epoch, batch, path, order=(), shown=3):
    """Stop on a NaN/inf loss or gradient, naming the step and the parameters (in `order`, the
    model's PARAMS order) whose gradients are not finite. One sum per gradient and one number read
    back (from a GPU too) in the common case; arrays of any backend."""
    total = loss
    for g in grads.values():
        total = total + g.sum()
    if np.isfinite(float(total)):
        return
    loss = float(loss)
    bad = [k for k, g in grads.items() if not np.all(np.isfinite(to_host(g)))]
    if np.isfinite(loss) and not bad:   # finite terms whose sum overflowed
        return
    rank = {name: i for i, name in enumerate(order)}
    bad.sort(key=lambda k: rank.get(k, len(rank)))
    names = ", ".join(repr(k) for k in bad[:shown]) + (f" and {len(bad) - shown} more"
                                                       if len(bad) > shown else "")
    if not bad:
        what = f"the loss itself is {float(loss)} (every gradient is finite)"
    else:
        what = (f"the gradients of parameters {names} are not finite" if len(bad) > 1
                else f"the gradient of parameter {names} is not finite")
        if not np.isfinite(loss):
            what = f"the loss is {float(loss)} and {what}"
    where = f"step {step} (epoch {epoch + 1}, batch {batch + 1})"
    keep = f"the last good checkpoint ({path}) is untouched" if os.path.exists(path) else \
        "no checkpoint was written yet"
    raise NonFiniteError(f"{where}: {what}; {keep}. Lower the learning rate, clip the inputs, or "
                         "look for log/sqrt/division of values that reach 0")


def _refuse_fewer_epochs(path, epoch, batch_done, epochs):
    """--epochs is the total to reach, not a number of extra epochs: never silently do nothing."""
    if epoch > epochs or epoch == epochs and batch_done:
        done = f"{epoch} epochs" + (f" and {batch_done} batches" if batch_done else "")
        raise ckpt.CheckpointError(
            f"{path} has already trained {done}, more than --epochs {epochs}; --epochs is the total, "
            f"so to continue training pass a larger one (e.g. --epochs {epoch + epochs}), or evaluate "
            "the checkpoint with `symgrad eval`")


def _begin(model, config, optimizer, rng, ckpt_path, metrics_path, log):
    """Where training starts: fresh parameters, or the checkpoint's state with --resume.
    Returns (params, opt_state, epoch, batches done in it, step, history)."""
    if not config.resume:
        params = model.device.put_all(model.init_params(config.seed))   # drawn on the host: the
        open(metrics_path, "w").close()                                  # same on every backend
        return params, optimizer.init({k: params[k] for k in model.params_spec}), 0, 0, 0, []
    state = ckpt.load(ckpt_path, model)
    params, opt_state, meta = (model.device.put_all(state.params), model.device.put_all(state.opt_state),
                               state.meta)
    epoch, batch_done, step = meta["epoch"], meta["batch"], meta["step"]
    _refuse_fewer_epochs(ckpt_path, epoch, batch_done, config.epochs)
    fresh = optimizer.init({k: params[k] for k in model.params_spec})
    if ckpt.fit_slots(ckpt_path, opt_state, fresh) is None:
        log(f"{ckpt_path} was trained with {meta.get('optimizer', {}).get('name', '?')}: the "
            f"{optimizer.name} optimizer starts with fresh state")
        opt_state = fresh
    rng.bit_generator.state = meta["rng_state"]
    log(f"resumed from {ckpt_path}: epoch {epoch} + {batch_done} batches, step {step}")
    return params, opt_state, epoch, batch_done, step, meta.get("history", [])


def train(model: Model, data: Dataset, config: TrainConfig, log=print, stepper=None) -> TrainResult:
    """Train `model` on `data`. `stepper(params, idx, inputs) -> (loss, grads, state)` replaces the
    in-process step (runtime.distributed.DataParallel spreads it over Dask workers).

    One function on purpose (~70 lines): the state a step hands over (params, optimizer state,
    step, batch) and the interrupt handler that checkpoints it must be visible together."""
    binding = bind(model, data)
    keep_freed_memory()  # each step reuses the last step's freed arrays (see allocator.py)
    dtype = model.dtype
    splits = _splits(binding, data, dtype)
    n = len(data.train[data.target])
    steps_per_epoch = -(-n // config.batch_size)
    optimizer = make_optimizer(config.optimizer, momentum_=config.momentum,
                               weight_decay=config.weight_decay)
    schedule = Schedule(config.schedule, config.lr, config.step_size, config.gamma,
                        total_steps=config.epochs * steps_per_epoch)
    os.makedirs(config.out, exist_ok=True)
    ckpt_path = os.path.join(config.out, "checkpoint.npz")
    metrics_path = os.path.join(config.out, "metrics.jsonl")

    rng = np.random.default_rng(config.seed)
    params, opt_state, epoch, batch_done, step, history = _begin(
        model, config, optimizer, rng, ckpt_path, metrics_path, log)

    def meta(epoch_start_state, epoch_, batch_):
        return {**_run_meta(model, config, data, binding), "epoch": epoch_, "batch": batch_,
                "step": step, "rng_state": epoch_start_state, "history": history,
                "optimizer": {"name": optimizer.name, **optimizer.hyper}}

    bar = _progress(total=config.epochs * steps_per_epoch, initial=step, enabled=config.progress)
    started = time.perf_counter()
    result = TrainResult(params, history, checkpoint=ckpt_path)
    epoch_state = rng.bit_generator.state
    workspace = model.workspace()  # the gradients are used up before the next step
    try:
        while epoch < config.epochs:
            epoch_state = rng.bit_generator.state
            order = rng.permutation(n)
            losses = []
            for b in range(batch_done, steps_per_epoch):
                idx = order[b * config.batch_size:(b + 1) * config.batch_size]
                inputs = binding.feed(splits["train"], idx)
                if model.needs_seed:  # a fresh, reproducible dropout mask for every step
                    inputs["seed"] = np.int64(config.seed * 1_000_003 + step)
                if stepper is None:
                    inputs = model.device.put_all(inputs)
                loss, grads, running = (stepper(params, idx, inputs) if stepper is not None
                                        else model.step(params, workspace=workspace, **inputs))
                _check_finite(loss, grads, step, epoch, b, ckpt_path, model.params_spec)
                trainable = {k: params[k] for k in grads}
                new_params, new_state = optimizer.update(trainable, grads, opt_state,
                                                         schedule(step, steps_per_epoch))
                new_params = {**params, **new_params, **running}
                params, opt_state, step = new_params, new_state, step + 1  # one atomic hand-over
                batch_done = b + 1
                losses.append(float(loss))
                bar.update(1)
                if step % 10 == 0:
                    bar.set_postfix(epoch=epoch + 1, loss=f"{float(loss):.4f}", refresh=False)
            epoch, batch_done = epoch + 1, 0
            record = _epoch_record(model, params, binding, splits, epoch, step, losses,
                                   schedule(step - 1, steps_per_epoch), started)
            history.append(record)
            with open(metrics_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            bar.set_postfix(epoch=epoch, loss=f"{record['train_loss']:.4f}",
                            test_loss=f"{record['test_loss']:.4f}")
            ckpt.save(ckpt_path, params, opt_state, meta(rng.bit_generator.state, epoch, 0))
    except KeyboardInterrupt:
        ckpt.save(ckpt_path, params, opt_state, meta(epoch_state, epoch, batch_done))
        result.stopped = "interrupted"
        log(f"\ninterrupted: saved {ckpt_path} at epoch {epoch} + {batch_done} batches; "
            "continue with --resume")
    finally:
        bar.close()
    result.params, result.history = model.device.host_all(params), history
    result.seconds = time.perf_counter() - started
    if config.plot and history:
        from .plot import plot_history
        plot_history(history, os.path.join(config.out, "curves.png"), title=data.name)
    return result


def train_full_batch(model: Model, data: Dataset, config: TrainConfig, log=print) -> TrainResult:
    """`config.optimizer` one of METHODS (lbfgs, newton-cg, trust-ncg): scipy minimises the loss over
    the whole training split, at most `config.epochs` iterations; one metrics line per iteration."""
    model = model.on_host()   # scipy's iterates are host vectors, whatever the module's backend
    binding = bind(model, data)
    keep_freed_memory()
    splits = _splits(binding, data, model.dtype)
    os.makedirs(config.out, exist_ok=True)
    ckpt_path = os.path.join(config.out, "checkpoint.npz")
    metrics_path = os.path.join(config.out, "metrics.jsonl")
    done, history = 0, []   # --epochs is the total number of iterations, as it is for epochs
    if config.resume:
        state = ckpt.load(ckpt_path, model)
        params, done, history = state.params, state.meta["epoch"], state.meta.get("history", [])
        _refuse_fewer_epochs(ckpt_path, done, 0, config.epochs)
    else:
        params = model.init_params(config.seed)
        open(metrics_path, "w").close()
    inputs = binding.feed(splits["train"], np.arange(len(data.train[data.target])))
    if model.needs_seed:   # dropout: one fixed mask, so that the loss is one function to minimise
        inputs["seed"] = np.int64(config.seed)
    started = time.perf_counter()

    def after_iteration(entry, now):
        step = done + entry["iteration"]
        record = _epoch_record(model, now, binding, splits, step, step, [entry["loss"]], 0.0, started)
        history.append(record)
        with open(metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    result = minimize(model, params, inputs, config.optimizer, maxiter=config.epochs - done,
                      callback=after_iteration)
    meta = {**_run_meta(model, config, data, binding), "epoch": done + result.iterations, "batch": 0,
            "step": done + result.iterations, "history": history,
            "rng_state": np.random.default_rng(config.seed).bit_generator.state,
            "optimizer": {"name": config.optimizer, "converged": result.converged,
                          "message": result.message}}
    ckpt.save(ckpt_path, result.params, {}, meta)
    log(f"{config.optimizer}: {result.iterations} iterations, {result.evaluations} gradients, "
        f"{result.hvps} Hessian-vector products; {result.message}")
    out = TrainResult(result.params, history, time.perf_counter() - started, ckpt_path)
    if config.plot and history:
        from .plot import plot_history
        plot_history(history, os.path.join(config.out, "curves.png"), title=data.name)
    return out


def _splits(binding: Binding, data: Dataset, dtype) -> dict:
    """Every split's arrays by data name, floats in the module's dtype."""
    return {k: {d: (a[d].astype(dtype) if a[d].dtype.kind == "f" else a[d]) for _, d in binding.inputs}
            for k, a in (("train", data.train), ("val", data.val), ("test", data.test)) if a}


def _run_meta(model, config: TrainConfig, data: Dataset, binding: Binding) -> dict:
    """What every checkpoint records about the run, whichever way it trains."""
    return {"model_sha256": model.sha256, "compiler_version": model.module.SYMGRAD_VERSION,
            "dtype": np.dtype(model.dtype).name, "config": asdict(config), "data": data.name,
            "preprocess": preprocess_of(binding, data), "task": binding.kind, "target": binding.target}


def preprocess_of(binding: Binding, data: Dataset) -> dict:
    """The data set's standardisation statistics by model input name: what a checkpoint records,
    and what `eval` and `predict` apply to raw arrays."""
    return {m: data.preprocess[d] for m, d in binding.inputs if d in data.preprocess}


METRIC = {"classify": "acc", "regress": "mse", "language": "nll"}


def _epoch_record(model, params, binding, splits, epoch, step, losses, lr, started) -> dict:
    """The epoch's line of metrics.jsonl: loss and the task's measure on every split."""
    record = {"epoch": epoch, "step": step, "lr": lr,
              "batch_loss": float(np.mean(losses)) if losses else float("nan")}
    metric = METRIC[binding.kind]
    for name, arrays in splits.items():
        result = evaluate(model, params, arrays, binding=binding)
        record[f"{name}_loss"] = result["loss"]
        if metric in result:
            record[f"{name}_{metric}"] = result[metric]
    record["seconds"] = round(time.perf_counter() - started, 4)
    return record


def _progress(total, initial, enabled):
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, leave=False,
                disable=None if enabled else True, file=sys.stderr)
