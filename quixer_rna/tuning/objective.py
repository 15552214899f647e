"""One trial: draw the searched settings, add the fixed ones, and train into trials/<number>/ with the shared
loop exactly as the trainer script would train the same flags, reporting every evaluation to the pruner."""

from __future__ import annotations

import dataclasses
import gc
import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution

from ..formats.results import ModelResult, write_result
from ..formats.tokens import TokenData
from ..models import build_model, config_class, config_dict, make_config
from ..stage import stage_run
from ..training import train_model
from .config import TuneConfig
from .space import suggest
from .storage import one_line

LOG = logging.getLogger("quixer_rna.tuning")
TRIALS_DIR = "trials"


def _free_accelerator_memory() -> None:
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass
class Objective:
    """The objective of one process's part of a study. `fixed`: the settings every trial shares (the
    model's own settings from the command line and the values --search_space fixes)."""

    config: TuneConfig
    space: dict[str, BaseDistribution]
    fixed: dict[str, Any]
    data: TokenData
    ran: int = 0

    @property
    def output_dir(self) -> Path:
        return Path(self.config.output_dir)

    def trial_flags(self, params: dict[str, Any]) -> dict[str, Any]:
        """Every setting of a trial, named as the trainer script's flags (what best_params.json holds). The
        classical trainer serves several models and needs --model; train_quixer_hybrid.py has none."""
        flags: dict[str, Any] = {} if self.config.batch_size is None else {"batch_size": self.config.batch_size}
        if self.config.model != "quixer":
            flags["model"] = self.config.model
        return {**flags, **self.fixed, **params}

    def model_config(self, flags: dict[str, Any]) -> Any:
        names = {item.name for item in dataclasses.fields(config_class(self.config.model))}
        return make_config(self.config.model, {k: v for k, v in flags.items() if k in names})

    def parameter_count(self, model_config: Any) -> int:
        """The trial's model size, known before it trains (a pruned or failed trial records it too)."""
        context = self.data["train"].window_size - 1
        model = build_model(self.config.model, self.data.vocab_size, context, model_config)
        return sum(parameter.numel() for parameter in model.parameters())

    def __call__(self, trial: optuna.Trial) -> float:
        """Train one trial and return its best val loss (pruned on the median rule at its evaluations)."""
        trial_dir = self.output_dir / TRIALS_DIR / str(trial.number)
        # Trial numbers are unique within a study: anything there is from a deleted study or a dead process.
        shutil.rmtree(trial_dir, ignore_errors=True)
        params = {name: suggest(trial, name, distribution) for name, distribution in self.space.items()}
        flags = self.trial_flags(params)
        self.ran += 1
        try:
            model_config = self.model_config(flags)
            train_config = self.config.trial_training(flags)
            parameters = self.parameter_count(model_config)
        except (TypeError, ValueError) as exc:
            trial.set_user_attr("error", one_line(exc))
            raise
        trial.set_user_attr("flags", {**flags, **config_dict(model_config)})
        trial.set_user_attr("parameters", parameters)
        record = {**flags, "trial": trial.number, "parameters": parameters}
        with stage_run(trial_dir, "tune_trial", record, role="trial", overwrite=True) as run:
            evaluations = 0

            def report(row: dict[str, Any]) -> None:
                nonlocal evaluations
                evaluations += 1
                loss = float(row["val_loss"])
                if math.isfinite(loss):
                    trial.report(loss, evaluations)
                if trial.should_prune():
                    trial.set_user_attr("stopped_by", "pruned")
                    run.finish({"state": "pruned", "evaluation": evaluations, "step": row["step"], "val_loss": loss},
                               status="pruned")
                    raise optuna.TrialPruned(f"pruned at evaluation {evaluations}, step {row['step']} "
                                             f"(val loss {loss:.4f})")

            try:
                result = train_model(self.config.model, model_config, self.data, train_config, trial_dir,
                                     on_evaluation=report, resume=False)
            except optuna.TrialPruned:
                raise
            except Exception as exc:
                trial.set_user_attr("error", one_line(exc))
                LOG.warning("trial %d failed: %s", trial.number, one_line(exc))
                _free_accelerator_memory()
                raise
            write_result(trial_dir, ModelResult.from_json(result, f"trial {trial.number}"))
            run.close("completed")
        value = float(result["val"]["loss"])
        if not math.isfinite(value):
            error = ValueError(f"no finite val loss in {result['evaluations']} evaluation(s)")
            trial.set_user_attr("error", one_line(error))
            raise error
        for name in ("best_step", "epochs_seen", "stopped_by", "converged"):
            trial.set_user_attr(name, result[name])
        LOG.info("trial %d: best val loss %.4f with %s (%d parameters, %.2f epochs, stopped by %s)", trial.number,
                 value, params, parameters, result["epochs_seen"], result["stopped_by"])
        return value
