"""Make the figures of examples/README.md from the generated code itself.

    python examples/figures.py [NAME ...] [--out examples/figures] [--quick]

Each figure function writes a PNG and returns the numbers it shows, which the tests check.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import compiler  # noqa: E402
import runtime  # noqa: E402
from runtime.optim import adam  # noqa: E402


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _load_text(text: str, name: str, tmp: str, functions=()):
    path = os.path.join(tmp, f"{name}.py")
    with open(path, "w") as f:
        f.write("from compiler.dsl import *\n" + text)
    return runtime.load(path, functions=functions)


# The two classifiers again, with the true class's score as the "loss": its input gradient is the
# saliency of Simonyan et al. (2013). Same layer names, so the trained parameters fit as they are.
SCORES = {
    "mlp": '''
x = Input("x", ("B", 64))
y = Labels("y", ("B",), classes=10)
h = relu(linear(x, 128, name="hidden"))
logits = linear(h, 10, name="out")
loss = sum(pick(logits, y))
''',
    "logistic": '''
x = Input("x", ("B", 64))
y = Labels("y", ("B",), classes=10)
W = Param("W", (64, 10), init="zeros")
b = Param("b", (10,), init="zeros")
loss = sum(pick(x @ W + b, y))
''',
}


def _draw_dag(ax, nodes, edges, title):
    """nodes: name -> (x, y, label); edges: (src, dst, label)."""
    for src, dst, label in edges:
        (x0, y0, _), (x1, y1, _) = nodes[src], nodes[dst]
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle="-|>", color="#4a7bd0", lw=1.4, shrinkA=22, shrinkB=22))
        ax.text((x0 + x1) / 2, (y0 + y1) / 2 + 0.06, label, ha="center", va="bottom", fontsize=8,
                color="#b35900", bbox=dict(fc="white", ec="none", alpha=0.8))
    for x, y, label in nodes.values():
        ax.text(x, y, label, ha="center", va="center", fontsize=9,
                bbox=dict(boxstyle="round,pad=0.4", fc="#cfe3ff", ec="#4a7bd0"))
    ax.set_xlim(-0.4, max(v[0] for v in nodes.values()) + 0.4)
    ax.set_ylim(min(v[1] for v in nodes.values()) - 0.5, max(v[1] for v in nodes.values()) + 0.5)
    ax.set_axis_off()
    ax.set_title(title, fontsize=10)


def chain_rule(out: str, quick: bool = False) -> dict:
    """e(a, b) = (a + b)(b + 1) at a=2, b=1: values, local derivatives, the sum over paths."""
    plt = _plt()
    model = runtime.load(os.path.join(HERE, "chain_rule.py"))
    params = model.init_params()
    loss, grads = model.loss_and_grad(params)
    a, b = float(params["a"]), float(params["b"])
    c, d = a + b, b + 1
    paths_b = {"b → c → e": 1 * d, "b → d → e": 1 * c}
    nodes = {"a": (0, 1, f"a = {a:g}\n∂e/∂a = {float(grads['a']):g}"),
             "b": (0, -1, f"b = {b:g}\n∂e/∂b = {float(grads['b']):g}"),
             "c": (1.3, 1, f"c = a + b = {c:g}"), "d": (1.3, -1, f"d = b + 1 = {d:g}"),
             "e": (2.6, 0, f"e = c·d = {float(loss):g}")}
    edges = [("a", "c", "∂c/∂a = 1"), ("b", "c", "∂c/∂b = 1"), ("b", "d", "∂d/∂b = 1"),
             ("c", "e", f"∂e/∂c = d = {d:g}"), ("d", "e", f"∂e/∂d = c = {c:g}")]
    from compiler import inspection
    snippet = inspection.show_gradient(compiler.compile_model(os.path.join(HERE, "chain_rule.py")), "b")
    body = snippet[snippet.index("    # ---- forward"):].rstrip()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1.1, 1]})
    _draw_dag(ax, nodes, edges, "forward values, local derivatives on the edges")
    ax.text(1.3, -1.9, "∂e/∂b = Σ over paths = " + " + ".join(f"{v:g}" for v in paths_b.values())
            + f" = {sum(paths_b.values()):g}", ha="center", fontsize=10)
    ax2.text(0, 1, "generated reverse mode (symgrad show --grad b):\n\n" + body, va="top",
             family="monospace", fontsize=7.5)
    ax2.set_axis_off()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "chain_rule.png"), dpi=110)
    plt.close(fig)
    return {"e": float(loss), "de_da": float(grads["a"]), "de_db": float(grads["b"]),
            "paths_b": list(paths_b.values())}


def gradient_flow(out: str, quick: bool = False) -> dict:
    """add distributes, max routes, multiply switches: values above, gradients below each node."""
    plt = _plt()
    path = os.path.join(HERE, "gradient_flow.py")
    model = runtime.load(path)
    params = model.init_params()
    loss, g = model.loss_and_grad(params)
    v = {k: float(p) for k, p in params.items()}
    prod, big = v["x"] * v["y"], max(v["z"], v["w"])
    total = prod + big
    nodes = {"x": (0, 1.5, f"x = {v['x']:g}\ngrad {float(g['x']):g}"),
             "y": (0, 0.5, f"y = {v['y']:g}\ngrad {float(g['y']):g}"),
             "z": (0, -0.5, f"z = {v['z']:g}\ngrad {float(g['z']):g}"),
             "w": (0, -1.5, f"w = {v['w']:g}\ngrad {float(g['w']):g}"),
             "mul": (1.4, 1, f"x·y = {prod:g}\ngrad 2  (multiply switches)"),
             "max": (1.4, -1, f"max(z, w) = {big:g}\ngrad 2  (max routes)"),
             "add": (2.8, 0, f"+ = {total:g}\ngrad 2  (add distributes)"),
             "f": (4.0, 0, f"f = 2·(+) = {float(loss):g}\ngrad 1")}
    edges = [("x", "mul", f"y·2 = {v['y'] * 2:g}"), ("y", "mul", f"x·2 = {v['x'] * 2:g}"),
             ("z", "max", "2 (larger)"), ("w", "max", "0"), ("mul", "add", "2"), ("max", "add", "2"),
             ("add", "f", "2")]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    _draw_dag(ax, nodes, edges, "f = 2·(x·y + max(z, w)): forward values and gradients (from loss_and_grad)")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "gradient_flow.png"), dpi=110)
    plt.close(fig)
    from compiler.explain import explain
    c = compiler.compile_model(path)
    return {"f": float(loss), **{k: float(x) for k, x in g.items()},
            "explain": {k: explain(c, k) for k in ("x", "y", "z", "w")}}


def numeric_vs_analytic(out: str, quick: bool = False) -> dict:
    """Central differences against backprop on digits_mlp: time, agreement, and error against ε."""
    plt = _plt()
    model = runtime.load(os.path.join(HERE, "digits_mlp.py"))
    params = model.init_params(0)
    inputs = runtime.random_inputs(model, batch=64, seed=0)
    t = time.perf_counter()
    _, grads = model.loss_and_grad(params, **inputs)
    t_backprop = time.perf_counter() - t
    names = ["out.b", "out.W"] if quick else list(params)
    n = sum(params[k].size for k in names)
    t = time.perf_counter()
    checks = runtime.check_gradients(model, params, inputs, eps=1e-5)
    t_numeric = time.perf_counter() - t
    worst = max(c.rel_error for c in checks)
    # error of one gradient entry against ε: truncation (∝ ε²) for large ε, round-off (∝ 1/ε) for small
    eps_grid = np.logspace(-13, -1, 25)
    theta = params["out.W"]
    exact = grads["out.W"][3, 2]
    errors = []
    for eps in eps_grid:
        saved = theta[3, 2]
        theta[3, 2] = saved + eps
        up = model.loss(params, **inputs)
        theta[3, 2] = saved - eps
        down = model.loss(params, **inputs)
        theta[3, 2] = saved
        errors.append(abs((up - down) / (2 * eps) - exact) / abs(exact))
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.loglog(eps_grid, errors, "o-")
    ax.set(xlabel="ε", ylabel="relative error of the central difference",
           title="too large: truncation (∝ε²); too small: round-off (∝1/ε)")
    ax.axvline(1e-5, color="gray", ls=":", label="ε used by symgrad check")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "numeric_vs_analytic.png"), dpi=110)
    plt.close(fig)
    return {"parameters": sum(p.size for p in params.values()), "loss_evaluations": 2 * sum(
        p.size for p in params.values()), "numeric_seconds": t_numeric, "backprop_seconds": t_backprop,
        "max_relative_error": worst, "best_eps": float(eps_grid[int(np.argmin(errors))]),
        "errors": errors, "checked_parameters": n}


def _fit(model, x, t, steps, lr, seed=0):
    params = model.init_params(seed)
    opt = adam()
    state = opt.init(params)
    for _ in range(steps):
        loss, grads = model.loss_and_grad(params, x=x, t=t)
        params, state = opt.update(params, grads, state, lr)
    return params, float(model.loss(params, x=x, t=t))


def universal_approximation(out: str, quick: bool = False) -> dict:
    """1 → H → 1 ReLU MLPs fitted to sin(x): a piecewise-linear function with H kinks."""
    plt = _plt()
    import tempfile
    x = np.linspace(-np.pi, np.pi, 256).reshape(-1, 1)
    t = np.sin(x)
    widths = [2, 4, 16, 64]
    losses = {}
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax.plot(x, t, "k--", lw=2, label="sin(x)")
    with tempfile.TemporaryDirectory() as tmp:
        for H in widths:
            model = _load_text(f'x = Input("x", ("B", 1))\nt = Input("t", ("B", 1))\n'
                               f'out = linear(relu(linear(x, {H}, name="hidden")), 1, name="out")\n'
                               'loss = mse(out, t)\noutputs = {"out": out}\n', f"ua{H}", tmp)
            params, losses[H] = _fit(model, x, t, 800 if quick else 4000, 1e-2)
            ax.plot(x, model.forward(params, x=x)["out"], label=f"H = {H}: MSE {losses[H]:.1e}")
    ax.set(title="ReLU networks are piecewise linear: more units, more kinks", xlabel="x")
    ax.legend(fontsize=8)
    ax2.loglog(widths, [losses[H] for H in widths], "o-")
    ax2.set(xlabel="hidden units H", ylabel="final MSE", title="loss per width")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "universal_approximation.png"), dpi=110)
    plt.close(fig)
    return {"mse": losses}


def initialisation(out: str, quick: bool = False) -> dict:
    """Activation and gradient size per layer of a deep MLP at init: σ too small, He/Xavier, too large."""
    plt = _plt()
    import tempfile
    depth, width = 10, 256
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, width))
    y = rng.integers(0, 10, size=128)
    result = {}
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    with tempfile.TemporaryDirectory() as tmp:
        for col, act in enumerate(["tanh", "relu"]):
            lines = [f'x = Input("x", ("B", {width}))', 'y = Labels("y", ("B",), classes=10)', "h = x",
                     "outputs = {}", f"for i in range({depth}):",
                     f'    h = {act}(linear(h, {width}, name=f"layer{{i + 1}}"))',
                     '    outputs[f"h{i + 1}"] = h',
                     'loss = softmax_cross_entropy(linear(h, 10, name="out"), y)']
            model = _load_text("\n".join(lines) + "\n", f"init_{act}", tmp)
            base = model.init_params(0)
            for scale, label in [(0.5, "σ × 0.5 (too small)"), (1.0, "He/Xavier"), (1.5, "σ × 1.5 (too large)")]:
                params = {k: v * scale if k.endswith(".W") else v for k, v in base.items()}
                acts = model.forward(params, x=x)
                _, grads = model.loss_and_grad(params, x=x, y=y)
                a = [float(np.std(acts[f"h{i + 1}"])) for i in range(depth)]
                g = [float(np.linalg.norm(grads[f"layer{i + 1}.W"])) for i in range(depth)]
                result[(act, label)] = {"activation_std": a, "grad_norm": g}
                axes[0][col].semilogy(range(1, depth + 1), a, "o-", label=label)
                axes[1][col].semilogy(range(1, depth + 1), g, "o-", label=label)
            axes[0][col].set(title=f"{act}: activation std per layer", ylabel="std of h")
            axes[1][col].set(title=f"{act}: gradient norm per layer", xlabel="layer", ylabel="‖∂L/∂W‖")
            axes[0][col].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "initialisation.png"), dpi=110)
    plt.close(fig)
    return result


def activations(out: str, quick: bool = False) -> dict:
    """σ, tanh, ReLU, leaky ReLU, ELU and their derivatives, evaluated by the generated code."""
    plt = _plt()
    model = runtime.load(os.path.join(HERE, "activations.py"))
    grid = np.linspace(-4, 4, 401)
    params = {k: grid.copy() for k in model.params_spec}
    values = model.forward(params)
    _, grads = model.loss_and_grad(params)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, v in values.items():
        ax.plot(grid, v, label=name)
        ax2.plot(grid, grads[f"x.{name}"], label=name)
    ax.set(title="activations (forward)", xlabel="x", ylim=(-1.5, 4))
    ax2.set(title="derivatives (loss_and_grad)", xlabel="x", ylim=(-0.1, 1.1))
    ax.legend(fontsize=8)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "activations.png"), dpi=110)
    plt.close(fig)
    at = {name: float(grads[f"x.{name}"][200]) for name in values}  # derivatives at x = 0
    return {"derivative_at_0": at, "grid": grid, "values": values,
            "derivatives": {k[2:]: v for k, v in grads.items()}}


def mnist_confusion(out: str, quick: bool = False) -> dict:
    """The MNIST-5k MLP: its confusion matrix and the test digits it gets most wrong."""
    plt = _plt()
    import tempfile
    from runtime.data import mnist5k
    from runtime.train import TrainConfig, bind, evaluate, train
    model = runtime.load(os.path.join(HERE, "mnist5k_mlp.py"))
    data = mnist5k()
    with tempfile.TemporaryDirectory() as tmp:
        result = train(model, data, TrainConfig(epochs=5 if quick else 30, out=tmp, progress=False,
                                                plot=False), log=lambda *_: None)
    binding = bind(model, data)
    ev = evaluate(model, result.params, data.x_test, data.y_test, binding)
    logits = model.forward(result.params, x=data.x_test)["logits"]
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    confusion = np.zeros((10, 10), dtype=int)
    np.add.at(confusion, (data.y_test, ev["pred"]), 1)
    wrong = np.where(ev["pred"] != data.y_test)[0]
    worst = wrong[np.argsort(-p[wrong, ev["pred"][wrong]])][:8]
    fig = plt.figure(figsize=(12, 5))
    ax = fig.add_subplot(1, 2, 1)
    ax.imshow(confusion, cmap="Blues")
    for i in range(10):
        for j in range(10):
            ax.text(j, i, confusion[i, j], ha="center", va="center", fontsize=7,
                    color="white" if confusion[i, j] > confusion.max() / 2 else "black")
    ax.set(xlabel="predicted", ylabel="true", xticks=range(10), yticks=range(10),
           title=f"MNIST-5k MLP: test accuracy {ev['acc']:.3f}")
    for k, idx in enumerate(worst):
        sub = fig.add_subplot(2, 8, 5 + (k // 4) * 8 + k % 4)
        sub.imshow(data.x_test[idx].reshape(28, 28), cmap="gray_r")
        sub.set_title(f"{data.y_test[idx]} → {ev['pred'][idx]} ({p[idx, ev['pred'][idx]]:.2f})", fontsize=8)
        sub.set_axis_off()
    fig.suptitle("most confidently wrong: true → predicted (probability)", x=0.75, fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "mnist_confusion.png"), dpi=110)
    plt.close(fig)
    return {"accuracy": ev["acc"], "confusion": confusion, "worst": worst.tolist()}


def _regression_data(n: int = 256, seed: int = 0):
    """n points on [-3, 3] (seeded) and a smooth target with a few wiggles."""
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(-3, 3, size=(n, 1)), axis=0)
    return x, np.sin(2 * x) * np.exp(-x ** 2 / 8) + 0.3 * x


def newton_vs_adam(out: str, quick: bool = False) -> dict:
    """Full-batch Newton-CG (Hessian-vector products from the generated hvp) against full-batch Adam
    on small_regression.py, from the same initialisation: loss per iteration and per second."""
    plt = _plt()
    model = runtime.load(os.path.join(HERE, "small_regression.py"), functions=("hvp",))
    x, t = _regression_data()
    init = model.init_params(0)
    newton_iters, adam_steps, lr = (200, 2000, 1e-2) if quick else (500, 20000, 1e-2)
    nr = runtime.minimize(model, {k: v.copy() for k, v in init.items()}, {"x": x, "t": t},
                          method="newton-cg", maxiter=newton_iters, tol=1e-12)
    start = float(model.loss(init, x=x, t=t))
    newton_curve = [(0, start, 0.0)] + [(h["iteration"], h["loss"], h["seconds"]) for h in nr.history]
    # Adam, full batch, with a cosine decay from lr to 0 (a constant lr ends in loss spikes)
    params, opt = {k: v.copy() for k, v in init.items()}, adam()
    state = opt.init(params)
    adam_curve, started = [], time.perf_counter()
    for step in range(adam_steps):
        loss, grads = model.loss_and_grad(params, x=x, t=t)   # the loss after `step` steps
        adam_curve.append((step, float(loss), time.perf_counter() - started))
        params, state = opt.update(params, grads, state, lr * 0.5 * (1 + np.cos(np.pi * step / adam_steps)))
    adam_loss = float(model.loss(params, x=x, t=t))
    adam_seconds = time.perf_counter() - started
    adam_curve.append((adam_steps, adam_loss, adam_seconds))
    fig, (ax, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4.2))
    labels = {"newton": f"Newton-CG: {nr.iterations} iterations, {nr.hvps} H·v products",
              "adam": f"Adam (lr {lr:g}, cosine decay): {adam_steps} steps"}
    for curve, key, style in [(newton_curve, "newton", "C0-"), (adam_curve, "adam", "C1-")]:
        it, loss, sec = (np.array(c) for c in zip(*curve))
        ax.loglog(np.maximum(it, 1), loss, style, label=labels[key])
        ax2.semilogy(sec, loss, style, label=labels[key])
    ax.set(xlabel="iteration (full batch; log scale)", ylabel="training MSE (log scale)",
           title="loss against iterations")
    ax2.set(xlabel="seconds", ylabel="training MSE (log scale)", title="loss against wall-clock time")
    low = min(nr.loss, adam_loss) / 3
    for a in (ax, ax2):  # room above the curves for the legend
        a.set_ylim(low, start * 300)
        a.legend(fontsize=8, loc="upper right")
    grid = np.linspace(-3, 3, 400).reshape(-1, 1)
    ax3.plot(x, t, "k.", ms=3, label="data (256 points)")
    ax3.plot(grid, model.forward(nr.params, x=grid)["out"], "C0-", label=f"Newton-CG: MSE {nr.loss:.1e}")
    ax3.plot(grid, model.forward(params, x=grid)["out"], "C1--", label=f"Adam: MSE {adam_loss:.1e}")
    ax3.set(xlabel="x", ylabel="t", title="1 → 16 → 16 → 1 tanh MLP (321 parameters): the fits")
    ax3.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "newton_vs_adam.png"), dpi=110)
    plt.close(fig)
    return {"initial_loss": start,
            "newton-cg": {"loss": nr.loss, "iterations": nr.iterations, "seconds": nr.seconds,
                          "hvps": nr.hvps, "evaluations": nr.evaluations},
            "adam": {"loss": adam_loss, "iterations": adam_steps, "seconds": adam_seconds, "lr": lr}}


_CLASSIFIERS: dict = {}


def _digits_classifiers():
    """The digits data and two classifiers trained on it, full batch with L-BFGS (deterministic):
    digits_mlp.py (to convergence: it interpolates the training set) and the L2-regularised,
    convex logistic_digits.py (its unique optimum). Both with the generated input_grad."""
    if not _CLASSIFIERS:
        from runtime.data import load_dataset
        data = load_dataset("digits")
        for key, name in [("mlp", "digits_mlp.py"), ("logistic", "logistic_digits.py")]:
            model = runtime.load(os.path.join(HERE, name), functions=("input_grad",))
            r = runtime.minimize(model, model.init_params(0), data.train, method="lbfgs", maxiter=300,
                                 tol=1e-6)
            _CLASSIFIERS[key] = (model, r.params)
        _CLASSIFIERS["data"] = data
    return _CLASSIFIERS


def _gray(x, data):
    """Standardised digits back to gray levels 0..16, as 8x8 images."""
    from runtime.data import invert_stats
    return invert_stats(np.atleast_2d(x), data.preprocess["x"]).reshape(-1, 8, 8)


def adversarial_digit(out: str, quick: bool = False) -> dict:
    """Fast gradient sign method: x + ε·sign(∂loss/∂x) from the generated input_grad, on the test
    digits; test accuracy against ε and a row of perturbed digits."""
    plt = _plt()
    c = _digits_classifiers()
    data = c["data"]
    x, y = data.test["x"], data.test["y"]
    eps_grid = np.linspace(0, 1, 6 if quick else 11)
    result = {"eps": eps_grid.tolist(), "accuracy": {}, "clean_accuracy": {}}
    fig = plt.figure(figsize=(13, 4.6))
    grid = fig.add_gridspec(1, 2, width_ratios=[1, 1.2])
    ax = fig.add_subplot(grid[0])
    show = [0.0, 0.2, 0.4, 0.6, 1.0]
    for key, label in [("mlp", "digits_mlp (64 → 128 ReLU → 10)"),
                       ("logistic", "logistic_digits (linear, L2)")]:
        model, params = c[key]
        predict = lambda a: model.forward(params, x=a)["logits"].argmax(1)  # noqa: E731
        # the gradient of the batch's mean loss: row i is sample i's own gradient over N, same sign
        _, g = model.input_grad(params, x=x, y=y)
        step = np.sign(g["x"])
        acc = [float(np.mean(predict(x + eps * step) == y)) for eps in eps_grid]
        result["accuracy"][key] = acc
        result["clean_accuracy"][key] = float(np.mean(predict(x) == y))
        ax.plot(eps_grid, acc, "o-", label=label)
        if key == "mlp":
            idx = int(np.flatnonzero(predict(x) == y)[0])  # the first correctly classified test digit
            images = [(eps, x[idx] + eps * step[idx]) for eps in show]
            preds = [int(predict(a[None])[0]) for _, a in images]
    ax.set(xlabel="ε (standardised units: ε·σ_pixel gray levels per pixel)", ylabel="test accuracy",
           ylim=(-0.02, 1.02), title=f"FGSM on the {len(y)} test digits: x + ε·sign(∂loss/∂x)")
    ax.axhline(0.1, color="gray", ls=":", label="chance (0.1)")
    ax.legend(fontsize=8)
    for k, ((eps, a), pred) in enumerate(zip(images, preds)):
        sub = fig.add_subplot(grid[1].subgridspec(1, len(show), wspace=0.08)[k])
        sub.imshow(_gray(a, data)[0], cmap="gray_r", vmin=0, vmax=16)
        sub.set_title(f"ε = {eps:g}\npredicted {pred}", fontsize=9,
                      color="black" if pred == int(y[idx]) else "crimson")
        sub.set_axis_off()
    fig.text(0.73, 0.2, f"one test digit (a {int(y[idx])}) perturbed against digits_mlp, shown in gray "
             "levels\n(clipped to 0..16 for display only); red: misclassified", ha="center", fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "adversarial_digit.png"), dpi=110)
    plt.close(fig)
    result["example"] = {"index": idx, "label": int(y[idx]), "eps": show, "predicted": preds}
    return result


def saliency_map(out: str, quick: bool = False) -> dict:
    """|∂z_y/∂x|, the gradient of the true class's score (logit) with respect to the pixels, for
    single test digits, from the generated input_grad of a score model sharing the classifier's
    parameters, as 8x8 maps beside the digits. (The loss's own gradient vanishes where the model is
    sure: the MLP, trained to convergence, has test losses down to 0 to double precision.)"""
    import tempfile
    plt = _plt()
    c = _digits_classifiers()
    with tempfile.TemporaryDirectory() as tmp:
        scores = {key: _load_text(text, f"{key}_score", tmp, functions=("input_grad",))
                  for key, text in SCORES.items()}
    data = c["data"]
    x, y = data.test["x"], data.test["y"]
    picks = [int(np.flatnonzero(y == d)[0]) for d in (0, 1, 2, 3, 4, 7)]
    rows = [("mlp", "digits_mlp"), ("logistic", "logistic_digits")]
    maps = {key: [] for key, _ in rows}
    fig, axes = plt.subplots(1 + len(rows), len(picks), figsize=(2 * len(picks), 7.4))
    for j, i in enumerate(picks):
        axes[0][j].imshow(_gray(x[i], data)[0], cmap="gray_r", vmin=0, vmax=16)
        axes[0][j].set_title(f"test digit {i}: a {int(y[i])}", fontsize=9)
        for r, (key, label) in enumerate(rows, start=1):
            params = c[key][1]
            score, g = scores[key].input_grad(params, x=x[i:i + 1], y=y[i:i + 1])  # a batch of one
            s = np.abs(g["x"][0]).reshape(8, 8)
            maps[key].append(s)
            axes[r][j].imshow(s / s.max(), cmap="hot", vmin=0, vmax=1)
            axes[r][j].set_title(f"{label}: score {float(score):.1f}\nmax |∂score/∂x| {s.max():.2f}",
                                 fontsize=7.5)
    for a in axes.ravel():
        a.set_xticks([])
        a.set_yticks([])
    axes[1][0].set_ylabel("|∂z_y/∂x|\n(÷ its max)", fontsize=9)
    axes[2][0].set_ylabel("|∂z_y/∂x|\n(÷ its max)", fontsize=9)
    fig.suptitle("saliency: which pixels move the true class's score z_y most (generated input_grad)",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "saliency_map.png"), dpi=110)
    plt.close(fig)
    return {"indices": picks, "labels": [int(y[i]) for i in picks], "maps": maps}


FIGURES = {"chain_rule": chain_rule, "gradient_flow": gradient_flow,
           "numeric_vs_analytic": numeric_vs_analytic, "universal_approximation": universal_approximation,
           "initialisation": initialisation, "activations": activations, "mnist_confusion": mnist_confusion,
           "newton_vs_adam": newton_vs_adam, "adversarial_digit": adversarial_digit,
           "saliency_map": saliency_map}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help=f"figures to make (default all): {', '.join(FIGURES)}")
    p.add_argument("--out", default=os.path.join(HERE, "figures"))
    p.add_argument("--quick", action="store_true", help="fewer steps (for tests)")
    args = p.parse_args(argv)
    names = args.names or list(FIGURES)
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        p.error(f"unknown figure(s) {unknown}; choose from {', '.join(FIGURES)}")
    os.makedirs(args.out, exist_ok=True)
    for name in names:
        t = time.perf_counter()
        FIGURES[name](args.out, args.quick)
        print(f"wrote {os.path.join(args.out, name + '.png')} ({time.perf_counter() - t:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
