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

from quixer_rna.cli import add_union_args, dataclass_values, make_parser, positive_int, run_cli
from quixer_rna.errors import UserError
from quixer_rna.markov import run_markov_stage
from quixer_rna.models.bottleneck import BottleneckConfig
from quixer_rna.models.classical import CONFIGS
from quixer_rna.ngram import COUNTING_MODES, run_ngram_stage
from quixer_rna.training.cli import add_training_args, print_summary, run_training_stage

NEURAL = {**CONFIGS, "bottleneck": BottleneckConfig}
MODELS = (*NEURAL, "ngram", "markov")


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__, __file__, config_file=True)
    add_training_args(parser, "where checkpoints, metrics and curves go; default runs/<model>", default_output_dir=None)
    parser.set_defaults(epochs=100)
    group = parser.add_argument_group("model")
    group.add_argument("--model", choices=MODELS, required=True, help="which baseline to train")
    add_union_args(group, NEURAL)
    group.add_argument("--order", type=positive_int, default=3,
                       help="ngram: n-gram order, the target and the order-1 tokens before it")
    group.add_argument(
        "--ngram_counting",
        choices=COUNTING_MODES,
        default="targets",
        help="ngram: targets counts each train window's target n-gram (the neural models' training examples); "
        "transcript counts every position of the train stream's windowed stretches once",
    )
    group.add_argument("--max_markov_order", type=positive_int, default=10,
                       help="markov: the largest nucleotide context tried on val (orders 0..this)")
    return parser


def run_train(args: argparse.Namespace) -> int:
    if args.output_dir is None:
        args.output_dir = f"runs/{args.model}"
    if args.model == "ngram":
        print_summary(run_ngram_stage(args))
        return 0
    if args.model == "markov":
        print_summary(run_markov_stage(args))
        return 0
    config_cls = NEURAL[args.model]
    try:
        config = config_cls(**dataclass_values(config_cls, args, given_only=True))
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    print_summary(run_training_stage(args, "train_classical_baselines", args.model, config))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), run_train, argv)


if __name__ == "__main__":
    raise SystemExit(main())
