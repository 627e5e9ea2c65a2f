"""Time one implementation of one benchmark model in this process; print one JSON line.

    python -m benchmarks.worker IMPL MODEL DTYPE [--samples N] [--cpu N]
    python -m benchmarks.worker --first-call BACKEND MODEL DTYPE

Every worker gets the same machine: one CPU (os.sched_setaffinity) and one thread in every library
(BLAS through threadpoolctl, torch, numba; XLA through XLA_FLAGS, set before jax is imported).
The JSON line says what the worker saw, so the suite can check it.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

from .specs import SPECS, layer_names

XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                  "NUMBA_NUM_THREADS": "1", "XLA_FLAGS": XLA_FLAGS}
NUMPY_FACING = ("generated", "workspace", "generated_forward", "numba")


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


def pin(cpu: int | None) -> None:
    """Before any library starts its threads: one CPU, and one thread asked of each by environment
    (the suite also passes these to the worker, so they hold from interpreter start)."""
    os.environ.update(ONE_THREAD_ENV)
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


def one_thread() -> dict:
    """Once the step is built and has run (its libraries loaded): cap every thread pool at one and
    report what each library now uses."""
    seen = {"cpus": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None}
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
        threadpool_limits(1)
        seen["pools"] = {f"{i['internal_api']} ({os.path.basename(i['filepath'])})": i["num_threads"]
                         for i in threadpool_info()}
    except ImportError:
        seen["pools"] = None
    if "torch" in sys.modules:
        import torch
        torch.set_num_threads(1)
        seen["torch"] = torch.get_num_threads()
    if "numba" in sys.modules:
        import numba
        numba.set_num_threads(1)
        seen["numba"] = numba.get_num_threads()
    if "jax" in sys.modules:
        seen["xla"] = os.environ.get("XLA_FLAGS")
    return seen


def problem(spec, dtype, backend: str = "numpy"):
    """The model (compiled for `backend`), its seeded parameters and one seeded batch."""
    import runtime
    model = runtime.load(spec.model_file, dtype=dtype, backend=None if backend == "numpy" else backend)
    return (model,) + data(model, spec, dtype)


def data(model, spec, dtype):
    params = model.init_params(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((spec.batch, spec.sizes[0])).astype(dtype)
    y = rng.integers(0, spec.sizes[-1], size=spec.batch)
    return params, x, y


def build(impl, spec, dtype):
    """A zero-argument function running one step of `impl` on the model's problem."""
    from .handwritten import make_cnn_loss_and_grad, make_loss_and_grad, make_matmul_floor
    from .peers import PEERS, torch_cnn_step
    from .specs import CNN_LAYERS
    model, params, x, y = problem(spec, dtype, "numba" if impl == "numba" else "numpy")
    names = layer_names(spec)
    if spec.kind == "cnn" and impl not in NUMPY_FACING:
        if impl == "hand":
            f = make_cnn_loss_and_grad(CNN_LAYERS)
            return lambda: f(params, x, y)
        if impl == "torch":
            return torch_cnn_step(params, x, y, CNN_LAYERS, dtype)
        raise ImportError(f"{impl} is not measured for the CNN")
    if impl in ("generated", "numba"):
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
    if impl not in PEERS:
        raise ValueError(f"unknown implementation {impl!r}")
    return PEERS[impl](params, x, y, names, spec.activation, dtype)


def first_call(backend, spec, dtype) -> dict:
    """Seconds to import the backend, to load the model (compiling it into symgrad's cache when
    that is empty) and to run its first step (numba: compiling its kernels, or loading them from
    numba's on-disk cache), then the µs of a warm step."""
    t = time.perf_counter()
    import runtime
    if backend == "numba":
        import numba  # noqa: F401
    imported = time.perf_counter()
    model = runtime.load(spec.model_file, dtype=dtype, backend=None if backend == "numpy" else backend)
    loaded = time.perf_counter()
    params, x, y = data(model, spec, dtype)
    step = model.module.loss_and_grad
    t1 = time.perf_counter()
    step(params, x=x, y=y)
    first = time.perf_counter() - t1
    return {"backend": backend, "model": spec.name, "dtype": dtype, "import_s": imported - t,
            "load_s": loaded - imported, "first_call_s": first,
            "warm_us": median_seconds(lambda: step(params, x=x, y=y), 5) * 1e6}


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("impl", help="implementation, or with --first-call the backend (numpy, numba)")
    p.add_argument("model", choices=sorted(SPECS))
    p.add_argument("dtype", choices=["float64", "float32"])
    p.add_argument("--samples", type=int, default=15)
    p.add_argument("--cpu", type=int, default=None, help="the CPU to pin to (default: stay unpinned)")
    p.add_argument("--first-call", action="store_true", help="time loading and the first step instead")
    args = p.parse_args(argv)
    pin(args.cpu)
    if args.first_call:
        print(json.dumps(first_call(args.impl, SPECS[args.model], args.dtype) | {"threads": one_thread()}))
        return 0
    try:
        fn = build(args.impl, SPECS[args.model], args.dtype)
    except ImportError as e:
        print(json.dumps({"impl": args.impl, "missing": str(e)}))
        return 0
    fn()  # the first call compiles where there is something to compile (numba, jax.jit)
    threads = one_thread()
    seconds = median_seconds(fn, args.samples)
    print(json.dumps({"impl": args.impl, "model": args.model, "dtype": args.dtype,
                      "us": seconds * 1e6, "threads": threads}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
