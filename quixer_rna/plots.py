"""Training curves as a PNG (matplotlib's Agg backend: no display needed on a GPU box)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .runio import atomic_open


def plot_training_curves(
    history: Sequence[dict], path: str | Path, unigram_perplexity: float | None = None, title: str = ""
) -> None:
    """Loss and perplexity per epoch, train and val, with the unigram perplexity as the bar to clear."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_ppl) = plt.subplots(1, 2, figsize=(10, 4))
    for split, style in (("train", "-o"), ("val", "-s")):
        ax_loss.plot(epochs, [row[f"{split}_loss"] for row in history], style, label=split, markersize=3)
        ax_ppl.plot(epochs, [row[f"{split}_perplexity"] for row in history], style, label=split, markersize=3)
    if unigram_perplexity is not None:
        ax_ppl.axhline(unigram_perplexity, color="grey", linestyle="--", label="unigram (test)")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy (nats)", title="loss")
    ax_ppl.set(xlabel="epoch", ylabel="perplexity", title="perplexity")
    for ax in (ax_loss, ax_ppl):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)
