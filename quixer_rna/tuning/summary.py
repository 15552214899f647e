"""What a study leaves besides its storage: trials.csv (one row per trial, with its model's parameter count),
best_params.json (a trainer's --config), the optimisation history and parameter importance plots, and
metrics.json's summary."""

from __future__ import annotations

import csv
import io
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..plots import pyplot, save_figure
from ..runio import atomic_write_json, atomic_write_text
from .config import TuneConfig
from .objective import TRIALS_DIR, Objective
from .space import describe
from .storage import one_line

LOG = logging.getLogger("quixer_rna.tuning")
BEST_PARAMS_FILE = "best_params.json"
TRIALS_FILE = "trials.csv"
TRIALS_COLUMNS = ("number", "state", "value", "parameters", "stopped_by", "epochs_seen", "params", "duration_s",
                  "error")
HISTORY_PLOT = "optimization_history.png"
IMPORTANCE_PLOT = "param_importances.png"
VALUED = (TrialState.COMPLETE, TrialState.PRUNED)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def write_plots(study: optuna.Study, output_dir: Path, seed: int) -> tuple[dict[str, str], dict[str, float] | None]:
    """optimization_history.png and param_importances.png; a plot that cannot be made is skipped with its
    reason (returned for metrics.json), with the importances themselves."""
    pyplot()  # the Agg backend, before Optuna's plots import matplotlib
    from optuna.visualization import matplotlib as optuna_plots

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    status: dict[str, str] = {}
    importances: dict[str, float] | None = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if complete:
            save_figure(optuna_plots.plot_optimization_history(study).figure, output_dir / HISTORY_PLOT)
            status["optimization_history"] = HISTORY_PLOT
        else:
            status["optimization_history"] = "skipped: no complete trial"
        names = {name for trial in complete for name in trial.params}
        varying = [name for name in names if len({repr(t.params.get(name)) for t in complete}) > 1]
        if len(complete) < 2 or not varying:
            status["param_importances"] = "skipped: needs at least 2 complete trials whose parameters differ"
        else:
            try:
                importances = dict(optuna.importance.get_param_importances(
                    study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed)))
                axes = optuna_plots.plot_param_importances(
                    study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed))
            except (ValueError, RuntimeError) as exc:
                status["param_importances"] = f"skipped: {one_line(exc)}"
            else:
                save_figure(axes.figure, output_dir / IMPORTANCE_PLOT)
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
    """One row per trial: its state, value, model size, how it stopped, its parameters and any error."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(TRIALS_COLUMNS)
    for trial in trials:
        attrs = trial.user_attrs
        writer.writerow([
            trial.number, trial.state.name, "" if trial.value is None else repr(float(trial.value)),
            attrs.get("parameters", ""), attrs.get("stopped_by", ""), attrs.get("epochs_seen", ""),
            json.dumps(trial.params, sort_keys=True),
            "" if trial.duration is None else trial.duration.total_seconds(), _trial_error(trial),
        ])
    atomic_write_text(path, buffer.getvalue())


def summarize_study(study: optuna.Study, config: TuneConfig, objective: Objective, search: dict[str, Any],
                    storage_shown: str, seconds: float) -> dict[str, Any]:
    """Write trials.csv, best_params.json and the plots; return metrics.json's content (`search`: the
    sampler's and pruner's description)."""
    output_dir = objective.output_dir
    trials = study.get_trials(deepcopy=False)
    write_trials_csv(trials, output_dir / TRIALS_FILE)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = min(complete, key=lambda t: t.value) if complete else None
    if best is not None:
        atomic_write_json(output_dir / BEST_PARAMS_FILE, best.user_attrs["flags"])
        LOG.info("best trial %d: val loss %.4f; its flags are in %s", best.number, best.value,
                 output_dir / BEST_PARAMS_FILE)
    plots, importances = write_plots(study, output_dir, config.seed)
    by_state = {state.name: sum(t.state == state for t in trials) for state in TrialState}
    return {
        "model": config.model,
        "study_name": config.study_name,
        "storage": storage_shown,
        "n_trials_requested": config.n_trials,
        "n_trials_finished": sum(t.state in FINISHED for t in trials),
        "n_trials_with_value": sum(t.state in VALUED for t in trials),
        "trials_by_state": by_state,
        "trials_run_by_this_process": objective.ran,
        "budget": {"trials": config.n_trials, "epochs_per_trial": config.epochs_per_trial,
                   "patience": config.patience, "patience_epochs": config.patience_epochs,
                   "plateau_margin": config.plateau_margin,
                   "eval_every": config.eval_every,
                   "max_steps_per_epoch": config.max_steps_per_epoch, "batch_size": config.batch_size},
        **search,
        "best_trial": None if best is None else best.number,
        "best_value": None if best is None else best.value,
        "best_value_metric": "best validation loss (nats per window) within the trial",
        "best_params": None if best is None else best.user_attrs["flags"],
        "best_parameters": None if best is None else best.user_attrs.get("parameters"),
        "best_trial_dir": None if best is None else str(output_dir / TRIALS_DIR / str(best.number)),
        "search_space": {name: describe(distribution) for name, distribution in objective.space.items()},
        "fixed_params": objective.fixed,
        "param_importances": importances,
        "plots": plots,
        "seconds": seconds,
    }
