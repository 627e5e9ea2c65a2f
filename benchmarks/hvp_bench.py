"""H·v (Hessian of the loss times a direction) beside the gradient it costs a few of: the generated
`hvp` against the generated `loss_and_grad`, JAX's forward-over-reverse (`jax.jvp` of `jax.grad`,
jitted) against its jitted `value_and_grad`, and PyTorch eager's double backward against its plain
backward, on the same ReLU MLPs (digits_mlp, mnist_mlp), params, inputs and direction, in float32
and float64, all on one thread. Before timing, every peer's H·v is checked against the generated one.

    .venv/bin/python -m benchmarks.hvp_bench [--repeat 30] [--threads 1]

With --threads 1 (the default) BLAS and torch get one thread and the process is pinned to one CPU
(see one_core). Peers that are not installed show as n/a. Calls are interleaved round by round (one
call of each function per round, median per function) so that load drifting on a shared machine
hits every column alike.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

# before anything imports jax: older jax read XLA's thread settings from here (0.10 does not: one_core)
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

ROOT = Path(__file__).resolve().parent.parent
CASES = [  # (model file, batch)
    (ROOT / "examples" / "digits_mlp.py", 64),
    (ROOT / "examples" / "digits_mlp.py", 256),
    (ROOT / "benchmarks" / "models" / "mnist_mlp.py", 256),
]
TOLERANCE = {"float64": 1e-8, "float32": 1e-3}  # largest relative error (per parameter, in norm)


def one_core() -> None:
    """Pin the process to one CPU, before jax is imported: this jax (0.10) ignores XLA_FLAGS' thread
    settings and sizes its intra-op Eigen pool from the CPUs it may use (two busy tf_XLAEigen threads on
    a 2-core machine otherwise, jax's columns then ~2x faster). NumPy and torch run alike on it."""
    if hasattr(os, "sched_setaffinity") and "jax" not in sys.modules:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def layers(model) -> list[tuple[str, str]]:
    """(weight, bias) names in the generated PARAMS order; weights are (in, out): h @ W + b."""
    return [(name, name[:-1] + "b") for name in model.params_spec if name.endswith(".W")]


def mlp_loss(relu, logsumexp, pick, params, x, y, names):
    """ReLU between layers, mean softmax cross-entropy with logsumexp: the models' own math."""
    h = x
    for i, (w, b) in enumerate(names):
        h = h @ params[w] + params[b]
        if i < len(names) - 1:
            h = relu(h)
    return (logsumexp(h) - pick(h, y)).mean()


def jax_peer(names, params, vectors, x, y):
    """(value_and_grad call, hvp call), both jitted and waited for; None without jax."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)  # float64 stays float64; float32 arrays stay float32

    def f(p, x, y):
        return mlp_loss(jax.nn.relu, lambda h: jax.nn.logsumexp(h, axis=1),
                        lambda h, y: jnp.take_along_axis(h, y[:, None], axis=1)[:, 0], p, x, y, names)

    grad = jax.jit(jax.value_and_grad(f))

    @jax.jit
    def hvp(p, v, x, y):  # forward over reverse: ((loss, grads), (_, H·v))
        (loss, g), (_, hv) = jax.jvp(lambda q: jax.value_and_grad(f)(q, x, y), (p,), (v,))
        return loss, g, hv

    p, v, xj, yj = (jax.tree.map(jnp.asarray, a) for a in (params, vectors, x, y))
    return (lambda: jax.block_until_ready(grad(p, xj, yj)),
            lambda: jax.block_until_ready(hvp(p, v, xj, yj)))


def torch_peer(names, params, vectors, x, y):
    """(backward call, double-backward call) in eager mode; None without torch."""
    try:
        import torch
    except ImportError:
        return None
    p = {k: torch.from_numpy(a.copy()).requires_grad_() for k, a in params.items()}
    v = [torch.from_numpy(vectors[k]) for k in p]
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def loss():
        return mlp_loss(torch.relu, lambda h: torch.logsumexp(h, dim=1),
                        lambda h, y: h.gather(1, y[:, None])[:, 0], p, xt, yt, names)

    def backward():
        out = loss()
        return out, dict(zip(p, torch.autograd.grad(out, list(p.values()))))

    def double_backward():  # reverse over reverse: H·v is the gradient of <grads, v>
        out = loss()
        grads = torch.autograd.grad(out, list(p.values()), create_graph=True)
        hv = torch.autograd.grad(grads, list(p.values()), grad_outputs=v)
        return out.detach(), {k: g.detach() for k, g in zip(p, grads)}, dict(zip(p, hv))
    return backward, double_backward


def relative_error(mine: dict, peer: dict) -> float:
    """Largest ||peer - mine|| / ||mine|| over the parameters."""
    return max(np.linalg.norm(np.asarray(peer[k]) - mine[k]) / np.linalg.norm(mine[k]) for k in mine)


def check(case: str, dtype: str, reference, peer_name: str, result) -> None:
    """The peer's loss, gradient and H·v against the generated hvp's; stops the benchmark if they differ."""
    loss, grads, hv = reference
    errors = (abs(float(result[0]) - loss) / abs(loss), relative_error(grads, result[1]),
              relative_error(hv, result[2]))
    if max(errors) > TOLERANCE[dtype]:
        raise SystemExit(f"{case} {dtype}: {peer_name} differs from the generated hvp "
                         f"(relative error of loss, grads, H·v: {', '.join(f'{e:.1e}' for e in errors)})")


def interleaved_ms(calls: dict, repeat: int, warmup: int = 3) -> dict:
    """Median milliseconds per call; one call of each per round. Warm-up compiles JAX's functions."""
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in calls}
    for _ in range(repeat):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: 1000 * float(np.median(t)) for name, t in times.items()}


def measure(path: Path, batch: int, dtype: str, repeat: int) -> dict:
    """One row: check the peers' H·v, then time the six functions (absent peers omitted)."""
    import runtime
    model = runtime.load(str(path), dtype=dtype, functions=("hvp",))
    params = model.init_params(0)
    inputs = runtime.random_inputs(model, batch, seed=0)
    rng = np.random.default_rng(1)
    vectors = {k: rng.standard_normal(a.shape).astype(dtype) for k, a in params.items()}
    names, x, y = layers(model), inputs["x"], inputs["y"]
    reference = model.hvp(params, vectors, **inputs)
    calls = {"grad": lambda: model.loss_and_grad(params, **inputs),
             "hvp": lambda: model.hvp(params, vectors, **inputs)}
    for peer_name, make in (("jax", jax_peer), ("torch", torch_peer)):
        peer = make(names, params, vectors, x, y)
        if peer is None:
            continue
        check(f"{path.stem} B={batch}", dtype, reference, peer_name, peer[1]())
        calls[peer_name + " grad"], calls[peer_name + " hvp"] = peer
    return interleaved_ms(calls, repeat)


def row(name: str, dtype: str, batch: int, ms: dict) -> str:
    def pair(grad: str, hvp: str) -> list[str]:
        if hvp not in ms:
            return ["n/a", "n/a"]
        return [f"{ms[grad]:.2f}", f"{ms[hvp]:.2f} ({ms[hvp] / ms[grad]:.1f}×)"]

    versus = [f"{ms['hvp'] / ms[p]:.2f}×" if p in ms else "n/a" for p in ("jax hvp", "torch hvp")]
    cells = [name, dtype, str(batch), *pair("grad", "hvp"), *pair("jax grad", "jax hvp"),
             *pair("torch grad", "torch hvp"), *versus]
    return "| " + " | ".join(cells) + " |"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS and torch threads; 1 also pins the process to one CPU")
    args = parser.parse_args(argv)
    if args.threads == 1:
        one_core()
    import runtime

    from .conv2d_bench import limit_threads
    kept = runtime.keep_freed_memory()
    print(f"H·v vs gradient, median of {args.repeat} interleaved calls (ms), threads {args.threads}, "
          f"freed memory kept: {kept}; peers' loss, grads and H·v checked against the generated hvp "
          f"(relative {TOLERANCE['float64']:g} in float64, {TOLERANCE['float32']:g} in float32)\n")
    print("| model | dtype | batch | generated loss_and_grad | generated hvp (÷ grad) | jax jit grad "
          "| jax jvp-of-grad (÷ grad) | torch backward | torch double backward (÷ grad) "
          "| generated hvp ÷ jax hvp | generated hvp ÷ torch hvp |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    with limit_threads(args.threads):
        for path, batch in CASES:
            for dtype in ("float64", "float32"):
                print(row(path.stem, dtype, batch, measure(path, batch, dtype, args.repeat)), flush=True)


if __name__ == "__main__":
    main()
