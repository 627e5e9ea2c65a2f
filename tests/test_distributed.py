"""Data-parallel steps and sweeps on a Dask LocalCluster give what one process gives."""
import os
import signal

import numpy as np
import pytest

import runtime
from helpers import EXAMPLES
from runtime.data import digits
from runtime.distributed import DataParallel, connect, sweep
from runtime.train import TrainConfig, bind, train

DIGITS = os.path.join(EXAMPLES, "digits_mlp.py")


@pytest.fixture(scope="module")
def client():
    c = connect(workers=2)
    yield c
    c.close()


@pytest.fixture(scope="module")
def setup():
    model = runtime.load(DIGITS)
    data = digits()
    return model, data, bind(model, data)


def test_data_parallel_step_equals_one_process(client, setup):
    model, data, binding = setup
    step = DataParallel(client, model, model.module.__file__, data.x_train, data.y_train,
                        (binding.x, binding.y))
    assert len(step.workers) == 2
    params = model.init_params(0)
    idx = np.random.default_rng(0).permutation(len(data.x_train))[:256]
    loss, grads, _ = step(params, idx, {})
    ref_loss, ref_grads, _ = model.step(params, x=data.x_train[idx], y=data.y_train[idx])
    assert abs(loss - ref_loss) <= 1e-12 * abs(ref_loss)
    for k in grads:
        err = np.linalg.norm(grads[k] - ref_grads[k]) / np.linalg.norm(ref_grads[k])
        assert err <= 1e-12, (k, err)


def test_data_parallel_training_matches_and_survives_a_killed_worker(client, setup, tmp_path):
    model, data, binding = setup
    cfg = dict(epochs=2, progress=False, plot=False, lr=3e-3)
    local = train(model, data, TrainConfig(out=str(tmp_path / "local"), **cfg))

    messages = []
    step = DataParallel(client, model, model.module.__file__, data.x_train, data.y_train,
                        (binding.x, binding.y), log=messages.append)
    calls = {"n": 0}

    def killing_step(params, idx, inputs):
        calls["n"] += 1
        if calls["n"] == 10:  # kill one worker process on purpose, mid-epoch
            pids = client.run(os.getpid)
            os.kill(pids[step.workers[0]], signal.SIGKILL)
        return step(params, idx, inputs)

    dist = train(model, data, TrainConfig(out=str(tmp_path / "dist"), **cfg), stepper=killing_step)
    assert step.retries >= 1 and any("worker failure" in m for m in messages)
    for k in local.params:
        err = np.linalg.norm(dist.params[k] - local.params[k]) / np.linalg.norm(local.params[k])
        assert err <= 1e-9, (k, err)
    assert dist.final["test_acc"] == local.final["test_acc"]


def test_sweep_runs_each_configuration_as_if_alone(client, setup, tmp_path):
    model, data, _ = setup
    configs = [dict(TrainConfig(epochs=2, lr=lr, seed=s, out=str(tmp_path / f"{lr}_{s}"), progress=False,
                                plot=False).__dict__) for lr in (1e-3, 1e-2) for s in (0,)]
    remote = sweep(model.module.__file__, data, configs, client)
    alone = sweep(model.module.__file__, data, configs, None)
    assert [r["lr"] for r in remote] == [1e-3, 1e-2]
    for r, a in zip(remote, alone):
        assert r["test_acc"] == a["test_acc"]
        assert r["test_loss"] == pytest.approx(a["test_loss"], rel=1e-9)
