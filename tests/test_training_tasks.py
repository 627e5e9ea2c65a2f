"""Training beyond classifiers: data sets bound to a model's inputs by name, regression from an .npz,
standardisation that travels in the checkpoint, the surnames data set, and sampling names."""
import csv
import os
import re

import numpy as np
import pytest

import runtime
from runtime import checkpoint as ckpt
from runtime import surnames as S
from runtime.binding import bind
from runtime.data import DataError, Dataset, digits, stratified_split
from runtime.train import TrainConfig, evaluate, train
from symgrad.cli import main
from helpers import EXAMPLES, PRELUDE

QUIET = dict(progress=False, plot=False)
WINDOWS = """# a context-3 character MLP on Labels (one_hot of every position)
context = Labels("context", ("B", 3), classes=27)
following = Labels("next", ("B",), classes=27)
h = tanh(linear(reshape(one_hot(context, 27), ("B", 81)), 32, name="hidden"))
logits = linear(h, 27, name="out")
loss = softmax_cross_entropy(logits, following)
outputs = {"logits": logits}
"""
REGRESSION = """x = Input("x", ("B", 3))
t = Input("t", ("B", 1))
pred = linear(x, 1, name="fit")
loss = mse(pred, t)
outputs = {"pred": pred}
"""


def write(tmp_path, body, name="m.py"):
    path = tmp_path / name
    path.write_text(PRELUDE + body)
    return str(path)


# ---- surnames -----------------------------------------------------------------------------------

def test_surnames_counts_split_and_bigram_baseline():
    parts, dropped = S.splits()
    assert dropped == 0 and {k: len(v) for k, v in parts.items()} == \
        {"train": 71039, "val": 8880, "test": 8880}
    assert max(len(n) for ns in parts.values() for n in ns) == S.MAX_LEN - 1
    assert parts["train"][0] == "yedid"  # the seeded shuffle is fixed
    assert S.bigram_nll(1.0) == pytest.approx(2.5652, abs=1e-4)  # the 2.565


def test_surnames_windows_and_sequences_layouts():
    w = S.windows(["ab", "c"], 3)
    assert w["context"].tolist() == [[0, 0, 0], [0, 0, 1], [0, 1, 2], [0, 0, 0], [0, 0, 3]]
    assert w["next"].tolist() == [1, 2, 0, 3, 0]
    s = S.sequences(["ab"])
    assert s["inputs"].tolist() == [[0, 1, 2] + [0] * 11]
    assert s["targets"].tolist() == [[1, 2, 0] + [S.PAD] * 11]
    spec = {"inputs": (("B", 14), "int64"), "targets": (("B", 14), "int64")}
    data = S.surnames(spec)
    assert data.train["inputs"].shape == (71039, 14) and data.target == "targets" and data.pad == 27
    data = S.surnames({"context": (("B", 5), "int64"), "next": (("B",), "int64")})
    assert data.train["context"].shape == (556728, 5) and data.test["next"].shape == (69235,)
    with pytest.raises(DataError, match=r"neither windows .* nor sequences"):
        S.layout({"x": (("B", 64), "float64"), "y": (("B",), "int64"), "z": (("B",), "int64")})


def test_windows_model_trains_below_the_bigram_and_samples(tmp_path, capsys):
    model = write(tmp_path, WINDOWS)
    out = tmp_path / "run"
    assert main(["train", model, "--data", "surnames", "--epochs", "1", "--batch-size", "256",
                 "--lr", "3e-3", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    nll = float(re.search(r"test_nll (\d\.\d+) nats per token", text).group(1))
    assert nll < 2.45  # the bigram baseline is 2.565
    assert main(["eval", model, "--checkpoint", str(out / "checkpoint.npz"), "--data", "surnames"]) == 0
    assert f"nll {nll:.4f} nats per token" in capsys.readouterr().out
    args = ["sample", model, "--checkpoint", str(out / "checkpoint.npz"), "-n", "20", "--seed", "4"]
    assert main(args) == 0
    names = capsys.readouterr().out.splitlines()
    assert len(names) == 20 and all(re.fullmatch(r"[a-z]{1,13}", n) for n in names)
    assert main(args) == 0 and capsys.readouterr().out.splitlines() == names
    assert main(args[:-1] + ["5"]) == 0 and capsys.readouterr().out.splitlines() != names


class Bigram:
    """A stand-in character model: log bigram probabilities, read off the last fed id (windows) or
    at every position (sequences, with a PAD column), without the model language."""

    def __init__(self, kind, seed=0):
        self.table = np.log(np.random.default_rng(seed).dirichlet(np.ones(27) * 0.3, size=27))
        shape = ("B", 2) if kind == "windows" else ("B", 14)
        second = "next" if kind == "windows" else "targets"
        self.inputs_spec = {"context" if kind == "windows" else "inputs": (shape, "int64"),
                            second: (("B",) if kind == "windows" else shape, "int64")}
        self.kind = kind
        self.module = type("M", (), {"OUTPUTS": {"logits": ("B", 27) if kind == "windows"
                                                 else ("B", 14, 28)}})

    def forward(self, params, **inputs):
        if self.kind == "windows":
            return {"logits": self.table[inputs["context"][:, -1]]}
        z = self.table[inputs["inputs"]]
        return {"logits": np.concatenate([z, np.full(z.shape[:2] + (1,), 50.0)], axis=2)}


def test_sampling_feeds_windows_and_sequences_alike():
    """The same bigram behind both layouts gives the same names for a seed (the PAD column, however
    likely, is never sampled); a cold temperature follows the most likely chain."""
    a = S.sample(Bigram("windows"), {}, 30, 1.0, seed=2)
    b = S.sample(Bigram("sequences"), {}, 30, 1.0, seed=2)
    assert a == b and len(a) == 30 and len(set(a)) > 20
    assert all(re.fullmatch(r"[a-z]{0,13}", n) for n in a)
    table, ids = Bigram("windows").table, [0]
    while len(ids) < S.MAX_LEN and (ids[-1] != 0 or len(ids) == 1):
        ids.append(int(np.argmax(table[ids[-1]])))
    greedy = "".join(S.VOCAB[i] for i in ids[1:]).split(".")[0]
    assert S.sample(Bigram("sequences"), {}, 3, 1e-3, seed=0) == [greedy] * 3


# ---- binding by name, regression ---------------------------------------------------------------

def test_binding_by_name_by_shape_and_the_error_listing_both_sides(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((40, 3)), np.arange(40) % 2
    data = Dataset("tiny", x[:30], y[:30], x[30:], y[30:], 2)
    other = write(tmp_path, 'f = Input("f", ("B", 3))\nc = Labels("c", ("B",), classes=2)\n'
                            'z = linear(f, 2, name="o")\nloss = softmax_cross_entropy(z, c)\n'
                            'outputs = {"z": z}\n')
    binding = bind(runtime.load(other), data)
    assert binding.inputs == (("f", "x"), ("c", "y")) and binding.logits == "z"
    two = write(tmp_path, 'u = Input("u", ("B", 3))\nv = Input("v", ("B", 3))\n'
                          'loss = sum(u * v)\n', "two.py")
    with pytest.raises(DataError) as e:
        bind(runtime.load(two), data)
    assert str(e.value) == (
        "the arrays do not match the model's inputs: the data set tiny supplies x (N, 3) float64, "
        "y (N,) int64 (target 'y'); the model's inputs are u (B, 3) float64, v (B, 3) float64. Name "
        "the model's inputs after the data set's arrays (or the .npz arrays after the model's inputs)")


def test_regression_trains_from_an_npz_with_float_targets(tmp_path, capsys):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 3))
    t = x @ np.array([[1.5], [-2.0], [0.5]]) + 0.3 + 0.1 * rng.standard_normal((300, 1))
    np.savez(tmp_path / "r.npz", x=x, t=t)
    model, out = write(tmp_path, REGRESSION), tmp_path / "run"
    assert main(["train", model, "--data", str(tmp_path / "r.npz"), "--epochs", "60", "--lr", "0.05",
                 "--batch-size", "32", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    mse = float(re.search(r"test_mse (\d\.\d+) \(mean squared error\)", text).group(1))
    assert 0.005 < mse < 0.02  # the noise variance is 0.01
    assert main(["eval", model, "--checkpoint", str(out / "checkpoint.npz"),
                 "--data", str(tmp_path / "r.npz")]) == 0
    assert f"mse {mse:.4f}" in capsys.readouterr().out
    state = ckpt.load(str(out / "checkpoint.npz"))
    np.testing.assert_allclose(state.params["fit.W"][:, 0], [1.5, -2.0, 0.5], atol=0.05)
    np.savez(tmp_path / "new.npz", x=x[:5])  # no targets: the checkpoint knows 't' is one
    assert main(["predict", model, "--checkpoint", str(out / "checkpoint.npz"),
                 "--input", str(tmp_path / "new.npz")]) == 0
    with np.load(tmp_path / "new.pred.npz") as f:
        np.testing.assert_allclose(f["pred"], x[:5] @ state.params["fit.W"] + state.params["fit.b"])


# ---- standardisation travels in the checkpoint ---------------------------------------------------

def raw_digits():
    from sklearn.datasets import load_digits
    d = load_digits()
    return stratified_split(d.data.astype(np.float64), d.target.astype(np.int64))


def test_predict_and_eval_on_raw_inputs_use_the_checkpoint_statistics(tmp_path, capsys):
    model_file, out = os.path.join(EXAMPLES, "digits_mlp.py"), tmp_path / "run"
    model, data = runtime.load(model_file), digits()
    result = train(model, data, TrainConfig(epochs=5, out=str(out), **QUIET))
    state = ckpt.load(str(out / "checkpoint.npz"), model)
    assert state.meta["preprocess"]["x"] == data.preprocess["x"]
    assert len(state.meta["preprocess"]["x"]["mean"]) == 64
    reference = evaluate(model, result.params, data.x_test, data.y_test, bind(model, data))
    x_tr, x_te, y_tr, y_te = raw_digits()
    np.testing.assert_array_equal(y_te, data.y_test)
    np.savez(tmp_path / "raw.npz", x=x_te)
    assert main(["predict", model_file, "--checkpoint", str(out / "checkpoint.npz"),
                 "--input", str(tmp_path / "raw.npz")]) == 0
    assert "standardised x with the checkpoint's statistics" in capsys.readouterr().out
    with np.load(tmp_path / "raw.pred.npz") as f:
        np.testing.assert_array_equal(f["logits_argmax"], reference["pred"])
        np.testing.assert_allclose(f["logits"], model.forward(result.params, x=data.x_test)["logits"],
                                   rtol=1e-10, atol=1e-10)
    np.savez(tmp_path / "raw_split.npz", x=x_tr, y=y_tr, x_test=x_te, y_test=y_te)
    assert main(["eval", model_file, "--checkpoint", str(out / "checkpoint.npz"),
                 "--data", str(tmp_path / "raw_split.npz")]) == 0
    assert f"accuracy {reference['acc']:.4f}" in capsys.readouterr().out
    assert reference["acc"] > 0.9


SEQUENCE_BIGRAM = """# a bigram on the padded-sequence layout: one row of logits per previous id
inputs = Labels("inputs", ("B", 14), classes=27)
targets = Labels("targets", ("B", 14), classes=28)
W = Param("bigram.W", (27, 28), init="zeros")
logits = one_hot(inputs, 27) @ W
loss = softmax_cross_entropy(logits, targets, ignore=27)
outputs = {"logits": logits}
"""


def test_sequence_layout_trains_to_the_counted_bigram_and_samples(tmp_path, capsys):
    """Trained on padded sequences (PAD targets not counted), a bigram reaches the counted bigram's
    test NLL per token: the sequences, the padding and the per-token mean agree with the windows."""
    model, out = write(tmp_path, SEQUENCE_BIGRAM), tmp_path / "run"
    assert main(["train", model, "--data", "surnames", "--epochs", "3", "--batch-size", "64",
                 "--lr", "1e-2", "--out", str(out), "--quiet"]) == 0
    nll = float(re.search(r"test_nll (\d\.\d+) nats", capsys.readouterr().out).group(1))
    assert nll == pytest.approx(S.bigram_nll(1.0), abs=0.005)
    assert main(["sample", model, "--checkpoint", str(out / "checkpoint.npz"), "-n", "7"]) == 0
    names = capsys.readouterr().out.splitlines()
    assert len(names) == 7 and all(re.fullmatch(r"[a-z]{1,13}", n) for n in names)


def test_regression_from_a_csv_and_a_sweep_that_reports_mse(tmp_path, capsys):
    """A model whose inputs are all float reads the CSV's last column as its regression target."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((200, 3))
    t = x @ np.array([1.5, -2.0, 0.5]) + 0.3 + 0.1 * rng.standard_normal(200)
    np.savetxt(tmp_path / "r.csv", np.column_stack([x, t]), delimiter=",", header="a,b,c,target",
               comments="")
    model = write(tmp_path, REGRESSION)
    assert main(["sweep", model, "--data", str(tmp_path / "r.csv"), "--grid", "lr=0.05,0.1",
                 "--seeds", "0", "--epochs", "40", "--batch-size", "32", "--out", str(tmp_path / "s")]) == 0
    with open(tmp_path / "s" / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["lr"]) for r in rows] == [0.05, 0.1]
    assert all(0.004 < float(r["test_mse"]) < 0.03 for r in rows), rows  # noise variance 0.01
    assert "test_acc" not in rows[0]
