"""Optuna tuning of one model with the same budget every model gets: a seeded TPE sampler, a median
pruner fed each epoch's val loss, and every trial trained by the shared loop exactly as its trainer
script would train it (the trial's flags go through that script's own parser and model config).

A study lives in Optuna storage (SQLite file, RDB URL or journal file), so rerunning the command
continues it up to --n_trials finished trials, and several processes or machines given one storage
share one study. Claiming a trial (count, then ask) happens under a file lock next to a file-backed
storage, so processes on one machine never overshoot --n_trials; over a remote RDB two processes
claiming the last slot in the same instant can run one trial too many. A trial left RUNNING by a
killed process on this host is marked failed when the next claim finds its process gone.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import fcntl
import gc
import io
import json
import logging
import math
import os
import shutil
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from .errors import UserError
from .formats.tokens import TokenSplit, load_token_dataset
from .runio import (
    ARGS_FILE,
    RunRecord,
    atomic_open,
    atomic_write_json,
    atomic_write_text,
    prepare_output_dir,
    read_json,
)
from .training import config_from_args, prepare_task, train_model

LOG = logging.getLogger("quixer_rna.tuning")
STAGE = "tune_quixer_hybrid"
TRIALS_DIR = "trials"
BEST_PARAMS_FILE = "best_params.json"
TRIALS_FILE = "trials.csv"
HISTORY_PLOT = "optimization_history.png"
IMPORTANCE_PLOT = "param_importances.png"
JOURNAL_SUFFIXES = (".log", ".journal")
LOG_SCALE = frozenset({"lr", "weight_decay", "init_std"})
# Trials that hold a place in the budget: finished ones and those running in some process.
CLAIMED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
# Resolved trainer flags that change a result beside the searched ones; best_params.json keeps them.
RECORDED_FLAGS = ("model", "task", "batch_size", "init_strategy", "use_layerwise_training", "layerwise_epochs")
PRUNER_STARTUP_TRIALS = 5
TPE_STARTUP_TRIALS = 10


@dataclass(frozen=True)
class Dim:
    """One searched flag: an int or float range (log-scaled for rates) or a list of choices."""

    kind: str
    low: float = 0.0
    high: float = 0.0
    choices: tuple = ()

    @property
    def integer(self) -> bool:
        return self.kind == "int" or (self.kind == "choice" and all(_is_int(c) for c in self.choices))

    def distribution(self, name: str) -> BaseDistribution:
        if self.kind == "choice":
            return CategoricalDistribution(self.choices)
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high))
        return FloatDistribution(float(self.low), float(self.high), log=name in LOG_SCALE)

    def describe(self, name: str) -> str:
        if self.kind == "choice":
            return f"one of {list(self.choices)}"
        scale = " (log)" if self.kind == "float" and name in LOG_SCALE else ""
        return f"{self.kind} in [{self.low}, {self.high}]{scale}"


_SHARED = {"lr": Dim("float", 1e-4, 1e-2), "weight_decay": Dim("float", 1e-6, 1e-2), "dropout": Dim("float", 0.0, 0.3)}
_SIZES = (32, 64, 96, 128, 256)
SEARCH_SPACES: dict[str, dict[str, Dim]] = {
    "quixer": {
        **_SHARED,
        "embedding_dim": Dim("choice", choices=(64, 128, 256, 512)),
        "qubits": Dim("int", 3, 6),
        "ansatz_layers": Dim("int", 1, 4),
        "qsvt_degree": Dim("int", 1, 4),
        "init_std": Dim("float", 0.01, 0.5),
    },
    "lstm": {
        **_SHARED,
        "embedding_dim": Dim("choice", choices=_SIZES),
        "hidden_dim": Dim("choice", choices=_SIZES),
        "num_layers": Dim("int", 1, 3),
    },
    "transformer": {
        **_SHARED,
        "embedding_dim": Dim("choice", choices=_SIZES),
        "num_layers": Dim("int", 1, 3),
        "ffn_dim": Dim("choice", choices=(64, 128, 256, 384, 512)),
    },
}
SEARCH_SPACES["fnet"] = dict(SEARCH_SPACES["transformer"])
# What a float flag accepts: (test, wording for the error).
_FLOAT_RULES: dict[str, tuple[Callable[[float], bool], str]] = {
    "lr": (lambda v: v > 0, "> 0"),
    "weight_decay": (lambda v: v >= 0, ">= 0"),
    "dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "init_std": (lambda v: v > 0, "> 0"),
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_value(name: str, value: Any, integer: bool) -> None:
    if integer:
        if not _is_int(value) or value < 1:
            raise UserError(f"--search_space: {name}={value!r}: must be a whole number >= 1")
        return
    test, wording = _FLOAT_RULES[name]
    if not _is_number(value) or not math.isfinite(value) or not test(value):
        raise UserError(f"--search_space: {name}={value!r}: must be a number {wording}")


def _override(name: str, value: Any, default: Dim) -> Dim | None:
    """The Dim a --search_space entry asks for; None when it fixes the flag to one value."""
    integer = default.integer
    if isinstance(value, list):
        if not value:
            raise UserError(f"--search_space: {name}: empty list; give a range [low, high], choices or one value")
        for item in value:
            _check_value(name, item, integer)
        if len(value) == 2 and all(_is_number(v) for v in value):
            low, high = value
            if not low < high:
                raise UserError(f"--search_space: {name} range [{low}, {high}]: low must be below high")
            if not integer and name in LOG_SCALE and low <= 0:
                raise UserError(f"--search_space: {name} range [{low}, {high}] is log-scaled; low must be > 0")
            return Dim("int", low, high) if integer else Dim("float", float(low), float(high))
        return Dim("choice", choices=tuple(dict.fromkeys(value)))
    if isinstance(value, (dict, str)) or value is None:
        raise UserError(f"--search_space: {name}={value!r}: give a number, a range [low, high] or a list of choices")
    _check_value(name, value, integer)
    return None


def _read_overrides(text: str) -> dict[str, Any]:
    if text.lstrip().startswith("{"):
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"--search_space: not valid JSON ({exc.msg} at column {exc.colno})") from exc
    elif Path(text).is_file():
        values = read_json(text, "--search_space file")
    else:
        raise UserError(f"--search_space {text}: neither a JSON file nor inline JSON such as '{{\"qubits\": [4, 6]}}'")
    if not isinstance(values, dict):
        raise UserError("--search_space: expected a JSON object mapping flag names to ranges, choices or values")
    return values


def load_search_space(text: str | None, model: str) -> tuple[dict[str, Dim], dict[str, Any]]:
    """The model's default space narrowed by --search_space: (searched dims, fixed flag values)."""
    space = dict(SEARCH_SPACES[model])
    if not text:
        return space, {}
    overrides = _read_overrides(text)
    unknown = [k for k in overrides if k not in space]
    if unknown:
        raise UserError(
            f"--search_space: unknown key(s) {', '.join(unknown)} for --model {model}; valid keys: {', '.join(space)}"
        )
    fixed: dict[str, Any] = {}
    for name, value in overrides.items():
        dim = _override(name, value, space[name])
        if dim is None:
            fixed[name] = value
            del space[name]
        else:
            space[name] = dim
    return space, fixed


@dataclass
class TrainerSpec:
    """How the trainer script of a model turns flags into a run (passed in by the root script)."""

    model_name: str
    stage: str
    build_parser: Callable[[], argparse.ArgumentParser]
    model_config: Callable[[argparse.Namespace], dict[str, Any]]
    fixed_flags: dict[str, Any] = field(default_factory=dict)

    def flag_names(self) -> set[str]:
        return {action.dest for action in self.build_parser()._actions}

    def parse(self, flags: dict[str, Any]) -> argparse.Namespace:
        """Parse flag values with the trainer's own parser (a rejected value fails the trial)."""
        argv: list[str] = []
        for name, value in flags.items():
            if isinstance(value, bool):
                argv += [f"--{name}"] if value else []
            elif value is not None:
                argv += [f"--{name}", str(value)]
        try:
            return self.build_parser().parse_args(argv)
        except SystemExit as exc:
            raise ValueError(f"{self.stage}.py rejected the flags {' '.join(argv)}") from exc


@dataclass
class StorageChoice:
    storage: Any
    lock_path: Path | None
    shown: str


def _hide_password(url: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def open_storage(spec: str | None, output_dir: Path) -> StorageChoice:
    """--storage as Optuna storage, with the lock file that serialises claims for file-backed ones."""
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
        return StorageChoice(optuna.storages.journal.JournalStorage(backend), Path(f"{path}.claim.lock"), str(path))
    lock_path = None
    engine_kwargs: dict[str, Any] = {}
    if spec.startswith("sqlite:///"):
        db = Path(spec[len("sqlite:///") :].split("?", 1)[0])
        db.parent.mkdir(parents=True, exist_ok=True)
        lock_path = Path(f"{db}.claim.lock")
        # Processes sharing one SQLite file wait for each other's writes instead of failing.
        engine_kwargs = {"connect_args": {"timeout": 120}}
    shown = _hide_password(spec)
    try:
        storage = optuna.storages.RDBStorage(spec, engine_kwargs=engine_kwargs)
    except Exception as exc:  # a missing driver, a bad URL or a refused connection: all the user's to fix
        raise UserError(f"--storage {shown}: cannot open it ({_one_line(exc)[:300]})") from exc
    return StorageChoice(storage, lock_path, shown)


@contextlib.contextmanager
def claim_lock(path: Path | None) -> Iterator[None]:
    """Hold an exclusive lock between processes on this machine (no-op for remote storage)."""
    if path is None:
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fail_dead_trials(study: optuna.Study, trials: list[FrozenTrial]) -> None:
    """A RUNNING trial whose process on this host is gone was killed: count it as failed."""
    host = socket.gethostname()
    for trial in trials:
        attrs = trial.user_attrs
        if trial.state != TrialState.RUNNING or attrs.get("host") != host or attrs.get("pid") == os.getpid():
            continue
        if not _process_alive(int(attrs.get("pid", -1))):
            LOG.warning("trial %d: its process %s is gone; marking it failed", trial.number, attrs.get("pid"))
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:500]


def _free_accelerator_memory() -> None:
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass
class Tuner:
    """One process's part of a study: claims trials until the study holds --n_trials of them."""

    args: argparse.Namespace
    spec: TrainerSpec
    study: optuna.Study
    lock_path: Path | None
    space: dict[str, Dim]
    fixed_params: dict[str, Any]
    data: dict[str, TokenSplit]
    output_dir: Path
    ran: int = 0

    def claim(self) -> optuna.Trial | None:
        """Count the budget and ask for the next trial as one step under the lock. The sampler is
        reseeded from (--seed, trial index), so a rerun or a second process does not replay the
        draws of the first while a single process stays reproducible."""
        with claim_lock(self.lock_path):
            trials = self.study.get_trials(deepcopy=False)
            _fail_dead_trials(self.study, trials)
            if sum(t.state in CLAIMED for t in trials) >= self.args.n_trials:
                return None
            seed = (self.args.seed * 1_000_003 + len(trials)) % 2**32
            self.study.sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=TPE_STARTUP_TRIALS)
            trial = self.study.ask({name: dim.distribution(name) for name, dim in self.space.items()})
            trial.set_user_attr("host", socket.gethostname())
            trial.set_user_attr("pid", os.getpid())
            return trial

    def trial_flags(self, trial: optuna.Trial) -> dict[str, Any]:
        args = self.args
        return {
            **self.spec.fixed_flags,
            "task": args.task,
            "batch_size": args.batch_size,
            **{k: getattr(args, k) for k in ("init_strategy", "use_layerwise_training", "layerwise_epochs")},
            **self.fixed_params,
            **trial.params,
        }

    def run_trial(self, trial: optuna.Trial) -> float:
        """Train one trial into trials/<number>/ and return its best val loss."""
        args = self.args
        trial_dir = self.output_dir / TRIALS_DIR / str(trial.number)
        # Trial numbers are unique within a study: anything there is from a deleted study.
        shutil.rmtree(trial_dir, ignore_errors=True)
        trial_dir.mkdir(parents=True)
        flags = self.trial_flags(trial)
        run_flags = {
            **flags,
            "data_dir": args.data_dir,
            "output_dir": str(trial_dir),
            "epochs": args.epochs_per_trial,
            "max_steps_per_epoch": args.max_steps_per_epoch,
            "device": args.device,
            "seed": args.seed,
            "log_level": args.log_level,
        }
        trainer_args = self.spec.parse(run_flags)
        resolved = {k: getattr(trainer_args, k) for k in RECORDED_FLAGS if k in vars(trainer_args)}
        trial.set_user_attr("flags", {**resolved, **self.fixed_params, **trial.params})
        config = config_from_args(trainer_args)
        model_config = self.spec.model_config(trainer_args)
        record = RunRecord(trial_dir, self.spec.stage, vars(trainer_args))

        def report(epoch: int, row: dict[str, Any]) -> None:
            loss = float(row["val_loss"])
            if math.isfinite(loss):
                trial.report(loss, epoch)
            if trial.should_prune():
                record.finish({"state": "pruned", "epoch": epoch, "val_loss": loss}, status="pruned")
                raise optuna.TrialPruned(f"pruned after epoch {epoch} (val loss {loss:.4f})")

        try:
            metrics = train_model(
                self.spec.model_name, model_config, self.data, config, trial_dir, epoch_callback=report, resume=False
            )
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            record.finish({"state": "failed", "error": _one_line(exc)}, status="failed")
            raise
        record.finish(metrics)
        value = float(metrics["best_val_loss"])
        if not math.isfinite(value):
            raise ValueError(f"no finite val loss in {metrics['epochs_run']} epoch(s)")
        trial.set_user_attr("best_epoch", metrics["best_epoch"])
        trial.set_user_attr("parameters", metrics["parameters"])
        return value

    def run(self) -> None:
        args = self.args
        started = time.monotonic()
        done = sum(t.state in FINISHED for t in self.study.get_trials(deepcopy=False))
        bar = tqdm(total=args.n_trials, initial=min(done, args.n_trials), desc=f"tune {args.model}", unit="trial", disable=None)
        with bar:
            while True:
                if args.timeout is not None and time.monotonic() - started >= args.timeout:
                    LOG.info("--timeout %s s reached; starting no more trials", args.timeout)
                    break
                trial = self.claim()
                if trial is None:
                    break
                self._run_and_tell(trial)
                self.ran += 1
                finished = sum(t.state in FINISHED for t in self.study.get_trials(deepcopy=False))
                bar.n = min(finished, args.n_trials)
                bar.refresh()

    def _run_and_tell(self, trial: optuna.Trial) -> None:
        failed = False
        try:
            value = self.run_trial(trial)
        except optuna.TrialPruned as exc:
            self.study.tell(trial, state=TrialState.PRUNED)
            LOG.info("trial %d %s", trial.number, exc)
        except KeyboardInterrupt:
            trial.set_user_attr("error", "interrupted")
            self.study.tell(trial, state=TrialState.FAIL)
            raise
        except Exception as exc:  # a crash or out-of-memory ends this trial, not the study
            trial.set_user_attr("error", _one_line(exc))
            self.study.tell(trial, state=TrialState.FAIL)
            LOG.warning("trial %d failed: %s", trial.number, _one_line(exc))
            failed = True
        else:
            self.study.tell(trial, value)
            LOG.info("trial %d: best val loss %.4f with %s", trial.number, value, trial.params)
        if failed:
            # Only now is the exception (and the traceback holding the trial's tensors) released.
            _free_accelerator_memory()


def _study_settings(args: argparse.Namespace) -> dict[str, Any]:
    """What makes trials comparable: a study refuses to continue under other values of these."""
    names = ("model", "task", "epochs_per_trial", "batch_size", "max_steps_per_epoch", "seed")
    names += ("init_strategy", "use_layerwise_training", "layerwise_epochs")
    return {name: getattr(args, name) for name in names}


def _open_study(args: argparse.Namespace, choice: StorageChoice, output_dir: Path) -> optuna.Study:
    """Create or load the study (under the claim lock); --overwrite deletes it and its trial folders first."""
    warmup = max(1, args.epochs_per_trial // 10)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=warmup)
    with claim_lock(choice.lock_path):
        if args.overwrite:
            with contextlib.suppress(KeyError):
                optuna.delete_study(study_name=args.study_name, storage=choice.storage)
                shutil.rmtree(output_dir / TRIALS_DIR, ignore_errors=True)
                LOG.info("--overwrite: deleted study %s from %s and its trial folders", args.study_name, choice.shown)
        study = optuna.create_study(
            storage=choice.storage,
            study_name=args.study_name,
            direction="minimize",
            pruner=pruner,
            sampler=optuna.samplers.TPESampler(seed=args.seed),
            load_if_exists=True,
        )
        settings = json.loads(json.dumps(_study_settings(args)))
        stored = study.user_attrs.get("settings")
        if stored is None:
            study.set_user_attr("settings", settings)
        elif stored != settings:
            changed = ", ".join(f"{k}: {stored.get(k)!r} -> {v!r}" for k, v in settings.items() if stored.get(k) != v)
            raise UserError(
                f"--study_name {args.study_name}: the study in {choice.shown} ran with other settings ({changed}); "
                "choose another --study_name, or pass --overwrite to delete it and start afresh"
            )
    return study


def _prepare_output(output_dir: Path, study_name: str, overwrite: bool) -> None:
    """A tuner folder of the same study resumes; anything else non-empty is refused unless --overwrite."""
    record = output_dir / ARGS_FILE
    if record.is_file() and not overwrite:
        previous = read_json(record, "run record")
        if previous.get("stage") == STAGE:
            held = previous.get("args", {}).get("study_name")
            if held != study_name:
                raise UserError(
                    f"--output_dir {output_dir}: holds study {held!r}; pass --study_name {held} to continue it "
                    "or choose another --output_dir"
                )
            return
    prepare_output_dir(output_dir, overwrite)


def _save_figure(axes: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    figure = axes.figure
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    plt.close(figure)
    with atomic_open(path, "wb") as handle:
        handle.write(buffer.getvalue())


def write_plots(study: optuna.Study, output_dir: Path, seed: int) -> tuple[dict[str, str], dict[str, float] | None]:
    """optimization_history.png and param_importances.png; a plot that cannot be made is skipped
    with its reason (returned for metrics.json)."""
    import matplotlib

    matplotlib.use("Agg")
    from optuna.visualization import matplotlib as optuna_plots

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    status: dict[str, str] = {}
    importances: dict[str, float] | None = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if complete:
            _save_figure(optuna_plots.plot_optimization_history(study), output_dir / HISTORY_PLOT)
            status["optimization_history"] = HISTORY_PLOT
        else:
            status["optimization_history"] = "skipped: no complete trial"
        names = {name for trial in complete for name in trial.params}
        varying = [name for name in names if len({repr(t.params.get(name)) for t in complete}) > 1]
        if len(complete) < 2 or not varying:
            status["param_importances"] = "skipped: needs at least 2 complete trials whose parameters differ"
        else:
            evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
            try:
                importances = dict(optuna.importance.get_param_importances(study, evaluator=evaluator))
                axes = optuna_plots.plot_param_importances(
                    study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed)
                )
            except (ValueError, RuntimeError) as exc:
                status["param_importances"] = f"skipped: {_one_line(exc)}"
            else:
                _save_figure(axes, output_dir / IMPORTANCE_PLOT)
                status["param_importances"] = IMPORTANCE_PLOT
    for name, text in status.items():
        if text.startswith("skipped"):
            LOG.info("%s plot %s", name, text)
    return status, importances


def _trial_error(trial: FrozenTrial) -> str:
    if trial.state != TrialState.FAIL:
        return ""
    return trial.user_attrs.get("error", "no error recorded (its process was killed)")


def write_trials_csv(trials: list[FrozenTrial], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["number", "state", "value", "params", "duration_s", "error"])
    for trial in trials:
        duration = trial.duration.total_seconds() if trial.duration is not None else ""
        value = "" if trial.value is None else repr(float(trial.value))
        params = json.dumps(trial.params, sort_keys=True)
        writer.writerow([trial.number, trial.state.name, value, params, duration, _trial_error(trial)])
    atomic_write_text(path, buffer.getvalue())


def summarize_study(
    study: optuna.Study, args: argparse.Namespace, tuner: Tuner, storage_shown: str, seconds: float
) -> dict[str, Any]:
    """Write trials.csv, best_params.json and the plots; return metrics.json's content."""
    trials = study.get_trials(deepcopy=False)
    write_trials_csv(trials, tuner.output_dir / TRIALS_FILE)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = min(complete, key=lambda t: t.value) if complete else None
    if best is not None:
        atomic_write_json(tuner.output_dir / BEST_PARAMS_FILE, best.user_attrs["flags"])
        where = tuner.output_dir / BEST_PARAMS_FILE
        LOG.info("best trial %d: val loss %.4f; its flags are in %s", best.number, best.value, where)
    plots, importances = write_plots(study, tuner.output_dir, args.seed)
    by_state = {state.name: sum(t.state == state for t in trials) for state in TrialState}
    return {
        "model": args.model,
        "study_name": args.study_name,
        "storage": storage_shown,
        "n_trials_requested": args.n_trials,
        "n_trials_finished": sum(t.state in FINISHED for t in trials),
        "trials_by_state": by_state,
        "trials_run_by_this_process": tuner.ran,
        "best_trial": None if best is None else best.number,
        "best_value": None if best is None else best.value,
        "best_value_metric": "best validation loss (nats per window) within the trial",
        "best_params": None if best is None else best.user_attrs["flags"],
        "best_trial_host": None if best is None else best.user_attrs.get("host"),
        "best_trial_dir": None if best is None else str(tuner.output_dir / TRIALS_DIR / str(best.number)),
        "search_space": {name: dim.describe(name) for name, dim in tuner.space.items()},
        "fixed_params": tuner.fixed_params,
        "param_importances": importances,
        "plots": plots,
        "seconds": seconds,
    }


def run_tuning(args: argparse.Namespace, spec: TrainerSpec) -> dict[str, Any]:
    """The tune stage: open or continue the study, run trials until it holds --n_trials, summarise."""
    started = time.monotonic()
    for flag in ("n_trials", "epochs_per_trial", "batch_size"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag} {getattr(args, flag)}: must be at least 1")
    if args.timeout is not None and args.timeout <= 0:
        raise UserError(f"--timeout {args.timeout}: must be a positive number of seconds")
    known = spec.flag_names()
    for flag in ("init_strategy", "use_layerwise_training", "layerwise_epochs"):
        if getattr(args, flag) not in (None, False) and flag not in known:
            raise UserError(f"--{flag}: {spec.stage}.py has no such flag; drop it for --model {args.model}")
    space, fixed = load_search_space(args.search_space, args.model)
    data = load_token_dataset(args.data_dir)
    prepare_task(data, args.task)
    output_dir = Path(args.output_dir)
    _prepare_output(output_dir, args.study_name, args.overwrite)
    choice = open_storage(args.storage, output_dir)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _open_study(args, choice, output_dir)
    record = RunRecord(output_dir, STAGE, {**vars(args), "storage": choice.shown})
    tuner = Tuner(args, spec, study, choice.lock_path, space, fixed, data, output_dir)
    tuner.run()
    metrics = summarize_study(study, args, tuner, choice.shown, time.monotonic() - started)
    record.finish(metrics)
    if metrics["best_trial"] is None:
        raise UserError(
            f"study {args.study_name}: no trial completed ({metrics['trials_by_state']}); "
            f"see the error column of {output_dir / TRIALS_FILE}"
        )
    return metrics
