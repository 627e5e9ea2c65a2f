"""examples/tiny_gpt.py (2 pre-LN blocks, d 64, 4 heads, context 14): compile time at 2, 6 and 12
blocks, each in a fresh process (cold: SymPy imported, no cache), and the generated loss_and_grad at
batch 256 names in float32 and float64 beside PyTorch eager (the same network written with
torch.nn.functional: forward, loss, backward) when torch is installed.

    .venv/bin/python -m benchmarks.gpt_bench [--batch 256] [--repeat 10] [--threads 1] [--blocks 2 6 12]
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np

from .conv2d_bench import limit_threads, median_ms, side_by_side

ROOT = Path(__file__).resolve().parent.parent
GPT = ROOT / "examples" / "tiny_gpt.py"  # the shipped model
T, D, HEADS, V = 14, 64, 4, 27
SETTING = "T, D, HEADS, BLOCKS = 14, 64, 4, 2"

_COLD = """
import json, sys, time
t0 = time.perf_counter()
import compiler
t1 = time.perf_counter()
c = compiler.compile_model(sys.argv[1], source=open(sys.argv[1]).read().replace({setting!r}, {new!r}))
t2 = time.perf_counter()
print(json.dumps({{"import": t1 - t0, "compile": t2 - t1, "stages": c.timings,
                  "lines": c.source.count(chr(10))}}))
"""


def cold_compile(blocks: int) -> dict:
    """One compile of tiny_gpt with `blocks` blocks in a new interpreter."""
    code = _COLD.format(setting=SETTING, new=f"T, D, HEADS, BLOCKS = 14, 64, 4, {blocks}")
    out = subprocess.run([sys.executable, "-c", code, str(GPT)], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def batch(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    inputs = rng.integers(0, V, size=(n, T))
    targets = rng.integers(0, V + 1, size=(n, T))  # some padding (id 27) among the targets
    return inputs, targets


def generated(n: int, repeat: int, dtype: str) -> float:
    import runtime
    model = runtime.load(str(GPT), dtype=dtype)
    params = model.init_params(0)
    inputs, targets = batch(n)
    return median_ms(lambda: model.loss_and_grad(params, inputs=inputs, targets=targets), repeat)


def torch_eager(n: int, repeat: int, dtype: str, blocks: int = 2) -> float | None:
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    torch.manual_seed(0)
    tdtype = getattr(torch, dtype)

    def p(*shape, scale=0.02):
        return (torch.randn(*shape, dtype=tdtype) * scale).requires_grad_()

    def zeros(*shape):
        return torch.zeros(*shape, dtype=tdtype, requires_grad=True)

    def ones(*shape):
        return torch.ones(*shape, dtype=tdtype, requires_grad=True)

    def linear(n_in, n_out):
        return p(n_out, n_in, scale=math.sqrt(2 / n_in)), zeros(n_out)

    layers = [{"ln1": (ones(D), zeros(D)), "q": linear(D, D), "k": linear(D, D), "v": linear(D, D),
               "proj": linear(D, D), "ln2": (ones(D), zeros(D)), "up": linear(D, 4 * D),
               "down": linear(4 * D, D)} for _ in range(blocks)]
    tok, pos, ln_f, head = p(V, D), p(T, D), (ones(D), zeros(D)), linear(D, V + 1)
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    inputs, targets = (torch.from_numpy(a) for a in batch(n))

    def heads(x):
        return x.reshape(n, T, HEADS, D // HEADS).transpose(1, 2)

    def loss_fn():
        x = tok[inputs] + pos
        for b in layers:
            h = F.layer_norm(x, (D,), *b["ln1"])
            q, k, v = (heads(F.linear(h, *b[name])) for name in ("q", "k", "v"))
            scores = (q @ k.transpose(-1, -2) / math.sqrt(D // HEADS)).masked_fill(~mask, -math.inf)
            mixed = (scores.softmax(-1) @ v).transpose(1, 2).reshape(n, T, D)
            x = x + F.linear(mixed, *b["proj"])
            h = F.layer_norm(x, (D,), *b["ln2"])
            x = x + F.linear(F.gelu(F.linear(h, *b["up"]), approximate="tanh"), *b["down"])
        logits = F.linear(F.layer_norm(x, (D,), *ln_f), *head)
        return F.cross_entropy(logits.reshape(-1, V + 1), targets.reshape(-1), ignore_index=V)

    params = [tok, pos, *ln_f, *head] + [t for b in layers for pair in b.values() for t in pair]

    def step():
        for t in params:
            t.grad = None
        loss_fn().backward()
    return median_ms(step, repeat)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="BLAS and torch threads (default: theirs)")
    parser.add_argument("--blocks", type=int, nargs="*", default=[2, 6, 12])
    args = parser.parse_args(argv)
    for blocks in args.blocks:
        r = cold_compile(blocks)
        stages = ", ".join(f"{k} {v:.2f}" for k, v in r["stages"].items())
        print(f"compile {blocks:>2} blocks: {r['compile']:.2f} s ({stages}; import {r['import']:.2f} s), "
              f"{r['lines']} lines")
    print(f"tiny_gpt loss_and_grad, batch {args.batch} names, median of {args.repeat} (ms), "
          f"threads {args.threads or 'default'}")
    with limit_threads(args.threads):
        side_by_side(f"tiny_gpt, batch {args.batch}", lambda d: generated(args.batch, args.repeat, d),
                     lambda d: torch_eager(args.batch, args.repeat, d))


if __name__ == "__main__":
    main()
