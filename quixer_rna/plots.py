"""Figures as PNG files (matplotlib's Agg backend: no display needed on a GPU box), saved atomically; and the
training curves every trainer draws."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .runio import atomic_open


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, dpi: int = 120) -> None:
    """Lay out, write atomically as PNG and close a figure."""
    fig.tight_layout()
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=dpi)
    pyplot().close(fig)


def plot_training_curves(
    history: Sequence[dict], path: str | Path, unigram_perplexity: float | None = None, title: str = ""
) -> None:
    """Loss and perplexity at every evaluation (x: optimiser steps; epoch ends marked by dotted lines), train
    and val, with the unigram perplexity as the bar to clear."""
    plt = pyplot()
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
    save_figure(fig, path, dpi=110)
