"""Time one implementation of one benchmark model in this process; print one JSON line.

    python -m benchmarks.worker IMPL MODEL DTYPE [--samples N]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np

from .specs import SPECS, layer_names


def median_seconds(fn, samples: int = 15, min_time: float = 0.02) -> float:
    for _ in range(5):
        fn()
    n = 1
    while True:
        t = time.perf_counter()
        for _ in range(n):
            fn()
        if time.perf_counter() - t >= min_time or n >= 1 << 20:
            break
        n *= 2
    times = []
    for _ in range(samples):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - t) / n)
    return statistics.median(times)


def problem(spec, dtype):
    import runtime
    model = runtime.load(spec.model_file, dtype=dtype)
    params = model.init_params(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((spec.batch, spec.sizes[0])).astype(dtype)
    y = rng.integers(0, spec.sizes[-1], size=spec.batch)
    return model, params, x, y


def build(impl, spec, dtype):
    from .handwritten import make_cnn_loss_and_grad, make_loss_and_grad, make_matmul_floor
    from .peers import PEERS, torch_cnn_step
    from .specs import CNN_LAYERS
    model, params, x, y = problem(spec, dtype)
    names = layer_names(spec)
    if spec.kind == "cnn" and impl not in ("generated", "workspace", "generated_forward"):
        if impl == "hand":
            f = make_cnn_loss_and_grad(CNN_LAYERS)
            return lambda: f(params, x, y)
        if impl == "torch":
            return torch_cnn_step(params, x, y, CNN_LAYERS, dtype)
        raise ImportError(f"{impl} is not measured for the CNN")
    if impl == "generated":
        f = model.module.loss_and_grad
        return lambda: f(params, x=x, y=y)
    if impl == "workspace":  # as the trainer calls it: large products and gradients kept between calls
        f, ws = model.module.loss_and_grad, model.workspace()
        if ws is None:  # the module keeps nothing between calls: the plain step is the trainer's
            return lambda: f(params, x=x, y=y)
        return lambda: f(params, workspace=ws, x=x, y=y)
    if impl == "generated_forward":
        f = model.module.forward
        return lambda: f(params, x=x)
    if impl == "hand":
        f = make_loss_and_grad(names, spec.activation)
        return lambda: f(params, x, y)
    if impl == "floor":
        f = make_matmul_floor(names)
        return lambda: f(params, x, y)
    return PEERS[impl](params, x, y, names, spec.activation, dtype)


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("impl")
    p.add_argument("model", choices=sorted(SPECS))
    p.add_argument("dtype", choices=["float64", "float32"])
    p.add_argument("--samples", type=int, default=15)
    args = p.parse_args(argv)
    try:
        fn = build(args.impl, SPECS[args.model], args.dtype)
    except ImportError as e:
        print(json.dumps({"impl": args.impl, "missing": str(e)}))
        return 0
    seconds = median_seconds(fn, args.samples)
    print(json.dumps({"impl": args.impl, "model": args.model, "dtype": args.dtype,
                      "us": seconds * 1e6}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
