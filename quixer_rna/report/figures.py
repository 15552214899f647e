"""The report's figures, drawn from its records and saved with quixer_rna.plots.save_figure: the gain of every
model over the unigram (interval and one dot per seed), bits per nucleotide against the literature on the
raw k-mer track, test cross-entropy against training k-mers (data scaling) and each tuner's best value
against trials."""

from __future__ import annotations

from pathlib import Path

from ..plots import pyplot, save_figure
from .records import Report, TrackSummary

GAIN_FIGURE = "gain_over_unigram.png"
BITS_FIGURE = "bits_per_nucleotide.png"
SCALING_FIGURE = "data_scaling.png"
TUNING_FIGURE = "tuning_curves.png"
# Published bits per nucleotide of human coding sequence (Loewenstern and Yianilos 1997): order-0 frequencies,
# conventional Markov models, and the best models of that study.
LITERATURE_BITS = (("order-0 frequencies", 1.95), ("Markov models", 1.92), ("best published (1.84-1.87)", 1.855))
BLUE, RED = "#3b6fb6", "#b63b3b"


def _panels(count: int, width: float, height: float):
    return pyplot().subplots(1, count, figsize=(width * count, height), squeeze=False)


def gain_figure(tracks: tuple[TrackSummary, ...], path: Path) -> bool:
    """One panel per track: each model's gain over the unigram with its 95% interval, one dot per seed."""
    panels = [(t, [r for r in t.rows if r.gain is not None]) for t in tracks]
    panels = [(t, rows) for t, rows in panels if rows]
    if not panels:
        return False
    fig, axes = _panels(len(panels), 6, 0.5 * max(len(rows) for _, rows in panels) + 2)
    for ax, (track, rows) in zip(axes[0], panels):
        for y, row in enumerate(rows):
            ax.plot([row.gain.low, row.gain.high], [y, y], color=BLUE, linewidth=2)
            ax.plot([row.gain.point], [y], "o", color=BLUE, markersize=6)
            ax.plot(row.gain_per_seed, [y] * len(row.gain_per_seed), "o", color="black", markersize=2.5, alpha=0.6)
        ax.axvline(0, color="grey", linestyle="--", linewidth=1)
        ax.set_yticks(range(len(rows)), [r.label for r in rows], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("gain over the unigram (nats per target; right is better)")
        ax.set_title(track.name, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    save_figure(fig, path)
    return True


def bits_figure(track: TrackSummary, path: Path) -> bool:
    """Bits per nucleotide of the references and every model on the raw k-mer track, with the literature's lines."""
    rows = [(ref.label, ref.bits_per_nt, None) for ref in track.references if ref.bits_per_nt is not None]
    rows += [(row.label, row.bits_per_nt, row.bits_per_nt_interval) for row in track.rows if row.bits_per_nt is not None]
    if not rows:
        return False
    fig, axes = _panels(1, 7, 0.45 * len(rows) + 2)
    ax = axes[0][0]
    for y, (_, bits, ci) in enumerate(rows):
        if ci is not None:
            ax.plot([ci.low, ci.high], [y, y], color=BLUE, linewidth=2)
        ax.plot([bits], [y], "o", color=BLUE)
    for name, value in LITERATURE_BITS:
        ax.axvline(value, color=RED, linestyle=":", linewidth=1)
        ax.text(value, -0.7, name, rotation=90, fontsize=7, color=RED, va="top", ha="right")
    ax.set_yticks(range(len(rows)), [label for label, _, _ in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("test bits per nucleotide (left is better)")
    ax.set_title(f"{track.name}: bits per nucleotide", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    save_figure(fig, path)
    return True


def scaling_figure(tracks: tuple[TrackSummary, ...], path: Path) -> bool:
    """Test CE against training k-mers, one line per model, bars its 95% interval (genes and seeds), the
    unigram as a dashed line."""
    panels = [t for t in tracks if t.scaling]
    if not panels:
        return False
    fig, axes = _panels(len(panels), 8, 4.5)
    for ax, track in zip(axes[0], panels):
        for label, points in track.scaling.items():
            below = [0.0 if p.interval is None else max(0.0, p.cross_entropy - p.interval.low) for p in points]
            above = [0.0 if p.interval is None else max(0.0, p.interval.high - p.cross_entropy) for p in points]
            ax.errorbar([p.train_kmers for p in points], [p.cross_entropy for p in points], yerr=[below, above],
                        marker="o", capsize=3, label=label)
        unigram = next((r.cross_entropy for r in track.references if r.label == "unigram"), None)
        if unigram is not None:
            ax.axhline(unigram, color="grey", linestyle="--", linewidth=1, label="unigram")
        ax.set_xscale("log")
        ax.set(xlabel="training k-mers", ylabel="test cross-entropy (nats per target)")
        ax.set_title(track.name, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    save_figure(fig, path)
    return True


def tuning_figure(report: Report, path: Path) -> bool:
    """One panel per track: each tuned model's best validation loss after every complete trial."""
    tracks = list(dict.fromkeys(c.track for c in report.tuning if c.curve))
    if not tracks:
        return False
    fig, axes = _panels(len(tracks), 6, 4.5)
    from matplotlib.ticker import MaxNLocator

    for ax, track in zip(axes[0], tracks):
        for curve in (c for c in report.tuning if c.track == track and c.curve):
            ax.step([n for n, _ in curve.curve], [v for _, v in curve.curve], where="post", marker="o", markersize=3,
                    label=curve.label)
        ax.set(xlabel="trial number", ylabel="best validation loss so far (nats)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(track, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, path)
    return True


def draw(report: Report, runs_dir: Path) -> tuple[str, ...]:
    """Every figure the records allow, written under `runs_dir`; their file names."""
    raw = next((t for t in report.tracks if t.raw), None)
    drawn = {GAIN_FIGURE: gain_figure(report.tracks, runs_dir / GAIN_FIGURE),
             BITS_FIGURE: raw is not None and bits_figure(raw, runs_dir / BITS_FIGURE),
             SCALING_FIGURE: scaling_figure(report.tracks, runs_dir / SCALING_FIGURE),
             TUNING_FIGURE: tuning_figure(report, runs_dir / TUNING_FIGURE)}
    return tuple(name for name, done in drawn.items() if done)
