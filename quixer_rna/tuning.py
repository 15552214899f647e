"""Optuna tuning of one model with the same budget every model gets: a seeded TPE sampler, a median pruner
fed every evaluation's val loss, and every trial trained by the shared loop exactly as its trainer script
would train it (the same config dataclasses and training settings).

A study lives in Optuna storage (an SQLite file, a database URL or a journal file), so rerunning the command
continues it, and several processes or machines given one storage share one study. What Optuna provides is
used as it is: `MaxTrialsCallback` stops a worker once the study holds --n_trials trials with a value
(complete or pruned; with heartbeats, also those running in another worker, so workers do not overshoot);
database storages record a heartbeat per running trial, and a trial whose process died (no heartbeat for
twice --heartbeat seconds) is failed by `fail_stale_trials` and retried once by `RetryHeartbeatStaleTrialCallback`
with the same parameters. Journal files have no heartbeats: a trial killed with its process stays RUNNING
there and does not count. Failed trials (a crash, out of memory) are recorded with their error and do not
use up the budget; one process runs at most twice the number of trials still missing when it starts, so a
study whose trials keep failing stops.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import gc
import io
import json
import logging
import math
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.study import MaxTrialsCallback
from optuna.trial import FrozenTrial, TrialState

from .errors import UserError
from .formats.results import write_result
from .formats.tokens import TokenData, open_tokens
from .models import config_class, config_dict, make_config
from .runio import atomic_open, atomic_write_json, atomic_write_text, read_json
from .stage import redact, stage_run
from .training import TrainConfig, train_model

LOG = logging.getLogger("quixer_rna.tuning")
STAGE = "tune_quixer_hybrid"
TRIALS_DIR = "trials"
BEST_PARAMS_FILE = "best_params.json"
TRIALS_FILE = "trials.csv"
HISTORY_PLOT = "optimization_history.png"
IMPORTANCE_PLOT = "param_importances.png"
JOURNAL_SUFFIXES = (".log", ".journal")
LOG_SCALE = frozenset({"lr", "weight_decay", "init_std"})
VALUED = (TrialState.COMPLETE, TrialState.PRUNED)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
PRUNER_STARTUP_TRIALS = 5
TPE_STARTUP_TRIALS = 10
QUIXER_FLAGS = ("init_strategy", "use_layerwise_training", "layerwise_epochs")
# Trainer settings every trial of a study shares (a study refuses to continue under other values).
TRIAL_SETTINGS = ("epochs_per_trial", "batch_size", "max_steps_per_epoch", "eval_every", "val_windows", "seed")


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

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        if self.kind == "choice":
            return trial.suggest_categorical(name, self.choices)
        if self.kind == "int":
            return trial.suggest_int(name, int(self.low), int(self.high))
        return trial.suggest_float(name, float(self.low), float(self.high), log=name in LOG_SCALE)

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
# Flags --search_space may search or fix beyond the default space.
EXTRA_DIMS: dict[str, dict[str, Dim]] = {"quixer": {"postselection_weight": Dim("float", 0.0, 1.0)}}
# What a float flag accepts: (test, wording for the error).
_FLOAT_RULES: dict[str, tuple[Callable[[float], bool], str]] = {
    "lr": (lambda v: v > 0, "> 0"),
    "weight_decay": (lambda v: v >= 0, ">= 0"),
    "dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "init_std": (lambda v: v > 0, "> 0"),
    "postselection_weight": (lambda v: v >= 0, ">= 0"),
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
    allowed = {**space, **EXTRA_DIMS.get(model, {})}
    unknown = [k for k in overrides if k not in allowed]
    if unknown:
        raise UserError(
            f"--search_space: unknown key(s) {', '.join(unknown)} for --model {model}; valid keys: {', '.join(allowed)}"
        )
    fixed: dict[str, Any] = {}
    for name, value in overrides.items():
        dim = _override(name, value, allowed[name])
        if dim is None:
            fixed[name] = value
            space.pop(name, None)
        else:
            space[name] = dim
    return space, fixed




@dataclass
class StorageChoice:
    storage: Any
    shown: str
    heartbeat: bool


def _hide_password(url: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return redact(url)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:500]


def open_storage(spec: str | None, output_dir: Path, heartbeat: int) -> StorageChoice:
    """--storage as Optuna storage: a database with heartbeats (stale trials failed and retried), or a
    journal file."""
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
    shown = _hide_password(spec)

    def connect() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                spec, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat, grace_period=2 * heartbeat,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
            )

    try:
        storage = _retrying(connect)
    except Exception as exc:  # a missing driver, a bad URL, a refused connection: all the user's to fix
        raise UserError(f"--storage {shown}: cannot open it ({_one_line(exc)[:300]})") from exc
    return StorageChoice(storage, shown, True)


def _retrying(make: Callable[[], Any], attempts: int = 5) -> Any:
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


def _free_accelerator_memory() -> None:
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


@dataclass
class Tuner:
    """The objective of one process's part of a study: each trial trains into trials/<number>/."""

    args: argparse.Namespace
    space: dict[str, Dim]
    fixed_params: dict[str, Any]
    data: TokenData
    output_dir: Path
    ran: int = 0

    def trial_flags(self, params: dict[str, Any]) -> dict[str, Any]:
        """Every setting of a trial, named as the trainer script's flags (what best_params.json holds)."""
        args = self.args
        flags: dict[str, Any] = {} if args.batch_size is None else {"batch_size": args.batch_size}
        if args.model == "quixer":
            flags.update({name: getattr(args, name) for name in QUIXER_FLAGS if getattr(args, name) is not None})
        else:
            flags["model"] = args.model
        return {**flags, **self.fixed_params, **params}

    def configs(self, flags: dict[str, Any]) -> tuple[Any, TrainConfig]:
        args = self.args
        model_config = make_config(args.model, {k: v for k, v in flags.items() if k in _fields(config_class(args.model))})
        train = {k: v for k, v in flags.items() if k in _fields(TrainConfig)}
        train.update(epochs=args.epochs_per_trial, max_steps_per_epoch=args.max_steps_per_epoch,
                     eval_every=args.eval_every, val_windows=args.val_windows, device=args.device, seed=args.seed,
                     patience=0, log_every=args.log_every)
        return model_config, TrainConfig(**train)

    def __call__(self, trial: optuna.Trial) -> float:
        """Train one trial and return its best val loss (pruned on the median rule at each evaluation)."""
        trial_dir = self.output_dir / TRIALS_DIR / str(trial.number)
        # Trial numbers are unique within a study: anything there is from a deleted study or a dead process.
        shutil.rmtree(trial_dir, ignore_errors=True)
        # TPE draws at suggest time: a sampler seeded by (--seed, trial number) keeps one process reproducible,
        # and a rerun or a second process (other trial numbers) does not replay the first one's draws.
        trial.study.sampler = optuna.samplers.TPESampler(seed=(self.args.seed * 1_000_003 + trial.number) % 2**32,
                                                         n_startup_trials=TPE_STARTUP_TRIALS)
        params = {name: dim.suggest(trial, name) for name, dim in self.space.items()}
        flags = self.trial_flags(params)
        self.ran += 1
        try:
            model_config, train_config = self.configs(flags)
        except (TypeError, ValueError) as exc:
            trial.set_user_attr("error", _one_line(exc))
            raise
        trial.set_user_attr("flags", {**flags, **config_dict(model_config)})
        with stage_run(trial_dir, "tune_trial", {**flags, "trial": trial.number}, role="trial", overwrite=True) as run:

            def report(row: dict[str, Any]) -> None:
                loss = float(row["val_loss"])
                if math.isfinite(loss):
                    trial.report(loss, row["step"])
                if trial.should_prune():
                    run.finish({"state": "pruned", "step": row["step"], "val_loss": loss}, status="pruned")
                    raise optuna.TrialPruned(f"pruned at step {row['step']} (val loss {loss:.4f})")

            try:
                result = train_model(self.args.model, model_config, self.data, train_config, trial_dir,
                                     on_evaluation=report, resume=False)
            except optuna.TrialPruned:
                raise
            except Exception as exc:
                trial.set_user_attr("error", _one_line(exc))
                LOG.warning("trial %d failed: %s", trial.number, _one_line(exc))
                _free_accelerator_memory()
                raise
            write_result(trial_dir, result)
            run.close("completed")
        value = float(result["val"]["loss"])
        if not math.isfinite(value):
            raise ValueError(f"no finite val loss in {result['evaluations']} evaluation(s)")
        trial.set_user_attr("best_step", result["best_step"])
        trial.set_user_attr("parameters", result["parameters"])
        LOG.info("trial %d: best val loss %.4f with %s", trial.number, value, params)
        return value


def _study_settings(args: argparse.Namespace) -> dict[str, Any]:
    """What makes trials comparable: a study refuses to continue under other values of these."""
    names = ("model", *TRIAL_SETTINGS, *QUIXER_FLAGS)
    return {name: getattr(args, name) for name in names}


def _open_study(args: argparse.Namespace, choice: StorageChoice, output_dir: Path) -> optuna.Study:
    """Create or load the study; --overwrite deletes it and its trial folders first."""
    warmup = max(1, args.epochs_per_trial // 10)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=warmup)
    if args.overwrite:
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=args.study_name, storage=choice.storage)
            LOG.info("--overwrite: deleted study %s from %s", args.study_name, choice.shown)
        shutil.rmtree(output_dir / TRIALS_DIR, ignore_errors=True)
    study = _retrying(lambda: optuna.create_study(storage=choice.storage, study_name=args.study_name,
                                                  direction="minimize", pruner=pruner, load_if_exists=True))
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


def summarize_study(study: optuna.Study, args: argparse.Namespace, tuner: Tuner, storage_shown: str,
                    seconds: float) -> dict[str, Any]:
    """Write trials.csv, best_params.json and the plots; return metrics.json's content."""
    trials = study.get_trials(deepcopy=False)
    write_trials_csv(trials, tuner.output_dir / TRIALS_FILE)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = min(complete, key=lambda t: t.value) if complete else None
    if best is not None:
        atomic_write_json(tuner.output_dir / BEST_PARAMS_FILE, best.user_attrs["flags"])
        LOG.info("best trial %d: val loss %.4f; its flags are in %s", best.number, best.value,
                 tuner.output_dir / BEST_PARAMS_FILE)
    plots, importances = write_plots(study, tuner.output_dir, args.seed)
    by_state = {state.name: sum(t.state == state for t in trials) for state in TrialState}
    return {
        "model": args.model,
        "study_name": args.study_name,
        "storage": storage_shown,
        "n_trials_requested": args.n_trials,
        "n_trials_finished": sum(t.state in FINISHED for t in trials),
        "n_trials_with_value": sum(t.state in VALUED for t in trials),
        "trials_by_state": by_state,
        "trials_run_by_this_process": tuner.ran,
        "budget": {"trials": args.n_trials, "epochs_per_trial": args.epochs_per_trial,
                   "max_steps_per_epoch": args.max_steps_per_epoch, "batch_size": args.batch_size},
        "best_trial": None if best is None else best.number,
        "best_value": None if best is None else best.value,
        "best_value_metric": "best validation loss (nats per window) within the trial",
        "best_params": None if best is None else best.user_attrs["flags"],
        "best_trial_dir": None if best is None else str(tuner.output_dir / TRIALS_DIR / str(best.number)),
        "search_space": {name: dim.describe(name) for name, dim in tuner.space.items()},
        "fixed_params": tuner.fixed_params,
        "param_importances": importances,
        "plots": plots,
        "seconds": seconds,
    }


def _fill_study(study: optuna.Study, tuner: Tuner, args: argparse.Namespace, heartbeat: bool) -> None:
    """Run trials until the study holds --n_trials with a value. With heartbeats, trials still RUNNING when
    this worker is done are waited for: another worker's finish, and a killed process's (this one's, rerun
    at once) go stale after two missed heartbeats, are failed and retried here with the same parameters."""
    counted = (*VALUED, TrialState.RUNNING) if heartbeat else VALUED
    deadline = None if args.timeout is None else time.monotonic() + args.timeout

    def missing() -> int:
        return args.n_trials - len(study.get_trials(deepcopy=False, states=VALUED))

    def optimize() -> None:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        study.optimize(tuner, n_trials=2 * missing(), timeout=left, catch=(Exception,), gc_after_trial=True,
                       callbacks=[MaxTrialsCallback(args.n_trials, states=counted)])

    if missing() > 0:
        optimize()
    while heartbeat and missing() > 0 and (deadline is None or time.monotonic() < deadline):
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not running:
            break
        LOG.info("waiting for running trial(s) %s: finished by another worker, or retried here once stale",
                 ", ".join(str(t.number) for t in running))
        time.sleep(args.heartbeat)
        optuna.storages.fail_stale_trials(study)
        if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            optimize()


def run_tuning(args: argparse.Namespace) -> dict[str, Any]:
    """The tune stage: open or continue the study, run trials until it holds --n_trials, summarise."""
    started = time.monotonic()
    if args.model != "quixer":
        for flag in QUIXER_FLAGS:
            if getattr(args, flag) not in (None, False):
                raise UserError(f"--{flag}: a Quixer setting; drop it for --model {args.model}")
    space, fixed = load_search_space(args.search_space, args.model)
    data = open_tokens(args.data_dir)
    output_dir = Path(args.output_dir)
    record_args = {**vars(args), "storage": _hide_password(args.storage) if args.storage else None}
    with stage_run(output_dir, STAGE, record_args, role="tune", overwrite=args.overwrite, completed="rerun") as run:
        held = (run.previous_record or {}).get("args", {}).get("study_name")
        if run.previous_record is not None and held != args.study_name and not args.overwrite:
            raise UserError(f"--output_dir {output_dir}: holds study {held!r}; pass --study_name {held} to continue it "
                            "or choose another --output_dir")
        choice = open_storage(args.storage, output_dir, args.heartbeat)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = _open_study(args, choice, output_dir)
        tuner = Tuner(args, space, fixed, data, output_dir)
        _fill_study(study, tuner, args, choice.heartbeat)
        metrics = summarize_study(study, args, tuner, choice.shown, time.monotonic() - started)
        run.finish(metrics)
    if metrics["best_trial"] is None:
        raise UserError(
            f"study {args.study_name}: no trial completed ({metrics['trials_by_state']}); "
            f"see the error column of {output_dir / TRIALS_FILE}"
        )
    return metrics
