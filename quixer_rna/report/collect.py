"""What a study folder holds, read through the stages' own records: every run record (args.json, or
<file>.args.json beside a single-file output) names its stage and role, every model result follows the
results schema (quixer_rna.formats.results), and results are grouped into token tracks (one per token
folder, by fingerprint) and, within a track, into model variants over seeds."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..formats.predictions import Predictions, load_predictions
from ..formats.results import ModelResult, read_result
from ..formats.tokens import open_tokens
from ..metrics import unigram_log_probs
from ..runio import ARGS_FILE, METRICS_FILE, read_json

LOG = logging.getLogger("quixer_rna.report")
# Arguments that do not make a different model variant (the seed is what a group averages over).
NOT_VARIANT = frozenset({"seed", "output_dir", "device", "overwrite", "log_level", "log_every", "data_dir", "config",
                         "train_fraction", "eval_batch_size", "checkpoint_every", "task"})
ROLE_ORDER = ("download", "prepare", "raw_tokens", "encode", "quantize", "train", "tune", "circuit", "trial", "report")


@dataclass
class StageRecord:
    """One run record: where, which stage and role, how it ended, and the files beside it."""

    path: Path  # the record file
    stage: str
    role: str
    status: str
    args: dict[str, Any]
    record: dict[str, Any]

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def name(self) -> str:
        return self.folder.name if self.path.name == ARGS_FILE else self.path.name[: -len("." + ARGS_FILE)]

    def sibling(self, name: str) -> Path:
        """A file of this run: inside its folder, or named after its single output file."""
        if self.path.name == ARGS_FILE:
            return self.folder / name
        return self.folder / f"{self.name}.{name}"

    def json(self, name: str) -> dict[str, Any] | None:
        path = self.sibling(name) if name == METRICS_FILE else self.folder / name
        if not path.is_file():
            return None
        try:
            value = read_json(path)
        except UserError as exc:
            LOG.warning("%s", exc)
            return None
        return value if isinstance(value, dict) else None


def discover(runs_dir: Path) -> tuple[list[StageRecord], list[str]]:
    """Every run record under `runs_dir` (hidden folders and trials of a tuner aside), in pipeline order,
    and the records that could not be read."""
    found: list[StageRecord] = []
    problems: list[str] = []
    for path in sorted(runs_dir.rglob(f"*{ARGS_FILE}")):
        rel = path.relative_to(runs_dir)
        if any(part.startswith(".") for part in rel.parts) or not (path.name == ARGS_FILE or path.name.endswith("." + ARGS_FILE)):
            continue
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            problems.append(f"{rel}: unreadable run record ({exc})")
            continue
        if not isinstance(record, dict) or not all(isinstance(record.get(k), str) for k in ("stage", "role", "status")):
            problems.append(f"{rel}: not a run record of this version (no stage, role and status); rerun its stage")
            continue
        if record["role"] == "trial":
            continue
        found.append(StageRecord(path, record["stage"], record["role"], record["status"],
                                 record.get("args") if isinstance(record.get("args"), dict) else {}, record))
    order = {role: i for i, role in enumerate(ROLE_ORDER)}
    found.sort(key=lambda s: (order.get(s.role, len(order)), str(s.record.get("started") or ""), str(s.path)))
    return found, problems


@dataclass
class Run:
    record: StageRecord
    result: ModelResult
    predictions: Predictions | None


@dataclass
class Group:
    """One model variant: the same settings, one run per seed."""

    model: str
    variant: dict[str, Any]
    fraction: float
    tuned: bool = False
    runs: list[Run] = field(default_factory=list)
    label: str = ""

    @property
    def seeds(self) -> list[int]:
        return [run.result.seed for run in self.runs]

    def metric(self, name: str) -> list[float]:
        return [float(run.result.test[name]) for run in self.runs]

    @property
    def with_predictions(self) -> list[Run]:
        return [run for run in self.runs if run.predictions is not None]


@dataclass
class Track:
    """One token set: every result on it, its unigram reference per window, and what a target is."""

    fingerprint: str
    tokenizer: str
    vocab_size: int
    k: int
    folder: Path
    nt_per_target: int | None = None
    transcripts: np.ndarray | None = None
    unigram_nll: np.ndarray | None = None
    unigram_accuracy: float | None = None
    unigram_top5: float | None = None
    groups: list[Group] = field(default_factory=list)

    @property
    def name(self) -> str:
        if self.tokenizer == "raw k-mers":
            return f"raw {self.k}-mers ({self.vocab_size:,} tokens)"
        return f"{self.tokenizer} ({self.vocab_size:,} tokens)"

    @property
    def raw(self) -> bool:
        return self.tokenizer == "raw k-mers"

    def main_groups(self) -> list[Group]:
        return [g for g in self.groups if math.isclose(g.fraction, 1.0)]


def _variant(record: StageRecord, result: ModelResult) -> dict[str, Any]:
    args = {k: v for k, v in record.args.items() if k not in NOT_VARIANT}
    return {"model": result.model, **args}


def _reference(track: Track, problems: list[str]) -> None:
    """The train-unigram's per-window NLL on the test targets (the trainers' definition) and its hits."""
    import torch

    try:
        data = open_tokens(track.folder, splits=("train", "test"))
    except UserError as exc:
        problems.append(f"{track.name}: {exc}")
        return
    log_probs = unigram_log_probs(data["train"].target_counts())
    targets = torch.cat([data["test"].targets(torch.arange(b, min(data["test"].num_windows, b + (1 << 18))))
                         for b in range(0, data["test"].num_windows, 1 << 18)])
    track.unigram_nll = (-log_probs[targets]).numpy()
    ranked = torch.argsort(log_probs, descending=True)
    track.unigram_accuracy = float((targets == ranked[0]).double().mean())
    track.unigram_top5 = float(torch.isin(targets, ranked[:5]).double().mean())
    track.transcripts = data["test"].window_transcripts()
    stride, k = int(data.stream.meta["stride"]), data.k
    track.nt_per_target = min(stride, k)


def collect_tracks(stages: list[StageRecord]) -> tuple[list[Track], list[str]]:
    """Model results grouped by token set and variant, with each track's unigram reference."""
    problems: list[str] = []
    tracks: dict[str, Track] = {}
    for record in stages:
        if record.role != "train":
            continue
        if record.status != "completed":
            problems.append(f"{record.name} ({record.stage}): {record.status}; left out of the tables")
            continue
        try:
            result = read_result(record.folder)
        except UserError as exc:
            problems.append(str(exc))
            continue
        predictions = None
        try:
            predictions = load_predictions(result.predictions_path)
            if predictions.fingerprint != result.tokens["fingerprint"]:
                problems.append(f"{record.name}: its predictions were made on other token data; no interval")
                predictions = None
        except UserError as exc:
            problems.append(f"{record.name}: {exc}")
        fingerprint = str(result.tokens["fingerprint"])
        track = tracks.setdefault(fingerprint, Track(fingerprint, result.tokenizer, int(result.tokens["vocab_size"]),
                                                     result.k, Path(result.tokens["folder"])))
        variant = _variant(record, result)
        fraction = float(result.train["fraction"])
        group = next((g for g in track.groups if g.variant == variant and math.isclose(g.fraction, fraction)), None)
        if group is None:
            group = Group(result.model, variant, fraction, tuned=bool(record.args.get("config")))
            track.groups.append(group)
        group.runs.append(Run(record, result, predictions))
    for track in tracks.values():
        _reference(track, problems)
        _label(track)
        for group in track.groups:
            lengths = {len(run.predictions) for run in group.with_predictions}
            if track.unigram_nll is not None and lengths - {len(track.unigram_nll)}:
                problems.append(f"{track.name}: {group.label}'s predictions cover other windows; no interval")
                for run in group.runs:
                    run.predictions = None
    return list(tracks.values()), problems


def _label(track: Track) -> None:
    """Model name ("tuned" when trained with a tuner's best_params.json), plus the settings that tell apart
    the variants that would otherwise share a label in the same track."""
    by_name: dict[tuple[str, bool], list[Group]] = {}
    for group in track.groups:
        by_name.setdefault((group.model, group.tuned), []).append(group)
    for groups in by_name.values():
        variants = {json.dumps(g.variant, sort_keys=True, default=str) for g in groups}
        keys = sorted({k for g in groups for k in g.variant}) if len(variants) > 1 else []
        differing = [k for k in keys if len({json.dumps(g.variant.get(k), default=str) for g in groups}) > 1]
        for group in groups:
            tags = ["tuned"] * group.tuned + [f"{k}={group.variant.get(k)}" for k in differing]
            group.label = f"{group.model} ({', '.join(tags)})" if tags else group.model
