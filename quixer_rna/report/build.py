"""make_report: read a study folder (collect, readers, tuning, quantum), compute its records (summary), draw
the figures and write report.md and report.json from the same records."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..runio import atomic_write_text, to_json
from . import figures, markdown
from .collect import collect_tracks, discover, first_stage
from .quantum import read_costs
from .readers import is_synthetic, read_dataset, read_timings, read_tokenizer
from .records import Bootstrap, CodeCommit, Report, StageLine
from .stats import LEVEL, TOST_LEVEL
from .summary import summarize_track
from .tuning import read_curves

REPORT_MD = "report.md"
REPORT_JSON = "report.json"
TRAINING_CURVES = "training_curves.png"
DEFAULT_MARGIN = 0.01  # nats per target: smaller differences count as equivalent (TOST)


def build_report(runs_dir: Path, n_boot: int, seed: int, margin: float) -> Report:
    """Every record of the report of `runs_dir` (no file written)."""
    stages, problems = discover(runs_dir)
    if not stages:
        raise UserError(f"--runs {runs_dir}: no run records (args.json with a stage and role) found; run a stage first")
    tracks, more = collect_tracks(stages)
    problems += more
    prepare = first_stage(stages, "prepare")
    dataset = read_dataset(prepare, runs_dir) if prepare is not None and prepare.status == "completed" else None
    commits = Counter(s.record["git_commit"] for s in stages if s.record.get("git_commit"))  # first-seen order
    return Report(
        runs_dir=str(runs_dir),
        generated=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        commits=tuple(CodeCommit(c, n) for c, n in commits.items()),
        synthetic=is_synthetic(stages, dataset),
        bootstrap=Bootstrap(n_boot, seed, LEVEL, TOST_LEVEL, margin, "gene"),
        dataset=dataset,
        tokenizer=read_tokenizer(first_stage(stages, "quantize"), first_stage(stages, "encode")),
        tracks=tuple(summarize_track(t, n_boot, seed, margin) for t in sorted(tracks, key=lambda t: (t.raw, t.name))),
        tuning=read_curves(stages, runs_dir),
        quantum_cost=read_costs(stages, runs_dir),
        training_curves=tuple((s.folder / TRAINING_CURVES).relative_to(runs_dir).as_posix() for s in stages
                              if s.role == "train" and (s.folder / TRAINING_CURVES).is_file()),
        timings=read_timings(runs_dir),
        stages=tuple(StageLine(s.path.relative_to(runs_dir).as_posix(), s.stage, s.role, s.status) for s in stages),
        problems=tuple(problems),
    )


def make_report(runs_dir: str | os.PathLike, n_boot: int = 1000, seed: int = 0,
                margin: float = DEFAULT_MARGIN) -> dict[str, Any]:
    """Write report.md, report.json and the figures under `runs_dir`; returns report.json's content."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise UserError(f"--runs {runs_dir}: folder not found")
    if not margin > 0:
        raise UserError(f"--margin {margin}: must be a positive number of nats")
    report = build_report(runs_dir, n_boot, seed, margin)
    report = dataclasses.replace(report, figures=figures.draw(report, runs_dir))
    content = to_json(dataclasses.asdict(report))
    atomic_write_text(runs_dir / REPORT_JSON, content)
    atomic_write_text(runs_dir / REPORT_MD, markdown.render(report))
    return json.loads(content)
