"""The benchmark suite: every implementation of every model timed in its own process, rounds
interleaved, best median of the rounds; ratios to hand-written NumPy (also round by round);
extra measurements; RESULTS.md.

    python -m benchmarks [--quick] [--rounds N] [--out benchmarks/RESULTS.md]     (or: symgrad bench)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import tracemalloc

import numpy as np

from .specs import ROOT, SPECS, layer_names

IMPLS = ["generated", "workspace", "hand", "floor", "torch", "jax", "pytensor", "autograd"]


def run_worker(impl, model, dtype, samples) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.worker", impl, model, dtype,
                          "--samples", str(samples)], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        return {"impl": impl, "error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def time_table(models, dtypes, impls, rounds, samples, log) -> dict:
    """(model, dtype, impl) -> the median µs of each round (None where it failed). Each round runs
    every implementation of one model back to back, in reversed order every other round, so a
    ratio taken within a round compares runs seconds apart on this shared machine."""
    runs: dict = {}
    for r in range(rounds):
        for model in models:
            for dtype in dtypes:
                for impl in (impls if r % 2 == 0 else impls[::-1]):
                    res = run_worker(impl, model, dtype, samples)
                    runs.setdefault((model, dtype, impl), []).append(res.get("us"))
                log(f"round {r + 1}/{rounds}: {model} {dtype} done")
    return runs


def best(runs: dict, model, dtype, impl) -> float | None:
    """The best round's median µs (None when it never ran)."""
    times = [v for v in runs.get((model, dtype, impl), []) if v is not None]
    return min(times) if times else None


def paired_ratios(runs: dict, model, dtype, impl) -> list[float]:
    """impl ÷ hand-written within each round: runs seconds apart, so a slow spell of this shared
    machine slows both."""
    mine, hand = runs.get((model, dtype, impl), []), runs.get((model, dtype, "hand"), [])
    return [a / b for a, b in zip(mine, hand) if a is not None and b]


def blas_info() -> str:
    try:
        from threadpoolctl import threadpool_info
        info = [f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')}, "
                f"{i.get('num_threads')} threads)" for i in threadpool_info()
                if i.get("user_api") == "blas"]
        return "; ".join(info) or "unknown"
    except ImportError:
        return "unknown (pip install threadpoolctl to see it)"


def extras(log) -> dict:
    """forward vs loss_and_grad, central differences vs backprop, memory, compile time."""
    import compiler
    import runtime
    from .handwritten import make_cnn_loss_and_grad, make_loss_and_grad
    from .specs import CNN_LAYERS
    from .worker import median_seconds, problem
    out = {}
    fwd = {}
    for name, spec in SPECS.items():
        model, params, x, y = problem(spec, "float64")
        f = median_seconds(lambda: model.module.forward(params, x=x), 7)
        g = median_seconds(lambda: model.module.loss_and_grad(params, x=x, y=y), 7)
        fwd[name] = (f * 1e6, g * 1e6, g / f)
        hand = (make_cnn_loss_and_grad(CNN_LAYERS) if spec.kind == "cnn"
                else make_loss_and_grad(layer_names(spec), spec.activation))
        out.setdefault("memory", {})[name] = (_peak(lambda: model.module.loss_and_grad(params, x=x, y=y)),
                                              _peak(lambda: hand(params, x, y)))
    out["forward"] = fwd
    log("forward/backward and memory done")

    spec = SPECS["digits_mlp"]
    model, params, x, y = problem(spec, "float64")
    t = time.perf_counter()
    for name, theta in params.items():
        flat = theta.reshape(-1)
        for i in range(flat.size):
            saved = flat[i]
            flat[i] = saved + 1e-5
            model.module.loss(params, x=x, y=y)
            flat[i] = saved - 1e-5
            model.module.loss(params, x=x, y=y)
            flat[i] = saved
    numeric = time.perf_counter() - t
    backprop = median_seconds(lambda: model.module.loss_and_grad(params, x=x, y=y), 7)
    n = sum(v.size for v in params.values())
    out["numeric"] = (n, numeric, backprop)
    log("central differences done")

    compile_times = {}
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        compiler.compile_file(SPECS["tiny_sigmoid"].model_file)  # warm: imports are not compile time
        for depth, width in [(1, 32), (4, 32), (16, 32), (64, 32), (4, 128), (4, 512), (4, 1024)]:
            path = os.path.join(tmp, f"m_{depth}_{width}.py")
            with open(path, "w") as f:
                f.write("from compiler.dsl import *\n"
                        f'x = Input("x", ("B", {width}))\ny = Labels("y", ("B",), classes=10)\nh = x\n'
                        f"for i in range({depth}):\n"
                        f'    h = tanh(linear(h, {width}, name=f"layer{{i}}"))\n'
                        'loss = softmax_cross_entropy(linear(h, 10, name="out"), y)\n')
            t = time.perf_counter()
            compiler.compile_file(path)
            compile_times[(depth, width)] = time.perf_counter() - t
    out["compile"] = compile_times
    log("compile times done")
    try:
        from .dask_bench import measure
        out["dask"] = measure(log=log)
    except ImportError:
        out["dask"] = None
    del runtime
    return out


def _peak(fn) -> int:
    fn()
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


OPENBLAS_ENV = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS")}  # as the run began


def render(runs, models, dtypes, impls, extra, command) -> str:
    import numpy
    import sympy
    lines = ["# symgrad benchmark results", "",
             f"Command: `{command}`  ", f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  ",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}  ",
             f"Python {platform.python_version()}, NumPy {numpy.__version__}, SymPy {sympy.__version__}  ",
             f"BLAS: {blas_info()}  ",
             "OPENBLAS env: " + (", ".join(f"{k}={v}" for k, v in OPENBLAS_ENV.items()) + " (as the "
                                 "environment is)" if OPENBLAS_ENV else "none set"), "",
             "Median µs of one `loss_and_grad` (best of the rounds, each implementation in its own "
             "process, rounds interleaved); in brackets the ratio to hand-written NumPy. `workspace` is "
             "the generated step called with a Workspace, as the trainer calls it.", ""]
    header = "| model | dtype | " + " | ".join(impls) + " |"
    lines += [header, "|" + "---|" * (len(impls) + 2)]
    for model in models:
        for dtype in dtypes:
            hand, cells = best(runs, model, dtype, "hand"), []
            for impl in impls:
                v = best(runs, model, dtype, impl)
                cells.append("n/a" if v is None else f"{v:,.1f} ({v / hand:.2f}×)" if hand else f"{v:,.1f}")
            lines.append(f"| {model} | {dtype} | " + " | ".join(cells) + " |")
    paired = [(m, d, [sorted(paired_ratios(runs, m, d, impl)) for impl in ("generated", "workspace")])
              for m in models for d in dtypes]
    if any(any(rs) for *_, rs in paired):
        lines += ["", "Generated ÷ hand-written within each round (median, lowest–highest of the rounds):", "",
                  "| model | dtype | generated | workspace |", "|---|---|---|---|"]
        for m, d, rs in paired:
            cells = [f"{r[len(r) // 2]:.2f} ({r[0]:.2f}–{r[-1]:.2f})" if r else "n/a" for r in rs]
            lines.append(f"| {m} | {d} | " + " | ".join(cells) + " |")
    if extra:
        lines += ["", "## forward vs loss_and_grad (float64)", "",
                  "| model | forward µs | loss_and_grad µs | ratio |", "|---|---|---|---|"]
        for name, (f, g, r) in extra["forward"].items():
            lines.append(f"| {name} | {f:,.1f} | {g:,.1f} | {r:.2f} |")
        n, numeric, backprop = extra["numeric"]
        lines += ["", "## Why backpropagation (digits_mlp, batch 64)", "",
                  f"Central differences: {2 * n:,} loss evaluations for {n:,} parameters took "
                  f"{numeric:.2f} s; one `loss_and_grad` takes {backprop * 1e6:,.0f} µs "
                  f"({numeric / backprop:,.0f}× faster).", "",
                  "## Peak memory of one step (tracemalloc)", "",
                  "| model | generated | hand-written |", "|---|---|---|"]
        for name, (a, b) in extra["memory"].items():
            lines.append(f"| {name} | {a / 1024:,.0f} KiB | {b / 1024:,.0f} KiB |")
        lines += ["", "## Compile time (tanh MLP, seconds)", "", "| depth | width | seconds |", "|---|---|---|"]
        for (d, w), sec in extra["compile"].items():
            lines.append(f"| {d} | {w} | {sec:.2f} |")
        if extra.get("dask"):
            from .dask_bench import render as render_dask
            lines += ["", "## Data parallel on Dask (MNIST-size MLP, float64)", ""] + render_dask(extra["dask"])
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks")
    p.add_argument("--quick", action="store_true", help="one round, float64, fewer samples, no extras")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "RESULTS.md"))
    p.add_argument("--models", nargs="*", default=list(SPECS))
    p.add_argument("--rounds", type=int, default=5, help="rounds of the full run (default 5)")
    args = p.parse_args(argv)
    rounds, samples = (1, 5) if args.quick else (args.rounds, 9)
    dtypes = ["float64"] if args.quick else ["float64", "float32"]
    impls = IMPLS

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    runs = time_table(args.models, dtypes, impls, rounds, samples, log)
    print(render(runs, args.models, dtypes, impls, None, "(timings so far)"), file=sys.stderr, flush=True)
    extra = None if args.quick else extras(log)
    command = "python -m benchmarks" + (" --quick" if args.quick else "")
    text = render(runs, args.models, dtypes, impls, extra, command)
    print(text)
    if not args.quick:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    return 0
