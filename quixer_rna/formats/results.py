"""A model's result: the metrics.json every model stage writes (neural trainers, the n-gram, the nucleotide
Markov reference) and the report reads, defined once with a strict reader.

    model             str     "quixer", "lstm", "transformer", "fnet", "bottleneck", "ngram", "markov"
    seed              int     the run's --seed
    tokens            dict    folder, tokenizer ("clusters", "raw k-mers"), vocab_size, k, fingerprint
    test              dict    loss (nats per target), perplexity, accuracy, top5_accuracy
    val               dict    loss: the validation cross-entropy the model was chosen by (a trainer's best
                              evaluation; the count models' at their chosen settings), windows_used
    references        dict    uniform_perplexity, unigram_perplexity (the same targets)
    parameters        int     trainable parameters (n-gram: stored n-gram types; Markov: counts)
    train_seconds     float
    train             dict    fraction (of training genes), windows, kmers (k-mers of the training transcripts
                              used), genes
    model_config      dict
    neural models also: converged (validation loss stopped improving for --patience evaluations), stopped_by
    ("patience" or "budget"), windows_seen, epochs_seen, optimizer, train_config, epochs_run, best_epoch,
    best_step; optional: extra (model metrics such as mean_postselection), device, world_size, notes.

Roles live in args.json ("role": "train" for all of them); the report never guesses from folder names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..runio import METRICS_FILE, atomic_write_json
from .metadata import FolderFormat, read_versioned
from .predictions import FILE as PREDICTIONS_FILE

FORMAT = "quixer-rna-result"
VERSION = 1
RESULT_FORMAT = FolderFormat(
    name=FORMAT, version=VERSION, title="model result", what="a model result", flag="",
    expected="the folder of a model stage (train_quixer_hybrid.py, train_classical_baselines.py)",
    rebuild=lambda folder: "rerun its stage", file=METRICS_FILE)
REQUIRED = ("model", "seed", "tokens", "test", "val", "references", "parameters", "train_seconds", "train",
            "model_config")
TEST_KEYS = ("loss", "perplexity", "accuracy", "top5_accuracy")
TOKEN_KEYS = ("folder", "tokenizer", "vocab_size", "k", "fingerprint")
TRAIN_KEYS = ("fraction", "windows", "kmers")


@dataclass
class ModelResult:
    folder: Path
    model: str
    seed: int
    tokens: dict[str, Any]
    test: dict[str, float]
    references: dict[str, Any]
    parameters: int
    train_seconds: float
    train: dict[str, Any]
    model_config: dict[str, Any]
    val_loss: float
    converged: bool | None = None  # None: a count model, which has no training to converge
    stopped_by: str | None = None
    epochs_seen: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def predictions_path(self) -> Path:
        return self.folder / PREDICTIONS_FILE

    @property
    def tokenizer(self) -> str:
        return str(self.tokens["tokenizer"])

    @property
    def k(self) -> int:
        return int(self.tokens["k"])


def write_result(folder: str | Path, result: dict[str, Any]) -> dict[str, Any]:
    """Check `result` against the schema and write it as metrics.json; returns what was written."""
    payload = {"format": FORMAT, "version": VERSION, **result}
    _check(Path(folder) / METRICS_FILE, payload)
    atomic_write_json(Path(folder) / METRICS_FILE, payload)
    return payload


def _check(path: Path, payload: dict[str, Any]) -> None:
    missing = [key for key in REQUIRED if key not in payload]
    if missing:
        raise UserError(f"{path}: result lacks {', '.join(missing)}")
    for key, keys in (("test", TEST_KEYS), ("tokens", TOKEN_KEYS), ("train", TRAIN_KEYS), ("val", ("loss",))):
        if not isinstance(payload[key], dict) or any(k not in payload[key] for k in keys):
            raise UserError(f"{path}: '{key}' must hold {', '.join(keys)}")
    loss = payload["test"]["loss"]
    if loss is not None and not (isinstance(loss, (int, float)) and math.isfinite(loss)):
        raise UserError(f"{path}: test loss {loss!r} is not a finite number")


def read_result(folder: str | Path) -> ModelResult:
    """A model stage's metrics.json, strictly: a missing key or another format is a one-line UserError."""
    folder = Path(folder)
    path = folder / METRICS_FILE
    payload = read_versioned(folder, RESULT_FORMAT)
    _check(path, payload)
    return ModelResult(
        folder=folder, model=str(payload["model"]), seed=int(payload["seed"]), tokens=payload["tokens"],
        test=payload["test"], references=payload["references"], parameters=int(payload["parameters"]),
        train_seconds=float(payload["train_seconds"]), train=payload["train"], model_config=payload["model_config"],
        val_loss=float("nan") if payload["val"]["loss"] is None else float(payload["val"]["loss"]),
        converged=payload.get("converged"), stopped_by=payload.get("stopped_by"), epochs_seen=payload.get("epochs_seen"),
        extra=payload.get("extra") or {}, raw=payload,
    )
