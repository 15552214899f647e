"""The statistics of the report: transcript-bootstrap intervals, means over seeds, and paired comparisons.

Differences between models on real mRNA are hundredths to tenths of a nat and the windows of one transcript
are correlated, so every interval resamples whole transcripts with replacement (a window-level bootstrap
would pretend the windows are independent and give intervals far too narrow). A paired comparison of two
models uses their per-window loss differences on the same windows, averaged over seeds, so the shared
difficulty of each window cancels; the same resamples (one seed) serve every comparison, which makes
A vs B exactly the negative of B vs A.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

LEVEL = 0.95
# Bootstrap replicates are drawn in blocks so memory stays bounded with many transcripts.
_BLOCK = 256


@dataclass
class Interval:
    point: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def negated(self) -> "Interval":
        return Interval(-self.point, -self.high, -self.low)

    def to_json(self) -> dict[str, float]:
        return {"point": self.point, "low": self.low, "high": self.high}


def bootstrap_replicates(values: Sequence[float] | np.ndarray, sources: Sequence, n_boot: int, seed: int) -> np.ndarray:
    """Window-weighted means of `values` over `n_boot` resamples of the sources (with replacement, each drawn
    source bringing all its windows)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or len(values) != len(sources):
        raise ValueError(f"{len(values)} values for {len(sources)} sources")
    if len(values) == 0:
        raise ValueError("no windows to resample")
    if n_boot < 1:
        raise ValueError("n_boot must be at least 1")
    _, inverse = np.unique(np.asarray(sources), return_inverse=True)
    sums = np.bincount(inverse.reshape(-1), weights=values)
    counts = np.bincount(inverse.reshape(-1)).astype(np.float64)
    n_sources = len(sums)
    rng = np.random.default_rng(seed)
    uniform = np.full(n_sources, 1.0 / n_sources)
    out = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, _BLOCK):
        size = min(_BLOCK, n_boot - start)
        draws = rng.multinomial(n_sources, uniform, size=size).astype(np.float64)
        out[start:start + size] = (draws @ sums) / (draws @ counts)
    return out


def bootstrap_mean(values: Sequence[float] | np.ndarray, sources: Sequence, n_boot: int = 1000, seed: int = 0,
                   level: float = LEVEL) -> Interval:
    """The mean of `values` and its percentile bootstrap interval, resampling by source."""
    reps = bootstrap_replicates(values, sources, n_boot, seed)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(reps, [tail, 1.0 - tail])
    return Interval(float(np.mean(np.asarray(values, dtype=np.float64))), float(low), float(high))


def paired_difference(nll_a: Sequence[np.ndarray], nll_b: Sequence[np.ndarray], sources: np.ndarray, n_boot: int,
                      seed: int) -> Interval:
    """Mean per-window loss of A minus B (each averaged over its seeds) with its transcript-bootstrap
    interval: positive means A is worse."""
    mean_a = np.mean(np.stack([np.asarray(x, dtype=np.float64) for x in nll_a]), axis=0)
    mean_b = np.mean(np.stack([np.asarray(x, dtype=np.float64) for x in nll_b]), axis=0)
    return bootstrap_mean(mean_a - mean_b, sources, n_boot, seed)


def mean_sd(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None with one value: one seed has no spread)."""
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), (float(array.std(ddof=1)) if len(array) > 1 else None)
