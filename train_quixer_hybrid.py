#!/usr/bin/env python3
"""Train the hybrid Quixer model (arXiv:2406.04305) on k-mer tokens: tokens 1..31 of each window predict
token 32. Adam with L2 weight decay, gradient clipping and a cosine schedule, early stopping on val loss;
checkpoints every --checkpoint_every steps and at each evaluation, so rerunning the same command resumes
exactly where it stopped (a run killed at any moment, even before its first checkpoint). Writes
metrics.jsonl (one row per evaluation), metrics.json (test metrics of the best-val checkpoint beside the
uniform and unigram references, mean post-selection probability), test_predictions.npz and
training_curves.png into --output_dir. Runs unchanged under torchrun (one process per GPU)."""

from __future__ import annotations

import argparse

from quixer_rna.cli import add_dataclass_args, dataclass_values, make_parser, run_cli
from quixer_rna.models.quixer import QuixerConfig
from quixer_rna.training.cli import add_training_args, print_summary, run_training_stage


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__, __file__, config_file=True)
    add_training_args(parser, "where checkpoints, metrics and curves go", default_output_dir="runs/quixer")
    add_dataclass_args(parser.add_argument_group("Quixer model"), QuixerConfig)
    return parser


def run_train(args: argparse.Namespace) -> int:
    config = QuixerConfig(**dataclass_values(QuixerConfig, args))
    print_summary(run_training_stage(args, "train_quixer_hybrid", "quixer", config))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), run_train, argv)


if __name__ == "__main__":
    raise SystemExit(main())
