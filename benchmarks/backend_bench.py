"""The generated module on other array libraries against each library's own autodiff.

CPU (default), on the four MLP benchmark models, float32 and float64, one thread, process pinned
to one core (see hvp_bench.one_core), calls interleaved round by round:
  - jax.jit of the generated JAX module's loss_and_grad vs jax.jit(jax.value_and_grad(loss))
  - the generated torch module (no tape) vs torch eager autograd (loss.backward())

GPU (--gpu), the MNIST-size MLP at batch 256, 4096 and 32768: the CuPy module, the torch module on
CUDA and its captured step (one CUDA graph, runtime.capture), torch eager, the JAX module under
jax.jit (its float32 products at full precision, and with TF32: JAX's GPU default) and JAX's
value_and_grad (TF32); µs per step
(best of 5 runs of --calls steps, waited for), and each float32 result's relative error against
float64 NumPy on the host.

    python -m benchmarks.backend_bench [--repeat 200] [--gpu [--calls 50]]

Every peer's loss and gradients are checked equal to the generated module's before it is timed.
"""
from __future__ import annotations

import argparse
import gc
import os
import time

import numpy as np

from .hvp_bench import one_core
from .specs import ROOT, SPECS, layer_names

MODELS = ("tiny_sigmoid", "digits_mlp", "deep_tanh", "mnist_mlp")
TOLERANCE = {"float64": 1e-10, "float32": 1e-4}   # peers vs the generated module, relative, norm-wise


def interleaved_us(calls: dict, repeat: int, warmup: int = 20) -> dict:
    """Median µs per call, one call of each per round, the order rotated every round (whichever
    call comes first in a round pays for what the last one left behind), collector off."""
    names = list(calls)
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in names}
    gc.disable()   # as timeit does: a collection lands on whichever call happens to be running
    try:
        for r in range(repeat):
            for name in names[r % len(names):] + names[:r % len(names)]:
                t0 = time.perf_counter()
                calls[name]()
                times[name].append(time.perf_counter() - t0)
    finally:
        gc.enable()
    return {name: 1e6 * float(np.median(t)) for name, t in times.items()}


def case(spec, dtype: str, batch: int | None = None):
    import runtime
    model = runtime.load(spec.model_file, dtype=dtype)
    params = model.init_params(0)
    inputs = runtime.random_inputs(model, batch or spec.batch, seed=0)
    return model, params, inputs


def relative(got, want) -> float:
    """The larger of the loss's relative error and the gradient's, ||got - want|| / ||want|| over
    all parameters together (a gradient near 0, like the last bias's at a large batch, is rounding
    noise in both, so its own relative error says nothing)."""
    from runtime.devices import to_host
    loss = abs(float(got[0]) - float(want[0])) / max(abs(float(want[0])), 1e-30)
    mine = np.concatenate([np.ravel(np.asarray(to_host(got[1][k]), np.float64)) for k in want[1]])
    theirs = np.concatenate([np.ravel(want[1][k]) for k in want[1]])
    return max(loss, np.linalg.norm(mine - theirs) / max(np.linalg.norm(theirs), 1e-30))


def check(name: str, got, want, dtype: str) -> None:
    error = relative(got, want)
    if error > TOLERANCE[dtype]:
        raise SystemExit(f"{name} differs from the generated NumPy module by {error:.1e} ({dtype})")


def peer_functions(spec, params, x, y, dtype: str, device: str = "cpu"):
    """(torch eager step, jax value_and_grad step): each returns (loss, {name: grad})."""
    import jax
    import jax.numpy as jnp
    import torch
    names = layer_names(spec)
    act_t = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}[spec.activation]
    act_j = {"relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid}[spec.activation]
    P = {k: torch.tensor(v, device=device, requires_grad=True) for k, v in params.items()}
    X, Y = torch.tensor(x, device=device), torch.tensor(y, device=device)

    def torch_eager():
        h = X
        for i, name in enumerate(names):
            h = torch.addmm(P[f"{name}.b"], h, P[f"{name}.W"])
            h = act_t(h) if i < len(names) - 1 else h
        loss = torch.nn.functional.cross_entropy(h, Y)
        grads = torch.autograd.grad(loss, list(P.values()))
        return loss, dict(zip(P, grads))

    def loss_fn(Q, X, Y):
        h = X
        for i, name in enumerate(names):
            h = h @ Q[f"{name}.W"] + Q[f"{name}.b"]
            h = act_j(h) if i < len(names) - 1 else h
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(h), Y[:, None], axis=1))

    step = jax.jit(jax.value_and_grad(loss_fn))
    J = {k: jnp.asarray(v) for k, v in params.items()}
    XJ, YJ = jnp.asarray(x), jnp.asarray(y)
    return torch_eager, lambda: jax.block_until_ready(step(J, XJ, YJ))


def generated_functions(spec, params, inputs, dtype: str, device: str = "cpu", unwrapped=False):
    """(torch module step, jitted JAX module step) on the same arrays; `unwrapped`: the JAX step
    without its full-precision products (TF32 on a GPU)."""
    import jax
    import runtime
    torch_model = runtime.load(spec.model_file, dtype=dtype, backend="torch", device=device)
    jax_model = runtime.load(spec.model_file, dtype=dtype, backend="jax",
                             device="gpu" if device == "cuda" else "cpu")
    tp, tx = torch_model.device.put_all(params), torch_model.device.put_all(inputs)
    jp, jx = jax_model.device.put_all(params), jax_model.device.put_all(inputs)
    fn = jax_model.module.loss_and_grad
    step = jax.jit(getattr(fn, "__wrapped__", fn) if unwrapped else fn)
    return (lambda: torch_model.module.loss_and_grad(tp, **tx),
            lambda: jax.block_until_ready(step(jp, **jx)))


def cpu_table(repeat: int, models=MODELS) -> None:
    import jax
    jax.config.update("jax_enable_x64", True)
    import torch
    torch.set_num_threads(1)
    print(f"CPU, one thread, median of {repeat} interleaved calls (µs); peers checked equal first\n")
    print("| model (batch) | dtype | generated JAX, jit | JAX value_and_grad, jit | ratio (target ≤ 1.05) "
          "| generated torch | torch eager autograd | ratio (target ≤ 0.8) |")
    print("|---|---|---|---|---|---|---|---|")
    for name in models:
        spec = SPECS[name]
        for dtype in ("float32", "float64"):
            model, params, inputs = case(spec, dtype)
            want = model.loss_and_grad(params, **inputs)
            mine_t, mine_j = generated_functions(spec, params, inputs, dtype)
            peer_t, peer_j = peer_functions(spec, params, inputs["x"], inputs["y"], dtype)
            for label, fn in (("generated torch", mine_t), ("generated jax", mine_j),
                              ("torch eager", peer_t), ("jax value_and_grad", peer_j)):
                check(f"{name} {label}", fn(), want, dtype)
            # each ratio from its own A/B pair (a third library's calls in between disturb both)
            us = {**interleaved_us({"gj": mine_j, "pj": peer_j}, repeat),
                  **interleaved_us({"gt": mine_t, "pt": peer_t}, repeat)}
            print(f"| {name} ({spec.batch}) | {dtype} | {us['gj']:.1f} | {us['pj']:.1f} | "
                  f"{us['gj'] / us['pj']:.2f}× | {us['gt']:.1f} | {us['pt']:.1f} | "
                  f"{us['gt'] / us['pt']:.2f}× |", flush=True)


def gpu_time(fn, calls: int, sync) -> float:
    """Best of 5 runs of `calls` steps, each run waited for: µs per step."""
    for _ in range(3):
        fn()
    sync()
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        best = min(best, (time.perf_counter() - t0) / calls)
    return 1e6 * best


def gpu_table(calls: int) -> None:
    import cupy as cp
    import jax
    jax.config.update("jax_enable_x64", True)
    import torch
    import runtime
    from runtime.capture import CapturedStep
    spec = SPECS["mnist_mlp"]

    def sync():
        torch.cuda.synchronize()
        cp.cuda.Device().synchronize()

    print(f"GPU: {torch.cuda.get_device_name()}; MNIST-size MLP (784→512→512→10); µs per step "
          f"(best of 5 runs of {calls}); in brackets the float32 result's largest relative error "
          "against float64 NumPy on the host (loss and every gradient, norm-wise)\n")
    columns = ("CuPy module", "torch module", "torch module captured", "torch eager",
               "JAX module, jit", "JAX module, jit, TF32", "JAX value_and_grad, jit")
    print("| dtype | batch | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for dtype, batch in (("float32", 256), ("float32", 4096), ("float32", 32768), ("float64", 32768)):
        model64, params64, inputs = case(spec, "float64", batch)
        want = model64.loss_and_grad(params64, **inputs)
        params = {k: v.astype(dtype) for k, v in params64.items()}
        inputs = {k: v.astype(dtype) if v.dtype.kind == "f" else v for k, v in inputs.items()}
        cupy_model = runtime.load(spec.model_file, dtype=dtype, backend="cupy")
        cparams, cinputs = cupy_model.device.put_all(params), cupy_model.device.put_all(inputs)
        mine_t, mine_j = generated_functions(spec, params, inputs, dtype, "cuda")
        peer_t, peer_j = peer_functions(spec, params, inputs["x"], inputs["y"], dtype, "cuda")
        torch_model = runtime.load(spec.model_file, dtype=dtype, backend="torch", device="cuda")
        _, tf32 = generated_functions(spec, params, inputs, dtype, "cuda", unwrapped=True)
        makers = {"CuPy module": lambda: lambda: cupy_model.module.loss_and_grad(cparams, **cinputs),
                  "torch module": lambda: mine_t,
                  "torch module captured": lambda: CapturedStep(torch_model, params, inputs),
                  "torch eager": lambda: peer_t, "JAX module, jit": lambda: mine_j,
                  "JAX module, jit, TF32": lambda: tf32, "JAX value_and_grad, jit": lambda: peer_j}
        cells = []
        for label in columns:
            try:
                fn = makers[label]()
                error = relative(fn(), want)
                cells.append(f"{gpu_time(fn, calls, sync):,.0f} [{error:.0e}]")
            except Exception as e:   # one column's failure is reported in its cell
                cells.append(f"failed: {type(e).__name__}: {str(e)[:80]}")
        print(f"| {dtype} | {batch:,} | " + " | ".join(cells) + " |", flush=True)
    label_check_cost(cp, torch)


def label_check_cost(cp, torch) -> None:
    """What the label-range check of a GPU module costs: one number read back, waiting for the queue."""
    import runtime
    spec = SPECS["mnist_mlp"]
    for backend in ("cupy", "torch"):
        model = runtime.load(spec.model_file, dtype="float32", backend=backend, device="cuda")
        y = model.device.put(np.arange(256) % 10)
        sync = (lambda: cp.cuda.Device().synchronize()) if backend == "cupy" else torch.cuda.synchronize
        us = gpu_time(lambda: model.module._labels_ok(y, 10), 200, sync)
        print(f"{backend}: the label check alone (idle GPU) {us:.1f} µs per call")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--gpu", action="store_true", help="the GPU table (needs CuPy, torch and JAX with CUDA)")
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=MODELS)
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    if args.gpu:
        gpu_table(args.calls)
        return
    one_core()
    from .conv2d_bench import limit_threads
    with limit_threads(1):
        cpu_table(args.repeat, args.models)


if __name__ == "__main__":
    main()
