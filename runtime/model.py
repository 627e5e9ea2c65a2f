"""A loaded generated module, with parameter init as taught: zero biases, He/Xavier weights."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from .devices import HOST, Device, HostModule


def fans(shape: tuple) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight stored as (n_in, ..., n_out), as `x @ W` uses it."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], 1
    return math.prod(shape[:-1]), shape[-1]


def init_array(rule: str, shape: tuple, dtype, rng: np.random.Generator) -> np.ndarray:
    """One parameter's initial value from its rule (the generated module's PARAMS entry)."""
    fan_in, fan_out = fans(shape)
    if rule in ("zeros", "ones"):
        return (np.zeros if rule == "zeros" else np.ones)(shape, dtype=dtype)
    if m := re.fullmatch(r"constant\((.+)\)", rule):
        return np.full(shape, float(m.group(1)), dtype=dtype)
    if m := re.fullmatch(r"normal\((.+)\)", rule):
        std = float(m.group(1))
    elif rule == "he_normal":
        std = math.sqrt(2.0 / fan_in)
    elif rule in ("xavier_normal", "auto"):
        std = math.sqrt(2.0 / (fan_in + fan_out))
    else:
        raise ValueError(f"unknown init rule {rule!r}")
    return (rng.standard_normal(shape) * std).astype(dtype)


@dataclass
class Model:
    """What the runtime needs from a generated module, and nothing from the compiler. `device`:
    where the module's arrays live (its backend's, on the CPU or a GPU)."""
    module: ModuleType
    device: Device = None

    def __post_init__(self):
        if self.device is None:
            self.device = Device(self.backend)

    @property
    def backend(self) -> str:
        return getattr(self.module, "BACKEND", "numpy")

    def on_host(self) -> "Model":
        """The same model taking and returning NumPy arrays whatever its backend (each call moves
        its arrays to the device and back): for checks and scipy, not for training speed."""
        if self.backend in HOST:
            return self
        return Model(HostModule(self.module, self.device), Device("numpy"))

    @property
    def params_spec(self) -> dict:
        return self.module.PARAMS

    @property
    def inputs_spec(self) -> dict:
        return self.module.INPUTS

    @property
    def states_spec(self) -> dict:
        """Non-trainable arrays (running statistics) that travel in `params` beside the weights."""
        return getattr(self.module, "STATE", {})

    @property
    def needs_seed(self) -> bool:
        """The model uses dropout: each training step passes an integer `seed`."""
        return "seed" in self.inputs_spec

    @property
    def dtype(self) -> np.dtype:
        """The module's float dtype, as NumPy's (host arrays, data and checkpoints are made in it)."""
        try:
            return np.dtype(self.module.DTYPE)
        except TypeError:   # torch.float32
            return np.dtype(str(self.module.DTYPE).rsplit(".", 1)[-1])

    @property
    def sha256(self) -> str:
        return self.module.MODEL_SHA256

    @property
    def label_classes(self) -> dict:
        return self.module.LABEL_CLASSES

    def init_params(self, seed: int = 0) -> dict[str, np.ndarray]:
        """Biases 0, weights N(0, σ) with σ from fan-in (He) or fan-in + fan-out (Xavier); seeded."""
        rng = np.random.default_rng(seed)
        params = {name: init_array(rule, shape, self.dtype, rng)
                  for name, (shape, _, rule) in self.params_spec.items()}
        params.update({name: init_array(rule, shape, self.dtype, rng)
                       for name, (shape, _, rule) in self.states_spec.items()})
        return params

    def forward(self, params, **inputs):
        return self.module.forward(params, **inputs)

    def loss(self, params, **inputs):
        return self.module.loss(params, **inputs)

    def loss_and_grad(self, params, **inputs):
        return self.module.loss_and_grad(params, **inputs)

    def _extra(self, name: str):
        fn = getattr(self.module, name, None)
        if fn is None:
            raise AttributeError(f"{self.module.__name__} has no {name}(): compile the model with "
                                 f"`symgrad compile MODEL --with {name}` (or runtime.load(path, "
                                 f"functions=({name!r},)))")
        return fn

    def hvp(self, params, vectors, **inputs):
        """(loss, grads, H·v): the Hessian of the loss times `vectors` (a dict like params)."""
        return self._extra("hvp")(params, vectors, **inputs)

    def jvp(self, params, tangents, **inputs):
        """(outputs, output tangents): forward mode along `tangents` (a dict like params)."""
        return self._extra("jvp")(params, tangents, **inputs)

    def input_grad(self, params, **inputs):
        """(loss, {input name: gradient of the loss})."""
        return self._extra("input_grad")(params, **inputs)

    def hessian(self, params, **inputs):
        """(loss, grads, H): the dense (P, P) Hessian, parameters flattened in PARAMS order."""
        return self._extra("hessian")(params, **inputs)

    def workspace(self):
        """A Workspace for `step`, or None when the module keeps nothing between calls (its products
        are too small to be worth it, so its loss_and_grad takes no `workspace=`)."""
        make = getattr(self.module, "Workspace", None)
        return make() if make is not None else None

    def step(self, params, workspace=None, **inputs):
        """(loss, grads, new_state): the state dict is empty for models without running statistics.
        With a `workspace` (see `workspace()`) large gradients are written into its arrays, valid
        until the next step with it."""
        if workspace is not None:
            inputs["workspace"] = workspace
        if self.backend == "jax":   # the whole step compiled by XLA (retraced once per batch shape)
            for name, classes in self.label_classes.items():   # values a trace cannot see
                if name in inputs:
                    self.module._check_labels("loss_and_grad", name, inputs[name], classes)
            if not hasattr(self, "_jitted"):
                import jax
                self._jitted = jax.jit(self.module.loss_and_grad)
            out = self._jitted(params, **inputs)
        else:
            out = self.module.loss_and_grad(params, **inputs)
        return out if len(out) == 3 else (out[0], out[1], {})
