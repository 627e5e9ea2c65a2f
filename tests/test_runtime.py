"""Loading, init as taught, data sets, checkpoints, and training that reaches its accuracy."""
import os
import shutil

import numpy as np
import pytest

import runtime
from runtime import checkpoint as ckpt
from runtime.data import DataError, digits, from_csv, from_npz, load_dataset, mnist1d, mnist5k
from runtime.train import NonFiniteError, TrainConfig, train
from helpers import EXAMPLES, PRELUDE


@pytest.fixture(scope="module")
def digits_model():
    return runtime.load(os.path.join(EXAMPLES, "digits_mlp.py"))


@pytest.fixture(scope="module")
def digits_data():
    return digits()


def test_load_uses_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMGRAD_CACHE", str(tmp_path / "cache"))
    model_file = tmp_path / "m.py"
    model_file.write_text(PRELUDE + 'a = Param("a", (2,))\nloss = sum(a * a)\n')
    runtime.load(str(model_file))
    files = os.listdir(tmp_path / "cache")
    assert len(files) == 1 and files[0].startswith("m-")
    mtime = os.path.getmtime(tmp_path / "cache" / files[0])
    runtime.load(str(model_file))  # second run: no recompile
    assert os.path.getmtime(tmp_path / "cache" / files[0]) == mtime
    model_file.write_text(PRELUDE + 'a = Param("a", (2,))\nloss = sum(a * a * a)\n')
    runtime.load(str(model_file))  # changed model: a new cache entry
    assert len(os.listdir(tmp_path / "cache")) == 2


def test_init_as_taught(tmp_path):
    model_file = tmp_path / "m.py"
    model_file.write_text(PRELUDE + 'x = Input("x", ("B", 400))\nh = relu(linear(x, 300, name="r"))\n'
                                    'g = tanh(linear(h, 200, name="t"))\nloss = sum(linear(g, 1, name="o"))\n')
    model = runtime.load(str(model_file))
    spec = model.params_spec
    assert spec["r.W"][2] == "he_normal" and spec["t.W"][2] == "xavier_normal"
    assert spec["o.W"][2] == "xavier_normal" and spec["r.b"][2] == "zeros"
    p = model.init_params(seed=3)
    assert np.std(p["r.W"]) == pytest.approx(np.sqrt(2 / 400), rel=0.02)
    assert np.std(p["t.W"]) == pytest.approx(np.sqrt(2 / (300 + 200)), rel=0.02)
    assert not np.any(p["r.b"]) and not np.any(p["t.b"])
    q = model.init_params(seed=3)
    assert all(np.array_equal(p[k], q[k]) for k in p)
    assert not np.array_equal(p["r.W"], model.init_params(seed=4)["r.W"])


def test_builtin_data_sets(digits_data):
    d = digits_data
    assert d.x_train.shape == (1437, 64) and d.x_test.shape == (360, 64) and d.classes == 10
    np.testing.assert_allclose(d.x_train.mean(0), 0, atol=1e-12)
    assert np.bincount(d.y_test).min() >= 35  # stratified: every class is in the test split
    m = mnist1d()
    assert m.x_train.shape == (4000, 40) and m.x_test.shape == (1000, 40)
    k = mnist5k()
    assert k.x_train.shape == (4000, 784) and k.x_test.shape == (1000, 784)
    assert k.x_train.min() >= 0 and k.x_train.max() <= 1


def test_user_files(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((50, 3)), np.repeat(np.arange(5), 10)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    d = from_npz(str(tmp_path / "d.npz"))
    assert d.x_train.shape == (40, 3) and d.classes == 5
    np.savetxt(tmp_path / "d.csv", np.column_stack([x, y]), delimiter=",", header="a,b,c,label",
               comments="")
    d = from_csv(str(tmp_path / "d.csv"))
    assert d.x_test.shape == (10, 3) and set(d.y_test) == set(range(5))
    with pytest.raises(DataError, match="unknown data set 'nope'"):
        load_dataset("nope")


@pytest.mark.slow
def test_digits_default_settings_reach_97(tmp_path, digits_model, digits_data):
    result = train(digits_model, digits_data, TrainConfig(out=str(tmp_path), progress=False))
    assert result.final["test_acc"] >= 0.97
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 100
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_mnist1d_mlp_reaches_65(tmp_path):
    model = runtime.load(os.path.join(EXAMPLES, "mnist1d_mlp.py"))
    config = TrainConfig(lr=1e-2, batch_size=100, epochs=150, out=str(tmp_path), progress=False,
                         plot=False)
    assert train(model, mnist1d(), config).final["test_acc"] >= 0.65


@pytest.mark.slow
def test_mnist5k_mlp_reaches_92(tmp_path):
    model = runtime.load(os.path.join(EXAMPLES, "mnist5k_mlp.py"))
    config = TrainConfig(epochs=30, out=str(tmp_path), progress=False, plot=False)
    assert train(model, mnist5k(), config).final["test_acc"] >= 0.92


def _params(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files if k != "meta"}


def test_resume_is_bit_identical(tmp_path, digits_model, digits_data):
    straight, split = tmp_path / "straight", tmp_path / "split"
    cfg = dict(progress=False, plot=False, optimizer="adam")
    train(digits_model, digits_data, TrainConfig(epochs=10, out=str(straight), **cfg))
    train(digits_model, digits_data, TrainConfig(epochs=5, out=str(split), **cfg))
    train(digits_model, digits_data, TrainConfig(epochs=10, out=str(split), resume=True, **cfg))
    a, b = _params(straight / "checkpoint.npz"), _params(split / "checkpoint.npz")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert len((split / "metrics.jsonl").read_text().splitlines()) == 10


class Interrupting:
    """A model that raises KeyboardInterrupt (as Ctrl-C would) at a given step."""

    def __init__(self, model, at):
        self.model, self.at, self.calls = model, at, 0

    def __getattr__(self, name):
        return getattr(self.model, name)

    def step(self, params, **inputs):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return self.model.step(params, **inputs)


def test_ctrl_c_saves_and_resume_mid_epoch_is_exact(tmp_path, digits_model, digits_data):
    cfg = dict(progress=False, plot=False, optimizer="momentum", lr=0.05)
    train(digits_model, digits_data, TrainConfig(epochs=3, out=str(tmp_path / "a"), **cfg))
    result = train(Interrupting(digits_model, at=40), digits_data,
                   TrainConfig(epochs=3, out=str(tmp_path / "b"), **cfg), log=lambda *_: None)
    assert result.stopped == "interrupted"
    meta = ckpt.load(str(tmp_path / "b" / "checkpoint.npz"), digits_model).meta
    assert (meta["epoch"], meta["batch"], meta["step"]) == (1, 16, 39)  # 23 batches per epoch
    train(digits_model, digits_data, TrainConfig(epochs=3, out=str(tmp_path / "b"), resume=True, **cfg),
          log=lambda *_: None)
    a, b = _params(tmp_path / "a" / "checkpoint.npz"), _params(tmp_path / "b" / "checkpoint.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_nan_guard_names_step_and_keeps_checkpoint(tmp_path, digits_model, digits_data):
    train(digits_model, digits_data, TrainConfig(epochs=1, out=str(tmp_path), progress=False, plot=False))
    before = (tmp_path / "checkpoint.npz").read_bytes()
    cfg = TrainConfig(epochs=3, out=str(tmp_path), resume=True, optimizer="sgd", lr=1e30,
                      progress=False, plot=False)
    with np.errstate(all="ignore"), pytest.raises(NonFiniteError, match=r"step \d+ \(epoch 2, batch \d+\): .*(loss|parameter "
                                             r"'[a-z.A-Z]+').*last good checkpoint .* is untouched"):
        train(digits_model, digits_data, cfg, log=lambda *_: None)
    assert (tmp_path / "checkpoint.npz").read_bytes() == before


def test_crash_while_saving_keeps_previous_checkpoint(tmp_path, monkeypatch, digits_model):
    path = str(tmp_path / "c.npz")
    params = digits_model.init_params(0)
    ckpt.save(path, params, {"t": 0}, {"model_sha256": digits_model.sha256, "epoch": 1})

    def crash(f, **arrays):
        f.write(b"PK\x03\x04 half a zip file")
        raise OSError("disk full (simulated)")
    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="simulated"):
        ckpt.save(path, params, {"t": 5}, {"model_sha256": digits_model.sha256, "epoch": 2})
    monkeypatch.undo()
    state = ckpt.load(path, digits_model)
    assert state.meta["epoch"] == 1
    assert [f for f in os.listdir(tmp_path)] == ["c.npz"]  # no temp file left behind


def test_truncated_or_foreign_checkpoint_is_refused(tmp_path, digits_model):
    path = tmp_path / "c.npz"
    ckpt.save(str(path), digits_model.init_params(0), {"t": 0}, {"model_sha256": digits_model.sha256})
    data = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ckpt.CheckpointError, match="truncated or corrupted"):
        ckpt.load(str(tmp_path / "cut.npz"), digits_model)
    shutil.copy(path, tmp_path / "other.npz")
    other = runtime.load(os.path.join(EXAMPLES, "mnist1d_mlp.py"))
    with pytest.raises(ckpt.CheckpointError, match=r"does not fit this model:\n  parameter hidden1.W missing "
                                                   r"from the checkpoint\n(.|\n)*parameter out.W: "
                                                   r"checkpoint \(128, 10\), model \(100, 10\)"):
        ckpt.load(str(tmp_path / "other.npz"), other)


def test_seeded_training_is_bit_identical(tmp_path, digits_model, digits_data):
    runs = []
    for name in ("a", "b"):
        train(digits_model, digits_data, TrainConfig(epochs=3, out=str(tmp_path / name), progress=False,
                                                     plot=False, seed=7))
        runs.append(_params(tmp_path / name / "checkpoint.npz"))
    assert all(np.array_equal(runs[0][k], runs[1][k]) for k in runs[0])
    train(digits_model, digits_data, TrainConfig(epochs=3, out=str(tmp_path / "c"), progress=False,
                                                 plot=False, seed=8))
    other = _params(tmp_path / "c" / "checkpoint.npz")
    assert not np.array_equal(runs[0]["param/hidden.W"], other["param/hidden.W"])


WIDE = """
x = Input("x", ("B", 300))
y = Labels("y", ("B",), classes=3)
h = relu(linear(x, 256, name="hidden"))
loss = softmax_cross_entropy(linear(h, 3, name="out"), y)
"""


def test_workspace_gives_the_same_numbers_and_reuses_its_arrays(tmp_path):
    from helpers import build
    model = build(tmp_path, WIDE)
    m = model.module
    assert "out=buffer('d_hidden_W', (300, 256))" in open(m.__file__).read()
    params = model.init_params(0)
    rng = np.random.default_rng(0)
    ws = m.Workspace()
    seen = None
    for B in (16, 16, 5, 16):  # a smaller last batch makes the workspace reallocate, then again
        inputs = dict(x=rng.standard_normal((B, 300)), y=rng.integers(0, 3, B))
        fresh_loss, fresh = m.loss_and_grad(params, **inputs)
        loss, grads = m.loss_and_grad(params, workspace=ws, **inputs)
        assert loss == fresh_loss
        for k in fresh:
            assert np.array_equal(grads[k], fresh[k]) and grads[k].dtype == fresh[k].dtype
        if seen is not None and B == 16:
            assert grads["hidden.W"] is seen  # the same array, written again
        seen = grads["hidden.W"]
