#!/usr/bin/env python3
"""Tune Quixer, or a classical baseline with the same budget, by Optuna: a seeded TPE sampler over
learning rate, weight decay, dropout and the model's sizes (Quixer: embedding, qubits, ansatz layers,
QSVT degree, init std; baselines: embedding/hidden/FFN sizes and layers), a median pruner fed every
evaluation's val loss. Each trial trains like its trainer script would (the same model config and loop),
into <output_dir>/trials/<number>/.

The study lives in --storage (default <output_dir>/study.db): rerunning the command continues it until it
holds --n_trials trials with a value (complete or pruned; failed ones are recorded and do not count), and
several processes or machines given one storage (a database URL, or a journal file ending in
.log/.journal) share it. A trial whose process was killed is failed and retried once with the same
parameters when its heartbeat is older than twice --heartbeat (database storages). Writes
best_params.json (accepted by the trainer's --config), trials.csv, optimization_history.png,
param_importances.png, args.json and metrics.json.

ngram is not tuned here: it has no epochs, and its discounts are already fitted on val by
train_classical_baselines.py; compare its --order values there."""

from __future__ import annotations

import argparse

from quixer_rna.cli import add_common_args, every, make_parser, nonnegative_int, positive_float, positive_int, run_cli
from quixer_rna.models.quixer import INIT_STRATEGIES
from quixer_rna.training.cli import TASKS
from quixer_rna.training.config import TrainConfig
from quixer_rna.tuning import SEARCH_SPACES, run_tuning

MODELS = tuple(SEARCH_SPACES)


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__, __file__)
    defaults = TrainConfig()
    group = parser.add_argument_group("study")
    group.add_argument("--data_dir", required=True, help="token folder (quantize_lambeq_embeddings.py or "
                                                         "prepare_classical_benchmarks.py output)")
    group.add_argument("--model", choices=MODELS, default="quixer", help="which model to tune")
    group.add_argument("--output_dir", help="where trials and summaries go; default runs/tune_<model>")
    group.add_argument("--n_trials", type=positive_int, default=30,
                       help="trials with a value (complete or pruned) the study should hold in total")
    group.add_argument("--epochs_per_trial", type=positive_int, default=50, help="maximum epochs of each trial")
    group.add_argument("--timeout", type=positive_float, default=None,
                       help="start no new trial after this many seconds (a running one finishes)")
    group.add_argument(
        "--search_space",
        help='JSON file or inline JSON narrowing the search, e.g. \'{"qubits": [4, 6], "lr": [1e-3, 5e-3], '
        '"qsvt_degree": 3}\': two numbers = a range (log scale for lr, weight_decay, init_std), '
        "another list = choices, a single value = fixed; Quixer also takes postselection_weight",
    )
    group.add_argument(
        "--storage",
        help="Optuna storage shared by every process of the study: a database URL (sqlite:///f.db, "
        "postgresql://...) or a journal file path ending in .log/.journal; default sqlite <output_dir>/study.db",
    )
    group.add_argument("--study_name", help="name of the study in --storage; default tune_<model>")
    group.add_argument("--heartbeat", type=positive_int, default=30,
                       help="seconds between a running trial's heartbeats (database storages); a trial silent for "
                            "twice this long belongs to a dead process and is failed and retried")
    group = parser.add_argument_group("every trial (passed to the trainer)")
    group.add_argument("--task", choices=TASKS, default="autoregressive", help="the trainer's --task")
    group.add_argument("--batch_size", type=positive_int, default=defaults.batch_size, help="windows per optimiser step; default the trainer's (32 on CPU, 1024 on CUDA)")
    group.add_argument("--max_steps_per_epoch", type=nonnegative_int, default=defaults.max_steps_per_epoch,
                       help="cap on optimiser steps per epoch, to make trials cheap; 0 = all windows")
    group.add_argument("--eval_every", type=nonnegative_int, default=defaults.eval_every,
                       help="also evaluate (and report to the pruner) every this many steps; 0 = epoch ends")
    group.add_argument("--val_windows", type=nonnegative_int, default=defaults.val_windows,
                       help="validate on a fixed seeded sample of this many val windows; 0 = all")
    group.add_argument("--log_every", type=every, default=defaults.log_every,
                       help="without a terminal, log a progress line every N steps or Ns seconds")
    group.add_argument("--init_strategy", choices=INIT_STRATEGIES, default=None,
                       help="Quixer only: circuit initialisation; default the trainer's")
    group.add_argument("--use_layerwise_training", action="store_true",
                       help="Quixer only: grow the trainable ansatz layers gradually")
    group.add_argument("--layerwise_epochs", type=positive_int, default=None,
                       help="Quixer only: epochs per layer stage; default the trainer's")
    add_common_args(parser, device=True)
    return parser


def run_tune(args: argparse.Namespace) -> int:
    args.output_dir = args.output_dir or f"runs/tune_{args.model}"
    args.study_name = args.study_name or f"tune_{args.model}"
    metrics = run_tuning(args)
    states = metrics["trials_by_state"]
    print(
        f"{args.model}: best val loss {metrics['best_value']:.4f} (trial {metrics['best_trial']}; "
        f"{states['COMPLETE']} complete, {states['PRUNED']} pruned, {states['FAIL']} failed); "
        f"flags in {args.output_dir}/best_params.json"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), run_tune, argv)


if __name__ == "__main__":
    raise SystemExit(main())
