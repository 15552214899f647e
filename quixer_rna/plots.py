"""Training curves as a PNG (matplotlib's Agg backend: no display needed on a GPU box)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .runio import atomic_open


def plot_training_curves(
    history: Sequence[dict], path: str | Path, unigram_perplexity: float | None = None, title: str = ""
) -> None:
    """Loss and perplexity at every evaluation (x: optimiser steps; epoch ends marked by dotted lines), train
    and val, with the unigram perplexity as the bar to clear."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [row.get("step", row["epoch"]) for row in history]
    fig, (ax_loss, ax_ppl) = plt.subplots(1, 2, figsize=(10, 4))
    for split, style in (("train", "-o"), ("val", "-s")):
        ax_loss.plot(steps, [row[f"{split}_loss"] for row in history], style, label=split, markersize=3)
        ax_ppl.plot(steps, [row[f"{split}_perplexity"] for row in history], style, label=split, markersize=3)
    for row in history:
        if row.get("epoch_end"):
            for ax in (ax_loss, ax_ppl):
                ax.axvline(row["step"], color="lightgrey", linestyle=":", linewidth=0.8)
    if unigram_perplexity is not None:
        ax_ppl.axhline(unigram_perplexity, color="grey", linestyle="--", label="unigram (test)")
    ax_loss.set(xlabel="optimiser step (dotted: epoch ends)", ylabel="cross-entropy (nats)", title="loss")
    ax_ppl.set(xlabel="optimiser step (dotted: epoch ends)", ylabel="perplexity", title="perplexity")
    for ax in (ax_loss, ax_ppl):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)
