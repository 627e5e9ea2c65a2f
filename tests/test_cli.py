"""The command line end to end: train, eval, predict, compile, check."""
import os

import numpy as np

from symgrad.cli import main
from helpers import EXAMPLES

DIGITS = os.path.join(EXAMPLES, "digits_mlp.py")


def test_train_eval_predict(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", DIGITS, "--epochs", "3", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "test_acc 0." in text and "epoch 3/3" in text
    assert {"checkpoint.npz", "metrics.jsonl", "curves.png"} <= set(os.listdir(out))

    assert main(["eval", DIGITS, "--checkpoint", str(out / "checkpoint.npz")]) == 0
    text = capsys.readouterr().out
    assert "accuracy 0." in text and "confusion matrix" in text

    np.savez(tmp_path / "batch.npz", x=np.zeros((5, 64)))
    assert main(["predict", DIGITS, "--checkpoint", str(out / "checkpoint.npz"),
                 "--input", str(tmp_path / "batch.npz")]) == 0
    with np.load(tmp_path / "batch.pred.npz") as f:
        assert f["logits"].shape == (5, 10) and f["logits_argmax"].shape == (5,)


def test_compile_and_check(tmp_path, capsys):
    target = tmp_path / "chain.py"
    assert main(["compile", os.path.join(EXAMPLES, "chain_rule.py"), "-o", str(target)]) == 0
    assert target.read_text().startswith('"""chain_rule')
    assert main(["check", os.path.join(EXAMPLES, "chain_rule.py"), "-o", str(tmp_path / "c.py")]) == 0
    assert "max relative error" in capsys.readouterr().out


def test_check_fails_on_a_wrong_gradient(tmp_path, capsys, monkeypatch):
    """`check` must be able to fail: corrupt one VJP rule and it reports the mismatch."""
    from compiler import ops as P
    original = P.REGISTRY[P.sigmoid]
    monkeypatch.setitem(P.REGISTRY, P.sigmoid, original.__class__(
        **{**original.__dict__, "vjp": lambda node, g, shape: (g * node,)}))
    code = main(["check", os.path.join(EXAMPLES, "neuron.py"), "-o", str(tmp_path / "n.py")])
    assert code == 1 and "MISMATCH" in capsys.readouterr().out


def test_resume_with_a_foreign_checkpoint_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", DIGITS, "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    code = main(["train", os.path.join(EXAMPLES, "mnist1d_mlp.py"), "--data", "mnist1d",
                 "--out", str(out), "--resume", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "does not fit this model" in err
    assert "parameter hidden1.W missing from the checkpoint" in err
    assert "parameter out.W: checkpoint (128, 10), model (100, 10)" in err


def test_bench_quick_runs_the_suite(capsys):
    assert main(["bench", "--quick", "--models", "tiny_sigmoid"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("| model | dtype |"))
    row = next(line for line in out.splitlines() if line.startswith("| tiny_sigmoid | float64 |"))
    cells = dict(zip([c.strip() for c in header.split("|")], row.split("|")))
    generated, hand = cells["generated"], cells["hand"]
    assert "×" in generated and "(1.00×)" in hand  # measured and expressed as ratios to hand-written
