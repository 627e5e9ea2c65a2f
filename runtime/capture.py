"""One training step as one CUDA graph: a torch module's loss_and_grad captured once, then replayed
with a single launch per step (the step's kernels launched by the GPU, not one by one from Python).

A graph replays the same kernels on the same memory, so the step reads its parameters and inputs
from fixed buffers (`__call__` copies new values in) and returns its results in fixed buffers,
overwritten by the next replay; its temporaries come from the graph's own memory pool. The labels
of each batch are checked as they are copied in: a step being captured cannot read a number back
from the GPU, so the module skips that check while capturing.

CuPy (14) refuses cuBLAS calls during stream capture, so a CuPy module's matrix products cannot be
captured: `CapturedStep` says so for a CuPy module instead of failing inside CuPy."""
from __future__ import annotations

from .model import Model


class CaptureError(RuntimeError):
    """The step cannot be captured (not a torch module on a CUDA device)."""


class CapturedStep:
    def __init__(self, model: Model, params: dict, inputs: dict, warmup: int = 3):
        if model.backend != "torch" or not str(model.device.name).startswith("cuda"):
            why = ("CuPy cannot capture cuBLAS calls (its matrix products) in a CUDA graph"
                   if model.backend == "cupy" else f"this is the {model.backend} backend on "
                   f"{model.device.name}")
            raise CaptureError(f"a captured step needs a torch module on a CUDA GPU (compile "
                               f"--backend torch, load with device='cuda'); {why}")
        if model.needs_seed:
            raise CaptureError("a dropout model cannot be captured: its mask's seed is read on the host "
                               "at every step, and a captured step replays one fixed mask")
        import torch
        self.torch, self.model, self.classes = torch, model, model.label_classes
        self.params = {k: model.device.put(v).clone() for k, v in params.items()}
        self.inputs = {k: model.device.put(v).clone() for k, v in inputs.items()}
        step = model.module.loss_and_grad
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):   # warm-up off the default stream, as torch's graphs need
            for _ in range(warmup):
                step(self.params, **self.inputs)   # (the first call checks everything)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.result = step(self.params, **self.inputs)

    def __call__(self, params: dict | None = None, **inputs):
        """(loss, grads[, state]) of the step on `params` and `inputs` (host or device arrays; the
        ones left out keep their last values), queued on the current stream like any torch call.
        The arrays returned are the graph's own: read them before the next call."""
        for name, value in inputs.items():
            if name in self.classes:   # on the host when they come from there: no wait for the GPU
                ok = ((value >= 0) & (value < self.classes[name])).all()
                if not bool(ok):
                    raise ValueError(f"input {name!r} must be class indices in [0, {self.classes[name]})")
            self._copy(self.inputs, name, self.model.device.put(value))
        for name, value in (params or {}).items():
            self._copy(self.params, name, self.model.device.put(value))
        self.graph.replay()
        return self.result

    def _copy(self, buffers: dict, name: str, value) -> None:
        buffer = buffers[name]
        if tuple(value.shape) != tuple(buffer.shape):
            raise ValueError(f"{name!r} has shape {tuple(value.shape)}; the step was captured for "
                             f"{tuple(buffer.shape)} (capture another step for another batch size)")
        buffer.copy_(value)
