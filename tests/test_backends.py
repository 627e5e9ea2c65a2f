"""The same module for other array libraries (compile --backend torch|jax|cupy): every example's
loss and gradients equal the NumPy module's (itself checked against the eager oracle and central
differences elsewhere), under jax.jit too, and the runtime trains on each backend.

torch and JAX run here on the CPU; CuPy and CUDA tests run where there is a GPU and skip with
the reason otherwise (CI has none)."""
import ast
import glob
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

import compiler
import compiler.ops as P
import runtime
from compiler.emit.backends import BackendError, TORCH
from helpers import EXAMPLES, ROOT, check_model_text

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)   # float64 on JAX (each float64 module also turns it on)
import jax.numpy as jnp  # noqa: E402

NAMES = sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(EXAMPLES, "*.py"))
               if not p.endswith("figures.py"))
TOLERANCE = {"float64": 1e-12, "float32": 1e-5}   # of the largest gradient's norm (see agree)
CPU = {"torch": torch.as_tensor, "jax": jnp.asarray}


def gpu_reason(backend: str) -> str | None:
    """None where `backend` can run on a GPU here, else why not."""
    if backend == "torch":
        return None if torch.cuda.is_available() else "torch sees no CUDA GPU here"
    try:
        import cupy
        return None if cupy.cuda.runtime.getDeviceCount() else "no CUDA GPU"
    except Exception as e:  # ImportError, or a CUDA runtime error without a driver
        return f"CuPy unavailable: {type(e).__name__}: {e}"


def module_of(path: str, backend: str, dtype: str = "float64", functions=()):
    source = compiler.compile_model(path, dtype, functions=functions, backend=backend).source
    spec = importlib.util.spec_from_loader(f"gen_{backend}", loader=None)
    module = importlib.util.module_from_spec(spec)
    exec(compile(source, f"<{backend} module of {path}>", "exec"), module.__dict__)
    return module


def case(path: str, dtype: str, seed: int = 1):
    """The NumPy module, perturbed parameters (away from zero biases' symmetric point), a batch."""
    reference = runtime.load(path, dtype=dtype)
    rng = np.random.default_rng(seed)
    params = {k: (v + 0.05 * rng.standard_normal(np.shape(v))).astype(dtype) if k in reference.params_spec
              else v for k, v in reference.init_params(0).items()}
    return reference, params, runtime.random_inputs(reference, batch=3, seed=0)


def agree(got: dict, want: dict, tol: float, what: str) -> None:
    """Each array within `tol` of the largest reference array's norm: a gradient that is 0 in exact
    arithmetic (the key bias of attention) is rounding noise in both, and a relative error of
    noise is meaningless."""
    scale = max(max(np.linalg.norm(np.asarray(w, np.float64)) for w in want.values()), 1e-300)
    for k, w in want.items():
        g = np.asarray(runtime.devices.to_host(got[k]), np.float64)
        assert g.shape == np.shape(w), f"{what} {k}: shape {g.shape} != {np.shape(w)}"
        err = np.linalg.norm(g - w) / scale
        assert err <= tol, f"{what} {k}: {err:.2e} > {tol:g} (of the largest norm)"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("name", NAMES)
def test_every_example_equals_numpy(name, backend, dtype):
    path = os.path.join(EXAMPLES, f"{name}.py")
    reference, params, inputs = case(path, dtype)
    want_loss, want = reference.loss_and_grad(params, **inputs)[:2]
    module = module_of(path, backend, dtype)
    put = CPU[backend]
    args = ({k: put(v) for k, v in params.items()}, {k: put(v) for k, v in inputs.items()})
    calls = [("", module.loss_and_grad)] + [("jax.jit ", jax.jit(module.loss_and_grad))] * (backend == "jax")
    for label, fn in calls:
        loss, grads = fn(args[0], **args[1])[:2]
        assert abs(float(loss) - want_loss) <= TOLERANCE[dtype] * max(1.0, abs(want_loss)), label
        agree(grads, want, TOLERANCE[dtype], f"{label}{backend} {dtype} gradient")
        assert all(np.dtype(runtime.devices.to_host(g).dtype) == np.dtype(dtype) for g in grads.values())
    outputs = module.forward(args[0], **{k: v for k, v in args[1].items() if k in module.INPUTS})
    want_outputs = reference.forward(params, **{k: v for k, v in inputs.items() if k in reference.inputs_spec})
    agree(outputs, want_outputs, TOLERANCE[dtype], f"{backend} forward")


SECOND_ORDER = {"digits_mlp": ("hvp", "jvp", "input_grad"), "lenet_mnist5k": ("hvp", "input_grad"),
                "char_rnn": ("hvp", "jvp"), "tiny_gpt": ("hvp", "jvp"), "chain_rule": ("hessian",),
                "logistic_digits": ("hessian",)}


def second_order_agrees(name: str, backend: str, functions) -> None:
    """Each of `functions` (hvp, jvp, input_grad, hessian) of the backend's module, on host arrays,
    equals the NumPy module's."""
    path = os.path.join(EXAMPLES, f"{name}.py")
    reference = runtime.load(path, functions=functions)
    _, params, inputs = case(path, "float64")
    rng = np.random.default_rng(2)
    vectors = {k: rng.standard_normal(np.shape(params[k])) for k in reference.params_spec}
    model = runtime.Model(module_of(path, backend, functions=functions)).on_host()
    for fn in functions:
        args = (params, vectors) if fn in ("hvp", "jvp") else (params,)
        got, want = getattr(model, fn)(*args, **inputs), getattr(reference, fn)(*args, **inputs)
        for i, (g, w) in enumerate(zip(got, want)):
            g, w = (x if isinstance(x, dict) else {"value": x} for x in (g, w))
            agree(g, w, 1e-12, f"{backend} {fn} result {i}")


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("name", sorted(SECOND_ORDER))
def test_second_order_functions_equal_numpy(name, backend):
    second_order_agrees(name, backend, SECOND_ORDER[name])


CHECKED = sorted((r for r in P.REGISTRY.values() if r.check is not None and r.head is not P.keep_mask),
                 key=lambda r: getattr(r.head, "__name__", str(r.head)))


def op_agrees(tmp_path, rule, backend: str):
    """The registry op's check loss, its gradient and H·v on the backend equal NumPy's; returns the
    backend's model and the check's arrays for more."""
    check = rule.check
    path = tmp_path / "op.py"
    path.write_text("from compiler.dsl import *\nimport compiler.ops as P\n" + check_model_text(check))
    reference = runtime.load(str(path), functions=("hvp",))
    model = runtime.Model(module_of(str(path), backend, functions=("hvp",))).on_host()
    rng = np.random.default_rng(3)
    params = {name: rng.uniform(lo, hi, size=shape) for name, (shape, (lo, hi)) in check.params.items()}
    inputs = {name: rng.integers(0, classes, size=shape) for name, (shape, classes) in check.labels.items()}
    vectors = {k: rng.standard_normal(np.shape(v)) for k, v in params.items()}
    got, want = model.hvp(params, vectors, **inputs), reference.hvp(params, vectors, **inputs)
    assert abs(float(got[0]) - want[0]) <= 1e-12 * max(1.0, abs(want[0]))
    agree(got[1], want[1], 1e-12, "gradient")
    agree(got[2], want[2], 1e-11, "H·v")
    return model, want, params, inputs


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("rule", CHECKED, ids=lambda r: getattr(r.head, "__name__", str(r.head)))
def test_every_op_equals_numpy(tmp_path, rule, backend):
    """Each registry op's check loss, its gradient and H·v: ops no example uses (negative slice
    steps, erf, einsum, clip, ...) print their own forms for each library."""
    op_agrees(tmp_path, rule, backend)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_dropout_masks_are_their_own_and_the_gradient_follows_them(tmp_path, backend):
    """Each library draws dropout masks with its own generator (other masks than NumPy's, the same
    p); the gradient of sum(dropout(a) * b) is the mask times the other factor, exactly."""
    path = tmp_path / "drop.py"
    path.write_text("from compiler.dsl import *\na = Param('a', (40, 50))\nb = Param('b', (40, 50))\n"
                    "loss = sum(dropout(a, 0.25) * b)\n")
    module = module_of(str(path), backend)
    put = CPU[backend]
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 40, 50))
    seed = put(np.int64(7))
    loss, grads = module.loss_and_grad({"a": put(a), "b": put(b)}, seed=seed)
    mask = runtime.devices.to_host(grads["b"]) / a    # d/db of sum(m * a * b) is the mask times a
    assert np.allclose(mask[mask != 0], 1 / 0.75, rtol=1e-12) and 0.15 < np.mean(mask == 0) < 0.35
    numpy_mask = runtime.load(str(path)).loss_and_grad({"a": a, "b": b}, seed=np.int64(7))[1]["b"] / a
    assert np.mean((mask == 0) != (numpy_mask == 0)) > 0.1   # another generator, other masks
    np.testing.assert_allclose(runtime.devices.to_host(grads["a"]), np.round(mask, 12) * b, rtol=1e-12)
    assert abs(float(loss) - np.sum(mask * a * b)) <= 1e-10
    again = module.loss_and_grad({"a": put(a), "b": put(b)}, seed=seed)[0]
    assert float(again) == float(loss)   # reproducible per seed


def test_jax_checks_run_while_tracing_and_labels_when_concrete():
    module = module_of(os.path.join(EXAMPLES, "digits_mlp.py"), "jax")
    reference = runtime.load(os.path.join(EXAMPLES, "digits_mlp.py"))
    params = {k: jnp.asarray(v) for k, v in reference.init_params(0).items()}
    x = jnp.zeros((4, 64))
    step = jax.jit(module.loss_and_grad)
    with pytest.raises(module.InputError, match=r"input 'x' has shape \(4, 63\)"):
        step(params, x=jnp.zeros((4, 63)), y=jnp.zeros(4, jnp.int64))
    with pytest.raises(module.InputError, match=r"class indices in \[0, 10\)"):
        module.loss_and_grad(params, x=x, y=jnp.asarray([0, 1, 10, 2]))
    with pytest.raises(module.InputError, match="must be an array"):
        module.loss(dict(params, **{"hidden.W": [[0.0] * 128] * 64}), x=x, y=jnp.zeros(4, jnp.int64))
    numpy_loss = module.loss({k: np.asarray(v) for k, v in params.items()}, x=np.zeros((4, 64)),
                             y=np.zeros(4, np.int64))   # jnp takes NumPy arrays as they are
    assert float(numpy_loss) == float(module.loss(params, x=x, y=jnp.zeros(4, jnp.int64)))


def test_torch_module_needs_tensors_and_runs_without_a_tape():
    module = module_of(os.path.join(EXAMPLES, "digits_mlp.py"), "torch")
    reference = runtime.load(os.path.join(EXAMPLES, "digits_mlp.py"))
    params = {k: torch.as_tensor(v).requires_grad_() for k, v in reference.init_params(0).items()}
    x, y = torch.zeros((4, 64), dtype=torch.float64), torch.zeros(4, dtype=torch.int64)
    loss, grads = module.loss_and_grad(params, x=x, y=y)
    assert not loss.requires_grad and not any(g.requires_grad for g in grads.values())
    with pytest.raises(module.InputError, match="must be a torch.Tensor.*torch.from_numpy"):
        module.loss(params, x=np.zeros((4, 64)), y=y)
    with pytest.raises(module.InputError, match=r"dtype torch.float32 .* cast with .to\(torch.float64\)"):
        module.loss(params, x=x.float(), y=y)


@pytest.mark.parametrize("backend", ["torch", "jax", "cupy", "numba"])
def test_modules_import_only_their_library_and_are_deterministic(backend):
    path = os.path.join(EXAMPLES, "lenet_mnist5k.py")
    code = f"import compiler; print(compiler.compile_model({path!r}, backend={backend!r}).source)"
    texts = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": seed}).stdout
             for seed in ("0", "1")}
    assert len(texts) == 1
    imports = {alias.name for node in ast.parse(texts.pop()).body if isinstance(node, ast.Import)
               for alias in node.names}
    assert imports == {"torch": {"torch"}, "jax": {"jax", "jax.numpy"}, "cupy": {"cupy"},
                       "numba": {"numba", "numpy"}}[backend]


def test_a_numpy_name_a_backend_lacks_is_a_compile_error():
    with pytest.raises(BackendError, match=r"torch backend has no counterpart of np\.bincount"):
        TORCH.translate("np.bincount(ids, minlength=4)")
    assert TORCH.translate("np.concatenate([a, b], axis=0) + np.exp(c)") == \
        "torch.cat([a, b], axis=0) + torch.exp(c)"


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "jax", "numba"])
def test_training_on_a_backend_matches_numpy_and_checkpoints_move_between_them(tmp_path, backend):
    """Two epochs on the backend reach NumPy's numbers; one epoch there, resumed on NumPy, too."""
    from runtime.data import load_dataset
    from runtime.train import TrainConfig, train
    path = os.path.join(EXAMPLES, "digits_mlp.py")
    data = load_dataset("digits", seed=0)
    config = dict(epochs=2, batch_size=64, progress=False, plot=False)
    numpy_run = train(runtime.load(path), data, TrainConfig(out=str(tmp_path / "np"), **config), log=lambda *a: None)
    other = train(runtime.load(path, backend=backend, device="cpu"), data,
                  TrainConfig(out=str(tmp_path / backend), **config), log=lambda *a: None)
    assert isinstance(other.params["hidden.W"], np.ndarray)   # results come back to the host
    for k, v in numpy_run.params.items():
        np.testing.assert_allclose(other.params[k], v, rtol=1e-9, atol=1e-12)
    assert other.final["test_acc"] == numpy_run.final["test_acc"] > 0.7
    half = TrainConfig(out=str(tmp_path / "moved"), **{**config, "epochs": 1})
    train(runtime.load(path, backend=backend, device="cpu"), data, half, log=lambda *a: None)
    resumed = train(runtime.load(path), data, TrainConfig(out=str(tmp_path / "moved"), resume=True, **config),
                    log=lambda *a: None)
    for k, v in numpy_run.params.items():
        np.testing.assert_allclose(resumed.params[k], v, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("backend", ["cupy", "torch"])
@pytest.mark.parametrize("name", ["digits_mlp", "lenet_mnist5k", "tiny_gpt", "char_rnn"])
def test_on_a_gpu_equals_numpy(name, backend):
    reason = gpu_reason(backend)
    if reason:
        pytest.skip(reason)
    path = os.path.join(EXAMPLES, f"{name}.py")
    for dtype in ("float64", "float32"):
        reference, params, inputs = case(path, dtype)
        want_loss, want = reference.loss_and_grad(params, **inputs)[:2]
        model = runtime.load(path, dtype=dtype, backend=backend, device="cuda")
        loss, grads = model.on_host().loss_and_grad(params, **inputs)[:2]
        # float32 on a GPU: TF32 stays off (torch's default for matmul), so float32 rounding only
        assert abs(float(loss) - want_loss) <= TOLERANCE[dtype] * max(1.0, abs(want_loss))
        agree(grads, want, TOLERANCE[dtype], f"{backend} on the GPU, {dtype}")


def test_a_captured_step_replays_the_module_on_new_batches():
    """torch's CUDA graph of loss_and_grad: new inputs copied in, the same numbers as a plain call."""
    from runtime.capture import CaptureError, CapturedStep
    path = os.path.join(EXAMPLES, "digits_mlp.py")
    reference, params, inputs = case(path, "float64")
    with pytest.raises(CaptureError, match="needs a torch module on a CUDA GPU"):
        CapturedStep(runtime.load(path, backend="torch", device="cpu"), params, inputs)
    reason = gpu_reason("torch")
    if reason:
        pytest.skip(reason)
    model = runtime.load(path, backend="torch", device="cuda")
    step = CapturedStep(model, params, inputs)
    for seed in (1, 2):
        batch = runtime.random_inputs(reference, batch=3, seed=seed)
        loss, grads = step(**batch)[:2]
        want_loss, want = reference.loss_and_grad(params, **batch)[:2]
        assert abs(float(loss) - want_loss) <= 1e-12 * max(1.0, abs(want_loss))
        agree(grads, want, 1e-12, "captured step")
    with pytest.raises(ValueError, match="class indices"):
        step(y=np.array([0, 1, 10]))


def test_the_torch_module_traces_under_torch_compile():
    """torch.compile's tracer (dynamo) runs the module: the label check's read-back splits the graph,
    the numbers stay the NumPy module's ("eager": no C++ build in the test)."""
    path = os.path.join(EXAMPLES, "digits_mlp.py")
    reference, params, inputs = case(path, "float64")
    module = runtime.load(path, backend="torch", device="cpu").module   # imported from its file
    step = torch.compile(module.loss_and_grad, backend="eager")
    loss, grads = step({k: torch.as_tensor(v) for k, v in params.items()},
                       **{k: torch.as_tensor(v) for k, v in inputs.items()})
    want_loss, want = reference.loss_and_grad(params, **inputs)
    assert abs(float(loss) - want_loss) <= 1e-12 * max(1.0, abs(want_loss))
    agree(grads, want, 1e-12, "torch.compile")


def test_command_line_compiles_checks_and_trains_on_a_backend(tmp_path, capsys, monkeypatch):
    from symgrad.cli import main
    monkeypatch.chdir(tmp_path)
    path = os.path.join(EXAMPLES, "digits_mlp.py")
    for backend in ("torch", "numba"):
        assert main(["compile", path, "--backend", backend, "-o", "m.py"]) == 0
        assert f"{backend} backend" in capsys.readouterr().out
        assert f"import {backend}\n" in (tmp_path / "m.py").read_text()
    # the oracle's loss differenced against the JAX module's gradient, through NumPy arrays
    assert main(["check", path, "--backend", "jax", "--max-per-param", "3", "-o", "j.py"]) == 0
    assert "ok" in capsys.readouterr().out
    assert main(["train", path, "--backend", "jax", "--device", "cpu", "--epochs", "1", "--quiet",
                 "--out", "run"]) == 0
    assert "jax on cpu" in capsys.readouterr().out and (tmp_path / "run" / "checkpoint.npz").exists()
    assert main(["train", path, "--backend", "numba", "--epochs", "1", "--quiet", "--out", "nb"]) == 0
    assert "numba on cpu" in capsys.readouterr().out and (tmp_path / "nb" / "checkpoint.npz").exists()
    assert main(["train", path, "--backend", "torch", "--workers", "2", "--epochs", "1"]) == 2
    assert "Dask runs the numpy backend" in capsys.readouterr().err


def test_review_cases_constants_label_dtypes_and_device_arrays(tmp_path):
    """A product plus a constant (no addmm of a number), constants that are not literal numbers
    (√2) where torch needs tensors, labels of another integer dtype refused by the torch module,
    device arrays put again, and evaluation of a finished run's host parameters."""
    path = tmp_path / "consts.py"
    path.write_text("from compiler.dsl import *\nimport compiler.ops as P\nimport math\n"
                    "a = Param('a', (3, 4))\nb = Param('b', (4, 5))\n"
                    "h = a @ b + 1.5\nloss = sum(tanh(h)) + sum(maximum(sqrt(2), a))"
                    " + sum(where(a > 0, sqrt(2), 1) * a) + einsum('ij,->ij', a, sqrt(2))[0, 0]\n")
    reference = runtime.load(str(path))
    model = runtime.load(str(path), backend="torch", device="cpu").on_host()
    rng = np.random.default_rng(0)
    params = {"a": rng.standard_normal((3, 4)), "b": rng.standard_normal((4, 5))}
    got, want = model.loss_and_grad(params), reference.loss_and_grad(params)
    assert abs(float(got[0]) - want[0]) <= 1e-12 * max(1.0, abs(want[0]))
    agree(got[1], want[1], 1e-12, "constants")
    digits = runtime.load(os.path.join(EXAMPLES, "digits_mlp.py"), backend="torch", device="cpu")
    tparams = digits.device.put_all(digits.init_params(0))
    x = torch.zeros((4, 64), dtype=torch.float64)
    with pytest.raises(digits.module.InputError, match="must hold int64 integers, got torch.uint8"):
        digits.module.loss(tparams, x=x, y=torch.tensor([1, 3, 4, 9], dtype=torch.uint8))
    assert digits.device.put(tparams["out.b"]) is not None and digits.device.put(x).dtype == torch.float64
    from runtime.binding import bind
    from runtime.data import load_dataset
    from runtime.train import evaluate
    data = load_dataset("digits", seed=0)
    result = evaluate(digits, digits.init_params(0), data.test, binding=bind(digits, data))
    assert 0.0 <= result["acc"] <= 1.0


def test_the_jax_training_step_checks_labels_outside_the_trace():
    model = runtime.load(os.path.join(EXAMPLES, "digits_mlp.py"), backend="jax", device="cpu")
    params = model.device.put_all(model.init_params(0))
    with pytest.raises(model.module.InputError, match=r"class indices in \[0, 10\)"):
        model.step(params, x=jnp.zeros((3, 64)), y=jnp.asarray([0, 10, 1]))


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_show_grad_prints_a_slice_that_runs_on_the_backend(backend):
    from compiler import inspection
    path = os.path.join(EXAMPLES, "digits_mlp.py")
    reference, params, inputs = case(path, "float64")
    text = inspection.show_gradient(compiler.compile_model(path, backend=backend), "hidden.W")
    namespace = {}
    exec(compile(text, "<slice>", "exec"), namespace)
    put = CPU[backend]
    got = namespace["grad_hidden_W"]({k: put(v) for k, v in params.items()},
                                      **{k: put(v) for k, v in inputs.items()})
    want = reference.loss_and_grad(params, **inputs)[1]["hidden.W"]
    agree(got, {"hidden.W": want}, 1e-12, f"{backend} slice")   # the slice returns {name: gradient}


FOUND_BY_THE_FUZZER = [   # compositions the long fuzz run (HYPOTHESIS_PROFILE=long) found failing
    'p0 = Param("p0", (2, 2))\nloss = mean(sum(p0, axis=0, keepdims=True))\n',   # H·v: a constant (1, 2) array filling a (2, 2) result
]


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("text", FOUND_BY_THE_FUZZER)
def test_compositions_found_by_the_fuzzer_equal_numpy(tmp_path, text, backend):
    path = tmp_path / "model.py"
    path.write_text("from compiler.dsl import *\nimport compiler.ops as P\n" + text)
    reference = runtime.load(str(path), functions=("hvp",))
    model = runtime.load(str(path), functions=("hvp",), backend=backend, device="cpu").on_host()
    rng = np.random.default_rng(0)
    params = {k: rng.uniform(-1.5, 1.5, size=shape) for k, (shape, _, _) in reference.params_spec.items()}
    vectors = {k: rng.standard_normal(np.shape(v)) for k, v in params.items()}
    got, want = model.hvp(params, vectors), reference.hvp(params, vectors)
    assert abs(float(got[0]) - want[0]) <= 1e-12 * max(1.0, abs(want[0]))
    agree(got[1], want[1], 1e-12, "gradient")
    agree(got[2], want[2], 1e-11, "H·v")
