#!/usr/bin/env python3
"""Tune Quixer, a classical baseline or a control with the same budget, by Optuna: one seeded TPE sampler
per study over spaces of comparable size (every model: learning rate, weight decay, dropout, embedding size,
and a width and a depth of four values each: Quixer's qubits and QSVT degree, the LSTM's hidden size and
layers, the Transformer's and FNet's feed-forward width and layers; the bottleneck control its width), and a
median pruner fed every evaluation's val loss. Each trial trains like its trainer script would (the same
model config and loop) under the final training's protocol (--epochs_per_trial = its --epochs, the same
--patience and --eval_every), into <output_dir>/trials/<number>/.

The study lives in --storage (default <output_dir>/study.db): rerunning the command continues it until it
holds --n_trials trials with a value (complete or pruned; failed ones are recorded and do not count), and
several processes or machines given one storage (a database URL, or a journal file ending in
.log/.journal) share it. A trial whose process was killed is failed and retried once with the same
parameters when its heartbeat is older than twice --heartbeat (database storages). Writes
best_params.json (accepted by the trainer's --config), trials.csv (with each trial's parameter count),
optimization_history.png, param_importances.png, args.json and metrics.json.

ngram is not tuned here: it has no epochs, and its discounts are already fitted on val by
train_classical_baselines.py; compare its --order values there."""

from __future__ import annotations

import argparse
import dataclasses

from quixer_rna.cli import add_common_args, add_dataclass_args, config_from_args, make_parser, run_cli
from quixer_rna.training.config import TASKS
from quixer_rna.tuning import TuneConfig, run_tuning
from quixer_rna.tuning.config import COMMON_FLAGS, MODEL_FLAGS, TRIAL_FLAGS

FIELDS = tuple(item.name for item in dataclasses.fields(TuneConfig))
GROUPS = {
    "study": tuple(name for name in FIELDS if name not in (*TRIAL_FLAGS, *MODEL_FLAGS, *COMMON_FLAGS)),
    "every trial (passed to the trainer)": TRIAL_FLAGS,
    "the model's own settings (fixed for the whole study)": MODEL_FLAGS,
}


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__, __file__)
    for title, names in GROUPS.items():
        group = parser.add_argument_group(title)
        add_dataclass_args(group, TuneConfig, skip=tuple(name for name in FIELDS if name not in names))
        if names == TRIAL_FLAGS:
            group.add_argument("--task", choices=TASKS, default="autoregressive", help="the trainer's --task")
    add_common_args(parser, device=True)
    return parser


def run_tune(args: argparse.Namespace) -> int:
    config = config_from_args(TuneConfig, args)
    metrics = run_tuning(config)
    states = metrics["trials_by_state"]
    print(
        f"{config.model}: best val loss {metrics['best_value']:.4f} (trial {metrics['best_trial']}; "
        f"{states['COMPLETE']} complete, {states['PRUNED']} pruned, {states['FAIL']} failed); "
        f"flags in {config.output_dir}/best_params.json"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), run_tune, argv)


if __name__ == "__main__":
    raise SystemExit(main())
