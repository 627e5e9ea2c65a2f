"""Loss and accuracy curves as a PNG (matplotlib, no screen needed)."""
from __future__ import annotations


def plot_history(history: list[dict], path: str, title: str = "") -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    has_acc = "test_acc" in history[0]
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(10 if has_acc else 5, 3.6),
                             squeeze=False)
    ax = axes[0][0]
    ax.plot(epochs, [r["train_loss"] for r in history], label="train")
    ax.plot(epochs, [r["test_loss"] for r in history], label="test")
    ax.set(xlabel="epoch", ylabel="loss", yscale="log", title=f"{title} loss".strip())
    ax.legend()
    if has_acc:
        ax = axes[0][1]
        ax.plot(epochs, [r["train_acc"] for r in history], label="train")
        ax.plot(epochs, [r["test_acc"] for r in history], label="test")
        ax.set(xlabel="epoch", ylabel="accuracy", title=f"{title} accuracy".strip())
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
