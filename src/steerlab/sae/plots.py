"""Training-curve plot (PNG): loss/FVU, L0 and dead fraction against training tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


def plot_training(history: Sequence[dict[str, float]], path: Path, title: str = "") -> Path:
    """Write a three-panel training curve; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tokens = [h["tokens"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(tokens, [h["fvu"] for h in history], label="FVU")
    axes[0].plot(tokens, [h["loss"] for h in history], label="loss", alpha=0.6)
    axes[0].set_yscale("log")
    axes[0].legend()
    axes[0].set_title("reconstruction")
    axes[1].plot(tokens, [h["l0"] for h in history])
    axes[1].set_title("L0 (latents per token)")
    axes[2].plot(tokens, [h["dead_frac"] for h in history])
    axes[2].set_title("dead fraction")
    for ax in axes:
        ax.set_xlabel("training tokens")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
