"""What the runtime says when the user's data, batch, run or files are wrong: one clear message that
names the place (file, line, column, array, step, parameter), exit 2 (3 for NaN), never a traceback."""
import os
import warnings

import numpy as np
import pytest

import compiler
import runtime
from symgrad.cli import main
from runtime import checkpoint as ckpt
from runtime.data import Dataset, DataError, from_csv, from_npz
from runtime.train import NonFiniteError, TrainConfig, train
from helpers import EXAMPLES, PRELUDE

TINY = """# a tiny classifier
x = Input("x", ("B", 3))
y = Labels("y", ("B",), classes=2)
h = relu(linear(x, 4, name="hidden"))
logits = linear(h, 2, name="out")
loss = softmax_cross_entropy(logits, y)
outputs = {"logits": logits}
"""
QUIET = dict(progress=False, plot=False)


def write_model(tmp_path, body=TINY, name="tiny.py"):
    path = tmp_path / name
    path.write_text(PRELUDE + body)
    return str(path)


def tiny_data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((n, 3)), np.arange(n) % 2
    return Dataset("tiny", x[:30], y[:30], x[30:], y[30:], 2)


def good_rows(n=20):
    return "".join(f"{i},{i * 2},{i % 2}\n" for i in range(n))


# ---- data files ------------------------------------------------------------------------------

@pytest.mark.parametrize("row, where, what", [
    ("3,,1", "column 2 ('b')", "is empty"),
    ("3,NA,1", "column 2 ('b')", "holds 'NA', not a number"),
    ("3,1", "column 3 ('label')", "is missing: this row has 2 fields, the first row has 3"),
    ("3,4,1,9", "column 4", "is extra"),
    ("3,4,cat", "column 3 ('label')", "holds the label 'cat'; labels must be class indices"),
    ("3,4,1.5", "column 3 ('label')", "holds the label '1.5'"),
    ("3,nan,1", "column 2 ('b')", "holds nan"),
    ("3,-inf,1", "column 2 ('b')", "holds -inf"),
])
def test_bad_csv_field_names_file_line_and_column(tmp_path, row, where, what):
    path = tmp_path / "d.csv"
    path.write_text("a,b,label\n" + good_rows(5) + "\n" + row + "\n" + good_rows(5))
    with pytest.raises(DataError) as e:
        from_csv(str(path))
    assert str(e.value).startswith(f"{path}:8: {where} {what}")  # header, 5 rows, a blank line


def test_bad_csv_exits_2_with_one_message(tmp_path, capsys):
    data = tmp_path / "d.csv"
    data.write_text("a,b,c,label\n1,2,3,0\n4,,6,1\n")
    code = main(["train", write_model(tmp_path), "--data", str(data), "--epochs", "1", "--quiet",
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err == f"error: {data}:3: column 2 ('b') is empty; fill in or drop rows with " \
                                "missing values\n"


def test_csv_without_header_and_a_clean_csv(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("1,NA,0\n" + good_rows())  # a missing value in the first row is not a header
    with pytest.raises(DataError, match=r"d.csv:1: column 2 holds 'NA'"):
        from_csv(str(path))
    path.write_text(good_rows())
    assert from_csv(str(path)).x_train.shape == (16, 2)


def test_non_finite_npz_is_refused_naming_array_and_index(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((50, 3)), np.repeat(np.arange(5), 10)
    x_test = x[:10].copy()
    x_test[4, 1] = np.inf
    x_test[7, 0] = np.nan
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y, x_test=x_test, y_test=y[:10])
    with pytest.raises(DataError, match=r"d.npz: array 'x_test' holds inf at row 4, column 1 "
                                        r"\(counting from 0; 2 non-finite in all\)"):
        from_npz(str(path))
    x[12, 2] = np.nan
    np.savez(path, x=x, y=y)
    with pytest.raises(DataError, match=r"array 'x' holds nan at row 12, column 2"):
        from_npz(str(path))
    np.savez(path, x=x[:, :2].copy() * 0, y=np.where(np.arange(50) == 3, 0.5, 1.0))
    with pytest.raises(DataError, match=r"labels 'y' must be non-negative integers; row 3"):
        from_npz(str(path))
    np.savez(path, x=np.zeros((5, 3)), y=np.zeros(4))
    with pytest.raises(DataError, match=r"'x' has 5 samples and 'y' 4 labels"):
        from_npz(str(path))


def test_non_finite_npz_exits_2(tmp_path, capsys):
    x, y = np.ones((40, 3)), np.arange(40) % 2
    x[5, 0] = np.nan
    np.savez(tmp_path / "d.npz", x=x, y=y)
    code = main(["train", write_model(tmp_path), "--data", str(tmp_path / "d.npz"), "--epochs", "1",
                 "--quiet", "--out", str(tmp_path / "run")])
    assert code == 2 and "array 'x' holds nan at row 5, column 0" in capsys.readouterr().err


def test_a_split_that_cannot_be_stratified_is_a_data_error(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(good_rows(10) + "1,2,2\n")  # class 2 has one sample
    with pytest.raises(DataError, match="cannot split into a stratified 80/20"):
        from_csv(str(path))


# ---- an empty batch -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits_model():
    return runtime.load(os.path.join(EXAMPLES, "digits_mlp.py"))


def test_empty_batch_is_an_input_error(digits_model):
    m, params = digits_model.module, digits_model.init_params(0)
    x, y = np.zeros((0, 64)), np.zeros(0, dtype=np.int64)
    for fn in (m.loss, m.loss_and_grad):
        with pytest.raises(m.InputError, match=rf"{fn.__name__}: input 'x' has B=0 on axis 0: "
                                               "the batch is empty; pass at least one sample"):
            fn(params, x=x, y=y)


def test_the_slow_check_finds_an_empty_batch_in_any_model():
    model = runtime.load(os.path.join(EXAMPLES, "neuron.py"))
    m = model.module
    with pytest.raises(m.InputError, match="the batch is empty"):
        m._validate("forward", model.init_params(0), {"x": np.zeros((0, 3))}, list(m.PARAMS), ["x"])


def test_empty_batch_without_labels_is_an_input_error():
    model = runtime.load(os.path.join(EXAMPLES, "neuron.py"))
    m, params = model.module, model.init_params(0)
    with np.errstate(all="ignore"), pytest.raises(m.InputError, match="the batch is empty"):
        m.loss_and_grad(params, x=np.zeros((0, 3)), t=np.zeros(0))
    with pytest.raises(m.InputError, match="the batch is empty"):
        m.forward(params, x=np.zeros((0, 3)))


# ---- NaN during training -----------------------------------------------------------------------

def test_nan_names_the_parameters_in_params_order(tmp_path):
    model = runtime.load(write_model(tmp_path))

    def stepper(params, idx, inputs):  # gradients handed back in reverse order, two of them bad
        grads = {k: np.zeros_like(params[k]) for k in reversed(list(model.params_spec))}
        grads["out.b"][1], grads["hidden.W"][2, 3] = np.nan, np.inf
        return np.float64(0.5), grads, {}
    with pytest.raises(NonFiniteError, match=r"^step 0 \(epoch 1, batch 1\): the gradients of parameters "
                                             r"'hidden.W', 'out.b' are not finite; no checkpoint"):
        train(model, tiny_data(), TrainConfig(epochs=1, out=str(tmp_path / "run"), **QUIET),
              stepper=stepper)


def test_nan_loss_with_finite_gradients_says_so(tmp_path):
    model = runtime.load(write_model(tmp_path))

    def stepper(params, idx, inputs):
        return np.float64(np.nan), {k: np.zeros_like(params[k]) for k in model.params_spec}, {}
    with pytest.raises(NonFiniteError, match=r"step 0 .*: the loss itself is nan \(every gradient is "
                                             r"finite\)"):
        train(model, tiny_data(), TrainConfig(epochs=1, out=str(tmp_path / "run"), **QUIET),
              stepper=stepper)


def test_a_real_infinite_gradient_is_traced_to_its_parameter(tmp_path, capsys):
    body = TINY + ('a = Param("a", (1,), init=1.0)\nc = Param("c", (1,), init=1e308)\n'
                   'loss = loss + sum(c * a * a)\n')  # finite loss; d/da = 2ca = inf
    x, y = np.random.default_rng(0).standard_normal((40, 3)), np.arange(40) % 2
    np.savez(tmp_path / "d.npz", x=x, y=y)
    with np.errstate(all="ignore"):
        code = main(["train", write_model(tmp_path, body), "--data", str(tmp_path / "d.npz"),
                     "--quiet", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 3 and "step 0 (epoch 1, batch 1): the gradient of parameter 'a' is not finite" in err


# ---- resume with fewer epochs ------------------------------------------------------------------

def test_resume_with_fewer_epochs_than_trained_is_refused(tmp_path, capsys):
    x, y = np.random.default_rng(0).standard_normal((40, 3)), np.arange(40) % 2
    np.savez(tmp_path / "d.npz", x=x, y=y)
    args = ["train", write_model(tmp_path), "--data", str(tmp_path / "d.npz"), "--quiet",
            "--out", str(tmp_path / "run")]
    assert main(args + ["--epochs", "3"]) == 0
    before = (tmp_path / "run" / "checkpoint.npz").read_bytes()
    capsys.readouterr()
    assert main(args + ["--epochs", "2", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "has already trained 3 epochs, more than --epochs 2" in err
    assert "pass a larger one (e.g. --epochs 5)" in err
    assert (tmp_path / "run" / "checkpoint.npz").read_bytes() == before
    assert main(args + ["--epochs", "4", "--resume"]) == 0
    assert "epoch 4/4" in capsys.readouterr().out


# ---- stale modules, from any folder ------------------------------------------------------------

def test_stale_module_is_found_from_another_folder(tmp_path, monkeypatch):
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    (project / "build").mkdir(parents=True)
    elsewhere.mkdir()
    model = project / "stale_probe.py"  # compiled to build/stale_probe.py: the same name
    model.write_text(PRELUDE + 'a = Param("a", ())\nloss = a * a\n')
    monkeypatch.chdir(project)
    (project / "build" / "stale_probe.py").write_text(compiler.compile_file("stale_probe.py"))
    monkeypatch.chdir(elsewhere)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # found: no warning, and not mistaken for its own model file
        runtime.load(str(project / "build" / "stale_probe.py"))
    model.write_text(PRELUDE + 'a = Param("a", ())\nloss = a * a * a\n')
    with pytest.raises(runtime.StaleModuleError, match="is stale"):
        runtime.load(str(project / "build" / "stale_probe.py"))


def test_missing_model_file_is_a_loud_warning(tmp_path, monkeypatch):
    from runtime.load import ModelFileMissingWarning
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lost_model.py").write_text(PRELUDE + 'a = Param("a", ())\nloss = a * a\n')
    source = compiler.compile_file("lost_model.py")
    (tmp_path / "lost_model.py").unlink()
    (tmp_path / "gen.py").write_text(source)
    with pytest.warns(ModelFileMissingWarning, match=r"gen.py was compiled from lost_model.py, which is "
                                                     r"not found .*cannot tell whether the module is stale"):
        runtime.load(str(tmp_path / "gen.py"))


# ---- checkpoints fit by their arrays, not the model file's hash ------------------------------

def test_editing_a_comment_keeps_checkpoints_usable(tmp_path):
    path = write_model(tmp_path)
    train(runtime.load(path), tiny_data(), TrainConfig(epochs=1, out=str(tmp_path / "run"), **QUIET))
    write_model(tmp_path, TINY.replace("# a tiny classifier", "# a tiny classifier, commented"))
    edited = runtime.load(path)
    result = train(edited, tiny_data(), TrainConfig(epochs=2, out=str(tmp_path / "run"), resume=True,
                                                    **QUIET), log=lambda *_: None)
    assert result.final["epoch"] == 2


def test_old_checkpoint_with_another_hash_loads_when_it_fits(tmp_path):
    model = runtime.load(write_model(tmp_path))
    path = str(tmp_path / "old.npz")
    ckpt.save(path, model.init_params(0), {"t": 0}, {"model_sha256": "0" * 64, "epoch": 1})
    assert ckpt.load(path, model).meta["epoch"] == 1


def test_unfit_checkpoint_says_what_changed(tmp_path):
    model = runtime.load(write_model(tmp_path))
    path = str(tmp_path / "c.npz")
    ckpt.save(path, model.init_params(0), {"t": 0}, {"model_sha256": model.sha256})
    wider = runtime.load(write_model(tmp_path, TINY.replace("linear(x, 4,", "linear(x, 5,")
                                     + 'extra = Param("extra", (2,))\nloss = loss + sum(extra * extra)\n',
                                     name="wider.py"))
    with pytest.raises(ckpt.CheckpointError) as e:
        ckpt.load(path, wider)
    assert str(e.value).splitlines() == [
        f"{path} does not fit this model:",
        "  parameter hidden.W: checkpoint (3, 4), model (3, 5)",
        "  parameter hidden.b: checkpoint (4,), model (5,)",
        "  parameter out.W: checkpoint (4, 2), model (5, 2)",
        "  parameter extra missing from the checkpoint",
        "train from scratch (without --resume), or pass a checkpoint written for this model"]
    single = runtime.load(write_model(tmp_path), dtype="float32")
    with pytest.raises(ckpt.CheckpointError, match=r"parameter hidden.W: checkpoint float64, model "
                                                   r"float32 \(pass --dtype float64\)"):
        ckpt.load(path, single)


def test_optimizer_slots_must_fit_or_start_afresh(tmp_path):
    model = runtime.load(write_model(tmp_path))
    run = tmp_path / "run"
    train(model, tiny_data(), TrainConfig(epochs=1, out=str(run), **QUIET))  # adam: slots m, v
    said = []
    train(model, tiny_data(), TrainConfig(epochs=2, out=str(run), resume=True, optimizer="momentum",
                                          **QUIET), log=said.append)
    assert any("was trained with adam: the momentum optimizer starts with fresh state" in s for s in said)
    state = ckpt.load(str(run / "checkpoint.npz"), model)
    bad = {"v": {**state.opt_state["v"], "hidden.W": np.zeros((2, 2))}, "t": 3}
    ckpt.save(str(run / "checkpoint.npz"), state.params, bad, state.meta)
    with pytest.raises(ckpt.CheckpointError, match=r"does not fit this run:\n  optimizer slot v: parameter "
                                                   r"hidden.W: checkpoint \(2, 2\), model \(3, 4\)"):
        train(model, tiny_data(), TrainConfig(epochs=3, out=str(run), resume=True, optimizer="momentum",
                                              **QUIET), log=lambda *_: None)


def test_a_crash_mid_run_leaves_the_checkpoint_whole(tmp_path):
    model = runtime.load(write_model(tmp_path))
    run = tmp_path / "run"
    train(model, tiny_data(), TrainConfig(epochs=1, out=str(run), **QUIET))
    before = (run / "checkpoint.npz").read_bytes()

    def crash(params, idx, inputs):
        raise MemoryError("simulated")
    with pytest.raises(MemoryError):
        train(model, tiny_data(), TrainConfig(epochs=2, out=str(run), resume=True, **QUIET),
              stepper=crash, log=lambda *_: None)
    assert (run / "checkpoint.npz").read_bytes() == before
