"""How a study chooses and stops trials: one seeded TPE sampler per study with a start-up phase sized from
--n_trials, and Optuna's median pruner on the evaluations every trial shares with the final training.

Seeding. The sampler is made once per process and passed to `optuna.create_study`. Its random draws for
trial k come from a stream keyed by (--seed, the study's name and the model's own settings such as
--freeze_circuit, k), restarted when trial k begins: a plain seeded
sampler would replay its first draws in every process, so a continued study (a rerun, after a kill too) would
repeat the first run's start-up values and two workers on one storage would draw the same ones. Hence:
- one process with a given --seed draws, in a new study, the same start-up values on every run, and the same
  TPE values as long as the trials' results repeat (seeded training on a CPU does); another --seed, or another
  model's study (a control included), draws other values; a rerun continuing a study draws fresh ones for its
  new trial numbers;
- with several workers on one storage, each trial number belongs to one worker, so no two workers share a
  stream; a start-up trial's values depend on its number alone, whichever worker runs it, but after start-up
  TPE models the trials finished when a trial begins (running ones count as bad: Optuna's constant liar),
  which depends on the workers' timing, so that phase does not repeat exactly.

Pruning. The median rule compares a trial's best val loss with the median of the earlier trials' at the same
evaluation (every trial evaluates on the same schedule), once 5 trials have finished and from a trial's
second evaluation on (its first mostly measures how fast its learning rate starts). Optuna's documentation
finds successive halving and Hyperband better on its benchmarks, but successive halving stops three trials
in four at each rung from a minimum budget one has to guess, and Hyperband makes the sampler see only the
trials of one bracket, so TPE's start-up would be paid once per bracket: both too costly for the few tens of
trials trained to convergence that a study affords.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import numpy as np
import optuna

STARTUP_MIN = 5
STARTUP_MAX = 10  # Optuna's default
PRUNER_STARTUP_TRIALS = 5
PRUNER_WARMUP_EVALUATIONS = 2  # the earliest evaluation a trial can be pruned at (1 = its first)


def startup_trials(n_trials: int) -> int:
    """TPE's random start-up trials: a third of the study, at least 5 (a model needs a few points) and at
    most 10 (Optuna's default)."""
    return max(STARTUP_MIN, min(STARTUP_MAX, n_trials // 3))


def startup_warning(n_trials: int) -> str | None:
    """A one-line warning when TPE would choose fewer trials than the random start-up draws."""
    startup = startup_trials(n_trials)
    if n_trials >= 2 * startup:
        return None
    return (f"--n_trials {n_trials}: TPE chooses only {max(0, n_trials - startup)} of them after {startup} random "
            f"start-up trials, so this study is close to a random search; ask for --n_trials {2 * startup} or more")


class KeyedTPESampler(optuna.samplers.TPESampler):
    """Optuna's TPE whose random stream restarts at each trial from (seed, study, trial number); the study is
    its name and the model's own settings."""

    def __init__(self, seed: int, study_name: str, model_settings: dict[str, Any], n_startup_trials: int) -> None:
        super().__init__(seed=seed, n_startup_trials=n_startup_trials)
        self.seed, self.study_name, self.n_startup_trials = seed, study_name, n_startup_trials
        study = json.dumps([study_name, model_settings], sort_keys=True)
        self._key = (seed, zlib.crc32(study.encode("utf-8")))

    def trial_seed(self, number: int) -> int:
        return int(np.random.SeedSequence([*self._key, number]).generate_state(1)[0])

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        seed = self.trial_seed(trial.number)
        # TPE's own generator (its model's candidates) and its start-up sampler's: Optuna 5.0's attributes,
        # pinned in requirements.txt (tests/test_tuning.py checks that the draws follow the seed).
        self._rng.rng.seed(seed)
        self._random_sampler._rng.rng.seed(seed)
        super().before_trial(study, trial)


def make_sampler(seed: int, study_name: str, n_trials: int, model_settings: dict[str, Any] | None = None,
                 ) -> KeyedTPESampler:
    return KeyedTPESampler(seed, study_name, model_settings or {}, startup_trials(n_trials))


def make_pruner() -> optuna.pruners.MedianPruner:
    return optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP_TRIALS,
                                       n_warmup_steps=PRUNER_WARMUP_EVALUATIONS)


def describe_search(sampler: KeyedTPESampler) -> dict[str, Any]:
    """The sampler and pruner as metrics.json records them."""
    return {
        "sampler": {"name": "TPESampler", "seed": sampler.seed, "stream": "(seed, study name and model settings, trial number)",
                    "n_startup_trials": sampler.n_startup_trials},
        "pruner": {"name": "MedianPruner", "n_startup_trials": PRUNER_STARTUP_TRIALS,
                   "earliest_evaluation_pruned": PRUNER_WARMUP_EVALUATIONS},
    }
