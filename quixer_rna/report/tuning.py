"""Each tuner's search as the report shows it: the best validation loss after every trial (did the search
settle?), the trials complete and pruned, the best trial and its hyperparameters, read strictly from the
tuning folder's metrics.json and trials.csv."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

from ..errors import UserError
from ..runio import METRICS_FILE, read_json
from ..formats.tokens import TokenMetadata
from .collect import StageRecord, track_name
from .labels import tuning_name
from .records import TuningCurve
from .strict import Strict

TRIALS_FILE = "trials.csv"
TRIAL_COLUMNS = ("number", "state", "value", "params")
PARAMETERS_COLUMN = "parameters"  # the trial's model parameter count, in tuners that record it


def _trials(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in TRIAL_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise UserError(f"{path}: no column {', '.join(missing)}, which the report reads; rerun the tuner")
            rows = list(reader)
    except OSError as exc:
        raise UserError(f"{path}: unreadable trials table ({exc}); rerun the tuner") from exc
    try:
        return sorted(rows, key=lambda row: int(row["number"]))
    except ValueError as exc:
        raise UserError(f"{path}: a trial number is not an integer ({exc})") from exc


def _value(row: dict[str, str], path: Path) -> float | None:
    try:
        return float(row["value"]) if row["value"] else None
    except ValueError as exc:
        raise UserError(f"{path}: trial {row['number']}'s value {row['value']!r} is not a number") from exc


def _params(row: dict[str, str], path: Path) -> dict:
    try:
        return json.loads(row["params"])
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: trial {row['number']}'s params are not JSON ({exc})") from exc


def read_curve(stage: StageRecord, runs_dir: Path, track: str, summary: dict) -> TuningCurve:
    """One tuning folder (its metrics.json read as `summary`) as a curve of the best value so far against the
    trial number (complete trials)."""
    metrics = Strict(summary, stage.sibling(METRICS_FILE))
    budget = metrics.sub("budget")
    path = stage.folder / TRIALS_FILE
    rows = _trials(path)
    curve, best = [], None
    for row in rows:
        value = _value(row, path)
        if row["state"] == "COMPLETE" and value is not None and (best is None or value < best):
            best = value
        if best is not None and row["state"] == "COMPLETE":
            curve.append((int(row["number"]), best))
    best_trial = metrics.integer_or_none("best_trial")
    best_row = next((row for row in rows if best_trial is not None and int(row["number"]) == best_trial), None)
    if best_trial is not None and best_row is None:
        raise UserError(f"{path}: no row for the best trial {best_trial} that {METRICS_FILE} names; rerun the tuner")
    finished = [int(row["number"]) for row in rows if row["state"] in ("COMPLETE", "PRUNED", "FAIL")]
    still_improving = None
    if best_trial is not None and finished:
        still_improving = finished.index(best_trial) >= 2 * len(finished) / 3
    parameters = best_row.get(PARAMETERS_COLUMN) if best_row is not None else None
    model = metrics.text("model")
    flags = metrics["best_params"] or {}
    return TuningCurve(
        model=model, label=tuning_name(model, flags), track=track, folder=stage.folder.relative_to(runs_dir).as_posix(),
        budget={key: budget[key] for key in ("trials", "epochs_per_trial", "max_steps_per_epoch")},
        trials=len(rows), complete=sum(r["state"] == "COMPLETE" for r in rows),
        pruned=sum(r["state"] == "PRUNED" for r in rows), failed=sum(r["state"] == "FAIL" for r in rows),
        best_value=metrics.number_or_none("best_value"), best_trial=best_trial,
        best_params=_params(best_row, path) if best_row is not None else {},
        best_parameters=int(float(parameters)) if parameters else None,
        still_improving=still_improving, curve=tuple(curve),
    )


def _track(data_dir: Path) -> str:
    """The name of the token track a tuner searched on, from its token folder (its path if that is gone)."""
    try:
        tokens = TokenMetadata.read(data_dir)
    except UserError:
        return str(data_dir)
    return track_name(tokens.tokenizer, tokens.vocab_size, tokens.k)


def read_curves(stages: list[StageRecord], runs_dir: Path) -> tuple[TuningCurve, ...]:
    """Every completed tuning study, named by the token track it searched on. Workers sharing one study (one
    storage and study name) make one curve: the summary of the worker that saw the most trials with a value,
    listing the others' folders."""
    studies: dict[tuple, list[tuple[int, TuningCurve]]] = {}
    for stage in stages:
        if stage.role == "tune" and stage.status == "completed":
            data_dir = Path(Strict(stage.args, stage.path, "args.").text("data_dir"))
            metrics = read_json(stage.sibling(METRICS_FILE), "tuning metrics")
            curve = read_curve(stage, runs_dir, _track(data_dir), metrics)
            storage, name = metrics.get("storage"), metrics.get("study_name")
            key = (storage, name) if storage and name else (curve.folder,)
            studies.setdefault(key, []).append((int(metrics.get("n_trials_with_value") or 0), curve))
    curves = []
    for workers in studies.values():
        most = max(seen for seen, _ in workers)
        chosen = next(curve for seen, curve in workers if seen == most)
        others = tuple(curve.folder for _, curve in workers if curve is not chosen)
        curves.append(dataclasses.replace(chosen, other_workers=others))
    return tuple(curves)
