"""The benchmark suite: every implementation of every model timed in its own process, rounds
interleaved, best median of the rounds; ratios to hand-written NumPy (also round by round); the
numba module's first-call cost; extra measurements; RESULTS.md.

    python -m benchmarks [--quick] [--rounds N] [--out benchmarks/RESULTS.md]     (or: symgrad bench)

Every worker runs pinned to one CPU with one thread in every library (benchmarks/worker.py), so
the peers share the same machine. When an implementation's rounds disagree by more than 25 % the
machine was busy: those cells are named and marked instead of being reported as if steady.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import tracemalloc

from .specs import ROOT, SPECS, layer_names
from .worker import ONE_THREAD_ENV, XLA_FLAGS

IMPLS = ["generated", "workspace", "numba", "hand", "floor", "torch", "jax", "pytensor_numba", "autograd"]
CNN_IMPLS = ("generated", "workspace", "numba", "hand", "torch")  # the others have no CNN version
DEFAULT_SAMPLES, QUICK_SAMPLES = 9, 3    # timed samples a worker takes (each ≥ 20 ms of calls)
SAMPLES = {"mnist_mlp": 5}              # fewer where one step takes milliseconds
FIRST_CALL_MODELS = ("tiny_sigmoid", "digits_mlp", "deep_tanh")
UNSTEADY = 1.25                          # max/min of an implementation's per-round medians
PAIRED = ("generated", "workspace", "numba")


def default_cpu() -> int | None:
    """The CPU the workers are pinned to: the last one this process may use."""
    return max(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def run_worker(args: list[str], cpu: int | None, env: dict | None = None) -> dict:
    """Run `python -m benchmarks.worker ARGS` with one thread everywhere; its JSON line or an error."""
    cmd = [sys.executable, "-m", "benchmarks.worker", *args] + ([] if cpu is None else ["--cpu", str(cpu)])
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, **ONE_THREAD_ENV, **(env or {})})
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def impls_for(model: str, impls: list[str]) -> list[str]:
    return [i for i in impls if SPECS[model].kind != "cnn" or i in CNN_IMPLS]


def time_table(models, dtypes, impls, rounds, samples, cpu, log) -> tuple[dict, dict]:
    """(model, dtype, impl) -> the median µs of each round (None where it failed), and -> what the
    worker reported in each round (threads seen, or its error). Each round runs every implementation of one
    model back to back, in reversed order every other round, so a ratio taken within a round
    compares runs seconds apart on this shared machine."""
    runs, reports = {}, {}
    for r in range(rounds):
        for model in models:
            for dtype in dtypes:
                order = impls_for(model, impls)
                for impl in (order if r % 2 == 0 else order[::-1]):
                    n = samples(model)
                    res = run_worker([impl, model, dtype, "--samples", str(n)], cpu)
                    runs.setdefault((model, dtype, impl), []).append(res.get("us"))
                    reports.setdefault((model, dtype, impl), []).append(res)
                log(f"round {r + 1}/{rounds}: {model} {dtype} done")
    return runs, reports


def best(runs: dict, model, dtype, impl) -> float | None:
    """The best round's median µs (None when it never ran)."""
    times = [v for v in runs.get((model, dtype, impl), []) if v is not None]
    return min(times) if times else None


def paired_ratios(runs: dict, model, dtype, impl) -> list[float]:
    """impl ÷ hand-written within each round: runs seconds apart, so a slow spell of this shared
    machine slows both."""
    mine, hand = runs.get((model, dtype, impl), []), runs.get((model, dtype, "hand"), [])
    return [a / b for a, b in zip(mine, hand) if a is not None and b]


def spread(runs: dict, model, dtype, impl) -> float | None:
    """max/min of the per-round medians (None with fewer than two rounds measured)."""
    times = [v for v in runs.get((model, dtype, impl), []) if v is not None]
    return max(times) / min(times) if len(times) > 1 else None


def unsteady(runs: dict, limit: float = UNSTEADY) -> dict:
    """(model, dtype, impl) -> spread, for the cells whose rounds disagree by more than `limit`."""
    out = {}
    for model, dtype, impl in runs:
        s = spread(runs, model, dtype, impl)
        if s is not None and s > limit:
            out[(model, dtype, impl)] = s
    return out


def busy_warning(flagged: dict) -> str | None:
    if not flagged:
        return None
    cells = ", ".join(f"{m} {d} {i} ({s:.2f}×)" for (m, d, i), s in sorted(flagged.items()))
    return (f"WARNING: the machine was busy: rounds disagree by more than {UNSTEADY - 1:.0%} (max/min "
            f"of the per-round medians) in {len(flagged)} cell(s), marked † in the table; their ratios "
            f"(and every ratio in a row whose hand-written cell is marked) are not trustworthy: {cells}")


def thread_problems(reports: dict) -> list[str]:
    """Workers that ran on more than one CPU or with a thread pool above one thread (the first
    round that did, for each cell)."""
    bad = []
    for (m, d, impl), reps in sorted(reports.items()):
        found = next((p for p in map(more_than_one, reps) if p), None)
        if found:
            bad.append(f"{m} {d} {impl}: {found}")
    return bad


def more_than_one(report: dict) -> str | None:
    t = report.get("threads") or {}
    over = {k: v for k, v in (t.get("pools") or {}).items() if v != 1}
    over |= {k: t[k] for k in ("torch", "numba") if t.get(k, 1) != 1}
    cpus = t.get("cpus")
    if (cpus and len(cpus) != 1) or over:
        return f"cpus {cpus}, {over}"
    return None


def first_calls(models, cpu, log, backends=("numba", "numpy")) -> list[dict]:
    """The first call's cost in fresh processes: cold (empty symgrad and numba caches: symgrad
    compiles the module, numba its kernels) then cached (a second process reusing both on-disk
    caches), for the numba module and, for comparison, the NumPy one."""
    rows = []
    for model in models:
        for backend in backends:
            with tempfile.TemporaryDirectory() as tmp:
                env = {"SYMGRAD_CACHE": os.path.join(tmp, "symgrad"),
                       "NUMBA_CACHE_DIR": os.path.join(tmp, "numba")}
                for state in ("cold", "cached"):
                    res = run_worker(["--first-call", backend, model, "float64"], cpu, env)
                    rows.append({"state": state, "backend": backend, "model": model, **res})
        log(f"first calls: {model} done")
    return rows


def blas_info() -> str:
    """The BLAS libraries NumPy loaded here (the workers limit each to one thread)."""
    try:
        from threadpoolctl import threadpool_info
        info = [f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')})"
                for i in threadpool_info() if i.get("user_api") == "blas"]
        return "; ".join(info) or "unknown"
    except ImportError:
        return "unknown (pip install threadpoolctl to see it)"


def extras(log) -> dict:
    """forward vs loss_and_grad, central differences vs backprop, memory, compile time (in this
    process, one BLAS thread)."""
    from threadpoolctl import threadpool_limits
    out = {}
    with threadpool_limits(1):
        out["forward"], out["memory"] = forward_and_memory(log)
        out["numeric"] = central_differences()
        log("central differences done")
        out["compile"] = compile_times()
        log("compile times done")
    return out


def forward_and_memory(log) -> tuple[dict, dict]:
    from .handwritten import make_cnn_loss_and_grad, make_loss_and_grad
    from .specs import CNN_LAYERS
    from .worker import median_seconds, problem
    fwd, memory = {}, {}
    for name, spec in SPECS.items():
        model, params, x, y = problem(spec, "float64")
        f = median_seconds(lambda: model.module.forward(params, x=x), 7)
        g = median_seconds(lambda: model.module.loss_and_grad(params, x=x, y=y), 7)
        fwd[name] = (f * 1e6, g * 1e6, g / f)
        hand = (make_cnn_loss_and_grad(CNN_LAYERS) if spec.kind == "cnn"
                else make_loss_and_grad(layer_names(spec), spec.activation))
        # the hand-written step's first call: its buffers (kept between calls) and its temporaries
        memory[name] = (_peak(lambda: model.module.loss_and_grad(params, x=x, y=y)),
                                              _peak(lambda: hand(params, x, y), warm=False))
    log("forward/backward and memory done")
    return fwd, memory


def central_differences():
    from .worker import median_seconds, problem
    model, params, x, y = problem(SPECS["digits_mlp"], "float64")
    t = time.perf_counter()
    for theta in params.values():
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
    return sum(v.size for v in params.values()), numeric, backprop


def compile_times() -> dict:
    import compiler
    times = {}
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
            times[(depth, width)] = time.perf_counter() - t
    return times


def _peak(fn, warm: bool = True) -> int:
    if warm:
        fn()
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


OPENBLAS_ENV = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS")}  # as the run began


def header(run: dict) -> list[str]:
    import numpy
    import sympy
    cpu = run["cpu"]
    versions = ", ".join(f"{name} {v}" for name, v in library_versions().items())
    return ["# symgrad benchmark results", "",
            f"Command: `{run['command']}`  ", f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  ",
            f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}  ",
            f"Python {platform.python_version()}, NumPy {numpy.__version__}, SymPy {sympy.__version__}"
            + (f", {versions}" if versions else "") + "  ",
            f"BLAS: {blas_info()}  ",
            "OPENBLAS env: " + (", ".join(f"{k}={v}" for k, v in OPENBLAS_ENV.items()) + " (as the "
                                "environment is)" if OPENBLAS_ENV else "none set") + "  ",
            f"Wall time of this run: {_minutes(run['wall'])}", "",
            "**Threads: one for everything.** Every worker process is pinned to CPU "
            f"{cpu if cpu is not None else '(no affinity API here)'} (`os.sched_setaffinity`) and runs "
            "one thread in every library: BLAS limited by threadpoolctl (and "
            "OMP/OPENBLAS/MKL_NUM_THREADS=1), "
            "`torch.set_num_threads(1)`, `numba.set_num_threads(1)` (NUMBA_NUM_THREADS=1), "
            f"`XLA_FLAGS={XLA_FLAGS}` set before jax is imported. Each worker reports the threads it "
            "saw; " + ("all reported one CPU and one thread per pool." if not run["thread_problems"] else
                       "**some did not**: " + "; ".join(run["thread_problems"])), ""]


def library_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for name in ("numba", "torch", "jax", "pytensor", "autograd"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def samples_text(quick: bool) -> str:
    if quick:
        return f"{QUICK_SAMPLES} timed samples a process"
    fewer = "".join(f", {n} for {m}" for m, n in SAMPLES.items())
    return f"{DEFAULT_SAMPLES} timed samples a process{fewer}"


def cell(us, hand, mark: str) -> str:
    if us is None:
        return "n/a"
    return (f"{us:,.1f} ({us / hand:.2f}×)" if hand else f"{us:,.1f}") + mark


def table(run: dict) -> list[str]:
    runs, models, dtypes, impls = run["runs"], run["models"], run["dtypes"], run["impls"]
    flagged = unsteady(runs)
    lines = [f"Median µs of one `loss_and_grad` (best of {run.get('rounds', '?')} round(s), each "
             f"implementation in its own process, rounds interleaved; {run.get('samples', '?')}); in "
             "brackets the ratio to hand-written NumPy. `workspace` is "
             "the generated NumPy step called with a Workspace, as the trainer calls it; `numba` the "
             "generated numba module (`runtime.load(..., backend=\"numba\")`, warmed up); `hand` the "
             "fastest NumPy we wrote (benchmarks/handwritten.py: buffers kept between calls, tested "
             "equal to the generated step); `floor` only its matrix products; `pytensor_numba` "
             "PyTensor compiled with mode=\"NUMBA\" (PyTensor 3's default mode; its C mode finds no BLAS "
             "in a pip install, so it is not measured). † the rounds of this cell or of its row's "
             "hand-written cell disagree by more than 25 %.", ""]
    warning = busy_warning(flagged)
    if warning:
        lines += [f"**{warning}**", ""]
    elif run.get("rounds", 2) < 2:
        lines += ["One round: whether the machine was busy cannot be told.", ""]
    lines += ["| model | dtype | " + " | ".join(impls) + " |", "|" + "---|" * (len(impls) + 2)]
    for model in models:
        for dtype in dtypes:
            hand, cells = best(runs, model, dtype, "hand"), []
            for impl in impls:
                v = best(runs, model, dtype, impl)
                mark = " †" if {(model, dtype, impl), (model, dtype, "hand")} & set(flagged) else ""
                cells.append(cell(v, hand, mark))
            lines.append(f"| {model} | {dtype} | " + " | ".join(cells) + " |")
    notes = sorted({(i, f"failed: {r['error']}" if "error" in r else f"not measured: {r['missing']}")
                    for (m, d, i), reps in run["reports"].items() for r in reps if "error" in r or "missing" in r})
    lines += [""] + [f"`{i}` {note}  " for i, note in notes] + ([""] if notes else [])
    shown = [impl for impl in PAIRED if impl in impls]
    paired = [(m, d, [sorted(paired_ratios(runs, m, d, impl)) for impl in shown])
              for m in models for d in dtypes]
    if any(any(rs) for *_, rs in paired):
        lines += ["Ratio to hand-written within each round (median, lowest–highest of the rounds):", "",
                  "| model | dtype | " + " | ".join(shown) + " |", "|---|---|" + "---|" * len(shown)]
        for m, d, rs in paired:
            cells = [f"{r[len(r) // 2]:.2f} ({r[0]:.2f}–{r[-1]:.2f})" if r else "n/a" for r in rs]
            lines.append(f"| {m} | {d} | " + " | ".join(cells) + " |")
    return lines


def first_call_table(rows: list[dict]) -> list[str]:
    lines = ["", "## First call (fresh process, float64)", "",
             "Seconds to import runtime (and numba), to load the model (symgrad compiles it into its "
             "cache when that is empty) and to run the first `loss_and_grad` (numba compiles its kernels, "
             "or loads them from its on-disk cache); then the µs of a warm call. Cold: empty symgrad and "
             "numba caches (SYMGRAD_CACHE and NUMBA_CACHE_DIR pointed at a new folder); cached: a second "
             "process on the same folders.", "",
             "| model | backend | caches | import s | load s | first call s | warm µs |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['backend']} | {r['state']} | failed: {r['error']} | | | |")
            continue
        lines.append(f"| {r['model']} | {r['backend']} | {r['state']} | {r['import_s']:.2f} "
                     f"| {r['load_s']:.2f} | {r['first_call_s']:.3f} | {r['warm_us']:,.1f} |")
    return lines


def extras_tables(extra: dict) -> list[str]:
    lines = ["", "## forward vs loss_and_grad (float64, generated NumPy)", "",
             "| model | forward µs | loss_and_grad µs | ratio |", "|---|---|---|---|"]
    for name, (f, g, r) in extra["forward"].items():
        lines.append(f"| {name} | {f:,.1f} | {g:,.1f} | {r:.2f} |")
    n, numeric, backprop = extra["numeric"]
    lines += ["", "## Why backpropagation (digits_mlp, batch 64)", "",
              f"Central differences: {2 * n:,} loss evaluations for {n:,} parameters took "
              f"{numeric:.2f} s; one `loss_and_grad` takes {backprop * 1e6:,.0f} µs "
              f"({numeric / backprop:,.0f}× faster).", "",
              "## Peak memory of one step (tracemalloc)", "",
              "Generated: a warm call (it allocates its arrays anew each call). Hand-written: its first "
              "call, so the buffers it keeps between calls are counted.", "",
              "| model | generated | hand-written |", "|---|---|---|"]
    for name, (a, b) in extra["memory"].items():
        lines.append(f"| {name} | {a / 1024:,.0f} KiB | {b / 1024:,.0f} KiB |")
    lines += ["", "## Compile time (tanh MLP, seconds)", "", "| depth | width | seconds |", "|---|---|---|"]
    for (d, w), sec in extra["compile"].items():
        lines.append(f"| {d} | {w} | {sec:.2f} |")
    lines += ["", "## Data parallel on Dask (MNIST-size MLP, float64)", ""]
    if extra.get("dask"):
        from .dask_bench import render as render_dask
        lines += render_dask(extra["dask"])
    else:
        lines.append("Not in the default run (about 40 s, and its workers use both cores): "
                     "`python -m benchmarks --dask`.")
    return lines


def render(run: dict) -> str:
    lines = header(run) + table(run)
    if run.get("first_calls"):
        lines += first_call_table(run["first_calls"])
    if run.get("extra"):
        lines += extras_tables(run["extra"])
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    start = time.perf_counter()
    p = argparse.ArgumentParser(prog="python -m benchmarks")
    p.add_argument("--quick", action="store_true", help="one round, float64, fewer samples, no extras")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "RESULTS.md"))
    p.add_argument("--models", nargs="*", default=list(SPECS))
    p.add_argument("--impls", nargs="*", default=IMPLS, help="implementations (default: all)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of the full run (default 3)")
    p.add_argument("--cpu", type=int, default=default_cpu(), help="the CPU workers are pinned to")
    p.add_argument("--dask", action="store_true", help="also time data parallelism on Dask (~40 s)")
    args = p.parse_args(argv)
    rounds = 1 if args.quick else args.rounds
    dtypes = ["float64"] if args.quick else ["float64", "float32"]
    impls = list(args.impls) if "hand" in args.impls else ["hand"] + list(args.impls)  # ratios need it

    def samples(model):
        return QUICK_SAMPLES if args.quick else SAMPLES.get(model, DEFAULT_SAMPLES)

    def log(msg):
        print(f"[{_minutes(time.perf_counter() - start)}] {msg}", file=sys.stderr, flush=True)

    runs, reports = time_table(args.models, dtypes, impls, rounds, samples, args.cpu, log)
    run = {"runs": runs, "reports": reports, "models": args.models, "dtypes": dtypes, "impls": impls,
           "rounds": rounds, "cpu": args.cpu, "samples": samples_text(args.quick),
           "thread_problems": thread_problems(reports),
           "command": "python -m benchmarks" + (" --quick" if args.quick else "")}
    if not args.quick:
        print("\n".join(table(run)), file=sys.stderr, flush=True)
        run["first_calls"] = first_calls([m for m in FIRST_CALL_MODELS if m in args.models], args.cpu, log)
        run["extra"] = extras(log)
        if args.dask:
            from .dask_bench import measure
            run["extra"]["dask"] = measure(log=log)
    run["wall"] = time.perf_counter() - start
    text = render(run)
    print(text)
    warning = busy_warning(unsteady(runs))
    if warning:
        print(warning, file=sys.stderr)
    for problem in run["thread_problems"]:
        print(f"WARNING: a worker ran with more than one thread: {problem}", file=sys.stderr)
    print(f"wall time: {_minutes(run['wall'])}", file=sys.stderr)
    if not args.quick:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    return 0
