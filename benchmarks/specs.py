"""The benchmark models: one spec per model, shared by every implementation."""
from __future__ import annotations

import os
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


@dataclass(frozen=True)
class Spec:
    name: str
    model_file: str
    batch: int
    sizes: tuple          # layer widths, input first, classes last
    activation: str       # relu | tanh | sigmoid
    kind: str = "mlp"     # mlp | cnn


SPECS = {
    "digits_mlp": Spec("digits_mlp", os.path.join(ROOT, "examples", "digits_mlp.py"), 64,
                       (64, 128, 10), "relu"),
    "mnist_mlp": Spec("mnist_mlp", os.path.join(HERE, "models", "mnist_mlp.py"), 256,
                      (784, 512, 512, 10), "relu"),
    "deep_tanh": Spec("deep_tanh", os.path.join(ROOT, "examples", "deep_tanh.py"), 32,
                      (32,) * 17 + (10,), "tanh"),
    "tiny_sigmoid": Spec("tiny_sigmoid", os.path.join(HERE, "models", "tiny_sigmoid.py"), 8,
                         (4, 8, 3), "sigmoid"),
    "mnist1d_cnn": Spec("mnist1d_cnn", os.path.join(ROOT, "examples", "mnist1d_cnn.py"), 100,
                        (40, 10), "relu", kind="cnn"),
}

# the CNN's layers: (name, kernel, stride, padding) of each convolution, 25 channels, then "out"
CNN_LAYERS = [("conv1", 5, 2, 1), ("conv2", 3, 2, 1), ("conv3", 3, 2, 1)]


def layer_names(spec: Spec) -> list[str]:
    """The parameter names the model files use, in layer order."""
    if spec.name == "digits_mlp":
        return ["hidden", "out"]
    if spec.name == "mnist_mlp":
        return ["hidden1", "hidden2", "out"]
    if spec.kind == "cnn":
        return [name for name, *_ in CNN_LAYERS] + ["out"]
    if spec.name == "deep_tanh":
        return [f"layer{i + 1}" for i in range(16)] + ["out"]
    return ["hidden", "out"]
