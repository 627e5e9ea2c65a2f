"""Data parallelism on Dask: steps per second of the MNIST-size MLP at several batch sizes, one
process against 1 and 2 workers, and the scheduler overhead per step."""
from __future__ import annotations

import time

import numpy as np

from .specs import SPECS


def measure(batches=(256, 1024, 4096), workers=(1, 2), steps: int = 15, log=print) -> dict:
    import runtime
    from runtime.distributed import DataParallel, connect
    spec = SPECS["mnist_mlp"]
    model = runtime.load(spec.model_file)
    params = model.init_params(0)
    rng = np.random.default_rng(0)
    n = max(batches) * 2
    x = rng.standard_normal((n, 784))
    y = rng.integers(0, 10, size=n)

    def rate(fn, batch):
        idx = rng.permutation(n)[:batch]
        fn(idx)  # warm up (and load the module on the workers)
        t = time.perf_counter()
        for _ in range(steps):
            fn(rng.permutation(n)[:batch])
        return steps / (time.perf_counter() - t)

    out = {("one process", b): rate(lambda idx: model.step(params, x=x[idx], y=y[idx]), b) for b in batches}
    log("dask: one process done")
    for w in workers:
        client = connect(workers=w)
        try:
            step = DataParallel(client, model, model.module.__file__, x, y, ("x", "y"))
            for b in batches:
                out[(f"{w} worker{'s' if w > 1 else ''}", b)] = rate(lambda idx: step(params, idx, {}), b)
            tiny = rate(lambda idx: step(params, idx, {}), 2)
            out[(f"{w} worker{'s' if w > 1 else ''}", "overhead ms")] = 1000 / tiny
        finally:
            client.close()
        log(f"dask: {w} workers done")
    return out


def render(results: dict, batches=(256, 1024, 4096)) -> list[str]:
    rows = sorted({k[0] for k in results}, key=lambda r: (r != "one process", r))
    lines = ["| setup | " + " | ".join(f"batch {b} (steps/s)" for b in batches) + " | overhead per step |",
             "|---|" + "---|" * (len(batches) + 1)]
    for r in rows:
        cells = [f"{results[(r, b)]:.1f}" for b in batches]
        over = results.get((r, "overhead ms"))
        lines.append(f"| {r} | " + " | ".join(cells) + f" | {'' if over is None else f'{over:.1f} ms'} |")
    return lines
