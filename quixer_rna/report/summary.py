"""A token track's results as records: the references, one row per model variant (test CE over seeds, its
interval over genes and seeds, the gain over the unigram and the paired comparison with the best model,
convergence), and the data-scaling series. Every interval of one track comes from one bootstrap: the same
gene draws for every model, so all comparisons are paired.

The best model is chosen on validation (lowest mean val loss) among the rankable rows: every row when no
neural model has several seeds; otherwise models with several seeds and the count models (whose result
does not depend on a seed). A single-seed variant beside seeded ones is compared with the best, not ranked.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Callable

import numpy as np

from .collect import Group, Track
from .records import CircuitCheck, Convergence, ModelRow, Reference, ScalingPoint, TrackSummary
from .stats import Comparison, GeneBootstrap, Interval, compare, interval, mean_sd

LN2 = math.log(2)


def _rankable(groups: list[Group]) -> Callable[[Group], bool]:
    several = any(len(g.runs) > 1 for g in groups if not g.counts)
    return lambda g: not several or len(g.runs) > 1 or g.counts


def _val_loss(group: Group) -> float:
    return float(np.mean([run.result.val_loss for run in group.runs]))


def choose_best(groups: list[Group]) -> Group | None:
    """The rankable group with per-window predictions and the lowest mean validation loss."""
    rankable = _rankable(groups)
    candidates = [g for g in groups if rankable(g) and g.sums is not None and math.isfinite(_val_loss(g))]
    return min(candidates, key=_val_loss, default=None)


def _rank(group: Group, best: Group | None, versus: Comparison | None, rankable: bool) -> str:
    if group is best:
        return "best"
    if not rankable:
        return "one seed: not ranked"
    return "-" if versus is None else versus.verdict


def _on_plateau(result: ModelResult) -> bool:
    """A run that hit its budget with its best never the rule's --plateau_margin below the train unigram."""
    margin = (result.train_config or {}).get("plateau_margin", 0.0)
    unigram = result.val.get("unigram_loss")
    return bool(margin) and unigram is not None and result.val_loss > unigram - margin


def _convergence(group: Group) -> Convergence:
    if group.counts:
        return Convergence(len(group.runs), None)
    budget = [run.result for run in group.runs if run.result.converged is not True]
    return Convergence(len(group.runs), len(budget), sum(map(_on_plateau, budget)))


def _mean_or_none(values: list[float | None]) -> float | None:
    known = [float(v) for v in values if v is not None]
    return float(np.mean(known)) if known else None


class _Replicates:
    """The track's bootstrap: replicate means of the unigram and of every group with predictions."""

    def __init__(self, track: Track, n_boot: int, seed: int):
        self.groups = [g for g in track.groups if g.sums is not None]
        self.boot = None
        if track.units is None or track.unigram_sums is None:
            return
        self.boot = GeneBootstrap(track.units, n_boot, seed)
        reps = self.boot.replicates([track.unigram_sums[None, :], *[g.sums for g in self.groups]])
        self.unigram = (self.boot.mean(track.unigram_sums), reps[0])
        self.by_group = {id(g): (self.boot.mean(g.sums), r) for g, r in zip(self.groups, reps[1:])}

    def ready(self, group: Group) -> bool:
        return self.boot is not None and id(group) in self.by_group

    def ce(self, group: Group) -> Interval | None:
        if not self.ready(group):
            return None
        point, reps = self.by_group[id(group)]
        return interval(point, reps)

    def gain(self, group: Group) -> Interval | None:
        if not self.ready(group):
            return None
        (u_point, u_reps), (point, reps) = self.unigram, self.by_group[id(group)]
        return interval(u_point - point, u_reps - reps)

    def versus(self, group: Group, other: Group | None, margin: float) -> Comparison | None:
        """`group` minus `other`, paired (None when either has no predictions)."""
        if other is None or group is other or not (self.ready(group) and self.ready(other)):
            return None
        (point, reps), (o_point, o_reps) = self.by_group[id(group)], self.by_group[id(other)]
        return compare(point - o_point, reps - o_reps, margin)


def _bits(track: Track, value: float | None) -> float | None:
    """Nats per target as bits per nucleotide on the raw k-mer track (None elsewhere)."""
    if value is None or not (track.raw and track.nt_per_target):
        return None
    return value / (track.nt_per_target * LN2)


def _bits_interval(track: Track, ce: Interval | None) -> Interval | None:
    if ce is None or _bits(track, ce.point) is None:
        return None
    return Interval(_bits(track, ce.point), _bits(track, ce.low), _bits(track, ce.high))


def _row(track: Track, group: Group, reps: _Replicates, best: Group | None, rankable: bool,
         margin: float) -> ModelRow:
    losses = group.metric("loss")
    mean, sd = mean_sd(losses)
    ce, versus = reps.ce(group), reps.versus(group, best, margin)
    gain_per_seed = ()
    if reps.ready(group):
        unigram_ce = reps.unigram[0]
        gain_per_seed = tuple(unigram_ce - float(run.sums.sum()) / len(track.units) for run in group.runs)
    results = [run.result for run in group.runs]
    stopped = Counter(r.stopped_by for r in results if r.stopped_by is not None)
    return ModelRow(
        label=group.label, model=group.model, seeds=tuple(group.seeds), parameters=results[0].parameters,
        cross_entropy=mean, cross_entropy_sd=sd, cross_entropy_per_seed=tuple(losses), interval=ce,
        gain=reps.gain(group), gain_per_seed=gain_per_seed, versus_best=versus,
        rank=_rank(group, best, versus, rankable), rankable=rankable, convergence=_convergence(group),
        val_loss=_val_loss(group), accuracy=float(np.mean(group.metric("accuracy"))),
        top5_accuracy=float(np.mean(group.metric("top5_accuracy"))), perplexity=float(np.mean(group.metric("perplexity"))),
        bits_per_nt=_bits(track, mean), bits_per_nt_sd=_bits(track, sd),
        bits_per_nt_interval=_bits_interval(track, ce),
        epochs_seen=_mean_or_none([r.epochs_seen for r in results]),
        train_seconds=float(np.mean([r.train_seconds for r in results])), stopped_by=dict(sorted(stopped.items())),
        postselection=_mean_or_none([r.metrics.get("mean_postselection") for r in results]),
        folders=tuple(str(run.record.folder) for run in group.runs),
    )


def _references(track: Track, reps: _Replicates) -> tuple[Reference, ...]:
    vocab = track.vocab_size
    out = [Reference("uniform", math.log(vocab), None, float(vocab), 1.0 / vocab, min(5, vocab) / vocab,
                     _bits(track, math.log(vocab)))]
    if reps.boot is not None:
        point, replicates = reps.unigram
        out.append(Reference("unigram", point, interval(point, replicates), math.exp(point), track.unigram_accuracy,
                             track.unigram_top5, _bits(track, point)))
    return tuple(out)


def _scaling(track: Track, reps: _Replicates) -> dict[str, tuple[ScalingPoint, ...]]:
    """Per variant trained at more than one training fraction: one point per fraction."""
    by_variant: dict[str, list[Group]] = {}
    for group in track.groups:
        by_variant.setdefault(json.dumps(group.variant, sort_keys=True, default=str), []).append(group)
    series = {}
    for groups in by_variant.values():
        if len({g.fraction for g in groups}) < 2:
            continue
        points = []
        for group in sorted(groups, key=lambda g: g.fraction):
            mean, sd = mean_sd(group.metric("loss"))
            points.append(ScalingPoint(
                group.fraction, float(np.mean([run.result.train["kmers"] for run in group.runs])),
                group.runs[0].result.parameters, tuple(group.seeds),
                mean, sd, reps.ce(group), _mean_or_none([run.result.epochs_seen for run in group.runs]),
                _convergence(group)))
        series[groups[0].base] = tuple(points)
    return dict(sorted(series.items()))


def _circuit(groups: list[Group], reps: _Replicates, margin: float) -> tuple[CircuitCheck, ...]:
    """Every Quixer variant against every control trained the same way (tuned or not)."""
    checks = []
    for quixer in (g for g in groups if g.model == "quixer" and not g.name.control):
        for control in (g for g in groups if g.name.control and g.tuned == quixer.tuned):
            comparison = reps.versus(quixer, control, margin)
            if comparison is not None:
                checks.append(CircuitCheck(quixer.label, control.label, quixer.runs[0].result.parameters,
                                           control.runs[0].result.parameters, comparison))
    return tuple(checks)


def summarize_track(track: Track, n_boot: int, seed: int, margin: float) -> TrackSummary:
    reps = _Replicates(track, n_boot, seed)
    groups = sorted(track.main_groups(), key=lambda g: np.mean(g.metric("loss")))
    rankable = _rankable(groups)
    best = choose_best(groups)
    rows = tuple(_row(track, g, reps, best, rankable(g), margin) for g in groups)
    return TrackSummary(
        name=track.name, fingerprint=track.fingerprint, tokenizer=track.tokenizer, vocab_size=track.vocab_size,
        k=track.k, raw=track.raw, nucleotides_per_target=track.nt_per_target, test_genes=track.test_genes,
        test_windows=None if track.units is None else len(track.units), best=None if best is None else best.label,
        references=_references(track, reps), rows=rows, circuit=_circuit(groups, reps, margin),
        scaling=_scaling(track, reps),
    )
