"""The report's statistics: the gene is the unit of the bootstrap, seed spread widens an interval, paired
comparisons share their gene draws, and the equivalence test respects its margin."""

from __future__ import annotations

import numpy as np
import pytest

from quixer_rna.report.stats import GeneBootstrap, Interval, compare, interval, mean_sd, per_gene_sums, verdict


def _genes(n_genes: int, windows: int = 6) -> np.ndarray:
    return np.repeat(np.arange(n_genes), windows)


def _gene_effects(n_genes: int, windows: int = 6, seed: int = 0, spread: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    effects = rng.normal(0.0, spread, n_genes)
    return np.repeat(effects, windows) + rng.normal(0.0, 0.1, n_genes * windows)


def test_windows_of_one_gene_move_together():
    # Every gene averages 5, so any resample of whole genes averages exactly 5; resampling windows would not.
    values = np.array([0.0, 10.0, 5.0, 5.0, 2.0, 8.0])
    genes = np.array([0, 0, 1, 1, 2, 2])
    (reps,) = GeneBootstrap(genes, 300, 0).replicates([per_gene_sums(values, genes, 3)[None]])
    assert np.allclose(reps, 5.0)
    by_window = np.arange(6)
    (reps,) = GeneBootstrap(by_window, 300, 0).replicates([per_gene_sums(values, by_window, 6)[None]])
    assert reps.std() > 0.5


def test_interval_narrows_with_more_genes_and_is_seeded():
    def width(n_genes: int, seed: int) -> tuple[Interval, np.ndarray]:
        genes = _genes(n_genes)
        boot = GeneBootstrap(genes, 400, seed)
        sums = per_gene_sums(_gene_effects(n_genes), genes, n_genes)[None]
        (reps,) = boot.replicates([sums])
        return interval(boot.mean(sums), reps), reps

    few, first = width(10, 1)
    many, _ = width(400, 1)
    assert few.low <= few.point <= few.high and many.low <= many.point <= many.high
    assert many.high - many.low < 0.5 * (few.high - few.low)
    assert np.array_equal(first, width(10, 1)[1]) and not np.array_equal(first, width(10, 2)[1])


def test_seed_spread_widens_the_interval():
    n_genes = 60
    genes = _genes(n_genes)
    base = per_gene_sums(_gene_effects(n_genes, spread=0.2), genes, n_genes)
    windows = np.bincount(genes).astype(float)
    steady = np.stack([base, base, base])  # three seeds that agree
    spread = np.stack([base - 0.3 * windows, base, base + 0.3 * windows])  # same mean, seeds 0.3 nats apart
    boot = GeneBootstrap(genes, 600, 0)
    reps_steady, reps_spread = boot.replicates([steady, spread])
    assert boot.mean(steady) == pytest.approx(boot.mean(spread))
    narrow, wide = interval(boot.mean(steady), reps_steady), interval(boot.mean(spread), reps_spread)
    assert wide.high - wide.low > 2 * (narrow.high - narrow.low)


def test_one_gene_draw_serves_every_model():
    n_genes = 40
    genes = _genes(n_genes)
    a = per_gene_sums(_gene_effects(n_genes, seed=1), genes, n_genes)[None]
    b = per_gene_sums(_gene_effects(n_genes, seed=2), genes, n_genes)[None]
    boot = GeneBootstrap(genes, 300, 3)
    reps_a, reps_b, reps_a_again = boot.replicates([a, b, a])
    assert np.array_equal(reps_a, reps_a_again)  # the same genes for every model: identical models tie exactly
    ab = compare(boot.mean(a) - boot.mean(b), reps_a - reps_b, 0.01).difference
    ba = compare(boot.mean(b) - boot.mean(a), reps_b - reps_a, 0.01).difference
    assert (ab.point, ab.low, ab.high) == pytest.approx((-ba.point, -ba.high, -ba.low), abs=1e-12)


def _paired(shift: float, noise: float, margin: float, n_genes: int = 80) -> str:
    """The verdict for a model whose per-window losses are the reference's plus `shift` plus gene-level noise."""
    rng = np.random.default_rng(7)
    genes = _genes(n_genes)
    reference = _gene_effects(n_genes, seed=3)
    other = reference + shift + np.repeat(rng.normal(0.0, noise, n_genes), 6)
    boot = GeneBootstrap(genes, 1000, 0)
    sums = [per_gene_sums(v, genes, n_genes)[None] for v in (other, reference)]
    reps_other, reps_ref = boot.replicates(sums)
    return compare(boot.mean(sums[0]) - boot.mean(sums[1]), reps_other - reps_ref, margin).verdict


def test_equivalence_needs_the_interval_inside_the_margin():
    assert _paired(0.0, 0.005, margin=0.01) == "equivalent"
    assert _paired(0.0, 0.08, margin=0.01) == "not distinguishable"  # no difference shown, but none ruled out either
    assert _paired(0.0, 0.005, margin=0.0005) == "not distinguishable"  # the same data, a stricter margin
    assert _paired(0.05, 0.005, margin=0.01) == "worse"
    assert _paired(-0.05, 0.005, margin=0.01) == "better"
    assert _paired(0.003, 0.001, margin=0.01) == "equivalent, though worse"  # real, but smaller than the margin


def test_verdict_rules():
    inside, outside = Interval(0.002, -0.004, 0.008), Interval(0.002, -0.02, 0.03)
    assert verdict(inside, inside, 0.01) == "equivalent"
    assert verdict(outside, inside, 0.01) == "equivalent"  # the 95% interval does not enter the equivalence test
    assert verdict(outside, outside, 0.01) == "not distinguishable"
    assert verdict(Interval(0.05, 0.02, 0.08), Interval(0.05, 0.03, 0.07), 0.01) == "worse"
    assert verdict(Interval(-0.05, -0.08, -0.02), Interval(-0.05, -0.07, -0.03), 0.01) == "better"
    assert verdict(Interval(0.004, 0.001, 0.007), Interval(0.004, 0.002, 0.006), 0.01) == "equivalent, though worse"
    assert verdict(inside, inside, 0.008) == "not distinguishable"  # margin exclusive: high 0.008 is not inside


def test_checks_and_mean_sd():
    with pytest.raises(ValueError):
        per_gene_sums(np.ones(3), np.zeros(4, dtype=int), 1)
    with pytest.raises(ValueError):
        GeneBootstrap(np.zeros(4, dtype=int), 1, 0).replicates([np.ones((1, 2))])
    assert mean_sd([1.0, 2.0, 3.0]) == (2.0, 1.0) and mean_sd([4.0]) == (4.0, None)
