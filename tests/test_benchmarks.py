"""The benchmarks compare equal work: every hand-written and peer implementation computes the same
loss and gradients as the generated module (checked here; timing stays out of the tests)."""
import importlib.util

import numpy as np
import pytest

from benchmarks.handwritten import make_cnn_loss_and_grad, make_loss_and_grad
from benchmarks.specs import CNN_LAYERS, SPECS, layer_names
from benchmarks.worker import problem


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hand_written_matches_generated(name):
    spec = SPECS[name]
    model, params, x, y = problem(spec, "float64")
    loss, grads = model.module.loss_and_grad(params, x=x, y=y)
    hand = (make_cnn_loss_and_grad(CNN_LAYERS) if spec.kind == "cnn"
            else make_loss_and_grad(layer_names(spec), spec.activation))
    hloss, hgrads = hand(params, x, y)
    assert hloss == pytest.approx(float(loss), rel=1e-12)
    assert set(hgrads) == set(grads)
    for k in grads:
        np.testing.assert_allclose(hgrads[k], grads[k], rtol=1e-9, atol=1e-12)


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is an optional peer")
@pytest.mark.parametrize("name", ["digits_mlp", "mnist1d_cnn"])
def test_torch_peer_computes_the_same_loss(name):
    from benchmarks.peers import torch_cnn_step, torch_step
    spec = SPECS[name]
    model, params, x, y = problem(spec, "float64")
    step = (torch_cnn_step(params, x, y, CNN_LAYERS, "float64") if spec.kind == "cnn"
            else torch_step(params, x, y, layer_names(spec), spec.activation, "float64"))
    assert float(step()) == pytest.approx(float(model.loss(params, x=x, y=y)), rel=1e-10)


def test_best_and_paired_ratios():
    """Best median over the rounds; ratios to hand-written taken within each round."""
    from benchmarks.suite import best, paired_ratios
    runs = {("m", "float64", "generated"): [10.0, 20.0, None],
            ("m", "float64", "hand"): [10.0, 40.0, 30.0]}
    assert best(runs, "m", "float64", "generated") == 10.0
    assert paired_ratios(runs, "m", "float64", "generated") == [1.0, 0.5]  # round 3 failed
    assert best({("m", "float64", "jax"): [None]}, "m", "float64", "jax") is None


def test_hvp_benchmark_runs_and_checks_its_peers(capsys):
    """The hvp benchmark's table: every row measured (peers n/a where not installed; where they are,
    their H·v was checked against the generated one before timing, or the run would have raised)."""
    from benchmarks import hvp_bench
    hvp_bench.main(["--repeat", "2", "--threads", "2"])   # 2: no pinning of the test process
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| digits_mlp")
            or line.startswith("| mnist_mlp")]
    assert len(rows) == 6
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        grad, hvp = float(cells[3]), float(cells[4].split()[0])
        assert 0 < grad and 0 < hvp


def test_backend_benchmark_checks_its_peers_before_timing(capsys):
    """The backend table's rows: the generated JAX and torch steps and both peers were checked equal
    to the NumPy module (or the run would have stopped) and timed."""
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    from benchmarks import backend_bench
    backend_bench.cpu_table(repeat=3, models=("tiny_sigmoid",))
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| tiny_sigmoid")]
    assert len(rows) == 2
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert all(float(cells[i]) > 0 for i in (2, 3, 5, 6))
