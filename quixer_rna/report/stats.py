"""The report's statistics: a hierarchical bootstrap over genes and seeds, paired comparisons, and a
verdict with a pre-declared equivalence margin.

The unit of resampling is the gene: the unit the prepare stage kept whole in one split (a gene, a family or
a block; the "gene" column of the split's transcripts.tsv). Windows of one gene are correlated (overlapping
windows, isoforms sharing exons), so a window- or transcript-level bootstrap would give intervals far too
narrow. Every replicate draws the genes with replacement and, for each model, its seeds with replacement, so
an interval holds both the spread over test genes and the spread over training seeds. One gene draw per
replicate serves every model of a track: a comparison of two models is paired (each replicate's difference
is taken on the same genes), and A vs B is exactly the negative of B vs A.

A model enters as its per-gene sums of per-window losses, one row per seed (a window-weighted mean over a
resample is sum(weights x sums) / sum(weights x windows)); so memory is O(seeds x genes), not O(windows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

LEVEL = 0.95  # every interval the report shows
TOST_LEVEL = 0.90  # two one-sided tests at 5% each: equivalence when the 90% interval lies inside the margin
# Replicates are drawn in blocks so memory stays bounded with many genes.
_BLOCK = 128


@dataclass(frozen=True)
class Interval:
    """A point estimate and a percentile bootstrap interval."""

    point: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def inside(self, margin: float) -> bool:
        return -margin < self.low and self.high < margin


def per_gene_sums(values: np.ndarray, units: np.ndarray, n_units: int) -> np.ndarray:
    """Sums of per-window `values` within each unit (`units`: the unit index 0..n_units-1 of each window)."""
    if len(values) != len(units):
        raise ValueError(f"{len(values)} values for {len(units)} windows")
    return np.bincount(units, weights=np.asarray(values, dtype=np.float64), minlength=n_units)


class GeneBootstrap:
    """Replicates of window-weighted mean losses over the test genes of one track (see the module docstring).

    `units`: each test window's gene index (0..G-1). `replicates(models)` takes one [seeds, G] array of
    per-gene loss sums per model and returns one [n_boot] array of replicate means per model; gene draws
    are the same for every model of one call, seed draws independent per model."""

    def __init__(self, units: np.ndarray, n_boot: int, seed: int):
        units = np.asarray(units, dtype=np.int64)
        if units.ndim != 1 or not len(units):
            raise ValueError("no windows to resample")
        if n_boot < 1:
            raise ValueError("n_boot must be at least 1")
        self.units = units
        self.n_units = int(units.max()) + 1
        self.windows = np.bincount(units, minlength=self.n_units).astype(np.float64)
        self.n_boot, self.seed = n_boot, seed

    def mean(self, sums: np.ndarray) -> float:
        """The full-data estimate: the mean over seeds of each seed's mean over windows."""
        return float(np.mean(np.atleast_2d(sums).sum(axis=1)) / self.windows.sum())

    def replicates(self, models: Sequence[np.ndarray]) -> list[np.ndarray]:
        genes = np.random.default_rng(self.seed)
        seeds = [np.random.default_rng((self.seed, 1, i)) for i in range(len(models))]
        models = [np.atleast_2d(np.asarray(m, dtype=np.float64)) for m in models]
        for m in models:
            if m.shape[1] != self.n_units:
                raise ValueError(f"per-gene sums over {m.shape[1]} genes, expected {self.n_units}")
        out = [np.empty(self.n_boot) for _ in models]
        uniform = np.full(self.n_units, 1.0 / self.n_units)
        for start in range(0, self.n_boot, _BLOCK):
            size = min(_BLOCK, self.n_boot - start)
            draws = genes.multinomial(self.n_units, uniform, size=size).astype(np.float64)  # [b, G]
            windows = draws @ self.windows  # [b]
            for i, sums in enumerate(models):
                n_seeds = len(sums)
                weights = seeds[i].multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=size) / n_seeds
                resampled = weights @ sums  # [b, G]: each replicate's seed-resampled per-gene sums
                out[i][start:start + size] = np.einsum("bg,bg->b", draws, resampled) / windows
        return out


def interval(point: float, replicates: np.ndarray, level: float = LEVEL) -> Interval:
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(replicates, [tail, 1.0 - tail])
    return Interval(float(point), float(low), float(high))


@dataclass(frozen=True)
class Comparison:
    """Model A minus model B on the same windows (positive: A is worse), its 95% interval, the 90%
    interval of the equivalence test, and the verdict."""

    difference: Interval
    tost: Interval
    margin: float
    verdict: str


def verdict(ci95: Interval, ci90: Interval, margin: float) -> str:
    """A vs B: "worse" / "better" when the 95% interval excludes zero, "equivalent" when the 90% interval
    lies inside (-margin, +margin) (both: "equivalent, though worse"), else "not distinguishable"."""
    equivalent = ci90.inside(margin)
    if ci95.excludes_zero:
        side = "worse" if ci95.point > 0 else "better"
        return f"equivalent, though {side}" if equivalent else side
    return "equivalent" if equivalent else "not distinguishable"


def compare(point: float, replicates: np.ndarray, margin: float) -> Comparison:
    """A paired comparison from the replicates of A - B."""
    ci95, ci90 = interval(point, replicates, LEVEL), interval(point, replicates, TOST_LEVEL)
    return Comparison(ci95, ci90, margin, verdict(ci95, ci90, margin))


def mean_sd(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None with one value: one seed has no spread)."""
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), (float(array.std(ddof=1)) if len(array) > 1 else None)
