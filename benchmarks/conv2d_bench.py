"""examples/lenet_mnist5k.py (LeNet on 28×28×1 images, channels last): the generated loss_and_grad at batch 64 in float32 and
float64 (median of 20 calls), and PyTorch eager (forward, loss and backward) when torch is installed.

    .venv/bin/python -m benchmarks.conv2d_bench [--batch 64] [--repeat 20] [--threads 1] [--backend numba]

--threads limits BLAS (threadpoolctl) and torch to that many threads: on a small shared machine
OpenBLAS's own threads contend with other processes and single calls take up to a second.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import timeit
from pathlib import Path

import numpy as np

LENET = Path(__file__).resolve().parent.parent / "examples" / "lenet_mnist5k.py"  # the shipped model


def median_ms(fn, repeat: int) -> float:
    fn()  # warm up
    return 1000 * statistics.median(timeit.repeat(fn, number=1, repeat=repeat))


def generated(batch: int, repeat: int, dtype: str, backend: str = "numpy") -> float:
    import runtime
    model = runtime.load(str(LENET), dtype=dtype, backend=backend)
    params = model.init_params(0)
    rng = np.random.default_rng(0)
    x = rng.random((batch, 784)).astype(dtype)  # flattened 28x28 images, as mnist5k ships them
    y = rng.integers(0, 10, size=batch)
    return median_ms(lambda: model.loss_and_grad(params, x=x, y=y), repeat)


def torch_eager(batch: int, repeat: int, dtype: str) -> float | None:
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    tdtype = getattr(torch, dtype)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)).to(tdtype)
    x = torch.randn(batch, 1, 28, 28, dtype=tdtype)  # torch's own layout (channels first)
    y = torch.randint(0, 10, (batch,))

    def step():
        net.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x), y).backward()
    return median_ms(step, repeat)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="BLAS and torch threads (default: theirs)")
    parser.add_argument("--backend", default="numpy", help="the generated module's backend (numpy, numba)")
    args = parser.parse_args(argv)
    print(f"LeNet loss_and_grad, batch {args.batch}, median of {args.repeat} (ms), "
          f"threads {args.threads or 'default'}, generated with the {args.backend} backend")
    with limit_threads(args.threads):
        side_by_side("LeNet, batch %d" % args.batch,
                     lambda d: generated(args.batch, args.repeat, d, args.backend),
                     lambda d: torch_eager(args.batch, args.repeat, d))


@contextlib.contextmanager
def limit_threads(n: int | None):
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits
    with contextlib.suppress(ImportError):
        import torch
        torch.set_num_threads(n)
    with threadpool_limits(limits=n):
        yield


def side_by_side(name: str, mine, peer, dtypes=("float32", "float64")) -> None:
    """`mine(dtype)` and `peer(dtype)` (ms; peer None without torch) with glibc's default allocator,
    then again after runtime.keep_freed_memory() (as `symgrad train` runs): one process, one table."""
    import runtime
    rows = {d: [mine(d), peer(d)] for d in dtypes}
    kept = runtime.keep_freed_memory()
    for d in dtypes:
        rows[d] += [mine(d), peer(d)]
    print(f"| {name} | generated | torch eager | generated, freed memory kept | torch, same |"
          + ("" if kept else " (keep_freed_memory had no effect here)"))
    print("|---|---|---|---|---|")
    for d, (a, b, c, e) in rows.items():
        cells = [f"{a:.1f}", "n/a" if b is None else f"{b:.1f} ({a / b:.2f}×)",
                 f"{c:.1f}", "n/a" if e is None else f"{e:.1f} ({c / e:.2f}×)"]
        print(f"| {d} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
