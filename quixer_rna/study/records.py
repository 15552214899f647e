"""The study's bookkeeping: timings.json, whether a stage completed with a given command, the one-line error
of a failed stage.

timings.json: {"settings": {...}, "stages": [{"stage", "folder", "status", "seconds"}]}. Settings that grow a
study (seeds, training fractions, tuning) may change between runs of one --out; the others may not, since the
completed stages they made would be reused.

    python -m quixer_rna.study.records completed PLACE [COMMAND...]
        exit 0 when PLACE's run record says completed (and, given COMMAND, was run with its arguments, in any
        order);
        run_classical_prep.sh skips its steps with it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..runio import ARGS_FILE, atomic_write_json
from ..stage import _redacted_command
from .settings import GROWING


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def changed_settings(path: Path, settings: dict[str, Any]) -> list[str]:
    """The settings, other than those that grow a study, that differ from those timings.json recorded. A setting
    the record lacks (added to the code since) is no change: what it governs, a stage's command shows, and a stage
    whose command changed is run again anyway."""
    previous = _load(path).get("settings")
    if previous is None:
        return []
    return sorted(k for k in settings if k not in GROWING and k in previous and previous[k] != settings[k])


def init_settings(path: Path, settings: dict[str, Any]) -> None:
    """Record the study's settings in timings.json; refuse settings other than those its stages were made with."""
    changed = changed_settings(path, settings)
    if changed:
        raise UserError(f"--out {path.parent}: was run with other settings ({', '.join(changed)}); use another --out")
    old = _load(path)
    old["settings"] = settings
    old.setdefault("stages", [])
    atomic_write_json(path, old)


def record_stage(path: Path, name: str, folder: str, status: str, seconds: float) -> None:
    """A stage's status and wall time; a skipped stage keeps the time of the run that completed it."""
    old = _load(path)
    stages = old.get("stages", [])
    previous = next((s for s in stages if s.get("stage") == name), None)
    if status == "skipped" and previous is not None:
        entry = dict(previous, status="completed earlier")
    else:
        entry = {"stage": name, "folder": folder, "status": status, "seconds": float(seconds)}
    old["stages"] = [s for s in stages if s.get("stage") != name] + [entry]
    atomic_write_json(path, old)


def record_path(place: Path) -> Path:
    """A folder's args.json, or the record beside a single-file output."""
    return place / ARGS_FILE if place.is_dir() or not place.suffix else place.with_name(f"{place.name}.{ARGS_FILE}")


def _options(command: list[str]) -> tuple[str, tuple[str, ...], list[tuple[str, tuple[str, ...]]]]:
    """A command as argparse reads it: the script, the words before any option, and each option with its values,
    sorted by option (stably, so a repeated option keeps its order). `--flag=value` is `--flag value`."""
    script, words = command[0], command[1:]
    leading: list[str] = []
    options: list[tuple[str, list[str]]] = []
    for word in words:
        if word.startswith("--"):
            flag, *value = word.split("=", 1)
            options.append((flag, value))
        elif options:
            options[-1][1].append(word)
        else:
            leading.append(word)
    return script, tuple(leading), sorted(((flag, tuple(values)) for flag, values in options), key=lambda o: o[0])


def completed(place: Path, command: list[str] | tuple[str, ...]) -> bool:
    """Whether PLACE's run record says completed and, given `command` (script path, arguments), that it was
    run with these arguments, in any order (the record keeps the script's name): a stage run by hand with its
    options in another order is the same run."""
    path = record_path(place)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or record.get("status") != "completed":
        return False
    if command:
        wanted = _redacted_command([Path(command[0]).name, *command[1:]])
        recorded = record.get("command")
        if (not isinstance(recorded, list) or not recorded or not all(isinstance(w, str) for w in recorded)
                or _options(recorded) != _options(wanted)):
            return False
    return True


def error_line(log: Path) -> str:
    """The last 'prog: error: ...' line of a stage's log, else its last non-empty line."""
    try:
        lines = [line for line in log.read_text(encoding="utf-8", errors="replace").replace("\r", "\n").splitlines()
                 if line.strip()]
    except OSError:
        lines = []
    errors = [line for line in lines if ": error: " in line]
    return (errors or lines or ["no error message"])[-1]


def summary(path: Path) -> list[str]:
    """Wall time per stage, one line each."""
    return [f"pipeline:   {entry['stage']:<28} {entry['seconds']:8.1f} s  ({entry['status']})"
            for entry in _load(path).get("stages", [])]


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] != "completed":
        print(__doc__, file=sys.stderr)
        return 2
    return 0 if completed(Path(argv[1]), argv[2:]) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
