"""Where a module's arrays live, and the two moves the runtime makes: host NumPy arrays onto the
backend's device (parameters once, each batch) and back (metrics, checkpoints). Checkpoints are
always host `.npz`, so a run trained on a GPU resumes on the CPU and the other way round.

The runtime imports a backend's library only when a module of that backend is loaded: the NumPy
path imports NumPy alone."""
from __future__ import annotations

import importlib

import numpy as np

BACKENDS = ("numpy", "cupy", "torch", "jax", "numba")
HOST = ("numpy", "numba")   # backends whose arrays are NumPy arrays on the CPU


class DeviceError(RuntimeError):
    """The backend's library or the requested device is not available here."""


class Device:
    """One backend on one device: `put` host arrays there, `host` them back."""

    def __init__(self, backend: str = "numpy", device: str | None = None):
        if backend not in BACKENDS:
            raise DeviceError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
        self.backend = backend
        self.lib = _library(backend)
        self.name = _device_name(backend, device, self.lib)

    def __repr__(self) -> str:
        return f"Device({self.backend!r}, {self.name!r})"

    def put(self, array):
        """A host array (or NumPy scalar, or this backend's array anywhere) as an array of this
        backend on this device."""
        if self.backend in HOST:
            return array
        if self.backend == "torch":
            if isinstance(array, self.lib.Tensor):
                return array.detach().to(self.name)
            return self.lib.as_tensor(np.asarray(to_host(array)), device=self.name)
        if self.backend == "jax":
            import jax
            array = array if isinstance(array, jax.Array) else np.asarray(to_host(array))
            return jax.device_put(array, jax.devices(self.name)[0])
        return self.lib.asarray(array)   # cupy: the current GPU (a CuPy array as it is)

    def put_all(self, arrays: dict) -> dict:
        """Every array of a dict, or of a dict of dicts (optimizer slots); counts stay ints."""
        return {k: self.put_all(v) if isinstance(v, dict) else v if isinstance(v, int)
                else self.put(v) for k, v in arrays.items()}

    def host_all(self, arrays: dict) -> dict:
        return {k: self.host_all(v) if isinstance(v, dict) else v if isinstance(v, int)
                else to_host(v) for k, v in arrays.items()}


def to_host(array) -> np.ndarray:
    """A NumPy array of an array of any backend (a NumPy array itself is returned as it is)."""
    if isinstance(array, (np.ndarray, np.generic)):
        return array
    module = type(array).__module__.split(".")[0]
    if module == "torch":
        return array.detach().cpu().numpy()
    if module == "cupy":
        return array.get()
    return np.asarray(array)


def zeros_like(array):
    """Zeros of `array`'s shape and dtype in its own library and on its device."""
    if isinstance(array, (np.ndarray, np.generic)):
        return np.zeros_like(array)
    return importlib.import_module(_namespace(array)).zeros_like(array)


def _namespace(array) -> str:
    root = type(array).__module__.split(".")[0]
    return {"jaxlib": "jax.numpy", "jax": "jax.numpy"}.get(root, root)


def _library(backend: str):
    name = {"numpy": "numpy", "cupy": "cupy", "torch": "torch", "jax": "jax.numpy", "numba": "numba"}[backend]
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise DeviceError(f"the {backend} backend needs {backend} installed ({e}); "
                          f"pip install {'torch==2.13.0' if backend == 'torch' else backend}") from e


def _device_name(backend: str, device: str | None, lib) -> str:
    if backend in HOST:
        if device not in (None, "cpu"):
            raise DeviceError(f"the {backend} backend runs on the CPU only, not {device!r}; "
                              "use --backend cupy, torch or jax for a GPU")
        return "cpu"
    if backend == "cupy":
        if device not in (None, "cuda", "gpu"):
            raise DeviceError(f"the cupy backend runs on a CUDA GPU, not {device!r}")
        return "cuda"
    if backend == "torch":
        device = device or ("cuda" if lib.cuda.is_available() else "cpu")
        if device.startswith("cuda") and not lib.cuda.is_available():
            raise DeviceError("torch sees no CUDA GPU here; use --device cpu")
        return device
    import jax
    device = {"cuda": "gpu", None: jax.default_backend()}.get(device, device)
    try:
        jax.devices(device)
    except RuntimeError as e:
        raise DeviceError(f"jax has no {device!r} device here ({e}); use --device cpu") from e
    return device


FUNCTIONS = ("forward", "loss", "loss_and_grad", "hvp", "jvp", "input_grad", "hessian")


class HostModule:
    """A module of another backend seen from the host: NumPy arrays in, NumPy arrays out, through
    `device`. What needs host arrays (gradient checks, scipy's minimisers) runs on any backend."""

    def __init__(self, module, device: Device):
        self._module, self._device = module, device

    BACKEND = "numpy"   # what it takes and returns

    def __getattr__(self, name):
        value = getattr(self._module, name)
        if name not in FUNCTIONS:
            return value
        device = self._device

        def on_host(params, *directions, **inputs):
            inputs = {k: v if k == "limit" else device.put(v) for k, v in inputs.items()}
            result = value(device.put_all(params), *(device.put_all(d) for d in directions), **inputs)
            return _to_host_tree(result)
        on_host.__name__ = name
        return on_host


def _to_host_tree(value):
    if isinstance(value, dict):
        return {k: _to_host_tree(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_to_host_tree(v) for v in value)
    return to_host(value)
