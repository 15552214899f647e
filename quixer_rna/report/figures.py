"""The report's figures (matplotlib's Agg backend: no display needed on a GPU box): the gain of every model
over the unigram with its interval and one dot per seed, bits per nucleotide against the literature on the
raw k-mer track, and test cross-entropy against training k-mers for the data-scaling runs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from ..runio import atomic_open

# Published bits per nucleotide of human coding sequence (Loewenstern and Yianilos 1997): order-0 frequencies,
# conventional Markov models, and the best models of that study.
LITERATURE_BITS = (("order-0 frequencies", 1.95), ("Markov models", 1.92), ("best published (1.84-1.87)", 1.855))


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=120)
    _pyplot().close(fig)


def gain_figure(panels: Sequence[dict[str, Any]], path: Path) -> bool:
    """One panel per track: for each model, the mean gain over the unigram (nats) with its 95% interval, and
    one small dot per seed; zero (the unigram) drawn as a line. `panels`: {"title", "rows": [{"label",
    "gain", "low", "high", "seeds": [...]}]}."""
    panels = [p for p in panels if p["rows"]]
    if not panels:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 0.5 * max(len(p["rows"]) for p in panels) + 2),
                             squeeze=False)
    for ax, panel in zip(axes[0], panels):
        rows = panel["rows"]
        for y, row in enumerate(rows):
            if row["low"] is not None:
                ax.plot([row["low"], row["high"]], [y, y], color="#3b6fb6", linewidth=2)
            ax.plot([row["gain"]], [y], "o", color="#3b6fb6", markersize=6)
            ax.plot(row["seeds"], [y] * len(row["seeds"]), "o", color="black", markersize=2.5, alpha=0.6)
        ax.axvline(0, color="grey", linestyle="--", linewidth=1)
        ax.set_yticks(range(len(rows)), [r["label"] for r in rows], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("gain over the unigram (nats per target; right is better)")
        ax.set_title(panel["title"], fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    _save(fig, path)
    return True


def bits_figure(rows: Sequence[dict[str, Any]], path: Path, title: str) -> bool:
    """Bits per nucleotide of every model on the raw k-mer track, with the literature's lines."""
    if not rows:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 2))
    for y, row in enumerate(rows):
        if row.get("low") is not None:
            ax.plot([row["low"], row["high"]], [y, y], color="#3b6fb6", linewidth=2)
        ax.plot([row["bits"]], [y], "o", color="#3b6fb6")
    for name, value in LITERATURE_BITS:
        ax.axvline(value, color="#b63b3b", linestyle=":", linewidth=1)
        ax.text(value, -0.7, name, rotation=90, fontsize=7, color="#b63b3b", va="top", ha="right")
    ax.set_yticks(range(len(rows)), [r["label"] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("test bits per nucleotide (left is better)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    _save(fig, path)
    return True


def scaling_figure(panels: Sequence[dict[str, Any]], path: Path) -> bool:
    """Test cross-entropy against training k-mers, one line per model, one point per training fraction (the
    mean over seeds, bars one standard deviation), the unigram as a dashed line. `panels`: {"title",
    "unigram", "series": {label: [(kmers, ce, sd), ...]}}."""
    panels = [p for p in panels if p["series"]]
    if not panels:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for label, points in sorted(panel["series"].items()):
            points = sorted(points)
            ax.errorbar([p[0] for p in points], [p[1] for p in points],
                        yerr=[0.0 if p[2] is None or math.isnan(p[2]) else p[2] for p in points], marker="o",
                        capsize=3, label=label)
        if panel.get("unigram") is not None:
            ax.axhline(panel["unigram"], color="grey", linestyle="--", linewidth=1, label="unigram")
        ax.set_xscale("log")
        ax.set_xlabel("training k-mers")
        ax.set_ylabel("test cross-entropy (nats per target)")
        ax.set_title(panel["title"], fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, path)
    return True
