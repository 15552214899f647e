#!/usr/bin/env python3
"""k-mer streams (the output of prepare_autoregressive_data.py) -> raw k-mer tokens for the classical
baselines, with no quantum encoding: every k-mer is its own token, its id fixed by the k-mer (A=0 C=1
G=2 T=3 in base 4, vocab_size = 4^k). The token folder is the identity map over the stream (nothing per
window is stored); trainers read it like the quantizer's. Writes metadata.json, vocab.json (k, vocab_size,
the id rule, id -> k-mer for the k-mers seen), args.json and metrics.json; --write_pt also exports the
seeds' {split}.pt token files (sequences [N, L]), which no stage reads."""

from quixer_rna.classical_tokens import RawTokensConfig, run_prepare_classical
from quixer_rna.cli import add_common_args, add_dataclass_args, config_from_args, make_parser, run_cli


def build_parser():
    parser = make_parser(__doc__, __file__)
    add_dataclass_args(parser, RawTokensConfig, skip=("seed", "overwrite"))
    add_common_args(parser)
    return parser


def main(argv=None) -> int:
    return run_cli(build_parser(), lambda args: run_prepare_classical(config_from_args(RawTokensConfig, args)), argv)


if __name__ == "__main__":
    raise SystemExit(main())
