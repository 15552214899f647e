"""A model's result: the metrics.json every model stage writes (the neural trainers, the n-gram, the nucleotide
Markov reference) and the report reads. One typed object, `ModelResult`, is built by each stage, written through
the shared metadata writer and read back with every field checked (quixer_rna.formats.metadata): a missing or
mistyped field is one line naming the file and the field.

    model, seed       "quixer", "lstm", "transformer", "fnet", "bottleneck", "ngram", "markov"; the run's --seed
    tokens            folder, tokenizer ("clusters", "raw k-mers"), vocab_size, k, fingerprint
    test              loss (nats per target), perplexity, accuracy, top5_accuracy
    val               loss: the validation cross-entropy the model was chosen by (a trainer's best evaluation; the
                      count models' at their chosen settings), windows_used, ..., unigram_loss (a trainer's: the
                      train unigram's on the same windows)
    references        uniform_perplexity, unigram_perplexity (the same targets)
    parameters        trainable parameters (n-gram: stored n-gram types; Markov: counts)
    train_seconds, train (fraction of the training genes, windows, kmers, ...), model_config, windows (per split)
    neural models     converged (no better val loss for --patience counted evaluations and --patience_epochs; see
                      --plateau_margin), stopped_by ("patience" or "budget"), windows_seen, epochs_seen,
                      epochs_run, steps, evaluations, best_epoch, best_step, stopped_early, optimizer, train_config,
                      context_length, extra (model metrics such as mean_postselection), device, world_size,
                      threads and cpu_capability (torch's CPU threads per process and kernel set: a seeded run
                      retraces its trajectory only with both the same; others change it by float rounding)
    count models      what they chose and how (counting, discount_tuning, order_selection, parameters_note)

Roles live in args.json ("role": "train" for all of them); the report never guesses from folder names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypedDict

from ..errors import UserError
from ..runio import METRICS_FILE
from .metadata import FolderFormat, Metadata, decode, encode, place

FORMAT = "quixer-rna-result"
VERSION = 1
COUNT_MODELS = frozenset({"ngram", "markov"})


class TokensUsed(TypedDict):
    folder: str
    tokenizer: str
    vocab_size: int
    k: int
    fingerprint: str


class TestMetrics(TypedDict):
    loss: float
    perplexity: float
    accuracy: float
    top5_accuracy: float


class _ValRequired(TypedDict):
    loss: float | None


class ValMetrics(_ValRequired, total=False):
    windows_used: int
    windows_total: int
    sample: str
    perplexity: float
    unigram_loss: float


class _TrainRequired(TypedDict):
    fraction: float
    windows: int
    kmers: int


class TrainData(_TrainRequired, total=False):
    genes: int
    genes_total: int
    transcripts: int


@dataclass(frozen=True, kw_only=True)
class ModelResult(Metadata):
    FORMAT: ClassVar[FolderFormat] = FolderFormat(
        name=FORMAT, version=VERSION, title="model result", what="a model result", flag="",
        expected="the folder of a model stage (train_quixer_hybrid.py, train_classical_baselines.py)",
        rebuild=lambda folder: "rerun its stage", file=METRICS_FILE)

    model: str
    seed: int
    tokens: TokensUsed
    test: TestMetrics
    val: ValMetrics
    references: dict[str, Any]
    parameters: int
    train_seconds: float
    train: TrainData
    model_config: dict[str, Any]
    windows: dict[str, int]
    device: str
    # what a neural trainer records of its training
    train_config: dict[str, Any] | None = None
    context_length: int | None = None
    epochs_run: int | None = None
    steps: int | None = None
    windows_seen: int | None = None
    epochs_seen: float | None = None
    stopped_by: str | None = None
    converged: bool | None = None
    optimizer: dict[str, Any] | None = None
    evaluations: int | None = None
    best_epoch: int | None = None
    best_step: int | None = None
    stopped_early: bool | None = None
    extra: dict[str, float] | None = None
    world_size: int | None = None
    threads: int | None = None
    cpu_capability: str | None = None
    # what a count model records of its choices
    parameters_note: str | None = None
    counting: dict[str, Any] | None = None
    discount_tuning: dict[str, Any] | None = None
    order_selection: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        loss = self.test["loss"]
        if not (isinstance(loss, (int, float)) and math.isfinite(loss)):
            raise UserError(f"{self.model} result: test loss {loss!r} is not a finite number")

    @property
    def val_loss(self) -> float:
        loss = self.val["loss"]
        return math.nan if loss is None else float(loss)

    @property
    def tokenizer(self) -> str:
        return self.tokens["tokenizer"]

    @property
    def k(self) -> int:
        return self.tokens["k"]

    @property
    def metrics(self) -> dict[str, float]:
        """Model metrics averaged over training (e.g. mean_postselection); none for count models."""
        return self.extra or {}

    def missing_training_fields(self) -> list[str]:
        """The training record a neural result must carry (none for count models)."""
        if self.model in COUNT_MODELS:
            return []
        return [name for name in ("converged", "stopped_by", "epochs_seen") if getattr(self, name) is None]

    def as_dict(self) -> dict[str, Any]:
        """The result as metrics.json holds it (what a stage prints and returns)."""
        return {"format": FORMAT, "version": VERSION, **encode(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str) -> "ModelResult":
        """A result from its JSON form (e.g. what a trainer returned), every field checked; errors name `source`."""
        return decode(cls, data, place(source))


def write_result(folder: str | Path, result: ModelResult) -> dict[str, Any]:
    """Write `result` as the folder's metrics.json; returns what was written."""
    result.write(folder)
    return result.as_dict()


def read_result(folder: str | Path) -> ModelResult:
    """A model stage's metrics.json, every field checked: a missing key or another format is a one-line UserError."""
    return ModelResult.read(folder)
