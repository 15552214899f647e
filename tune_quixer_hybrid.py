#!/usr/bin/env python3
"""Tune Quixer, or a classical baseline with the same budget, by Optuna: a seeded TPE sampler over
learning rate, weight decay, dropout and the model's sizes (Quixer: embedding, qubits, ansatz layers,
QSVT degree, init std; baselines: embedding/hidden/FFN sizes and layers), a median pruner fed each
epoch's val loss. Each trial trains like its trainer script would, into <output_dir>/trials/<number>/.

The study lives in --storage (default <output_dir>/study.db): rerunning the command continues it
until it holds --n_trials finished trials (complete, pruned or failed), and several processes or
machines given one storage (a database URL, or a journal file ending in .log/.journal) share it.
A trial that crashes or runs out of memory is recorded as failed and the study goes on.
Writes best_params.json (accepted by the trainer's --config), trials.csv, optimization_history.png,
param_importances.png, args.json and metrics.json.

ngram is not tuned here: it has no epochs, and its discounts are already fitted on val by
train_classical_baselines.py; compare its --order values there."""

from __future__ import annotations

import argparse

import train_classical_baselines as baselines
import train_quixer_hybrid as quixer
from quixer_rna.cli import add_common_args, make_parser, run_cli
from quixer_rna.training import TASKS, TrainConfig
from quixer_rna.tuning import SEARCH_SPACES, TrainerSpec, run_tuning

MODELS = tuple(SEARCH_SPACES)


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    defaults = TrainConfig()
    group = parser.add_argument_group("study")
    group.add_argument("--data_dir", required=True, help="folder with train.pt, val.pt and test.pt token files")
    group.add_argument("--model", choices=MODELS, default="quixer", help="which model to tune")
    group.add_argument("--output_dir", help="where trials and summaries go; default runs/tune_<model>")
    group.add_argument("--n_trials", type=int, default=30, help="finished trials the study should hold in total")
    group.add_argument("--epochs_per_trial", type=int, default=50, help="maximum epochs of each trial")
    group.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="start no new trial after this many seconds (a running one finishes)",
    )
    group.add_argument(
        "--search_space",
        help='JSON file or inline JSON narrowing the search, e.g. \'{"qubits": [4, 6], "lr": [1e-3, 5e-3], '
        '"qsvt_degree": 3}\': two numbers = a range (log scale for lr, weight_decay, init_std), '
        "another list = choices, a single value = fixed",
    )
    group.add_argument(
        "--storage",
        help="Optuna storage shared by every process of the study: a database URL (sqlite:///f.db, "
        "postgresql://...) or a journal file path ending in .log/.journal; default sqlite <output_dir>/study.db",
    )
    group.add_argument("--study_name", help="name of the study in --storage; default tune_<model>")
    group = parser.add_argument_group("every trial (passed to the trainer)")
    group.add_argument("--task", choices=TASKS, default=defaults.task, help="the trainer's --task")
    group.add_argument("--batch_size", type=int, default=defaults.batch_size, help="windows per optimiser step")
    group.add_argument(
        "--max_steps_per_epoch",
        type=int,
        default=defaults.max_steps_per_epoch,
        help="cap on optimiser steps per epoch, to make trials cheap; 0 = all windows",
    )
    group.add_argument(
        "--init_strategy",
        choices=quixer.INIT_STRATEGIES,
        default=None,
        help="Quixer only: circuit initialisation; default the trainer's",
    )
    group.add_argument(
        "--use_layerwise_training", action="store_true", help="Quixer only: grow the trainable ansatz layers gradually"
    )
    group.add_argument(
        "--layerwise_epochs", type=int, default=None, help="Quixer only: epochs per layer stage; default the trainer's"
    )
    add_common_args(parser, device=True)
    return parser


def trainer_spec(model: str) -> TrainerSpec:
    """Quixer trains through train_quixer_hybrid.py, the baselines through train_classical_baselines.py."""
    if model == "quixer":
        return TrainerSpec("quixer", "train_quixer_hybrid", quixer.build_parser, quixer.model_config)

    def baseline_config(args: argparse.Namespace) -> dict:
        config = baselines.model_config(args)
        baselines.check_sizes(config)
        return config

    return TrainerSpec(model, "train_classical_baselines", baselines.build_parser, baseline_config, {"model": model})


def run_tune(args: argparse.Namespace) -> int:
    args.output_dir = args.output_dir or f"runs/tune_{args.model}"
    args.study_name = args.study_name or f"tune_{args.model}"
    metrics = run_tuning(args, trainer_spec(args.model))
    print(
        f"{args.model}: best val loss {metrics['best_value']:.4f} (trial {metrics['best_trial']} of "
        f"{metrics['n_trials_finished']} finished: {metrics['trials_by_state']['COMPLETE']} complete, "
        f"{metrics['trials_by_state']['PRUNED']} pruned, {metrics['trials_by_state']['FAIL']} failed); "
        f"flags in {args.output_dir}/best_params.json"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), run_tune, argv)


if __name__ == "__main__":
    raise SystemExit(main())
