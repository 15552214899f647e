#!/usr/bin/env python3
"""Train the hybrid Quixer model (arXiv:2406.04305) on k-mer tokens: tokens 1..31 of each window predict
token 32. AdamW (decay on weight matrices only), gradient clipping and a cosine schedule, early stopping on val
loss; checkpoints every --checkpoint_every steps and at each evaluation, so rerunning the same command resumes
exactly where it stopped (a run killed at any moment, even before its first checkpoint). Writes
metrics.jsonl (one row per evaluation), metrics.json (test metrics of the best-val checkpoint beside the
uniform and unigram references, mean post-selection probability), test_predictions.npz and
training_curves.png into --output_dir. Runs unchanged under torchrun (one process per GPU)."""

from __future__ import annotations

import argparse

from quixer_rna.cli import add_dataclass_args, config_from_args, make_parser, run_cli, run_record
from quixer_rna.models.quixer import QuixerConfig
from quixer_rna.training.cli import add_training_args, print_summary, run_training_stage
from quixer_rna.training.config import TrainConfig, TrainerStageConfig


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__, __file__, config_file=True)
    add_training_args(parser)
    add_dataclass_args(parser.add_argument_group("Quixer model"), QuixerConfig)
    return parser


def run_train(args: argparse.Namespace) -> int:
    resolved = {"output_dir": args.output_dir or "runs/quixer"}
    stage = config_from_args(TrainerStageConfig, args, **resolved)
    print_summary(run_training_stage("train_quixer_hybrid", stage, config_from_args(TrainConfig, args), "quixer",
                                     config_from_args(QuixerConfig, args), run_record(args, **resolved)))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), run_train, argv)


if __name__ == "__main__":
    raise SystemExit(main())
