#!/usr/bin/env python3
"""Train the hybrid Quixer model (arXiv:2406.04305) on quantised k-mer tokens: tokens 1..31 of each
window predict token 32 (or, with --task classification, all tokens predict the window's label).
Adam with L2 weight decay, gradient clipping and a cosine schedule, early stopping on val loss;
checkpoints every --checkpoint_every steps and at each epoch end, so rerunning the same command
resumes exactly where it stopped. Writes metrics.jsonl (per epoch), metrics.json (test metrics of
the best-val checkpoint beside the uniform and unigram references), test_predictions.pt and
training_curves.png into --output_dir."""

from __future__ import annotations

import argparse

from quixer_rna.cli import run_cli
from quixer_rna.training import add_training_args, make_training_parser, print_summary, run_training_stage

INIT_STRATEGIES = ("small_gaussian", "official", "uniform")


def build_parser() -> argparse.ArgumentParser:
    parser = make_training_parser(__doc__)
    add_training_args(parser, default_output_dir="runs/quixer")
    group = parser.add_argument_group("Quixer model")
    group.add_argument("--embedding_dim", type=int, default=512, help="classical token embedding size")
    group.add_argument("--qubits", type=int, default=6, help="qubits of each token's parameterised circuit")
    group.add_argument("--ansatz_layers", type=int, default=4, help="layers of the per-token circuit ansatz")
    group.add_argument("--qsvt_degree", type=int, default=3, help="degree of the QSVT polynomial of the token LCU")
    group.add_argument("--dropout", type=float, default=0.1, help="dropout on the classical embedding")
    group.add_argument(
        "--init_strategy",
        choices=INIT_STRATEGIES,
        default="small_gaussian",
        help="initialisation of the circuit parameters",
    )
    group.add_argument("--init_std", type=float, default=0.1, help="standard deviation of the small_gaussian init")
    group.add_argument(
        "--use_layerwise_training",
        action="store_true",
        help="grow the trainable ansatz layers gradually (one more every --layerwise_epochs epochs)",
    )
    group.add_argument(
        "--layerwise_epochs", type=int, default=2, help="epochs per ansatz-layer stage with --use_layerwise_training"
    )
    return parser


def model_config(args: argparse.Namespace) -> dict:
    return {
        "embedding_dim": args.embedding_dim,
        "qubits": args.qubits,
        "ansatz_layers": args.ansatz_layers,
        "qsvt_degree": args.qsvt_degree,
        "dropout": args.dropout,
        "init_strategy": args.init_strategy,
        "init_std": args.init_std,
        "layerwise_epochs": args.layerwise_epochs if args.use_layerwise_training else 0,
    }


def run_train(args: argparse.Namespace) -> int:
    metrics = run_training_stage(args, "train_quixer_hybrid", "quixer", model_config(args))
    print_summary(metrics)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), run_train, argv)


if __name__ == "__main__":
    raise SystemExit(main())
