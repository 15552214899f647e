"""The bookkeeping run_pipeline.sh (and run_classical_prep.sh) leave to Python, so the launchers stay one
readable line per stage:

    python -m quixer_rna.pipeline init TIMINGS KEY=VALUE...      record the study's settings; refuse other ones
    python -m quixer_rna.pipeline stage TIMINGS NAME FOLDER STATUS SECONDS
    python -m quixer_rna.pipeline completed PLACE [COMMAND...]   exit 0 when PLACE's run record says completed
                                                                  (and, given COMMAND, was run with its arguments)
    python -m quixer_rna.pipeline error LOG                      the one-line error a failed stage printed
    python -m quixer_rna.pipeline summary TIMINGS                wall time per stage

timings.json: {"settings": {...}, "stages": [{"stage", "folder", "status", "seconds"}]}. Settings that grow a
study (seeds, training fractions, tuning) may change between runs of one --out; the others may not, since the
completed stages they made would be reused.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .runio import ARGS_FILE, atomic_write_json
from .stage import _redacted_command

GROWING = frozenset({"seeds", "tune", "train_fractions"})


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def init(path: Path, pairs: list[str]) -> int:
    old = _load(path)
    settings = {}
    for pair in pairs:
        key, _, text = pair.partition("=")
        try:
            settings[key] = json.loads(text)
        except json.JSONDecodeError:
            settings[key] = text
    previous = old.get("settings")
    if previous is not None:
        changed = sorted(k for k in settings if k not in GROWING and previous.get(k) != settings[k])
        if changed:
            print(f"pipeline: error: {path.parent} was run with other settings ({', '.join(changed)}); use another --out",
                  file=sys.stderr)
            return 2
    old["settings"] = settings
    old.setdefault("stages", [])
    atomic_write_json(path, old)
    return 0


def stage(path: Path, name: str, folder: str, status: str, seconds: str) -> int:
    old = _load(path)
    stages = old.get("stages", [])
    previous = next((s for s in stages if s.get("stage") == name), None)
    if status == "skipped" and previous is not None:
        entry = dict(previous, status="completed earlier")
    else:
        entry = {"stage": name, "folder": folder, "status": status, "seconds": float(seconds)}
    old["stages"] = [s for s in stages if s.get("stage") != name] + [entry]
    atomic_write_json(path, old)
    return 0


def record_path(place: Path) -> Path:
    """A folder's args.json, or the record beside a single-file output."""
    return place / ARGS_FILE if place.is_dir() or not place.suffix else place.with_name(f"{place.name}.{ARGS_FILE}")


def completed(place: Path, command: list[str]) -> int:
    path = record_path(place)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 1
    if not isinstance(record, dict) or record.get("status") != "completed":
        return 1
    if command:
        wanted = _redacted_command([Path(command[0]).name, *command[1:]])
        if record.get("command") != wanted:
            return 1
    return 0


def error(log: Path) -> int:
    """The last 'prog: error: ...' line of a stage's log, else its last non-empty line."""
    try:
        lines = [line for line in log.read_text(encoding="utf-8", errors="replace").replace("\r", "\n").splitlines()
                 if line.strip()]
    except OSError:
        lines = []
    errors = [line for line in lines if ": error: " in line]
    print((errors or lines or ["no error message"])[-1])
    return 0


def summary(path: Path) -> int:
    for entry in _load(path).get("stages", []):
        print(f"pipeline:   {entry['stage']:<28} {entry['seconds']:8.1f} s  ({entry['status']})")
    return 0


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    action, rest = argv[0], argv[1:]
    if action == "init":
        return init(Path(rest[0]), rest[1:])
    if action == "stage":
        return stage(Path(rest[0]), *rest[1:5])
    if action == "completed":
        return completed(Path(rest[0]), rest[1:])
    if action == "error":
        return error(Path(rest[0]))
    if action == "summary":
        return summary(Path(rest[0]))
    print(f"pipeline: unknown action {action!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
