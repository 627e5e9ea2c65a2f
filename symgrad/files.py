"""Where the commands write: default output paths and atomic writes."""
from __future__ import annotations

import os


def default_out(model: str) -> str:
    return os.path.join("build", os.path.splitext(os.path.basename(model))[0] + ".py")


def write_atomic(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
