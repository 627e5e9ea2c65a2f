"""Scale out on Dask: data-parallel steps and distributed sweeps with the same generated module.

The training set is split into shards that are scattered to the workers once. For each step the
driver picks the minibatch exactly as one process would, sends the parameters and each worker the
rows of the minibatch that live in its shard; each worker runs the generated `loss_and_grad` on its
rows and returns the sums, and the driver combines them weighted by row count. The update therefore
equals the single-process update up to floating-point reassociation.

A worker that dies is reported; its shard is scattered again to the workers that remain and the
step is retried, so the run goes on.
"""
from __future__ import annotations

import os
import time

import numpy as np

from .data import Dataset

_MODELS: dict = {}   # per worker process: module path -> loaded Model (loaded once, reused)

SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class DistributedError(RuntimeError):
    """The cluster cannot run this job (no workers left, or a model that cannot be split)."""


def connect(workers: int | None = None, scheduler: str | None = None):
    """A Dask client: a LocalCluster of `workers` processes (one BLAS thread each), or an existing
    scheduler at `scheduler` (tcp://host:port)."""
    import logging

    from dask.distributed import Client, LocalCluster
    logging.getLogger("distributed").setLevel(logging.WARNING)  # the scheduler lives in this process
    if scheduler:
        return Client(scheduler)
    saved = {key: os.environ.get(key) for key in SINGLE_THREAD}
    os.environ.update(SINGLE_THREAD)  # inherited by the worker processes, not kept by this one
    try:
        cluster = LocalCluster(n_workers=workers or 2, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return Client(cluster)


def _model(path: str):
    from . import load
    if path not in _MODELS:
        _MODELS[path] = load(path)
    return _MODELS[path]


def shard_gradient(path: str, shard, rows, params: dict, names: tuple):
    """On a worker: loss and gradients summed (not averaged) over `rows` of its shard."""
    x, y = shard
    xname, yname = names
    model = _model(path)
    loss, grads, _ = model.step(params, **{xname: x[rows], yname: y[rows]})
    n = len(rows)
    return float(loss) * n, {k: np.asarray(g) * n for k, g in grads.items()}, n


class DataParallel:
    """A step function for `runtime.train.train` that spreads each minibatch over the workers."""

    def __init__(self, client, model, module_path: str, x: np.ndarray, y: np.ndarray,
                 names: tuple, log=print):
        if model.states_spec or model.needs_seed:
            raise DistributedError("data-parallel steps need a model without batch statistics or "
                                   "dropout (their values would depend on how the batch is split); "
                                   "train this model in one process")
        self.client, self.path, self.x, self.y, self.names, self.log = client, module_path, x, y, names, log
        self.retries = 0
        self._scatter()

    def _scatter(self):
        workers = sorted(self.client.scheduler_info()["workers"])
        if not workers:
            raise DistributedError("no Dask workers are left")
        bounds = np.linspace(0, len(self.x), len(workers) + 1).astype(int)
        self.bounds = bounds
        self.shards = [self.client.scatter((self.x[a:b], self.y[a:b]), workers=[w], broadcast=False)
                       for w, a, b in zip(workers, bounds[:-1], bounds[1:])]
        self.workers = workers

    def __call__(self, params: dict, idx: np.ndarray, inputs: dict):
        while True:
            try:
                return self._step(params, idx)
            except Exception as e:  # a worker died or lost its data: re-shard and retry the step
                if not _is_worker_failure(e):
                    raise
                self.retries += 1
                time.sleep(0.5)
                alive = sorted(self.client.scheduler_info()["workers"])
                self.log(f"worker failure ({type(e).__name__}); retrying the step on {len(alive)} "
                         f"worker(s)")
                if self.retries > 5 or not alive:
                    raise DistributedError(f"giving up after {self.retries} worker failures") from e
                self._scatter()

    def _step(self, params, idx):
        order = np.sort(idx)  # the sum does not depend on the order of rows
        shard_of = np.searchsorted(self.bounds, order, side="right") - 1
        futures = []
        for k, shard in enumerate(self.shards):
            rows = order[shard_of == k] - self.bounds[k]
            if len(rows):
                futures.append(self.client.submit(shard_gradient, self.path, shard, rows, params,
                                                  self.names, workers=[self.workers[k]],
                                                  allow_other_workers=False, pure=False))
        results = self.client.gather(futures)
        n = sum(r[2] for r in results)
        loss = sum(r[0] for r in results) / n
        grads = {k: sum(r[1][k] for r in results) / n for k in results[0][1]}
        return np.float64(loss).astype(next(iter(grads.values())).dtype), grads, {}


def _is_worker_failure(e: Exception) -> bool:
    names = {type(e).__name__, *(type(a).__name__ for a in getattr(e, "args", ()))}
    return bool(names & {"KilledWorker", "CommClosedError", "FutureCancelledError", "CancelledError",
                         "StreamClosedError", "OSError", "TimeoutError", "KeyError"})


# ---- sweeps ------------------------------------------------------------------------------------

def train_one(model_path: str, data: Dataset, config: dict) -> dict:
    """Train one configuration in this process (on a worker, or locally) and report it."""
    from . import load
    from .train import TrainConfig, train
    model = load(model_path)
    started = time.perf_counter()
    result = train(model, data, TrainConfig(**config), log=lambda *_: None)
    final = result.final
    # the test metrics this task reports (acc for classifiers, mse for regression, nll for tokens)
    return {**{k: config[k] for k in ("lr", "seed", "optimizer", "batch_size", "epochs")},
            **{k: v for k, v in final.items() if k.startswith("test_")},
            "seconds": round(time.perf_counter() - started, 2), "out": config["out"]}


def sweep(model_path: str, data: Dataset, configs: list[dict], client=None) -> list[dict]:
    """Every configuration as an independent task (on the cluster when a client is given)."""
    if client is None:
        return [train_one(model_path, data, c) for c in configs]
    data_future = client.scatter(data, broadcast=True)
    futures = [client.submit(train_one, model_path, data_future, c, pure=False) for c in configs]
    return client.gather(futures)
