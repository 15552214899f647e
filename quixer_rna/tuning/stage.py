"""The tune stage: open or continue the study, run trials until it holds --n_trials with a value, summarise.

What Optuna provides is used as it is: `MaxTrialsCallback` stops a worker once the study holds --n_trials
trials with a value (complete or pruned; with heartbeats, also those running in another worker, so workers
do not overshoot); database storages record a heartbeat per running trial, and a trial whose process died
(no heartbeat for twice --heartbeat seconds) is failed by `fail_stale_trials` and retried once by
`RetryHeartbeatStaleTrialCallback` with the same parameters. Journal files have no heartbeats: a trial killed
with its process stays RUNNING there and does not count. Failed trials (a crash, out of memory) are recorded
with their error and do not use up the budget; one process runs at most twice the number of trials still
missing when it starts, so a study whose trials keep failing stops.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

import optuna
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState

from ..errors import UserError
from ..formats.tokens import open_tokens
from ..stage import stage_run
from .config import TuneConfig
from .objective import TRIALS_DIR, Objective
from .sampler import describe_search, make_pruner, make_sampler, startup_warning
from .space import load_search_space
from .storage import StorageChoice, hide_password, open_storage, retrying
from .summary import TRIALS_FILE, VALUED, summarize_study

LOG = logging.getLogger("quixer_rna.tuning")
STAGE = "tune_quixer_hybrid"
POLL_SECONDS = 1.0  # how often a worker done with its trials looks at the ones still running


def open_study(config: TuneConfig, choice: StorageChoice, sampler: optuna.samplers.BaseSampler,
               output_dir: Path) -> optuna.Study:
    """Create or load the study with this process's sampler; --overwrite deletes it and its trial folders
    first. A study made under other trial settings is refused rather than mixed."""
    if config.overwrite:
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=config.study_name, storage=choice.storage)
            LOG.info("--overwrite: deleted study %s from %s", config.study_name, choice.shown)
        shutil.rmtree(output_dir / TRIALS_DIR, ignore_errors=True)
    study = retrying(lambda: optuna.create_study(storage=choice.storage, study_name=config.study_name,
                                                 direction="minimize", sampler=sampler, pruner=make_pruner(),
                                                 load_if_exists=True))
    settings = json.loads(json.dumps(config.comparable()))
    stored = study.user_attrs.get("settings")
    if stored is not None:  # studies made before the options ran under their defaults
        stored = {"plateau_margin": 0.0, "search_scope": "model", **stored}
    if stored is None:
        study.set_user_attr("settings", settings)
    elif stored != settings:
        keys = dict.fromkeys([*stored, *settings])
        changed = ", ".join(f"{k}: {stored.get(k)!r} -> {settings.get(k)!r}" for k in keys
                            if stored.get(k) != settings.get(k))
        raise UserError(
            f"--study_name {config.study_name}: the study in {choice.shown} ran with other settings ({changed}); "
            "choose another --study_name, or pass --overwrite to delete it and start afresh"
        )
    return study


def fill_study(study: optuna.Study, objective: Objective, config: TuneConfig, heartbeat: bool) -> None:
    """Run trials until the study holds --n_trials with a value. With heartbeats, trials still RUNNING when
    this worker is done are waited for: another worker's finish, and a killed process's (this one's, rerun
    at once) go stale after two missed heartbeats, are failed and retried here with the same parameters."""
    counted = (*VALUED, TrialState.RUNNING) if heartbeat else VALUED
    deadline = None if config.timeout is None else time.monotonic() + config.timeout

    def missing() -> int:
        return config.n_trials - len(study.get_trials(deepcopy=False, states=VALUED))

    def optimize() -> None:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        study.optimize(objective, n_trials=2 * missing(), timeout=left, catch=(Exception,), gc_after_trial=True,
                       callbacks=[MaxTrialsCallback(config.n_trials, states=counted)])

    if missing() > 0:
        optimize()
    logged: set[int] = set()
    while heartbeat and missing() > 0 and (deadline is None or time.monotonic() < deadline):
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not running:
            break
        numbers = {t.number for t in running}
        if numbers != logged:
            LOG.info("waiting for running trial(s) %s: finished by another worker, or retried here once stale",
                     ", ".join(str(n) for n in sorted(numbers)))
            logged = numbers
        time.sleep(min(POLL_SECONDS, config.heartbeat))
        optuna.storages.fail_stale_trials(study)
        if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            optimize()


@contextlib.contextmanager
def _imports_frozen() -> Iterator[None]:
    """Leave the objects that exist before the trials (the imported libraries: some 400,000) out of garbage
    collection while trials run, so the full collection Optuna makes after every trial (gc_after_trial, for
    the cycles a trained model leaves) scans only what trials made: 0.35 s less per trial on a busy 2-core
    machine."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def run_tuning(config: TuneConfig) -> dict[str, Any]:
    """The tune stage: open or continue the study, run trials until it holds --n_trials, summarise."""
    started = time.monotonic()
    space, fixed = load_search_space(config.search_space, config.model, config.model_settings(),
                                     config.search_scope)
    data = open_tokens(config.data_dir)
    output_dir = Path(config.output_dir)
    record = {**config.plain(), "storage": hide_password(config.storage) if config.storage else None}
    with stage_run(output_dir, STAGE, record, role="tune", overwrite=config.overwrite, completed="rerun") as run:
        held = (run.previous_record or {}).get("args", {}).get("study_name")
        if run.previous_record is not None and held != config.study_name and not config.overwrite:
            raise UserError(f"--output_dir {output_dir}: holds study {held!r}; pass --study_name {held} to continue it "
                            "or choose another --output_dir")
        choice = open_storage(config.storage, output_dir, config.heartbeat)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = make_sampler(config.seed, config.study_name, config.n_trials, config.model_settings())
        study = open_study(config, choice, sampler, output_dir)
        warning = startup_warning(config.n_trials)
        if warning:
            LOG.warning(warning)
        objective = Objective(config, space, fixed, data)
        with _imports_frozen():
            fill_study(study, objective, config, choice.heartbeat)
        metrics = summarize_study(study, config, objective, describe_search(sampler), choice.shown,
                                  time.monotonic() - started)
        run.finish(metrics)
    if metrics["best_trial"] is None:
        raise UserError(
            f"study {config.study_name}: no trial completed ({metrics['trials_by_state']}); "
            f"see the error column of {output_dir / TRIALS_FILE}"
        )
    return metrics
