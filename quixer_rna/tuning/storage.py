"""Where a study lives: --storage as Optuna storage (a database with heartbeats, or a journal file), opened so
that several workers creating the same new database or study at once do not fail."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback

from ..errors import UserError
from ..stage import redact

JOURNAL_SUFFIXES = (".log", ".journal")


@dataclass
class StorageChoice:
    """The opened storage, how to show it (password hidden), and whether it records heartbeats."""

    storage: Any
    shown: str
    heartbeat: bool


def hide_password(url: str) -> str:
    """A storage URL as logs and run records show it: the password replaced by ***."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return redact(url)


def one_line(exc: BaseException) -> str:
    """An exception as one line of at most 500 characters (trials.csv's error column, log lines)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:500]


def open_storage(spec: str | None, output_dir: Path, heartbeat: int) -> StorageChoice:
    """--storage as Optuna storage: a database with heartbeats (stale trials failed and retried once), or a
    journal file; default an SQLite file in the output folder."""
    if not spec:
        spec = f"sqlite:///{(output_dir / 'study.db').resolve()}"
    if "://" not in spec:
        path = Path(spec)
        if path.suffix not in JOURNAL_SUFFIXES:
            raise UserError(
                f"--storage {spec}: expected a database URL (sqlite:///study.db, postgresql://...) "
                "or a journal file path ending in .log or .journal"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = optuna.storages.journal.JournalFileBackend(str(path))
        return StorageChoice(optuna.storages.journal.JournalStorage(backend), str(path), False)
    engine_kwargs: dict[str, Any] = {}
    if spec.startswith("sqlite:///"):
        Path(spec[len("sqlite:///"):].split("?", 1)[0]).parent.mkdir(parents=True, exist_ok=True)
        # Processes sharing one SQLite file wait for each other's writes instead of failing.
        engine_kwargs = {"connect_args": {"timeout": 120}}
    shown = hide_password(spec)

    def connect() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                spec, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat, grace_period=2 * heartbeat,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
            )

    try:
        storage = retrying(connect)
    except Exception as exc:  # a missing driver, a bad URL, a refused connection: all the user's to fix
        raise UserError(f"--storage {shown}: cannot open it ({one_line(exc)[:300]})") from exc
    return StorageChoice(storage, shown, True)


def retrying(make: Callable[[], Any], attempts: int = 5) -> Any:
    """`make()`, again after a pause when two workers creating the same new database or study at once
    collided (a duplicate row, or a table the other created first): the second finds the first one's work
    on its next try."""
    for attempt in range(attempts):
        try:
            return make()
        except Exception as exc:  # SQLAlchemy's errors, wrapped differently by each driver
            text = type(exc).__name__ + str(exc)
            if attempt == attempts - 1 or not ("IntegrityError" in text or "already exists" in text):
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")
