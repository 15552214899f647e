"""Optuna tuning of one model under the protocol of its final training: one seeded TPE sampler per study,
Optuna's distributions over spaces of comparable size per model, every trial trained by the shared loop as
its trainer script would train it (the same epochs, patience and evaluation schedule), and the median pruner
fed every evaluation's val loss.

A study lives in Optuna storage (an SQLite file, a database URL or a journal file), so rerunning the command
continues it, and several processes or machines given one storage share one study.

Modules: `config` (TuneConfig, the stage's typed settings), `space` (the search spaces and --search_space),
`sampler` (the seeded sampler, its start-up rule and the pruner), `storage` (--storage), `objective` (one
trial), `summary` (trials.csv, best_params.json, plots, metrics), `stage` (the study from start to summary).
"""

from .config import TuneConfig
from .space import MODELS
from .stage import run_tuning

__all__ = ["MODELS", "TuneConfig", "run_tuning"]
