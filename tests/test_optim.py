"""Each optimizer against a reference computation written out here, over two steps."""
import math

import numpy as np
import pytest

from runtime import optim
from runtime.schedules import Schedule


def two_steps(opt, lr=0.1):
    p0 = {"w": np.array([1.0, -2.0]), "b": np.array(0.5)}
    g = [{"w": np.array([0.3, -0.1]), "b": np.array(0.2)},
         {"w": np.array([-0.2, 0.4]), "b": np.array(-0.1)}]
    state = opt.init(p0)
    params = p0
    for gi in g:
        params, state = opt.update(params, gi, state, lr)
    assert p0["w"].tolist() == [1.0, -2.0], "update must not change its inputs"
    return p0, g, params, state


def test_sgd():
    p0, g, p, state = two_steps(optim.sgd())
    np.testing.assert_allclose(p["w"], p0["w"] - 0.1 * g[0]["w"] - 0.1 * g[1]["w"], rtol=1e-15)
    assert state["t"] == 2


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum(nesterov):
    p0, g, p, _ = two_steps(optim.momentum(0.9, nesterov=nesterov))
    w, v = p0["w"].copy(), np.zeros(2)
    for gi in g:
        v = 0.9 * v + gi["w"]
        w = w - 0.1 * ((gi["w"] + 0.9 * v) if nesterov else v)
    np.testing.assert_allclose(p["w"], w, rtol=1e-15)


@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_adam_and_adamw(wd):
    p0, g, p, state = two_steps(optim.adam(0.9, 0.999, 1e-8, weight_decay=wd), lr=0.01)
    b = float(p0["b"])
    m = v = 0.0
    for t, gi in enumerate(g, start=1):
        gb = float(gi["b"])
        m = 0.9 * m + 0.1 * gb
        v = 0.999 * v + 0.001 * gb * gb
        b = b - 0.01 * wd * b
        b = b - 0.01 * (m / (1 - 0.9 ** t)) / (math.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    assert float(p["b"]) == pytest.approx(b, rel=1e-14)
    assert state["t"] == 2


def test_optimizers_keep_float32():
    for name in optim.OPTIMIZERS:
        opt = optim.make(name)
        p = {"w": np.ones(3, dtype=np.float32)}
        new, _ = opt.update(p, {"w": np.full(3, 0.5, dtype=np.float32)}, opt.init(p), 1e-3)
        assert new["w"].dtype == np.float32, name


def test_schedules():
    const = Schedule("constant", lr=0.1)
    assert const(0, 10) == const(999, 10) == 0.1
    step = Schedule("step", lr=0.1, step_size=2, gamma=0.5)
    assert [step(s, 10) for s in (0, 19, 20, 39, 40)] == [0.1, 0.1, 0.05, 0.05, 0.025]
    cos = Schedule("cosine", lr=0.1, total_steps=100)
    assert cos(0, 10) == 0.1 and cos(50, 10) == pytest.approx(0.05) and cos(100, 10) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="unknown schedule"):
        Schedule("linear")(0, 1)
