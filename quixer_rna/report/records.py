"""The report as typed records: what the summary computes and what every renderer (markdown, JSON, figures)
reads, so the three never disagree. Plain frozen dataclasses of numbers, text and intervals; report.json is
`dataclasses.asdict` of a `Report`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .quantum import QuantumCost
from .stats import Comparison, Interval

# ---- the data ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitCounts:
    split: str
    transcripts: int
    genes: int
    windows: int
    gene_sources: dict[str, int]  # transcripts per way their gene was decided: map, header, locus, sequence


@dataclass(frozen=True)
class LeakSplit:
    """Of one query split's L-mers, those found in train; transcripts with more than half found."""

    split: str
    share: float
    queries: int
    shared: int
    transcripts: int
    over_half_shared: int


@dataclass(frozen=True)
class Leak:
    computed: bool
    reason: str | None  # why not computed
    length: int
    threshold: float
    above_threshold: bool
    splits: tuple[LeakSplit, ...] = ()


@dataclass(frozen=True)
class LeakGene:
    """One test gene's L-mers found in train (leak.tsv summed over its transcripts)."""

    gene: str
    transcripts: int
    queries: int
    shared: int
    share: float


@dataclass(frozen=True)
class Dataset:
    folder: str
    synthetic: bool
    transcripts: int
    genes: int
    windows: int
    splits: tuple[SplitCounts, ...]
    k: int
    stride: int
    window_size: int
    window_step: int
    split_by: str
    split_rule: str
    min_length: int
    skipped: dict[str, int]
    leak: Leak
    leak_genes: tuple[LeakGene, ...]
    total_nucleotides: int | None = None  # read from the FASTA (None: a folder of an earlier version)
    soft_masked: str | None = None  # --soft_masked keep|drop
    soft_masked_bases: int | None = None  # lowercase bases read
    bases_left_out: dict[str, int] | None = None  # non_acgt, guard, soft_masked


@dataclass(frozen=True)
class Tokenizer:
    """The cluster tokens and the encoder they come from (None where the stage is absent)."""

    clusters: int | None = None
    entropy_bits: float | None = None
    inertia: float | None = None
    hamming_share: float | None = None
    hamming_share_shuffled: float | None = None
    encoder: str | None = None
    distinct_embeddings: int | None = None


# ---- results ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Convergence:
    """Whether training converged: None for a count model (no training), else how many seeds hit the budget and,
    of those, how many were still on the unigram plateau (never --plateau_margin below it)."""

    seeds: int
    hit_budget: int | None
    on_plateau: int = 0


@dataclass(frozen=True)
class Reference:
    """The uniform and unigram rows beside every result."""

    label: str
    cross_entropy: float
    interval: Interval | None
    perplexity: float
    accuracy: float | None
    top5_accuracy: float | None
    bits_per_nt: float | None


@dataclass(frozen=True)
class ModelRow:
    label: str
    model: str
    seeds: tuple[int, ...]
    parameters: int
    cross_entropy: float  # mean over seeds of the test CE
    cross_entropy_sd: float | None
    cross_entropy_per_seed: tuple[float, ...]
    interval: Interval | None  # genes and seeds resampled
    gain: Interval | None  # unigram minus model, paired
    gain_per_seed: tuple[float, ...]
    versus_best: Comparison | None  # model minus the best model, paired
    rank: str
    rankable: bool
    convergence: Convergence
    val_loss: float
    accuracy: float
    top5_accuracy: float
    perplexity: float
    bits_per_nt: float | None
    bits_per_nt_sd: float | None
    bits_per_nt_interval: Interval | None
    epochs_seen: float | None
    train_seconds: float
    stopped_by: dict[str, int]
    postselection: float | None
    folders: tuple[str, ...]


@dataclass(frozen=True)
class CircuitCheck:
    """What Quixer's trained circuit adds: Quixer minus a control on the same windows (negative: Quixer is
    better than the control, so the circuit helps)."""

    quixer: str
    control: str
    quixer_parameters: int
    control_parameters: int
    comparison: Comparison


@dataclass(frozen=True)
class ScalingPoint:
    fraction: float
    train_kmers: float
    parameters: int
    seeds: tuple[int, ...]
    cross_entropy: float
    cross_entropy_sd: float | None
    interval: Interval | None
    epochs_seen: float | None
    convergence: Convergence  # a point whose seeds hit their budget compares less data, not less training


@dataclass(frozen=True)
class TrackSummary:
    name: str
    fingerprint: str
    tokenizer: str
    vocab_size: int
    k: int
    raw: bool
    nucleotides_per_target: int | None
    test_genes: int | None
    test_windows: int | None
    best: str | None  # the label of the best model, chosen on validation
    references: tuple[Reference, ...]
    rows: tuple[ModelRow, ...]
    circuit: tuple[CircuitCheck, ...]
    scaling: dict[str, tuple[ScalingPoint, ...]]  # per variant trained at several fractions, by its label


# ---- tuning, timings, stages ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TuningCurve:
    """One tuner's search: the best validation loss after each trial, and the best trial."""

    model: str
    label: str
    track: str
    folder: str
    budget: dict[str, Any]
    trials: int
    complete: int
    pruned: int
    failed: int
    best_value: float | None
    best_trial: int | None
    best_params: dict[str, Any]
    best_parameters: int | None  # the best trial's parameter count, when trials.csv records it
    still_improving: bool | None  # the best came in the last third of the trials
    curve: tuple[tuple[int, float], ...]  # (trial number, best value so far) at every trial with a value
    other_workers: tuple[str, ...] = ()  # folders of other processes that ran trials of the same study


@dataclass(frozen=True)
class StageTime:
    stage: str
    status: str
    seconds: float


@dataclass(frozen=True)
class Timings:
    settings: dict[str, Any]
    stages: tuple[StageTime, ...]


@dataclass(frozen=True)
class StageLine:
    record: str
    stage: str
    role: str
    status: str


@dataclass(frozen=True)
class Bootstrap:
    resamples: int
    seed: int
    level: float
    tost_level: float
    margin: float
    unit: str


@dataclass(frozen=True)
class CodeCommit:
    """A commit of the code that wrote some of the folder's run records: a study grown over weeks mixes several."""

    commit: str
    records: int


@dataclass(frozen=True)
class Report:
    runs_dir: str
    generated: str
    commits: tuple[CodeCommit, ...]  # in the order of the stages that first used each
    synthetic: bool
    bootstrap: Bootstrap
    dataset: Dataset | None
    tokenizer: Tokenizer
    tracks: tuple[TrackSummary, ...]
    tuning: tuple[TuningCurve, ...]
    quantum_cost: tuple[QuantumCost, ...]
    training_curves: tuple[str, ...]
    timings: Timings | None
    stages: tuple[StageLine, ...]
    problems: tuple[str, ...]
    figures: tuple[str, ...] = ()  # file names of the figures drawn
