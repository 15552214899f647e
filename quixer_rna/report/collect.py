"""What a study folder holds, read through the stages' own records: every run record (args.json, or
<file>.args.json beside a single-file output) names its stage and role, every model result follows the
results schema (quixer_rna.formats.results), and results are grouped into token tracks (one per token
folder, by fingerprint) and, within a track, into model variants over seeds and training fractions.

Each track's test windows are mapped to their gene (the unit the split kept whole) through the test split's
transcripts.tsv; each run's per-window losses (test_predictions.npz) are kept only as per-gene sums, which is
all the bootstrap needs. A folder that is not a result, or a result of another schema, is left out with its
reason in the report's problems.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..formats.predictions import FILE as PREDICTIONS_FILE, load_predictions
from ..formats.results import ModelResult, read_result
from ..formats.tokens import open_tokens
from ..metrics import unigram_log_probs
from ..runio import ARGS_FILE
from ..training.config import STOPPING_RULE
from .labels import COUNT_MODELS, Name, assign_labels, model_name
from .stats import per_gene_sums

# Arguments that do not make a different model variant (the seed is what a group averages over). The stopping
# rule is not one either, as in the trainer's run identity: it decides only where a trajectory ends, and each
# run says how it ended (so runs from before --patience_epochs existed join the later ones).
NOT_VARIANT = frozenset({"seed", "output_dir", "device", "overwrite", "log_level", "log_every", "data_dir", "config",
                         "train_fraction", "eval_batch_size", "checkpoint_every", "task", *STOPPING_RULE})
ROLE_ORDER = ("download", "prepare", "raw_tokens", "encode", "quantize", "train", "tune", "circuit", "trial", "report")


@dataclass
class StageRecord:
    """One run record: where, which stage and role, how it ended."""

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


def first_stage(stages: list[StageRecord], role: str) -> StageRecord | None:
    """The first completed stage of a role, else the first of that role."""
    matches = [s for s in stages if s.role == role]
    return next((s for s in matches if s.status == "completed"), matches[0] if matches else None)


@dataclass
class Run:
    record: StageRecord
    result: ModelResult
    sums: np.ndarray | None = None  # per-gene sums of the per-window test losses (None: no usable predictions)


@dataclass
class Group:
    """One model variant at one training fraction: the same settings, one run per seed."""

    model: str
    name: Name
    variant: dict[str, Any]
    fraction: float
    tuned: bool = False
    runs: list[Run] = field(default_factory=list)
    base: str = ""
    label: str = ""

    @property
    def counts(self) -> bool:
        """A count model: no training to converge, no seed to repeat."""
        return self.model in COUNT_MODELS

    @property
    def seeds(self) -> list[int]:
        return [run.result.seed for run in self.runs]

    def metric(self, name: str) -> list[float]:
        return [float(run.result.test[name]) for run in self.runs]

    @property
    def sums(self) -> np.ndarray | None:
        """[seeds, genes] per-gene loss sums, when every run has them."""
        if not self.runs or any(run.sums is None for run in self.runs):
            return None
        return np.stack([run.sums for run in self.runs])


@dataclass
class Track:
    """One token set: every result on it, its test genes, and the train-unigram reference per gene."""

    fingerprint: str
    tokenizer: str
    vocab_size: int
    k: int
    folder: Path
    nt_per_target: int | None = None
    units: np.ndarray | None = None  # each test window's gene, numbered 0..genes-1
    genes: np.ndarray | None = None  # the test genes' names, by number
    unigram_sums: np.ndarray | None = None
    unigram_accuracy: float | None = None
    unigram_top5: float | None = None
    groups: list[Group] = field(default_factory=list)
    transcripts: np.ndarray | None = None  # each test window's transcript row

    @property
    def name(self) -> str:
        return track_name(self.tokenizer, self.vocab_size, self.k)

    @property
    def test_genes(self) -> int | None:
        return None if self.genes is None else len(self.genes)

    def gene_sums(self, values: np.ndarray) -> np.ndarray:
        """Per-gene sums of per-window values over this track's test windows."""
        return per_gene_sums(values, self.units, len(self.genes))

    @property
    def raw(self) -> bool:
        return self.tokenizer == "raw k-mers"

    def main_groups(self) -> list[Group]:
        return [g for g in self.groups if math.isclose(g.fraction, 1.0)]


def track_name(tokenizer: str, vocab_size: int, k: int) -> str:
    """How the report names a token track."""
    if tokenizer == "raw k-mers":
        return f"raw {k}-mers ({vocab_size:,} tokens)"
    return f"{tokenizer} ({vocab_size:,} tokens)"


def _variant(record: StageRecord, result: ModelResult) -> dict[str, Any]:
    """The settings a run was given. A switch left off and a flag left unset are the model's default, as in a
    run recorded before that flag existed: neither makes a variant of its own."""
    args = {k: v for k, v in record.args.items() if k not in NOT_VARIANT and v is not None and v is not False}
    return {"model": result.model, **args}


def _read(record: StageRecord) -> tuple[ModelResult, Name]:
    """A result with the fields the report needs of its kind, or a one-line UserError naming its file."""
    result = read_result(record.folder)
    if result.model not in COUNT_MODELS:
        missing = result.missing_training_fields()
        if missing:
            raise UserError(f"{record.folder / 'metrics.json'}: a neural result without {', '.join(missing)} "
                            "(written before training recorded convergence); rerun its stage")
    return result, model_name(result, record.folder)


def _reference(track: Track) -> None:
    """The test windows' genes, and the train-unigram's per-window NLL on the test targets (the trainers'
    definition) as per-gene sums, with its hits."""
    import torch

    data = open_tokens(track.folder, splits=("train", "test"))
    test = data["test"]
    log_probs = unigram_log_probs(data["train"].target_counts())
    targets = torch.cat([test.targets(torch.arange(b, min(test.num_windows, b + (1 << 18))))
                         for b in range(0, test.num_windows, 1 << 18)])
    rows = test.window_transcripts()
    genes = np.asarray(test.stream.transcripts.genes, dtype=object)
    names, units = np.unique(genes[rows], return_inverse=True)
    track.transcripts, track.units, track.genes = rows, units.reshape(-1), names
    track.unigram_sums = track.gene_sums((-log_probs[targets]).numpy())
    ranked = torch.argsort(log_probs, descending=True)
    track.unigram_accuracy = float((targets == ranked[0]).double().mean())
    track.unigram_top5 = float(torch.isin(targets, ranked[:5]).double().mean())
    track.nt_per_target = min(data.stream.meta.stride, data.k)


def _attach_predictions(track: Track, run: Run, problems: list[str]) -> None:
    """The run's per-window losses as per-gene sums, when they are over this track's test windows."""
    name = run.record.name
    try:
        predictions = load_predictions(run.record.folder / PREDICTIONS_FILE)
    except UserError as exc:
        problems.append(f"{name}: {exc}")
        return
    if predictions.fingerprint != run.result.tokens["fingerprint"]:
        problems.append(f"{name}: its predictions were made on other token data; no interval")
    elif track.transcripts is None or not np.array_equal(predictions.transcript, track.transcripts):
        problems.append(f"{name}: its predictions cover other windows than the track's test split; no interval")
    else:
        run.sums = track.gene_sums(predictions.nll)


def collect_tracks(stages: list[StageRecord]) -> tuple[list[Track], list[str]]:
    """Model results grouped by token set and variant, with each track's genes and unigram reference."""
    problems: list[str] = []
    tracks: dict[str, Track] = {}
    for record in stages:
        if record.role != "train":
            continue
        if record.status != "completed":
            problems.append(f"{record.name} ({record.stage}): {record.status}; left out of the tables")
            continue
        try:
            result, name = _read(record)
        except UserError as exc:
            problems.append(str(exc))
            continue
        fingerprint = str(result.tokens["fingerprint"])
        track = tracks.setdefault(fingerprint, Track(fingerprint, result.tokenizer, int(result.tokens["vocab_size"]),
                                                     result.k, Path(result.tokens["folder"])))
        variant = _variant(record, result)
        fraction = float(result.train["fraction"])
        group = next((g for g in track.groups if g.variant == variant and math.isclose(g.fraction, fraction)), None)
        if group is None:
            group = Group(result.model, name, variant, fraction, tuned=bool(record.args.get("config")))
            track.groups.append(group)
        if result.seed in group.seeds:
            problems.append(f"{record.name} ({record.folder}): a second run of seed {result.seed} with the same "
                            "settings (another stopping rule?); left out of the tables")
            continue
        group.runs.append(Run(record, result))
    for track in tracks.values():
        # the bootstrap draws seeds per group, in order: the order runs were made must not move the intervals
        track.groups.sort(key=lambda g: (json.dumps(g.variant, sort_keys=True, default=str), g.fraction))
        for group in track.groups:
            group.runs.sort(key=lambda run: run.result.seed)
        try:
            _reference(track)
        except UserError as exc:
            problems.append(f"{track.name}: {exc}; no intervals")
        else:
            for group in track.groups:
                for run in group.runs:
                    _attach_predictions(track, run, problems)
        assign_labels(track.groups)
    return list(tracks.values()), problems
