"""`symgrad train`, `sweep`, `eval` and `predict`: the runtime's commands."""
from __future__ import annotations

import csv
import itertools
import os
import sys

import numpy as np

import runtime
from runtime import checkpoint as ckpt
from runtime.data import DataError, load_dataset, restandardize
from runtime.distributed import DataParallel, connect, sweep
from runtime.minimize import METHODS, NEEDS_HVP
from runtime.surnames import sample
from runtime.train import METRIC, TrainConfig, bind, evaluate, train, train_full_batch

GRID_KEYS = ("lr", "batch_size", "epochs", "momentum", "weight_decay")

def sweep_columns(task: str) -> list[str]:
    """The sweep table: the configuration, then the task's own test metric, the loss and the time."""
    return ["lr", "batch_size", "epochs", "optimizer", "seed", f"test_{METRIC[task]}", "test_loss", "seconds"]


def load_model(args):
    second_order = getattr(args, "optimizer", None) in NEEDS_HVP
    return runtime.load(args.model, dtype=getattr(args, "dtype", "float64"),
                        functions=("hvp",) if second_order else (),
                        backend=getattr(args, "backend", None), device=getattr(args, "device", None))


def model_stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def cmd_train(args) -> int:
    model = load_model(args)
    data = load_dataset(args.data, seed=args.seed, label_column=args.label_column,
                        inputs=model.inputs_spec)
    out = args.out or os.path.join("runs", model_stem(args.model))
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer,
                         lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
                         schedule=args.schedule, step_size=args.step_size, gamma=args.gamma,
                         seed=args.seed, out=out, resume=args.resume, progress=not args.quiet)
    if config.optimizer in METHODS:
        if args.workers or args.scheduler:
            raise DataError(f"--optimizer {config.optimizer} is full batch, in one process; drop "
                            "--workers/--scheduler")
        print(f"training {args.model} on {data.describe()}; {config.optimizer}, full batch, "
              f"at most {config.epochs} iterations, seed={config.seed}")
        return _report(train_full_batch(model, data, config), data, config, out)
    where = f"; {model.backend} on {model.device.name}" if model.backend != "numpy" else ""
    print(f"training {args.model} on {data.describe()}; {config.optimizer} lr={config.lr} "
          f"batch={config.batch_size} epochs={config.epochs} seed={config.seed}{where}")
    stepper, client = None, None
    if (args.workers or args.scheduler) and model.backend != "numpy":
        raise DataError(f"data-parallel training on Dask runs the numpy backend; drop --workers/"
                        f"--scheduler to train with --backend {model.backend}")
    if args.workers or args.scheduler:
        client = connect(args.workers, args.scheduler)
        binding = bind(model, data)
        if len(binding.inputs) != 2:
            raise DataError("data-parallel training takes a model with two inputs (features and a "
                            "target); train this model in one process")
        names = dict(binding.inputs)
        stepper = DataParallel(client, model, model.module.__file__,
                               _cast(data.train[names[binding.x]], model.dtype),
                               data.train[names[binding.target]], (binding.x, binding.y))
        print(f"data parallel on {len(stepper.workers)} Dask worker(s)")
    try:
        result = train(model, data, config, stepper=stepper)
    finally:
        if client is not None:
            client.close()
    return _report(result, data, config, out)


def _report(result, data, config, out) -> int:
    final, metric = result.final, METRIC[data.task]
    keys = [f"{s}_{m}" for m in ("loss", metric) for s in ("train", "val", "test")]
    parts = [f"{k}={final[k]:.4f}" for k in keys if k in final]
    print(f"epoch {final.get('epoch', 0)}/{config.epochs}: " + " ".join(parts)
          + f"  ({result.seconds:.1f} s training)")
    print(f"wrote {out}/checkpoint.npz, {out}/metrics.jsonl, {out}/curves.png")
    if f"test_{metric}" in final:
        print(f"test_{metric} {final[f'test_{metric}']:.4f}" + UNITS[metric])
    return 130 if result.stopped == "interrupted" else 0


UNITS = {"acc": "", "mse": " (mean squared error)", "nll": " nats per token"}


def _cast(a, dtype):
    return a.astype(dtype) if a.dtype.kind == "f" else a


def parse_grid(items) -> dict | None:
    """`--grid lr=1e-3,1e-2` options as {key: [values]}; None (after printing why) if one is bad."""
    grid = {}
    for item in items or []:
        key, _, values = item.partition("=")
        if key not in GRID_KEYS or not values:
            print(f"error: --grid takes lr=, batch_size=, epochs=, momentum= or weight_decay= with "
                  f"comma-separated values, got {item!r}", file=sys.stderr)
            return None
        cast = int if key in ("batch_size", "epochs") else float
        grid[key] = [cast(v) for v in values.split(",")]
    return grid


def sweep_configs(args, grid: dict, seeds: list[int], out: str) -> list[dict]:
    """One training configuration per combination of the grid's values and the seeds."""
    keys = sorted(grid)
    configs = []
    for values in itertools.product(*[grid[k] for k in keys]):
        for seed in seeds:
            chosen = dict(zip(keys, values))
            name = "_".join(f"{k}{v}" for k, v in chosen.items()) + f"_seed{seed}"
            base = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer,
                               lr=args.lr, seed=seed, out=os.path.join(out, name or f"seed{seed}"),
                               progress=False, plot=False)
            configs.append({**base.__dict__, **chosen})
    return configs


def cmd_sweep(args) -> int:
    model = load_model(args)  # compile once, here; the workers load the generated module
    data = load_dataset(args.data, label_column=args.label_column, inputs=model.inputs_spec)
    grid = parse_grid(args.grid)
    if grid is None:
        return 2
    seeds = [int(s) for s in args.seeds.split(",")]
    out = args.out or os.path.join("runs", "sweep_" + model_stem(args.model))
    configs = sweep_configs(args, grid, seeds, out)
    client = connect(args.workers, args.scheduler) if (args.workers or args.scheduler) else None
    try:
        rows = sweep(model.module.__file__, data, configs, client)
    finally:
        if client is not None:
            client.close()
    os.makedirs(out, exist_ok=True)
    columns = sweep_columns(data.task)
    with open(os.path.join(out, "sweep.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    print(" ".join(f"{c:>10}" for c in columns))
    for r in rows:
        print(" ".join(f"{(f'{r.get(c):.4f}' if isinstance(r.get(c), float) else str(r.get(c))):>10}"
                       for c in columns))
    print(f"wrote {os.path.join(out, 'sweep.csv')}")
    return 0


def cmd_eval(args) -> int:
    model = load_model(args)
    state = ckpt.load(args.checkpoint, model)
    data = load_dataset(args.data, seed=state.meta.get("config", {}).get("seed", 0),
                        label_column=args.label_column, inputs=model.inputs_spec)
    binding = bind(model, data)
    stats = ckpt.preprocess(args.checkpoint, state.meta)
    test = {d: data.test[d] for _, d in binding.inputs}
    if stats is not None:  # the checkpoint's statistics, whatever the data set was scaled with
        test.update({d: restandardize(data.test[d], data.preprocess.get(d), stats.get(m))
                     for m, d in binding.inputs if m != binding.target})
    result = evaluate(model, state.params, test, binding=binding)
    print(f"{data.name} test split: {len(data.y_test)} samples, loss {result['loss']:.4f}")
    if "mse" in result:
        print(f"mse {result['mse']:.4f}")
    if "nll" in result:
        print(f"nll {result['nll']:.4f} nats per token")
    if "acc" in result:
        print(f"accuracy {result['acc']:.4f}")
        print_confusion(data.y_test, result["pred"], data.classes)
    return 0


def print_confusion(y, pred, classes: int) -> None:
    k = max(classes, int(pred.max()) + 1, int(y.max()) + 1)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (y, pred), 1)
    print("confusion matrix (rows: true class, columns: predicted)")
    print("      " + "".join(f"{j:>6}" for j in range(k)))
    for i in range(k):
        print(f"{i:>6}" + "".join(f"{confusion[i, j]:>6}" for j in range(k)))


def cmd_predict(args) -> int:
    """forward on the model's inputs read by name from an .npz of raw samples, standardised with
    the checkpoint's statistics (as in training); outputs saved, with the argmax of 2-D ones."""
    model = load_model(args)
    state = ckpt.load(args.checkpoint, model)
    with np.load(args.input, allow_pickle=False) as f:
        arrays = dict(f)
    stats = ckpt.preprocess(args.checkpoint, state.meta) or {}
    target = state.meta.get("target")  # what the model was trained to predict: not needed
    wanted = [n for n, (_, dtype) in model.inputs_spec.items() if n != "seed" and (
        n in arrays or n != target and (dtype != "int64" or n not in model.label_classes))]
    missing = [n for n in wanted if n not in arrays]
    if missing or not wanted:
        first = (missing or [n for n in model.inputs_spec if n != "seed"])[0]
        print(f"error: {args.input} has no array named {first!r} (it holds "
              f"{sorted(arrays)}; the model's inputs are {sorted(model.inputs_spec)})", file=sys.stderr)
        return 2
    inputs = {n: _cast(arrays[n], model.dtype) if model.inputs_spec[n][1] != "int64"
              else arrays[n].astype(np.int64) for n in wanted}
    for n in wanted:
        if n in stats:
            try:
                inputs[n] = restandardize(inputs[n], None, stats[n]).astype(model.dtype)
            except DataError as e:
                raise DataError(f"{args.input}: array {n!r}: {e}") from None
    outputs = model.forward(state.params, **inputs)
    saved = dict(outputs)
    for name, value in outputs.items():
        if value.ndim == 2:
            saved[f"{name}_argmax"] = np.argmax(value, axis=1)
    out = args.output or os.path.splitext(args.input)[0] + ".pred.npz"
    np.savez(out, **saved)
    scaled = [n for n in wanted if n in stats]
    print(f"wrote {out}: " + ", ".join(f"{k} {v.shape}" for k, v in saved.items())
          + (f" (standardised {', '.join(scaled)} with the checkpoint's statistics)" if scaled else ""))
    return 0


def cmd_sample(args) -> int:
    """Names from a trained character model (surnames' ids), one per line."""
    model = load_model(args)
    state = ckpt.load(args.checkpoint, model)
    for name in sample(model, state.params, args.n, args.temperature, args.seed):
        print(name)
    return 0
