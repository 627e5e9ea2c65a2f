"""The same MLP step in other libraries, when they are installed: torch eager, jax.jit of
value_and_grad, PyTensor compiled by numba, and HIPS autograd. Each builder returns a zero-argument
step function. The worker limits every library to one thread (benchmarks/worker.py)."""
from __future__ import annotations

import numpy as np


def one_torch_thread(torch):
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or inter-op work has started: it stays as it is
        pass


def torch_step(params, x, y, names, activation, dtype):
    import torch
    one_torch_thread(torch)
    tdt = torch.float32 if dtype == "float32" else torch.float64
    P = {k: torch.tensor(v, dtype=tdt, requires_grad=True) for k, v in params.items()}
    X, Y = torch.tensor(x, dtype=tdt), torch.tensor(y, dtype=torch.int64)
    act = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}[activation]

    def step():
        for p in P.values():
            p.grad = None
        h = X
        for i, name in enumerate(names):
            h = torch.addmm(P[f"{name}.b"], h, P[f"{name}.W"])
            if i < len(names) - 1:
                h = act(h)
        loss = torch.nn.functional.cross_entropy(h, Y)
        loss.backward()
        return loss
    return step


def jax_step(params, x, y, names, activation, dtype):
    import jax
    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    act = {"relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid}[activation]

    def loss_fn(P, X, Y):
        h = X
        for i, name in enumerate(names):
            h = h @ P[f"{name}.W"] + P[f"{name}.b"]
            if i < len(names) - 1:
                h = act(h)
        logp = jax.nn.log_softmax(h)
        return -jnp.mean(jnp.take_along_axis(logp, Y[:, None], axis=1))

    f = jax.jit(jax.value_and_grad(loss_fn))
    P = {k: jnp.asarray(v) for k, v in params.items()}
    X, Y = jnp.asarray(x), jnp.asarray(y)

    def step():
        loss, grads = f(P, X, Y)
        jax.block_until_ready(grads)
        return loss
    return step


def autograd_step(params, x, y, names, activation, dtype):
    import autograd.numpy as anp
    from autograd import value_and_grad
    acts = {"relu": lambda z: anp.maximum(z, 0), "tanh": anp.tanh,
            "sigmoid": lambda z: 0.5 * anp.tanh(0.5 * z) + 0.5}
    act = acts[activation]
    onehot = np.eye(params[f"{names[-1]}.b"].shape[0], dtype=x.dtype)[y]

    def loss_fn(P):
        h = x
        for i, name in enumerate(names):
            h = anp.dot(h, P[f"{name}.W"]) + P[f"{name}.b"]
            if i < len(names) - 1:
                h = act(h)
        m = anp.max(h, axis=1, keepdims=True)
        lse = anp.log(anp.sum(anp.exp(h - m), axis=1, keepdims=True)) + m
        return -anp.mean(anp.sum(onehot * (h - lse), axis=1))

    f = value_and_grad(loss_fn)
    return lambda: f(params)


def pytensor_step(params, x, y, names, activation, dtype):
    """PyTensor's graph compiled with mode="NUMBA" (PyTensor 3's default; its C mode finds no BLAS
    in a pip install and says it is "severely degraded", so it is not measured)."""
    import pytensor
    import pytensor.tensor as pt
    floatx = "float32" if dtype == "float32" else "float64"
    P = {k: pt.tensor(k, dtype=floatx, shape=v.shape) for k, v in params.items()}
    X, Y = pt.matrix("x", dtype=floatx), pt.lvector("y")
    act = {"relu": lambda z: pt.maximum(z, 0), "tanh": pt.tanh, "sigmoid": pt.sigmoid}[activation]
    h = X
    for i, name in enumerate(names):
        h = pt.dot(h, P[f"{name}.W"]) + P[f"{name}.b"]
        if i < len(names) - 1:
            h = act(h)
    logp = pt.special.log_softmax(h, axis=1)
    loss = -logp[pt.arange(Y.shape[0]), Y].mean()
    keys = list(params)
    f = pytensor.function([X, Y] + [P[k] for k in keys], [loss] + pytensor.grad(loss, [P[k] for k in keys]),
                          mode="NUMBA")
    args = [x, y] + [params[k] for k in keys]
    return lambda: f(*args)


PEERS = {"torch": torch_step, "jax": jax_step, "autograd": autograd_step, "pytensor_numba": pytensor_step}


def torch_cnn_step(params, x, y, layers, dtype):
    """The same CNN in torch eager (channels first, weights transposed from symgrad's layout)."""
    import torch
    one_torch_thread(torch)
    tdt = torch.float32 if dtype == "float32" else torch.float64
    P = {}
    for name, *_ in layers:
        W = params[f"{name}.W"]  # (k, C_in, C_out) -> (C_out, C_in, k)
        P[f"{name}.W"] = torch.tensor(W.transpose(2, 1, 0).copy(), dtype=tdt, requires_grad=True)
        P[f"{name}.b"] = torch.tensor(params[f"{name}.b"], dtype=tdt, requires_grad=True)
    P["out.W"] = torch.tensor(params["out.W"], dtype=tdt, requires_grad=True)
    P["out.b"] = torch.tensor(params["out.b"], dtype=tdt, requires_grad=True)
    X, Y = torch.tensor(x, dtype=tdt).unsqueeze(1), torch.tensor(y, dtype=torch.int64)

    def step():
        for p in P.values():
            p.grad = None
        h = X
        for name, k, stride, padding in layers:
            h = torch.relu(torch.nn.functional.conv1d(h, P[f"{name}.W"], P[f"{name}.b"], stride=stride,
                                                      padding=padding))
        flat = h.transpose(1, 2).reshape(h.shape[0], -1)  # channels-last flattening, as symgrad
        loss = torch.nn.functional.cross_entropy(flat @ P["out.W"] + P["out.b"], Y)
        loss.backward()
        return loss
    return step
