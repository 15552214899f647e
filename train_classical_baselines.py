#!/usr/bin/env python3
"""Train a classical baseline on the same token windows as Quixer (quantised clusters or raw k-mers;
the vocabulary size is read from the data): tokens 1..L-1 of each window predict token L.

lstm, transformer and fnet train with the shared loop of train_quixer_hybrid.py (same optimiser,
schedule, early stopping, exact resume, checkpoints, metrics.jsonl, training_curves.png, metrics.json,
test_predictions.pt). Defaults follow the Quixer paper's baselines: embedding 96; LSTM 2 layers with
hidden = embedding; Transformer 1 causal layer, 1 head, FFN 4x embedding, sinusoidal positions; FNet 2
Fourier-mixing layers, FFN 4x embedding; all with dropout 0.1, predicting from the last position.

ngram is a count-based model of --order tokens with interpolated Kneser-Ney smoothing, its discounts
tuned on val; it has no training loop (training flags are ignored) and writes metrics.json,
test_predictions.pt and ngram_model.pt (counts and discounts)."""

from __future__ import annotations

import argparse

from quixer_rna.cli import run_cli
from quixer_rna.errors import UserError
from quixer_rna.ngram import COUNTING_MODES, run_ngram_stage
from quixer_rna.training import add_training_args, make_training_parser, print_summary, run_training_stage

MODELS = ("lstm", "transformer", "fnet", "ngram")
DEFAULT_LAYERS = {"lstm": 2, "transformer": 1, "fnet": 2}


def build_parser() -> argparse.ArgumentParser:
    parser = make_training_parser(__doc__)
    add_training_args(parser, default_output_dir=None)
    for action in parser._actions:
        if action.dest == "output_dir":
            action.help = "where checkpoints, metrics and curves go; default runs/<model>"
    parser.set_defaults(epochs=100)
    group = parser.add_argument_group("model")
    group.add_argument("--model", choices=MODELS, required=True, help="which baseline to train")
    group.add_argument("--embedding_dim", type=int, default=96, help="token embedding size (all neural models)")
    group.add_argument("--hidden_dim", type=int, default=None, help="LSTM hidden size; default = --embedding_dim")
    group.add_argument(
        "--num_layers", type=int, default=None, help="layers; default 2 for lstm and fnet, 1 for transformer"
    )
    group.add_argument("--num_heads", type=int, default=1, help="attention heads (transformer)")
    group.add_argument(
        "--ffn_dim", type=int, default=None, help="feed-forward width (transformer, fnet); default 4 x --embedding_dim"
    )
    group.add_argument("--dropout", type=float, default=0.1, help="dropout probability (all neural models)")
    group.add_argument("--order", type=int, default=3, help="n-gram order: the target and the order-1 tokens before it")
    group.add_argument(
        "--ngram_counting",
        choices=COUNTING_MODES,
        default="targets",
        help="targets: count each train window's target n-gram (the neural models' training examples); "
        "transcript: count every position of the train transcripts once (overlapping windows de-duplicated)",
    )
    return parser


def model_config(args: argparse.Namespace) -> dict:
    """The sizes the chosen model takes, with defaults resolved so the checkpoint records them."""
    config = {
        "embedding_dim": args.embedding_dim,
        "num_layers": args.num_layers if args.num_layers is not None else DEFAULT_LAYERS[args.model],
        "dropout": args.dropout,
    }
    if args.model == "lstm":
        config["hidden_dim"] = args.hidden_dim if args.hidden_dim is not None else args.embedding_dim
    else:
        config["ffn_dim"] = args.ffn_dim if args.ffn_dim is not None else 4 * args.embedding_dim
    if args.model == "transformer":
        config["num_heads"] = args.num_heads
    return config


def check_sizes(config: dict) -> None:
    for flag, value in config.items():
        if flag != "dropout" and value < 1:
            raise UserError(f"--{flag} {value}: must be at least 1")
    if not 0.0 <= config["dropout"] < 1.0:
        raise UserError(f"--dropout {config['dropout']}: must lie in [0, 1)")
    if config["embedding_dim"] % config.get("num_heads", 1):
        raise UserError(f"--embedding_dim {config['embedding_dim']}: must be divisible by --num_heads {config['num_heads']}")


def run_train(args: argparse.Namespace) -> int:
    if args.output_dir is None:
        args.output_dir = f"runs/{args.model}"
    if args.model == "ngram":
        metrics = run_ngram_stage(args)
        test, refs = metrics["test"], metrics["references"]
        print(
            f"ngram (order {args.order}): test loss {test['loss']:.4f} nats, perplexity {test['perplexity']:.3f} "
            f"(unigram {refs['unigram_perplexity']:.3f}, uniform {refs['uniform_perplexity']:.0f}), "
            f"accuracy {test['accuracy']:.4f}, top-5 {test['top5_accuracy']:.4f}"
        )
        return 0
    config = model_config(args)
    check_sizes(config)
    print_summary(run_training_stage(args, "train_classical_baselines", args.model, config))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), run_train, argv)


if __name__ == "__main__":
    raise SystemExit(main())
