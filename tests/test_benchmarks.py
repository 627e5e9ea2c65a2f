"""The benchmarks compare equal work on equal machines: every hand-written and peer implementation
computes the same loss and gradients as the generated module, and every worker runs on one CPU
with one thread (checked here; timing stays out of the tests)."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from benchmarks.handwritten import make_cnn_loss_and_grad, make_loss_and_grad
from benchmarks.specs import CNN_LAYERS, ROOT, SPECS, layer_names
from benchmarks.worker import problem


def assert_same_step(got, want, rel=1e-10):
    """Loss and each gradient equal to `rel` relative (gradients: in norm and entry by entry, the
    entries against the gradient's largest one)."""
    (loss, grads), (wloss, wgrads) = got, want
    assert float(loss) == pytest.approx(float(wloss), rel=rel)
    assert set(grads) == set(wgrads)
    for k, w in wgrads.items():
        g = np.asarray(grads[k])
        assert g.shape == w.shape, k
        scale = np.abs(w).max()
        assert np.linalg.norm(g - w) <= rel * np.linalg.norm(w), k
        np.testing.assert_allclose(g, w, rtol=rel, atol=rel * scale, err_msg=k)


def hand_step(spec):
    return (make_cnn_loss_and_grad(CNN_LAYERS) if spec.kind == "cnn"
            else make_loss_and_grad(layer_names(spec), spec.activation))


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hand_written_matches_generated(name):
    """Every MLP and the CNN, float64, to 1e-10 relative; again on a second call (its buffers are
    reused) and on another batch size (new buffers)."""
    spec = SPECS[name]
    model, params, x, y = problem(spec, "float64")
    hand = hand_step(spec)
    want = model.module.loss_and_grad(params, x=x, y=y)
    assert_same_step(hand(params, x, y), want)
    assert_same_step(hand(params, x, y), want)
    half = spec.batch // 2
    assert_same_step(hand(params, x[:half], y[:half]),
                     model.module.loss_and_grad(params, x=x[:half], y=y[:half]))


@pytest.mark.parametrize("name", ["digits_mlp", "mnist1d_cnn"])
def test_hand_written_float32_stays_float32(name):
    spec = SPECS[name]
    model, params, x, y = problem(spec, "float32")
    loss, grads = hand_step(spec)(params, x, y)
    assert all(g.dtype == np.float32 for g in grads.values())
    wloss, wgrads = model.module.loss_and_grad(params, x=x, y=y)
    assert float(loss) == pytest.approx(float(wloss), rel=1e-4)
    for k in wgrads:
        assert np.linalg.norm(grads[k] - wgrads[k]) <= 1e-4 * np.linalg.norm(wgrads[k]), k


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is an optional peer")
@pytest.mark.parametrize("name", ["digits_mlp", "mnist1d_cnn"])
def test_torch_peer_computes_the_same_loss(name):
    from benchmarks.peers import torch_cnn_step, torch_step
    spec = SPECS[name]
    model, params, x, y = problem(spec, "float64")
    step = (torch_cnn_step(params, x, y, CNN_LAYERS, "float64") if spec.kind == "cnn"
            else torch_step(params, x, y, layer_names(spec), spec.activation, "float64"))
    assert float(step()) == pytest.approx(float(model.loss(params, x=x, y=y)), rel=1e-10)


@pytest.mark.skipif(importlib.util.find_spec("pytensor") is None, reason="pytensor is an optional peer")
def test_pytensor_numba_peer_computes_the_same_step():
    from benchmarks.peers import pytensor_step
    spec = SPECS["tiny_sigmoid"]
    model, params, x, y = problem(spec, "float64")
    loss, *grads = pytensor_step(params, x, y, layer_names(spec), spec.activation, "float64")()
    assert_same_step((loss, dict(zip(params, grads))), model.module.loss_and_grad(params, x=x, y=y))


@pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="numba is optional")
def test_numba_column_times_the_numba_module():
    from benchmarks.worker import build
    spec = SPECS["tiny_sigmoid"]
    model, params, x, y = problem(spec, "float64")
    step = build("numba", spec, "float64")
    assert_same_step(step(), model.module.loss_and_grad(params, x=x, y=y))


def test_worker_runs_on_one_cpu_with_one_thread():
    """What the worker reports: pinned to the CPU asked, every thread pool at one thread."""
    cpu = max(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    cmd = [sys.executable, "-m", "benchmarks.worker", "hand", "tiny_sigmoid", "float64", "--samples", "1"]
    out = subprocess.run(cmd + ([] if cpu is None else ["--cpu", str(cpu)]), cwd=ROOT, capture_output=True,
                         text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["us"] > 0
    threads = res["threads"]
    if cpu is not None:
        assert threads["cpus"] == [cpu]
    if threads["pools"] is not None:
        assert threads["pools"] and set(threads["pools"].values()) == {1}


def test_first_call_runs_cold_then_cached(tmp_path):
    """Cold and cached rows come from two fresh processes sharing one cache folder (the NumPy
    backend here: the numba one is the same path, with seconds of compiling)."""
    from benchmarks.suite import first_calls
    rows = first_calls(["tiny_sigmoid"], None, lambda msg: None, backends=("numpy",))
    assert [r["state"] for r in rows] == ["cold", "cached"]
    for r in rows:
        assert "error" not in r, r
        assert r["load_s"] > 0 and r["first_call_s"] > 0 and r["warm_us"] > 0


def test_best_and_paired_ratios():
    """Best median over the rounds; ratios to hand-written taken within each round."""
    from benchmarks.suite import best, paired_ratios
    runs = {("m", "float64", "generated"): [10.0, 20.0, None],
            ("m", "float64", "hand"): [10.0, 40.0, 30.0]}
    assert best(runs, "m", "float64", "generated") == 10.0
    assert paired_ratios(runs, "m", "float64", "generated") == [1.0, 0.5]  # round 3 failed
    assert best({("m", "float64", "jax"): [None]}, "m", "float64", "jax") is None


def test_busy_machine_is_named_not_hidden():
    """Rounds that disagree by more than 25 % are named in a warning and marked in the table, as
    is every ratio of a row whose hand-written rounds disagree."""
    from benchmarks.suite import busy_warning, table, unsteady
    runs = {("tiny_sigmoid", "float64", "hand"): [10.0, 10.5, 11.0],
            ("tiny_sigmoid", "float64", "generated"): [10.0, 14.0, 10.2],
            ("digits_mlp", "float64", "hand"): [50.0, 80.0],
            ("digits_mlp", "float64", "generated"): [60.0, 61.0]}
    flagged = unsteady(runs)
    assert set(flagged) == {("tiny_sigmoid", "float64", "generated"), ("digits_mlp", "float64", "hand")}
    assert "tiny_sigmoid float64 generated (1.40×)" in busy_warning(flagged)
    assert busy_warning(unsteady({("m", "float64", "hand"): [10.0, 12.0]})) is None
    run = {"runs": runs, "reports": {}, "models": ["tiny_sigmoid", "digits_mlp"], "dtypes": ["float64"],
           "impls": ["generated", "hand"]}
    rows = {}
    for line in table(run):  # the main table comes first; the per-round ratios follow
        if line.startswith("| "):
            rows.setdefault(line.split("|")[1].strip(), line)
    assert rows["tiny_sigmoid"].split("|")[3].strip().endswith("†")      # generated, unsteady
    assert not rows["tiny_sigmoid"].split("|")[4].strip().endswith("†")  # hand, steady
    assert all(c.strip().endswith("†") for c in rows["digits_mlp"].split("|")[3:5])


def test_thread_problems_are_reported():
    from benchmarks.suite import thread_problems
    ok = {"cpus": [1], "pools": {"openblas (libopenblas.so)": 1}, "torch": 1}
    assert thread_problems({("m", "float64", "torch"): [{"threads": ok}]}) == []
    bad = {"cpus": [0, 1], "pools": {"openblas (libopenblas.so)": 2}}
    assert thread_problems({("m", "float64", "hand"): [{"threads": ok}, {"threads": bad}]}) == [
        "m float64 hand: cpus [0, 1], {'openblas (libopenblas.so)': 2}"]


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
