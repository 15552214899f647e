"""The life of one stage run in its output place: claim it, record it, close it.

Every stage script runs its work inside `stage_run(...)`, which

1. takes an OS lock (`fcntl.flock`) on a lock file in the output folder and holds it for the life of the
   process: the kernel drops it when the process ends, however it ends (SIGKILL, OOM killer, power cut), so
   a folder whose run record says "running" but whose lock is free belongs to a dead run;
2. refuses the folder, with one line, when another live process holds it (naming that process), or when it
   holds results this run would replace (a completed run, or files of no run) unless --overwrite;
3. writes the run record `args.json` (resolved arguments, versions, git commit, command line, pid, host,
   start, status "running", the stage's role) and, when the block ends, `metrics.json` and the final status:
   "completed", "failed" (with the error) or "interrupted".

A dead, failed or interrupted run is no result worth protecting: rerunning the same command over it
resumes (trainers continue from their checkpoint, the download from its FASTA) or starts again. A stage
whose output is a single file (the download's FASTA) keeps its record beside that file, named after it
(`rna.fasta.args.json`), so several downloads may share a folder.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import platform
import re
import subprocess
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from .cli import command_line
from .errors import UserError
from .runio import ARGS_FILE, METRICS_FILE, atomic_write_json, read_json

LOCK_FILE = ".quixer-rna.lock"
# Logs the GPU launchers (run_lambeq_gpu.sh, run_train_gpu.sh) start in the output folder before the stage
# runs, and the lock file itself: a folder holding only these holds no result.
NOT_RESULTS = frozenset({"encode.log", "train.log", LOCK_FILE})
# Flags whose values are secrets: a run record keeps only that they were given.
SECRET_FLAGS = ("api_key",)
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")
_TRACKED_PACKAGES = ("torch", "numpy", "lambeq", "pennylane", "scikit-learn", "optuna")
REUSABLE = frozenset({"failed", "interrupted", "dead"})


def redact(value: Any) -> Any:
    """Hide passwords inside URLs (e.g. an Optuna --storage postgresql://user:pw@host/db)."""
    if isinstance(value, str):
        return _URL_PASSWORD.sub(r"\1***@", value)
    return value


def _redacted_args(args: dict[str, Any]) -> dict[str, Any]:
    return {k: ("<given>" if k in SECRET_FLAGS and v else redact(v)) for k, v in args.items()}


def _redacted_command(argv: list[str]) -> list[str]:
    shown: list[str] = []
    hide_next = False
    for item in argv:
        flag = item.split("=", 1)[0].lstrip("-")
        if hide_next:
            shown.append("<given>")
        elif item.startswith("--") and flag in SECRET_FLAGS and "=" in item:
            shown.append(f"--{flag}=<given>")
        else:
            shown.append(redact(item))
        hide_next = item.startswith("--") and flag in SECRET_FLAGS and "=" not in item
    return shown


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in _TRACKED_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class Place:
    """Where a stage writes: a folder (record args.json / metrics.json inside it) or one file (record
    `<file>.args.json` / `<file>.metrics.json` beside it)."""

    path: Path
    single_file: bool = False

    @property
    def folder(self) -> Path:
        return self.path.parent if self.single_file else self.path

    def named(self, name: str) -> Path:
        return self.path.parent / f"{self.path.name}.{name}" if self.single_file else self.path / name

    @property
    def args_path(self) -> Path:
        return self.named(ARGS_FILE)

    @property
    def metrics_path(self) -> Path:
        return self.named(METRICS_FILE)

    @property
    def lock_path(self) -> Path:
        return self.path.parent / f".{self.path.name}.lock" if self.single_file else self.path / LOCK_FILE


def _holder(lock_path: Path) -> str:
    try:
        info = json.loads(lock_path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process"
    return f"process {info.get('pid')} on {info.get('host')} (running {info.get('stage')} since {info.get('started')})"


class FolderLock:
    """An exclusive flock held by this process until `release` (or its death)."""

    def __init__(self, path: Path):
        self.path = path
        self._handle: Any = None

    def acquire(self, what: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise UserError(f"{what}: {_holder(self.path)} is writing it; wait for it to end or choose another") from None
        self._handle = handle

    def describe(self, stage: str) -> None:
        """Say in the lock file who holds it, for the message a second process prints."""
        handle = self._handle
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": platform.node(), "stage": stage, "started": now()}))
        handle.flush()

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.seek(0)
                self._handle.truncate()
            self._handle.close()
            self._handle = None


def previous_status(place: Place) -> tuple[str | None, dict[str, Any] | None]:
    """("completed" | "failed" | "interrupted" | "dead" | None, the old record). Call with the lock held: a
    record still saying "running" then belongs to a process that died."""
    path = place.args_path
    if not path.is_file():
        return None, None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "dead", None
    if not isinstance(record, dict):
        return "dead", None
    status = record.get("status")
    return ("dead" if status == "running" else status), record


def _holds_other_files(place: Place) -> bool:
    if place.single_file:
        return place.path.exists()
    return place.path.is_dir() and any(entry.name not in NOT_RESULTS for entry in place.path.iterdir())


@dataclass
class StageRun:
    """One run of a stage in its place; `finish(metrics)` closes it as completed."""

    place: Place
    stage: str
    role: str
    record: dict[str, Any] = field(default_factory=dict)
    previous: str | None = None
    previous_record: dict[str, Any] | None = None
    finished: bool = False

    @property
    def output_dir(self) -> Path:
        return self.place.folder

    @property
    def completed_earlier(self) -> bool:
        return self.previous == "completed" and not self.record

    def start(self, args: dict[str, Any]) -> None:
        self.record = {
            "stage": self.stage,
            "role": self.role,
            "args": _redacted_args(args),
            "command": _redacted_command(command_line()),
            "versions": _versions(),
            "git_commit": _git_commit(),
            "host": platform.node(),
            "pid": os.getpid(),
            "started": now(),
            "finished": None,
            "status": "running",
        }
        if self.previous in REUSABLE:
            self.record["previous_run"] = self.previous
        atomic_write_json(self.place.args_path, self.record)

    def finish(self, metrics: dict[str, Any], status: str = "completed") -> None:
        atomic_write_json(self.place.metrics_path, metrics)
        self.close(status)

    def close(self, status: str, error: str | None = None) -> None:
        if not self.record or self.finished:
            return
        self.record["finished"] = now()
        self.record["status"] = status
        if error is not None:
            self.record["error"] = error
        atomic_write_json(self.place.args_path, self.record)
        self.finished = True


@contextlib.contextmanager
def stage_run(
    path: str | os.PathLike,
    stage: str,
    args: dict[str, Any],
    *,
    role: str,
    overwrite: bool = False,
    flag: str = "--output_dir",
    single_file: bool = False,
    completed: str = "refuse",
) -> Iterator[StageRun]:
    """Claim `path` for this stage, record the run, and close the record however the block ends.

    completed: what a completed run of this stage found there means: "refuse" (unless --overwrite), "report"
    (handed back unstarted, `run.completed_earlier`, for stages that report a finished result when rerun: the
    trainers) or "rerun" (a new run over it: the download, which only fetches what is missing)."""
    if completed not in ("refuse", "report", "rerun"):
        raise ValueError(f"completed must be refuse, report or rerun, got {completed!r}")
    place = Place(Path(path), single_file)
    run = StageRun(place, stage, role)
    if place.path.exists() and not single_file and not place.path.is_dir():
        raise UserError(f"{flag} {place.path}: exists and is not a folder")
    if single_file and place.path.is_dir():
        raise UserError(f"{flag} {place.path}: is a folder; give a file's path")
    lock = FolderLock(place.lock_path)
    lock.acquire(f"{flag} {place.path}")
    try:
        lock.describe(stage)
        run.previous, run.previous_record = previous_status(place)
        if run.previous is not None and run.previous_record is not None and run.previous_record.get("stage") != stage:
            if not overwrite:
                raise UserError(
                    f"{flag} {place.path}: holds a run of stage '{run.previous_record.get('stage')}'; "
                    "choose another place or pass --overwrite"
                )
        elif run.previous == "completed" and not overwrite and completed == "refuse":
            raise UserError(
                f"{flag} {place.path}: holds a completed run; pass --overwrite to replace its results or choose another"
            )
        elif run.previous is None and _holds_other_files(place) and not overwrite and not single_file:
            raise UserError(
                f"{flag} {place.path}: folder is not empty; pass --overwrite to replace its results or choose another"
            )
        if not (completed == "report" and run.previous == "completed" and not overwrite):
            run.start(args)
        try:
            yield run
        except UserError as exc:
            run.close("failed", str(exc))
            raise
        except KeyboardInterrupt:
            run.close("interrupted", "KeyboardInterrupt")
            raise
        except BaseException as exc:
            run.close("failed", f"{type(exc).__name__}: {exc}")
            raise
        else:
            if not run.finished and run.record:
                run.close("failed", "the stage ended without recording its result")
    finally:
        lock.release()


def read_record(path: str | os.PathLike) -> dict[str, Any]:
    """A run record (args.json) as a dict; a missing or malformed one is a UserError."""
    record = read_json(path, "run record")
    if not isinstance(record, dict):
        raise UserError(f"{path}: not a run record")
    return record
