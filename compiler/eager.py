"""The eager oracle: a model file evaluated directly on NumPy arrays, with no SymPy.

The same model-file functions run, but every primitive is computed by its rule's own `eager`
implementation instead of being traced: no scalar algebra, no canonical rewrites, no reverse mode,
no CSE, no printer. A generated module is checked against it — its `forward`/`loss` must equal the
oracle's values, and its gradients must equal central differences of the *oracle's* loss — so a
wrong forward cannot hide behind differences of itself.

    oracle = Oracle("examples/digits_mlp.py")
    oracle.loss(params, {"x": x, "y": y})        # training mode, as the module's loss()
    oracle.forward(params, {"x": x})             # inference mode, as the module's forward()
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .dsl import Tensor
from .dsl.recording import Eager, Recorder
from .trace import run_model


@dataclass
class EagerResult:
    loss: float | None
    outputs: dict           # name -> array
    state: dict             # state name -> new value (training mode)


class Oracle:
    """Evaluates one model file eagerly; its source is read and compiled to bytecode once."""

    def __init__(self, path: str, source: str | None = None):
        self.path = os.path.abspath(path)
        if source is None:
            with open(self.path, encoding="utf-8") as f:
                source = f.read()
        self.code = compile(source, self.path, "exec")

    def run(self, params: dict, inputs: dict, training: bool = True) -> EagerResult:
        eager = Eager(arrays={**params, **inputs}, training=training)
        rec = Recorder(path=self.path, eager=eager)
        with np.errstate(all="ignore"):  # inf and NaN are results here, compared as they are
            namespace = run_model(self.code, self.path, rec)
        loss = namespace.get("loss")
        outputs = namespace.get("outputs", {})
        return EagerResult(float(loss.expr) if isinstance(loss, Tensor) else None,
                           {k: np.asarray(v.expr) for k, v in outputs.items()}, dict(eager.state))

    def loss(self, params: dict, inputs: dict) -> float:
        """The training-mode loss (batch statistics, dropout on), as the module's `loss`."""
        return self.run(params, inputs, training=True).loss

    def forward(self, params: dict, inputs: dict) -> dict:
        """The inference-mode outputs (running statistics, dropout off), as the module's `forward`."""
        return self.run(params, inputs, training=False).outputs
