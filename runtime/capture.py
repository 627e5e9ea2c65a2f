"""One training step as one CUDA graph: a CuPy module's loss_and_grad captured once, then replayed
with a single launch per step (the step's ~100 kernels launched by the GPU, not by Python).

A graph replays the same kernels on the same memory, so the step reads its parameters and inputs
from fixed buffers (`__call__` copies new values in) and returns its results in fixed buffers,
overwritten by the next replay. Its temporaries come from a memory pool of its own, never handed
to other arrays. The labels of each batch are checked on the host as they are copied in: a
captured step cannot read a number back from the GPU."""
from __future__ import annotations

import numpy as np

from .model import Model


class CaptureError(RuntimeError):
    """The step cannot be captured here (not a CuPy module, or no GPU)."""


class CapturedStep:
    def __init__(self, model: Model, params: dict, inputs: dict):
        if model.backend != "cupy":
            raise CaptureError(f"a captured step needs a CuPy module (compile --backend cupy); this one "
                               f"is {model.backend}'s")
        import cupy as cp
        self.cp, self.model = cp, model
        self.classes = model.label_classes
        self.params = {k: cp.array(v, copy=True) for k, v in params.items()}
        self.inputs = {k: cp.array(v, copy=True) for k, v in inputs.items()}
        self.pool = cp.cuda.MemoryPool()
        self.stream = cp.cuda.Stream(non_blocking=True)
        with cp.cuda.using_allocator(self.pool.malloc), self.stream:
            model.module.loss_and_grad(self.params, **self.inputs)   # checks, warm-up (kernels compiled)
            self.stream.synchronize()
            self.stream.begin_capture()
            self.result = model.module.loss_and_grad(self.params, **self.inputs)
            self.graph = self.stream.end_capture()
        self.stream.synchronize()

    def __call__(self, params: dict | None = None, **inputs):
        """(loss, grads[, state]) of the step on `params` and `inputs` (host or device arrays; the
        ones left out keep their last values), queued on the current stream like any CuPy call.
        The arrays returned are the graph's own: read them before the next call."""
        for name, value in inputs.items():
            if name in self.classes:
                host = value.get() if isinstance(value, self.cp.ndarray) else np.asarray(value)
                if host.size and (host.min() < 0 or host.max() >= self.classes[name]):
                    raise ValueError(f"input {name!r} must be class indices in [0, {self.classes[name]})")
            self._copy(self.inputs, name, value)
        for name, value in (params or {}).items():
            self._copy(self.params, name, value)
        self.graph.launch(self.cp.cuda.get_current_stream())   # ordered after the copies, no wait
        return self.result

    def _copy(self, buffers: dict, name: str, value) -> None:
        buffer = buffers[name]
        if tuple(np.shape(value)) != buffer.shape:
            raise ValueError(f"{name!r} has shape {tuple(np.shape(value))}; the step was captured for "
                             f"{buffer.shape} (capture another step for another batch size)")
        if isinstance(value, self.cp.ndarray):
            buffer[...] = value
        else:
            buffer.set(np.asarray(value, dtype=buffer.dtype))
