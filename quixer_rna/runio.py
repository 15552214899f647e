"""Atomic file writes and the run record (args.json / metrics.json) every stage leaves behind.

Every file a stage produces goes through `atomic_write`: written to a temporary file in the same
folder, flushed, fsynced and renamed over the target, so a crash leaves either the old file or the
new one, never half of one.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator, IO

from .errors import UserError

ARGS_FILE = "args.json"
METRICS_FILE = "metrics.json"

# Flags whose values are secrets: a run record keeps only that they were given.
SECRET_FLAGS = ("api_key",)
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")

_TRACKED_PACKAGES = ("torch", "numpy", "biopython", "lambeq", "pennylane", "scikit-learn", "optuna")


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary sibling of `path` for writing; rename it over `path` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    binary = "b" in mode
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600 files; results are shared between users on a GPU box, so follow the umask.
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if hasattr(value, "tolist") and callable(value.tolist):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)


def _finite_or_none(value: Any) -> Any:
    """JSON has no NaN/Infinity: store them as null so every reader can parse the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


def to_json(obj: Any) -> str:
    plain = json.loads(json.dumps(obj, default=_json_default))
    return json.dumps(_finite_or_none(plain), indent=2, sort_keys=False) + "\n"


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, to_json(obj))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    import torch

    with atomic_open(path, "wb") as handle:
        torch.save(obj, handle)


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Read a JSON file, turning a missing or malformed file into a one-line UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from exc


def read_torch(path: str | os.PathLike, what: str, hint: str = "") -> Any:
    """torch.load a tensors-and-plain-types file on CPU (weights_only: no pickled code runs); a corrupt or
    foreign file is a one-line UserError ending with `hint`."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise UserError(f"{path}: not a readable {what} ({type(exc).__name__}: {str(exc)[:120]}){hint}") from exc


# Logs the GPU launchers (run_lambeq_gpu.sh, run_train_gpu.sh) start in the output folder before the
# stage runs: a folder holding only these is still empty.
LAUNCHER_LOGS = frozenset({"encode.log", "train.log"})


def prepare_output_dir(path: str | os.PathLike, overwrite: bool, flag: str = "--output_dir") -> Path:
    """Create the output folder; refuse a non-empty one unless `overwrite` (which empties nothing:
    files are replaced one by one, atomically, as the stage writes them)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path}: exists and is not a folder")
    holds_results = path.is_dir() and any(entry.name not in LAUNCHER_LOGS for entry in path.iterdir())
    if holds_results and not overwrite and not _holds_failed_run(path):
        raise UserError(
            f"{flag} {path}: folder is not empty; pass --overwrite to replace its results or choose another folder"
        )
    path.mkdir(parents=True, exist_ok=True)
    return path


def _holds_failed_run(path: Path) -> bool:
    """A folder whose last run stopped on an error holds no result worth protecting: rerunning the
    corrected command may reuse it without --overwrite."""
    try:
        record = json.loads((path / ARGS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and record.get("status") == "failed"


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


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


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


class RunRecord:
    """Writes args.json when a stage starts and again, with its end time, when it finishes;
    metrics.json holds what the stage counted or measured. Secrets (API keys, URL passwords) are
    recorded only as given."""

    def __init__(self, output_dir: str | os.PathLike, stage: str, args: dict[str, Any]):
        self.output_dir = Path(output_dir)
        self.record: dict[str, Any] = {
            "stage": stage,
            "args": _redacted_args(args),
            "command": _redacted_command([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "versions": _versions(),
            "git_commit": _git_commit(),
            "host": platform.node(),
            "started": _now(),
            "finished": None,
            "status": "running",
        }
        atomic_write_json(self.output_dir / ARGS_FILE, self.record)
        _OPEN_RECORDS.append(self)

    def finish(self, metrics: dict[str, Any], status: str = "completed") -> None:
        atomic_write_json(self.output_dir / METRICS_FILE, metrics)
        self._close(status)

    def _close(self, status: str, error: str | None = None) -> None:
        self.record["finished"] = _now()
        self.record["status"] = status
        if error is not None:
            self.record["error"] = error
        atomic_write_json(self.output_dir / ARGS_FILE, self.record)
        if self in _OPEN_RECORDS:
            _OPEN_RECORDS.remove(self)


_OPEN_RECORDS: list[RunRecord] = []


def close_open_records(status: str, error: str) -> None:
    """Mark every run record still "running" as stopped (the CLI wrapper calls this when a stage
    ends on an error or Ctrl-C), so args.json never claims a dead run is alive."""
    for record in list(_OPEN_RECORDS):
        try:
            record._close(status, error)
        except OSError:
            _OPEN_RECORDS.remove(record)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20, update: Callable[[int], None] | None = None) -> str:
    """Hex sha256 of a file, read in chunks (FASTA inputs can be large)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
            if update:
                update(len(block))
    return digest.hexdigest()
