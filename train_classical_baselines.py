#!/usr/bin/env python3
"""Train a classical baseline on the same token windows as Quixer (quantised clusters or raw k-mers; the
vocabulary size is read from the data): tokens 1..L-1 of each window predict token L.

lstm, transformer and fnet train with the shared loop of train_quixer_hybrid.py (same optimiser,
schedule, early stopping, exact resume, checkpoints, metrics.jsonl, training_curves.png, metrics.json,
test_predictions.npz). Defaults follow the Quixer paper's baselines: embedding 96; LSTM 2 layers with
hidden = embedding; Transformer 1 causal layer, 1 head, FFN 4x embedding, sinusoidal positions; FNet 2
Fourier-mixing layers, FFN 4x embedding; all with dropout 0.1, predicting from the last position.

ngram is a count-based model of --order tokens with interpolated Kneser-Ney smoothing, its discounts
tuned on val; it has no training loop (optimiser flags are ignored) and writes metrics.json,
test_predictions.npz and ngram_model.pt (counts and discounts). markov is the order-m nucleotide Markov
reference (m chosen on val) scored on the same target k-mers (on cluster tokens: each k-mer's probability added
to its cluster's). bottleneck is the control for Quixer's circuit: Quixer's embedding and head around a classical
position-weighted mixer onto 3n features (--features)."""

from __future__ import annotations

import argparse

from quixer_rna.cli import add_dataclass_args, add_union_args, config_from_args, dataclass_values, make_parser, \
    refuse_foreign_union_args, run_cli, run_record
from quixer_rna.errors import UserError
from quixer_rna.markov import MarkovConfig, run_markov_stage
from quixer_rna.models.bottleneck import BottleneckConfig
from quixer_rna.models.classical import CONFIGS
from quixer_rna.ngram import NgramConfig, run_ngram_stage
from quixer_rna.training.cli import add_training_args, print_summary, run_training_stage
from quixer_rna.training.config import TrainConfig, TrainerStageConfig

NEURAL = {**CONFIGS, "bottleneck": BottleneckConfig}
MODELS = (*NEURAL, "ngram", "markov")


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__, __file__, config_file=True)
    add_training_args(parser)
    parser.set_defaults(epochs=100)
    group = parser.add_argument_group("model")
    group.add_argument("--model", choices=MODELS, required=True, help="which baseline to train")
    add_union_args(group, NEURAL)
    add_dataclass_args(group, NgramConfig)
    add_dataclass_args(group, MarkovConfig)
    return parser


def run_train(args: argparse.Namespace) -> int:
    """Build the typed configs once (the output folder defaults to runs/<model>) and run the chosen model's stage."""
    refuse_foreign_union_args(args, NEURAL, args.model)
    resolved = {"output_dir": args.output_dir or f"runs/{args.model}"}
    stage = config_from_args(TrainerStageConfig, args, **resolved)
    train = config_from_args(TrainConfig, args)
    record = run_record(args, **resolved)
    if args.model == "ngram":
        result = run_ngram_stage(stage, train, config_from_args(NgramConfig, args), record)
    elif args.model == "markov":
        result = run_markov_stage(stage, train, config_from_args(MarkovConfig, args), record)
    else:
        config_cls = NEURAL[args.model]
        try:
            config = config_cls(**dataclass_values(config_cls, args, given_only=True))
        except ValueError as exc:
            raise UserError(str(exc)) from exc
        result = run_training_stage("train_classical_baselines", stage, train, args.model, config, record)
    print_summary(result)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), run_train, argv)


if __name__ == "__main__":
    raise SystemExit(main())
